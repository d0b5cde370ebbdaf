//! The six files of a hypercore 9 directory (hypercore-default-storage on
//! random-access-file): `key`, `secret_key`, `data`, `tree`, `signatures`, `bitfield`,
//! with their 32-byte headers, byte for byte as Node writes them. Also an in-memory
//! backend for tests.
//!
//! This module knows offsets and record layouts (hypercore.md §6). It never decides
//! what a feed's length is or whether a node is trusted: that is `Feed`'s job. Reads
//! past the end of a file return zeros ("absent"), as unwritten records are absent
//! in Node too.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::bitfield::PAGE_SIZE;
use super::crypto::{Node, Signature};
use super::error::{CoreError, Result};

/// Bytes of the common header of `tree`, `signatures` and `bitfield`.
pub const HEADER_SIZE: u64 = 32;
/// Bytes per `tree` record: `hash(32) ‖ u64be(size)`.
pub const NODE_SIZE: u64 = 40;
/// Bytes per `signatures` slot.
pub const SIGNATURE_SIZE: u64 = 64;

/// How often `open_dir` retries a busy lock (5 ms apart) before `CoreError::Locked`.
const LOCK_RETRIES: u32 = 10;

/// A random-access file: what random-access-file / random-access-memory give Node.
pub trait RandomAccess: Send {
    /// Read into `buf` from `offset`; returns how many bytes were read, which is less
    /// than `buf.len()` only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `data` at `offset`, growing the file (with zeros) as needed.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Make every write so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A file on disk, opened on its first write when `lazy` (Node creates `data` only
/// when the first block arrives).
pub struct DiskFile {
    path: PathBuf,
    file: Option<File>,
}

impl DiskFile {
    /// Open `path` if it exists; create it now when `create`, else on the first write.
    pub fn open(path: PathBuf, create: bool) -> io::Result<Self> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => None,
            Err(e) => return Err(e),
        };
        Ok(DiskFile { path, file })
    }

    fn file_mut(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("opened just above"))
    }

    /// Take the exclusive, non-blocking lock Node takes on `bitfield` (flock).
    fn try_lock(&mut self) -> std::result::Result<(), TryLockError> {
        let f = self.file_mut().map_err(TryLockError::Error)?;
        f.try_lock()
    }
}

impl RandomAccess for DiskFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(f) = &self.file else { return Ok(0) };
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file_mut()?.write_all_at(data, offset)
    }
    fn len(&self) -> io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(0),
        }
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        match &self.file {
            Some(f) => f.set_len(len),
            None if len == 0 => Ok(()),
            None => self.file_mut()?.set_len(len),
        }
    }
    fn sync(&mut self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// A file kept in memory (random-access-memory).
#[derive(Debug, Default, Clone)]
pub struct MemoryFile {
    bytes: Vec<u8>,
}

impl RandomAccess for MemoryFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.bytes.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let start = offset as usize;
        let n = buf.len().min(self.bytes.len() - start);
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        Ok(n)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .and_then(|e| usize::try_from(e).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        self.bytes.resize(len, 0);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The six files of a feed directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Key,
    SecretKey,
    Data,
    Tree,
    Signatures,
    Bitfield,
}

impl FileKind {
    pub const ALL: [FileKind; 6] = [
        FileKind::Key,
        FileKind::SecretKey,
        FileKind::Data,
        FileKind::Tree,
        FileKind::Signatures,
        FileKind::Bitfield,
    ];

    /// The file name hypercore-default-storage uses.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Key => "key",
            FileKind::SecretKey => "secret_key",
            FileKind::Data => "data",
            FileKind::Tree => "tree",
            FileKind::Signatures => "signatures",
            FileKind::Bitfield => "bitfield",
        }
    }

    /// Header fields (type byte, entry size, algorithm name) of the files that have one.
    fn header_fields(self) -> Option<(u8, u16, &'static str)> {
        match self {
            FileKind::Bitfield => Some((0, PAGE_SIZE as u16, "")),
            FileKind::Signatures => Some((1, SIGNATURE_SIZE as u16, "Ed25519")),
            FileKind::Tree => Some((2, NODE_SIZE as u16, "BLAKE2b")),
            _ => None,
        }
    }
}

