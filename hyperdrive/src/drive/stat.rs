//! The `Stat` message stored as the value of every visible metadata node
//! (hyperdrive-schemas 2, hyperdrive.md §3).
//!
//! Encoding follows what the reference writes, not just what proto2 allows: fields 1–9
//! are always present (zeros included), `linkname` only when non-empty, `mount` only when
//! set (with `hypercore` always written inside it), and one `metadata` entry per key in
//! insertion order, where a removed key keeps an entry without a value. Decoding keeps
//! all of that so a read–modify–write (`set_metadata`, `chmod`) re-encodes the same bytes
//! the reference would.

use crate::trie::DecodeError;

/// File type mask.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Default mode of a file.
pub const DEFAULT_FILE_MODE: u32 = 0o100644;
/// Default mode of a directory.
pub const DEFAULT_DIR_MODE: u32 = 0o040755;
/// Default mode of a symlink.
pub const DEFAULT_LINK_MODE: u32 = 0o120644;

/// `Stat.mount` (field numbers differ from the trie's mount record: version is 2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatMount {
    /// Mounted feed key.
    pub key: Vec<u8>,
    /// Pinned version.
    pub version: Option<u64>,
    /// Optional hash (never written by hyperdrive itself).
    pub hash: Option<Vec<u8>>,
    /// A raw hypercore mounted as a file rather than a drive.
    pub hypercore: bool,
}

/// One drive entry's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// POSIX mode including type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Number of content-feed blocks (not 512-byte units).
    pub blocks: u64,
    /// Index of the first content block.
    pub offset: u64,
    /// Byte position of the first content block in the content feed.
    pub byte_offset: u64,
    /// Milliseconds since the epoch.
    pub mtime: u64,
    /// Milliseconds since the epoch.
    pub ctime: u64,
    /// Symlink target, verbatim.
    pub linkname: Option<String>,
    /// Mount information (a mount point's node).
    pub mount: Option<StatMount>,
    /// Extended attributes in insertion order; `None` = removed (entry kept).
    pub metadata: Vec<(String, Option<Vec<u8>>)>,
}

fn with_type(mode: u32, default: u32, kind: u32) -> u32 {
    (if mode == 0 { default } else { mode }) | kind
}

impl Stat {
    /// `Stat.file(...)`: a caller mode of 0 means the default, type bits are OR-ed in.
    pub fn file(mode: u32, now: u64) -> Self {
        Stat {
            mode: with_type(mode, DEFAULT_FILE_MODE, S_IFREG),
            mtime: now,
            ctime: now,
            ..Default::default()
        }
    }

    /// `Stat.directory(...)`.
    pub fn directory(mode: u32, now: u64) -> Self {
        Stat {
            mode: with_type(mode, DEFAULT_DIR_MODE, S_IFDIR),
            mtime: now,
            ctime: now,
            ..Default::default()
        }
    }

    /// `Stat.symlink(...)`.
    pub fn symlink(target: &str, now: u64) -> Self {
        Stat {
            mode: DEFAULT_LINK_MODE,
            mtime: now,
            ctime: now,
            linkname: Some(target.to_string()),
            ..Default::default()
        }
    }

    /// Directory test (`(mode & S_IFDIR) == S_IFDIR`, as the reference tests it).
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Symlink test.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Regular file (strictly: type bits are IFREG).
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Value of extended attribute `name` (`None` if absent or removed).
    pub fn xattr(&self, name: &str) -> Option<&[u8]> {
        self.metadata
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Sets (or, with `None`, marks removed) an attribute, keeping insertion order.
    pub fn set_xattr(&mut self, name: &str, value: Option<Vec<u8>>) {
        match self.metadata.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((name.to_string(), value)),
        }
    }

    /// Encodes as the reference does (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        varint_field(&mut out, 1, u64::from(self.mode));
        varint_field(&mut out, 2, u64::from(self.uid));
        varint_field(&mut out, 3, u64::from(self.gid));
        varint_field(&mut out, 4, self.size);
        varint_field(&mut out, 5, self.blocks);
        varint_field(&mut out, 6, self.offset);
        varint_field(&mut out, 7, self.byte_offset);
        varint_field(&mut out, 8, self.mtime);
        varint_field(&mut out, 9, self.ctime);
        if let Some(l) = self.linkname.as_deref().filter(|l| !l.is_empty()) {
            bytes_field(&mut out, 10, l.as_bytes());
        }
        if let Some(m) = &self.mount {
            let mut inner = Vec::new();
            bytes_field(&mut inner, 1, &m.key);
            if let Some(v) = m.version {
                varint_field(&mut inner, 2, v);
            }
            if let Some(h) = &m.hash {
                bytes_field(&mut inner, 3, h);
            }
            varint_field(&mut inner, 4, u64::from(m.hypercore));
            bytes_field(&mut out, 11, &inner);
        }
        for (k, v) in &self.metadata {
            let mut entry = Vec::new();
            bytes_field(&mut entry, 1, k.as_bytes());
            if let Some(v) = v {
                bytes_field(&mut entry, 2, v);
            }
            bytes_field(&mut out, 12, &entry);
        }
        out
    }

    /// Decodes; `mode` is required. Zero times are left as 0 (the drive substitutes
    /// "now" when presenting them).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut st = Stat::default();
        let mut have_mode = false;
        let mut r = Reader { buf, pos: 0 };
        while let Some((n, f)) = r.field()? {
            match (n, f) {
                (1, Field::Varint(v)) => {
                    st.mode = u32::try_from(v).map_err(|_| DecodeError::TooLarge("Stat.mode"))?;
                    have_mode = true;
                }
                (2, Field::Varint(v)) => st.uid = v as u32,
                (3, Field::Varint(v)) => st.gid = v as u32,
                (4, Field::Varint(v)) => st.size = v,
                (5, Field::Varint(v)) => st.blocks = v,
                (6, Field::Varint(v)) => st.offset = v,
                (7, Field::Varint(v)) => st.byte_offset = v,
                (8, Field::Varint(v)) => st.mtime = v,
                (9, Field::Varint(v)) => st.ctime = v,
                (10, Field::Bytes(b)) => {
                    let s =
                        std::str::from_utf8(b).map_err(|_| DecodeError::Utf8("Stat.linkname"))?;
                    st.linkname = (!s.is_empty()).then(|| s.to_string());
                }
                (11, Field::Bytes(b)) => st.mount = Some(decode_mount(b)?),
                (12, Field::Bytes(b)) => {
                    let (k, v) = decode_entry(b)?;
                    st.set_xattr(&k, v);
                }
                (1..=12, _) => return Err(DecodeError::WireType("Stat field")),
                _ => {}
            }
        }
        if !have_mode {
            return Err(DecodeError::MissingField("Stat.mode"));
        }
        Ok(st)
    }
}

