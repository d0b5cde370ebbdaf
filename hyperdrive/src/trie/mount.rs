//! mountable-hypertrie 2.8 record formats (hyperdrive.md §4). A mount is two nodes
//! written in one batch: a hidden `mounts/<path>` node whose value is a [`MountRecord`],
//! and a visible node at `<path>`; both carry user flag [`MOUNT_FLAG`]. Resolving
//! paths across mounts (opening the mounted feed) is the drive layer's job; this
//! module gives it the encodings, the record key and the put/del conditions.

use super::node::Node;
use super::wire::{
    expect_bytes, expect_string, expect_varint, put_bytes_field, put_varint_field, Fields,
};
use super::{BatchOp, DecodeError, TrieError};

/// User flag marking mount nodes.
pub const MOUNT_FLAG: u64 = 1;
/// Hidden prefix of mount records.
pub const MOUNT_PREFIX: &str = "/mounts";

/// The `Mount` message stored in the hidden record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountRecord {
    /// Mounted feed's public key (32 bytes).
    pub key: Vec<u8>,
    /// Mount path inside this trie.
    pub local_path: String,
    /// Pinned version, if any.
    pub version: Option<u64>,
    /// Path inside the mounted trie (hyperdrive never sets it).
    pub remote_path: Option<String>,
    /// Never written by the reference; kept for round trips.
    pub hash: Option<Vec<u8>>,
}

impl MountRecord {
    /// Fields 1–5 in order, absent optionals omitted.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes_field(&mut out, 1, &self.key);
        put_bytes_field(&mut out, 2, self.local_path.as_bytes());
        if let Some(v) = self.version {
            put_varint_field(&mut out, 3, v);
        }
        if let Some(r) = &self.remote_path {
            put_bytes_field(&mut out, 4, r.as_bytes());
        }
        if let Some(h) = &self.hash {
            put_bytes_field(&mut out, 5, h);
        }
        out
    }

    /// Decodes; `key` and `localPath` are required.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut key, mut local_path) = (None, None);
        let mut rec = MountRecord::default();
        let mut fields = Fields::new(buf);
        while let Some((n, f)) = fields.next_field()? {
            match n {
                1 => key = Some(expect_bytes(f, "Mount.key")?.to_vec()),
                2 => local_path = Some(expect_string(f, "Mount.localPath")?),
                3 => rec.version = Some(expect_varint(f, "Mount.version")?),
                4 => rec.remote_path = Some(expect_string(f, "Mount.remotePath")?),
                5 => rec.hash = Some(expect_bytes(f, "Mount.hash")?.to_vec()),
                _ => {}
            }
        }
        rec.key = key.ok_or(DecodeError::MissingField("Mount.key"))?;
        rec.local_path = local_path.ok_or(DecodeError::MissingField("Mount.localPath"))?;
        Ok(rec)
    }
}

/// Whether `node` is a mount node: its user flags are exactly [`MOUNT_FLAG`].
pub fn is_mount_node(node: &Node) -> bool {
    node.flags() == MOUNT_FLAG
}

/// POSIX `path.normalize` (as Node's `path` module does it): resolves `.` and `..`,
/// collapses repeated slashes, keeps a trailing slash; `""` becomes `"."`.
pub fn posix_normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let trailing = path.ends_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let mut out = parts.join("/");
    if out.is_empty() && !absolute {
        out.push('.');
    }
    if trailing && !out.is_empty() && !out.ends_with('/') {
        out.push('/');
    }
    if absolute {
        out.insert(0, '/');
    }
    out
}

/// Key of the hidden record for a mount at `path` (`join("/mounts", path)`), as the
/// trie stores it (one leading `/` dropped).
pub fn mount_record_key(path: &str) -> String {
    // Node's `path.join` skips empty arguments.
    let joined = if path.is_empty() {
        MOUNT_PREFIX.to_string()
    } else {
        posix_normalize(&format!("{MOUNT_PREFIX}/{path}"))
    };
    super::normalize_key(&joined).to_string()
}

/// The two batch operations of `mount(path, key, {version, remotePath, value})`
/// (path already normalised by the caller, no leading `/`).
pub fn mount_ops(path: &str, record: &MountRecord, value: Option<Vec<u8>>) -> Vec<BatchOp> {
    vec![
        BatchOp::Put {
            key: mount_record_key(path),
            value: Some(record.encode()),
            hidden: true,
            flags: MOUNT_FLAG,
        },
        BatchOp::Put {
            key: path.to_string(),
            value: Some(value.unwrap_or_default()),
            hidden: false,
            flags: MOUNT_FLAG,
        },
    ]
}

/// The two batch operations of `unmount(path)` inside the owning trie.
pub fn unmount_ops(inner_path: &str) -> Vec<BatchOp> {
    vec![
        BatchOp::Del {
            key: mount_record_key(inner_path),
            hidden: true,
        },
        BatchOp::Del {
            key: inner_path.to_string(),
            hidden: false,
        },
    ]
}

/// mountable-hypertrie's put condition (with `closest: true`): writing strictly below
/// a mount node's key in the parent trie is refused with a "mountpoint" error, so the
/// caller retries inside the mounted trie.
pub fn put_refuses_mountpoint(closest: Option<&Node>, new: &Node) -> Result<(), TrieError> {
    if let Some(c) = closest {
        let within = new.key.starts_with(&c.key) && new.key != c.key;
        if c.flags() & MOUNT_FLAG != 0 && within {
            return Err(TrieError::Condition("mountpoint".into()));
        }
    }
    Ok(())
}

/// mountable-hypertrie's delete condition (with `closest: true`): deleting anything but
/// the mount node itself where the closest node is a mount node is a "mountpoint" error.
pub fn del_refuses_mountpoint(closest: Option<&Node>, path: &str) -> Result<(), TrieError> {
    if let Some(c) = closest {
        if c.flags() & MOUNT_FLAG != 0 && c.key != path {
            return Err(TrieError::Condition("mountpoint".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_keys() {
        let rec = MountRecord {
            key: vec![7; 32],
            local_path: "mnt".into(),
            version: Some(2),
            ..Default::default()
        };
        assert_eq!(MountRecord::decode(&rec.encode()).unwrap(), rec);
        assert!(MountRecord::decode(&[0x12, 0x00]).is_err());
        assert_eq!(mount_record_key("mnt"), "mounts/mnt");
        assert_eq!(mount_record_key("a/./b/../c"), "mounts/a/c");
        assert_eq!(mount_record_key(""), "mounts");
        assert_eq!(posix_normalize("a//b/"), "a/b/");
        assert_eq!(posix_normalize("/../x"), "/x");
        assert_eq!(posix_normalize("../x"), "../x");
    }
}