/// The exact 32-byte header Node writes (lib/storage.js `header`, hypercore.md §6.1),
/// or `None` for files without one.
pub fn header(kind: FileKind) -> Option<[u8; 32]> {
    let (ty, size, name) = kind.header_fields()?;
    let mut h = [0u8; 32];
    h[..3].copy_from_slice(&[5, 2, 87]);
    h[3] = ty;
    h[4] = 0;
    h[5..7].copy_from_slice(&size.to_be_bytes());
    h[7] = name.len() as u8;
    h[8..8 + name.len()].copy_from_slice(name.as_bytes());
    Some(h)
}

/// Check an existing header: magic, file type and entry size must match what we
/// write. (Node silently rewrites them; we refuse to reinterpret a foreign file.)
pub fn validate_header(kind: FileKind, h: &[u8]) -> std::result::Result<(), String> {
    let Some((ty, size, _)) = kind.header_fields() else {
        return Ok(());
    };
    if h.len() < HEADER_SIZE as usize {
        return Err(format!("header truncated to {} bytes", h.len()));
    }
    if h[..3] != [5, 2, 87] {
        return Err(format!("bad magic {}", hex::encode(&h[..3])));
    }
    if h[3] != ty {
        return Err(format!("file type {} (expected {ty})", h[3]));
    }
    let found = u16::from_be_bytes([h[5], h[6]]);
    if found != size {
        return Err(format!("entry size {found} (expected {size})"));
    }
    Ok(())
}

/// The 40-byte tree record of `node`.
#[inline]
pub fn encode_node(node: &Node, out: &mut [u8]) {
    out[..32].copy_from_slice(&node.hash);
    out[32..40].copy_from_slice(&node.size.to_be_bytes());
}

/// The node in a 40-byte record, `None` when the record is all zero (absent).
#[inline]
pub fn decode_node(index: u64, rec: &[u8]) -> Option<Node> {
    if rec.iter().all(|b| *b == 0) {
        return None;
    }
    let hash: [u8; 32] = rec[..32].try_into().ok()?;
    let size = u64::from_be_bytes(rec[32..40].try_into().ok()?);
    Some(Node { index, hash, size })
}

/// Byte offset of tree record `index` (`None` past what a u64 file offset can hold).
#[inline]
fn node_offset(index: u64) -> Option<u64> {
    index.checked_mul(NODE_SIZE)?.checked_add(HEADER_SIZE)
}

#[inline]
fn signature_offset(slot: u64) -> Option<u64> {
    slot.checked_mul(SIGNATURE_SIZE)?.checked_add(HEADER_SIZE)
}

/// The files of one feed plus where they live (for error messages).
pub struct Storage {
    /// `None` for in-memory storage.
    dir: Option<PathBuf>,
    files: [Box<dyn RandomAccess>; 6],
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("dir", &self.dir).finish()
    }
}

fn slot(kind: FileKind) -> usize {
    kind as usize
}