fn decode_mount(buf: &[u8]) -> Result<StatMount, DecodeError> {
    let mut m = StatMount::default();
    let mut have_key = false;
    let mut r = Reader { buf, pos: 0 };
    while let Some((n, f)) = r.field()? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                m.key = b.to_vec();
                have_key = true;
            }
            (2, Field::Varint(v)) => m.version = Some(v),
            (3, Field::Bytes(b)) => m.hash = Some(b.to_vec()),
            (4, Field::Varint(v)) => m.hypercore = v != 0,
            (1..=4, _) => return Err(DecodeError::WireType("Stat.mount field")),
            _ => {}
        }
    }
    if !have_key {
        return Err(DecodeError::MissingField("Mount.key"));
    }
    Ok(m)
}

type Entry = (String, Option<Vec<u8>>);

fn decode_entry(buf: &[u8]) -> Result<Entry, DecodeError> {
    let (mut k, mut v) = (String::new(), None);
    let mut r = Reader { buf, pos: 0 };
    while let Some((n, f)) = r.field()? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                k = std::str::from_utf8(b)
                    .map_err(|_| DecodeError::Utf8("Stat.metadata key"))?
                    .to_string()
            }
            (2, Field::Bytes(b)) => v = Some(b.to_vec()),
            (1..=2, _) => return Err(DecodeError::WireType("Stat.metadata entry")),
            _ => {}
        }
    }
    Ok((k, v))
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    crate::varint::encode(v, out);
}

fn varint_field(out: &mut Vec<u8>, n: u64, v: u64) {
    put_varint(out, n << 3);
    put_varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, n: u64, b: &[u8]) {
    put_varint(out, (n << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes `v` as a bare varint (tag values).
pub fn encode_varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, v);
    out
}

/// Decodes a leading varint (tag values; trailing bytes are ignored like the reference).
pub fn decode_varint(buf: &[u8]) -> Result<u64, DecodeError> {
    Reader { buf, pos: 0 }.varint()
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (v, n) = crate::varint::decode(rest).map_err(|e| match e {
            crate::varint::VarintError::Truncated => DecodeError::Truncated,
            crate::varint::VarintError::Overflow => DecodeError::VarintOverflow,
        })?;
        self.pos += n;
        Ok(v)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let n = tag >> 3;
        if n == 0 {
            return Err(DecodeError::BadTag(tag));
        }
        let f = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Other
            }
            2 => {
                let len = self.varint()?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Other
            }
            _ => return Err(DecodeError::BadTag(tag)),
        };
        Ok(Some((n, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_or_type_bits() {
        assert_eq!(Stat::file(0, 1).mode, 0o100644);
        assert_eq!(Stat::file(0o600, 1).mode, 0o100600);
        assert_eq!(Stat::directory(0o700, 1).mode, 0o40700);
        assert!(Stat::symlink("x", 1).is_symlink());
    }

    #[test]
    fn roundtrip_with_removed_xattr() {
        let mut s = Stat::file(0, 5);
        s.set_xattr("a", Some(b"1".to_vec()));
        s.set_xattr("b", Some(b"2".to_vec()));
        s.set_xattr("b", None);
        s.mount = Some(StatMount {
            key: vec![1; 32],
            version: Some(3),
            ..Default::default()
        });
        let d = Stat::decode(&s.encode()).unwrap();
        assert_eq!(d, s);
        assert_eq!(d.xattr("a"), Some(&b"1"[..]));
        assert_eq!(d.xattr("b"), None);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Stat::decode(&[]).is_err());
        assert!(Stat::decode(&[0x08]).is_err());
        assert!(Stat::decode(&[0x08, 0x01, 0x52, 0x05, 0x00]).is_err());
        assert!(Stat::decode(&[0x08, 0x01, 0x0a, 0x00]).is_err());
    }
}
