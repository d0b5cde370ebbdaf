//! The corestore 5 folder layout: the `master_key` file, one folder per core under
//! `dk[0:2]/dk[2:4]/dk` (discovery key in hex), and the `name` file a derived core keeps in
//! place of a secret key.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The master key file in the store root.
pub const MASTER_KEY_FILE: &str = "master_key";
/// The core name file inside a core folder.
pub const NAME_FILE: &str = "name";

/// The files hypercore keeps in a core folder. `secret_key` is opened but never written
/// for derived cores.
pub const CORE_FILES: [&str; 7] = [
    "bitfield",
    "data",
    "key",
    "name",
    "secret_key",
    "signatures",
    "tree",
];

/// Upper bound on a `name` file we read: real names are short (a content core's is 72
/// bytes); anything huge is not a corestore name file.
pub const MAX_NAME_FILE: u64 = 64 * 1024;

/// Where a core lives relative to the store root: `dk[0:2]/dk[2:4]/dk` in lowercase hex.
pub fn core_dir_relative(discovery_key: &[u8; 32]) -> PathBuf {
    let id = hex::encode(discovery_key);
    [&id[0..2], &id[2..4], id.as_str()].iter().collect()
}

/// The folder of the core with `discovery_key` in the store at `root`.
pub fn core_dir(root: &Path, discovery_key: &[u8; 32]) -> PathBuf {
    root.join(core_dir_relative(discovery_key))
}

/// The paths of one core's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorePaths {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub name: PathBuf,
    pub secret_key: PathBuf,
    pub tree: PathBuf,
    pub data: PathBuf,
    pub bitfield: PathBuf,
    pub signatures: PathBuf,
}

impl CorePaths {
    pub fn new(dir: PathBuf) -> Self {
        CorePaths {
            key: dir.join("key"),
            name: dir.join(NAME_FILE),
            secret_key: dir.join("secret_key"),
            tree: dir.join("tree"),
            data: dir.join("data"),
            bitfield: dir.join("bitfield"),
            signatures: dir.join("signatures"),
            dir,
        }
    }
}

/// `varint(len) ‖ name`, the `name` file contents (unsigned LEB128 length, as the `varint`
/// npm module writes it).
pub fn encode_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 3);
    let mut n = name.len() as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(name);
    out
}

/// Parses a `name` file. The length prefix must cover exactly the rest of the file.
///
/// derived-key-storage treats a file that fails these checks (or is under 2 bytes) as
/// "no name" and falls back to `secret_key`; we report it so the caller can decide.
pub fn decode_name(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut len: u64 = 0;
    let mut shift = 0u32;
    let mut offset = 0usize;
    loop {
        let Some(&b) = bytes.get(offset) else {
            return Err("truncated length varint".into());
        };
        offset += 1;
        if shift >= 63 && b > 1 {
            return Err("length varint overflows".into());
        }
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err("length varint longer than 10 bytes".into());
        }
    }
    let rest = &bytes[offset..];
    if rest.len() as u64 != len {
        return Err(format!(
            "length prefix says {len} bytes but {} follow",
            rest.len()
        ));
    }
    Ok(rest.to_vec())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The name stored in core folder `dir`, or `None` when it has no `name` file (a core
/// known only by its key) or one under 2 bytes, which corestore also ignores.
pub fn read_name_file(dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(NAME_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_NAME_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io(&path))?;
    if bytes.len() as u64 > MAX_NAME_FILE {
        return Err(StoreError::InvalidNameFile {
            path,
            reason: format!("larger than {MAX_NAME_FILE} bytes"),
        });
    }
    if bytes.len() < 2 {
        // derived-key-storage ignores such a file (even an encoded empty name).
        return Ok(None);
    }
    decode_name(&bytes)
        .map(Some)
        .map_err(|reason| StoreError::InvalidNameFile { path, reason })
}

/// Writes the `name` file of core folder `dir` (creating the folder), durably.
pub fn write_name_file(dir: &Path, name: &[u8]) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    write_durably(&dir.join(NAME_FILE), &encode_name(name))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, so a crash leaves
/// either the old file or the whole new one.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io(path))?;
    // Make the rename itself durable; not every filesystem lets us fsync a folder.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The store's master key: the first 32 bytes of `root/master_key`, or a fresh random key
/// written there when the file is missing or shorter than 32 bytes (what corestore 5 does,
/// so a store either side creates opens on the other).
pub fn load_or_create_master_key(root: &Path) -> Result<[u8; 32], StoreError> {
    let path = root.join(MASTER_KEY_FILE);
    match File::open(&path) {
        Ok(f) => {
            let mut bytes = Vec::with_capacity(32);
            f.take(32).read_to_end(&mut bytes).map_err(io(&path))?;
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(key);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    fs::create_dir_all(root).map_err(io(root))?;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    write_durably(&path, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_encoding_roundtrip() {
        for len in [0usize, 1, 7, 127, 128, 300, 16384] {
            let name = vec![b'x'; len];
            let enc = encode_name(&name);
            assert_eq!(decode_name(&enc).unwrap(), name, "len {len}");
        }
        assert_eq!(encode_name(&[b'a'; 128])[..2], [0x80, 0x01]);
    }

    #[test]
    fn bad_name_files_are_rejected() {
        assert!(decode_name(&[]).is_err());
        assert!(decode_name(&[0x80]).is_err());
        assert!(decode_name(&[3, b'a', b'b']).is_err());
        assert!(decode_name(&[1, b'a', b'b']).is_err());
        assert!(decode_name(&[0xff; 12]).is_err());
    }

    #[test]
    fn name_file_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ab/cd/abcd");
        assert_eq!(read_name_file(&dir).unwrap(), None);
        write_name_file(&dir, b"default").unwrap();
        assert_eq!(
            read_name_file(&dir).unwrap().as_deref(),
            Some(&b"default"[..])
        );
        fs::write(dir.join(NAME_FILE), [9, 1, 2]).unwrap();
        assert!(matches!(
            read_name_file(&dir),
            Err(StoreError::InvalidNameFile { .. })
        ));
    }

    #[test]
    fn master_key_is_created_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let a = load_or_create_master_key(&root).unwrap();
        let b = load_or_create_master_key(&root).unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read(root.join(MASTER_KEY_FILE)).unwrap(), a);
        // Longer files: the first 32 bytes count (corestore reads 0..32).
        let mut long = [5u8; 40].to_vec();
        long[0] = 1;
        fs::write(root.join(MASTER_KEY_FILE), &long).unwrap();
        assert_eq!(load_or_create_master_key(&root).unwrap()[..], long[..32]);
        // Short files are replaced with a fresh key, as corestore does.
        fs::write(root.join(MASTER_KEY_FILE), [1u8; 10]).unwrap();
        let c = load_or_create_master_key(&root).unwrap();
        assert_eq!(fs::read(root.join(MASTER_KEY_FILE)).unwrap(), c);
        assert_ne!(c[..10], [1u8; 10]);
    }
}