impl Storage {
    /// Open (creating `dir` if needed) a feed directory and take the exclusive lock on
    /// `bitfield`. `key`, `secret_key` and `data` are created on their first write.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Storage> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
        let open = |kind: FileKind, create: bool| -> Result<Box<dyn RandomAccess>> {
            let p = dir.join(kind.name());
            let f = DiskFile::open(p.clone(), create).map_err(|e| CoreError::io(&p, e))?;
            Ok(Box::new(f))
        };
        let bitfield_path = dir.join(FileKind::Bitfield.name());
        let mut bitfield =
            DiskFile::open(bitfield_path.clone(), true).map_err(|e| CoreError::io(&dir, e))?;
        // A lock can be held for a moment by a child this process forks (the fd lives
        // until the child's exec closes it), so retry briefly before reporting Locked.
        let mut attempts = 0;
        loop {
            match bitfield.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => return Err(CoreError::Locked { path: dir }),
                Err(TryLockError::Error(e)) => return Err(CoreError::io(bitfield_path, e)),
            }
        }
        let files = [
            open(FileKind::Key, false)?,
            open(FileKind::SecretKey, false)?,
            open(FileKind::Data, false)?,
            open(FileKind::Tree, true)?,
            open(FileKind::Signatures, true)?,
            Box::new(bitfield) as Box<dyn RandomAccess>,
        ];
        Ok(Storage {
            dir: Some(dir),
            files,
        })
    }

    /// Storage kept in memory.
    pub fn in_memory() -> Storage {
        Storage::from_backends(FileKind::ALL.map(|_| Box::new(MemoryFile::default()) as _))
    }

    /// Storage on caller-supplied backends, indexed in [`FileKind::ALL`] order.
    pub fn from_backends(files: [Box<dyn RandomAccess>; 6]) -> Storage {
        Storage { dir: None, files }
    }

    /// The directory, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Path of a file, for error messages (`<memory>/name` when in memory).
    pub fn path(&self, kind: FileKind) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(kind.name()),
            None => Path::new("<memory>").join(kind.name()),
        }
    }

    fn io(&self, kind: FileKind, e: io::Error) -> CoreError {
        CoreError::io(self.path(kind), e)
    }

    fn corrupt(&self, kind: FileKind, reason: impl Into<String>) -> CoreError {
        CoreError::Corrupt {
            path: self.path(kind),
            reason: reason.into(),
        }
    }

    /// Read up to `len` bytes at `offset`; fewer at the end of the file.
    pub fn read(&self, kind: FileKind, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.files[slot(kind)]
            .read_at(offset, buf)
            .map_err(|e| self.io(kind, e))
    }

    pub fn write(&mut self, kind: FileKind, offset: u64, data: &[u8]) -> Result<()> {
        let r = self.files[slot(kind)].write_at(offset, data);
        r.map_err(|e| self.io(kind, e))
    }

    pub fn file_len(&self, kind: FileKind) -> Result<u64> {
        self.files[slot(kind)].len().map_err(|e| self.io(kind, e))
    }

    pub fn truncate(&mut self, kind: FileKind, len: u64) -> Result<()> {
        let r = self.files[slot(kind)].truncate(len);
        r.map_err(|e| self.io(kind, e))
    }

    /// The public key in `key`, `None` if the file is empty or missing.
    pub fn read_key(&self) -> Result<Option<[u8; 32]>> {
        let mut buf = [0u8; 33];
        match self.read(FileKind::Key, 0, &mut buf)? {
            0 => Ok(None),
            32 => Ok(Some(buf[..32].try_into().expect("32 bytes"))),
            n => Err(self.corrupt(FileKind::Key, format!("{n} bytes, expected 32"))),
        }
    }

    /// The libsodium secret key in `secret_key`, `None` if empty or missing.
    pub fn read_secret_key(&self) -> Result<Option<[u8; 64]>> {
        let mut buf = [0u8; 65];
        match self.read(FileKind::SecretKey, 0, &mut buf)? {
            0 => Ok(None),
            64 => Ok(Some(buf[..64].try_into().expect("64 bytes"))),
            n => Err(self.corrupt(FileKind::SecretKey, format!("{n} bytes, expected 64"))),
        }
    }

    pub fn write_key(&mut self, key: &[u8; 32]) -> Result<()> {
        self.write(FileKind::Key, 0, key)
    }

    pub fn write_secret_key(&mut self, sk: &[u8; 64]) -> Result<()> {
        self.write(FileKind::SecretKey, 0, sk)
    }

    /// Validate the headers of `tree`, `signatures` and `bitfield` (if present),
    /// (re)write them as Node does on every open, and return the bitfield bytes after
    /// the header (whole pages plus a possibly short tail).
    pub fn open_headers(&mut self) -> Result<Vec<u8>> {
        for kind in [FileKind::Tree, FileKind::Signatures, FileKind::Bitfield] {
            let len = self.file_len(kind)?;
            if len > 0 {
                let mut h = [0u8; 32];
                let n = self.read(kind, 0, &mut h)?;
                validate_header(kind, &h[..n]).map_err(|r| self.corrupt(kind, r))?;
            }
            let h = header(kind).expect("these kinds have headers");
            self.write(kind, 0, &h)?;
        }
        let len = self.file_len(FileKind::Bitfield)?;
        if !(len - HEADER_SIZE).is_multiple_of(PAGE_SIZE as u64) {
            // Node and we only ever write whole pages: a torn tail is damage.
            return Err(self.corrupt(
                FileKind::Bitfield,
                format!("{len} bytes is not a header plus whole {PAGE_SIZE}-byte pages"),
            ));
        }
        let body = usize::try_from(len.saturating_sub(HEADER_SIZE))
            .map_err(|_| self.corrupt(FileKind::Bitfield, format!("{len} bytes is too large")))?;
        let mut pages = vec![0u8; body];
        let n = self.read(FileKind::Bitfield, HEADER_SIZE, &mut pages)?;
        pages.truncate(n);
        Ok(pages)
    }

    /// Tree node `index`, `None` if its record is absent (all zero or past the end).
    pub fn read_node(&self, index: u64) -> Result<Option<Node>> {
        let Some(off) = node_offset(index) else {
            return Ok(None);
        };
        let mut rec = [0u8; 40];
        let n = self.read(FileKind::Tree, off, &mut rec)?;
        if n < rec.len() {
            // Node's random-access-file errors on a short read: the node is absent.
            return Ok(None);
        }
        Ok(decode_node(index, &rec))
    }

    /// Write one node record.
    pub fn write_node(&mut self, node: &Node) -> Result<()> {
        let mut rec = [0u8; 40];
        encode_node(node, &mut rec);
        let off = node_offset(node.index).ok_or(CoreError::NodeMissing { index: node.index })?;
        self.write(FileKind::Tree, off, &rec)
    }

    /// Write consecutive raw 40-byte records starting at node `first` (one syscall).
    pub fn write_node_records(&mut self, first: u64, records: &[u8]) -> Result<()> {
        debug_assert_eq!(records.len() as u64 % NODE_SIZE, 0);
        let off = node_offset(first).ok_or(CoreError::NodeMissing { index: first })?;
        self.write(FileKind::Tree, off, records)
    }

    /// Signature slot `slot` (the signature for length `slot + 1`), `None` if blank.
    pub fn read_signature(&self, slot: u64) -> Result<Option<Signature>> {
        let Some(off) = signature_offset(slot) else {
            return Ok(None);
        };
        let mut sig = [0u8; 64];
        let n = self.read(FileKind::Signatures, off, &mut sig)?;
        if n < 64 || sig.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        Ok(Some(sig))
    }

    pub fn write_signature(&mut self, slot: u64, sig: &Signature) -> Result<()> {
        let off = signature_offset(slot).ok_or(CoreError::BadSignature { length: slot })?;
        self.write(FileKind::Signatures, off, sig)
    }

    /// The first non-blank signature slot `>= from` (hypercore `nextSignature`),
    /// scanning in chunks up to the end of the file.
    pub fn next_signature(&self, from: u64) -> Result<Option<(u64, Signature)>> {
        const CHUNK: u64 = 256;
        let len = self.file_len(FileKind::Signatures)?;
        let mut slot = from;
        let mut buf = vec![0u8; (CHUNK * SIGNATURE_SIZE) as usize];
        loop {
            let Some(off) = signature_offset(slot) else {
                return Ok(None);
            };
            if off >= len {
                return Ok(None);
            }
            let n = self.read(FileKind::Signatures, off, &mut buf)?;
            let whole = n / SIGNATURE_SIZE as usize;
            if whole == 0 {
                return Ok(None);
            }
            for (i, s) in buf[..whole * 64].chunks_exact(64).enumerate() {
                if s.iter().any(|b| *b != 0) {
                    let sig: Signature = s.try_into().expect("64 bytes");
                    return Ok(Some((slot + i as u64, sig)));
                }
            }
            slot += whole as u64;
        }
    }

    /// The last non-blank signature slot `< before`, scanning backwards.
    pub fn prev_signature(&self, before: u64) -> Result<Option<u64>> {
        const CHUNK: u64 = 256;
        let mut end = before;
        let mut buf = vec![0u8; (CHUNK * SIGNATURE_SIZE) as usize];
        while end > 0 {
            let start = end.saturating_sub(CHUNK);
            let count = (end - start) as usize;
            let off = signature_offset(start).ok_or(CoreError::BadSignature { length: start })?;
            let buf = &mut buf[..count * 64];
            let n = self.read(FileKind::Signatures, off, buf)?;
            let whole = n / 64;
            for i in (0..whole).rev() {
                if buf[i * 64..(i + 1) * 64].iter().any(|b| *b != 0) {
                    return Ok(Some(start + i as u64));
                }
            }
            end = start;
        }
        Ok(None)
    }

    /// Write whole bitfield pages starting at page `first` (one syscall).
    pub fn write_bitfield_pages(&mut self, first: u64, pages: &[u8]) -> Result<()> {
        debug_assert_eq!(pages.len() % PAGE_SIZE, 0);
        let off = first
            .checked_mul(PAGE_SIZE as u64)
            .and_then(|o| o.checked_add(HEADER_SIZE))
            .ok_or_else(|| self.corrupt(FileKind::Bitfield, "page offset overflows"))?;
        self.write(FileKind::Bitfield, off, pages)
    }

    /// Read exactly `buf.len()` bytes of `data` at `offset`.
    pub fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.read(FileKind::Data, offset, buf)?;
        if n < buf.len() {
            return Err(self.corrupt(
                FileKind::Data,
                format!(
                    "{} bytes at offset {offset} requested, file ends after {n}",
                    buf.len()
                ),
            ));
        }
        Ok(())
    }

    pub fn write_data(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.write(FileKind::Data, offset, data)
    }

    /// fsync `data`, `tree`, `signatures` and then `bitfield` (the bits are what
    /// Node derives the length from, so they become durable last).
    pub fn sync(&mut self) -> Result<()> {
        for kind in [
            FileKind::Key,
            FileKind::SecretKey,
            FileKind::Data,
            FileKind::Tree,
            FileKind::Signatures,
            FileKind::Bitfield,
        ] {
            let r = self.files[slot(kind)].sync();
            r.map_err(|e| self.io(kind, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_spec() {
        let t = header(FileKind::Tree).unwrap();
        assert_eq!(hex::encode(&t[..15]), "0502570200002807424c414b453262");
        assert!(t[15..].iter().all(|b| *b == 0));
        let s = header(FileKind::Signatures).unwrap();
        assert_eq!(hex::encode(&s[..15]), "050257010000400745643235353139");
        assert!(s[15..].iter().all(|b| *b == 0));
        let b = header(FileKind::Bitfield).unwrap();
        assert_eq!(hex::encode(&b[..7]), "05025700000e00");
        assert!(b[7..].iter().all(|b| *b == 0));
        assert!(header(FileKind::Data).is_none());
    }

    #[test]
    fn header_validation() {
        for kind in [FileKind::Tree, FileKind::Signatures, FileKind::Bitfield] {
            let h = header(kind).unwrap();
            assert!(validate_header(kind, &h).is_ok());
            assert!(validate_header(kind, &h[..20]).is_err());
            for byte in [0usize, 1, 2, 3, 5, 6] {
                let mut bad = h;
                bad[byte] ^= 0x10;
                assert!(validate_header(kind, &bad).is_err(), "{kind:?} byte {byte}");
            }
        }
        // A tree header is not a signatures header.
        assert!(validate_header(FileKind::Signatures, &header(FileKind::Tree).unwrap()).is_err());
    }

    #[test]
    fn node_records_roundtrip_and_absent() {
        let mut s = Storage::in_memory();
        s.open_headers().unwrap();
        assert_eq!(s.read_node(5).unwrap(), None);
        let n = Node::new(5, [7u8; 32], 0x0102030405);
        s.write_node(&n).unwrap();
        assert_eq!(s.read_node(5).unwrap(), Some(n));
        assert_eq!(s.read_node(4).unwrap(), None);
        assert_eq!(s.read_node(6).unwrap(), None);
        assert_eq!(s.file_len(FileKind::Tree).unwrap(), 32 + 6 * 40);
        let mut rec = [0u8; 40];
        s.read(FileKind::Tree, 32 + 5 * 40, &mut rec).unwrap();
        assert_eq!(&rec[32..], &0x0102030405u64.to_be_bytes());
        assert_eq!(s.read_node(u64::MAX).unwrap(), None);
    }

    #[test]
    fn signature_slots_and_scan() {
        let mut s = Storage::in_memory();
        s.open_headers().unwrap();
        assert_eq!(s.read_signature(0).unwrap(), None);
        s.write_signature(3, &[9u8; 64]).unwrap();
        s.write_signature(700, &[8u8; 64]).unwrap();
        assert_eq!(s.read_signature(3).unwrap(), Some([9u8; 64]));
        assert_eq!(s.read_signature(2).unwrap(), None);
        assert_eq!(s.next_signature(0).unwrap(), Some((3, [9u8; 64])));
        assert_eq!(s.next_signature(4).unwrap(), Some((700, [8u8; 64])));
        assert_eq!(s.next_signature(701).unwrap(), None);
        assert_eq!(s.prev_signature(1000).unwrap(), Some(700));
        assert_eq!(s.prev_signature(700).unwrap(), Some(3));
        assert_eq!(s.prev_signature(3).unwrap(), None);
    }

    #[test]
    fn disk_files_are_lazy_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Storage::open_dir(dir.path()).unwrap();
        s.open_headers().unwrap();
        assert!(!dir.path().join("data").exists());
        assert!(!dir.path().join("key").exists());
        assert_eq!(
            std::fs::metadata(dir.path().join("tree")).unwrap().len(),
            32
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("bitfield"))
                .unwrap()
                .len(),
            32
        );
        match Storage::open_dir(dir.path()) {
            Err(CoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
        s.write_data(3, b"xy").unwrap();
        let mut buf = [0u8; 6];
        assert!(s.read_data(0, &mut buf).is_err());
        let mut buf = [1u8; 5];
        assert_eq!(s.read(FileKind::Data, 0, &mut buf).unwrap(), 5);
        assert_eq!(&buf, &[0, 0, 0, b'x', b'y']);
        drop(s);
        Storage::open_dir(dir.path()).expect("lock released on drop");
    }

    #[test]
    fn corrupt_headers_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Storage::open_dir(dir.path()).unwrap();
            s.open_headers().unwrap();
        }
        for name in ["tree", "signatures", "bitfield"] {
            let p = dir.path().join(name);
            let orig = std::fs::read(&p).unwrap();
            let mut bad = orig.clone();
            bad[1] ^= 0xff;
            std::fs::write(&p, &bad).unwrap();
            let mut s = Storage::open_dir(dir.path()).unwrap();
            match s.open_headers() {
                Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with(name)),
                other => panic!("{name}: expected Corrupt, got {other:?}"),
            }
            drop(s);
            std::fs::write(&p, &orig[..10]).unwrap();
            let mut s = Storage::open_dir(dir.path()).unwrap();
            assert!(matches!(s.open_headers(), Err(CoreError::Corrupt { .. })));
            drop(s);
            std::fs::write(&p, &orig).unwrap();
        }
    }

    #[test]
    fn key_files_of_wrong_size_are_corrupt() {
        let mut s = Storage::in_memory();
        assert_eq!(s.read_key().unwrap(), None);
        s.write(FileKind::Key, 0, &[1u8; 31]).unwrap();
        match s.read_key() {
            Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with("key")),
            other => panic!("{other:?}"),
        }
        s.write(FileKind::SecretKey, 0, &[1u8; 65]).unwrap();
        assert!(matches!(
            s.read_secret_key(),
            Err(CoreError::Corrupt { .. })
        ));
    }
}
