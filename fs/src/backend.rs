//! The contract between the FUSE adapter and whatever holds the files.
//!
//! The adapter ([`crate::HyperFs`]) speaks only to a [`Backend`]: path-based, async,
//! shareable across tasks. The hyperdrive adapter implements it over a `Drive`; tests use
//! [`crate::memory::MemoryBackend`]. Paths are absolute drive paths: `/` or `/a/b`,
//! `/`-separated, no trailing slash, no `.`/`..` components, UTF-8.
//!
//! # Rename on an append-only drive
//! Hyperdrive 10 has no rename. A backend emulates `rename(from, to)` by putting, for
//! every node at or under `from`, a copy of its Stat at the corresponding path under
//! `to` (content blocks are shared by reference: the copied Stat keeps `offset`,
//! `byteOffset`, `blocks` and `size`, nothing is re-appended), then deleting the old
//! nodes. It is not atomic: a crash in between leaves both names; readers in between see
//! both. A target file is replaced; a target directory must be empty.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::FsError;

/// What kind of node a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// The attributes a backend knows for one path (no owner: the mount presents every
/// node as owned by the mounting user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub kind: FileKind,
    /// File: content length. Symlink: target length. Dir: 0.
    pub size: u64,
    /// Permission bits only (`0o7777`); the kind gives the type bits.
    pub mode: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// The set extended attributes. Carried with the other attributes (a drive keeps
    /// them in the same Stat) so the adapter can answer `getxattr`/`listxattr` from
    /// what `stat`/`readdir` already returned, without another backend call.
    pub xattrs: Xattrs,
}

/// Extended attributes by name (shared: attributes are copied into caches often).
pub type Xattrs = Arc<BTreeMap<String, Vec<u8>>>;

/// One child of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// A single path component.
    pub name: String,
    pub attr: Attr,
}

/// Space and file counts for `statfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Bytes of content stored locally (a sparse mount holds less than `total_bytes`).
    pub bytes_held: u64,
    /// Total byte length of the drive's content.
    pub total_bytes: u64,
    /// Number of nodes (files, directories, links).
    pub files: u64,
    /// Bytes that may still be written (0 for read-only drives).
    pub free_bytes: u64,
}

/// The new contents of a file, committed as one version by [`Backend::write_file`].
#[derive(Debug)]
pub enum WriteSource {
    Bytes(Vec<u8>),
    /// A scratch file; read `len` bytes from position 0 with positional reads
    /// (`FileExt::read_at`), not through the shared cursor.
    File {
        file: std::fs::File,
        len: u64,
    },
}

impl WriteSource {
    pub fn len(&self) -> u64 {
        match self {
            WriteSource::Bytes(b) => b.len() as u64,
            WriteSource::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attribute changes for [`Backend::set_attr`]; `None` leaves a field as is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`0o7777`).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    /// Truncate or extend (with zeros) a file to this length.
    pub size: Option<u64>,
}

/// A drive as the FUSE adapter sees it.
///
/// Every method may wait for the network (a sparse mount fetches on demand); the adapter
/// calls them from tokio tasks, never from the FUSE session thread, and bounds each with
/// a timeout. Mutating methods on a backend whose [`Backend::writable`] is false must
/// return [`FsError::ReadOnly`].
pub trait Backend: Send + Sync + 'static {
    /// Attributes of `path`, not following a final symlink (`lstat`).
    fn stat(&self, path: &str) -> impl Future<Output = Result<Attr, FsError>> + Send;
    /// Children of the directory `path`, sorted by name, without `.`/`..`.
    /// `NotADirectory` for a file, `NotFound` for a missing path.
    fn readdir(&self, path: &str) -> impl Future<Output = Result<Vec<DirEntry>, FsError>> + Send;
    /// Up to `len` bytes of the file at `offset`; fewer only at end of file.
    fn read(
        &self,
        path: &str,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Vec<u8>, FsError>> + Send;
    /// The stored target of a symlink, as written (`NotASymlink` otherwise).
    fn readlink(&self, path: &str) -> impl Future<Output = Result<String, FsError>> + Send;
    /// Value of the extended attribute `name` (`NoAttr` if unset).
    fn getxattr(
        &self,
        path: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<u8>, FsError>> + Send;
    /// Names of the set extended attributes, sorted.
    fn listxattr(&self, path: &str) -> impl Future<Output = Result<Vec<String>, FsError>> + Send;
    fn statfs(&self) -> impl Future<Output = Result<StatFs, FsError>> + Send;
    /// The current version (metadata feed length for a drive). Cheap, never waits.
    fn version(&self) -> u64;
    /// A number that grows whenever anything the backend shows may have changed: its
    /// own writes, replicated updates, and changes of anything it shows from elsewhere
    /// (a drive's nested mounts). The adapter keys its caches by it, so it must move
    /// before a mutating call returns. Cheap, never waits; called on the FUSE thread.
    fn generation(&self) -> u64 {
        self.version()
    }
    /// Receives every new version as the drive changes (local writes or replication).
    fn watch(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Whether mutating calls can succeed. Fixed for the life of the backend.
    fn writable(&self) -> bool;

    /// Replace (or create) the file at `path` with `contents`, as one new version.
    /// The parent must be a directory; an existing directory is `IsADirectory`.
    /// Extended attributes of a replaced file are kept (the drive copies `metadata`).
    fn write_file(
        &self,
        path: &str,
        contents: WriteSource,
        mode: u32,
        mtime: SystemTime,
    ) -> impl Future<Output = Result<(), FsError>> + Send;
    /// `Exists` if anything is at `path`; parent must exist.
    fn mkdir(&self, path: &str, mode: u32) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Remove a file or symlink (`IsADirectory` for a directory).
    fn unlink(&self, path: &str) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Remove an empty directory (`NotEmpty`, `NotADirectory`).
    fn rmdir(&self, path: &str) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Create a symlink at `path` pointing to `target` (stored verbatim).
    fn symlink(&self, target: &str, path: &str)
        -> impl Future<Output = Result<(), FsError>> + Send;
    /// Move a file, symlink or directory tree (see the module docs for the emulation).
    fn rename(&self, from: &str, to: &str) -> impl Future<Output = Result<(), FsError>> + Send;
    fn set_attr(
        &self,
        path: &str,
        changes: SetAttr,
    ) -> impl Future<Output = Result<(), FsError>> + Send;
    fn setxattr(
        &self,
        path: &str,
        name: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<(), FsError>> + Send;
    /// `NoAttr` if unset.
    fn removexattr(
        &self,
        path: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), FsError>> + Send;
}

/// Joins a directory path and one component.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of an absolute path (`/` for `/` itself) and the last component.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// A shared backend is a backend (tests keep a handle to inspect what was written).
impl<B: Backend> Backend for std::sync::Arc<B> {
    fn stat(&self, path: &str) -> impl Future<Output = Result<Attr, FsError>> + Send {
        (**self).stat(path)
    }
    fn readdir(&self, path: &str) -> impl Future<Output = Result<Vec<DirEntry>, FsError>> + Send {
        (**self).readdir(path)
    }
    fn read(
        &self,
        path: &str,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Vec<u8>, FsError>> + Send {
        (**self).read(path, offset, len)
    }
    fn readlink(&self, path: &str) -> impl Future<Output = Result<String, FsError>> + Send {
        (**self).readlink(path)
    }
    fn getxattr(
        &self,
        path: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<u8>, FsError>> + Send {
        (**self).getxattr(path, name)
    }
    fn listxattr(&self, path: &str) -> impl Future<Output = Result<Vec<String>, FsError>> + Send {
        (**self).listxattr(path)
    }
    fn statfs(&self) -> impl Future<Output = Result<StatFs, FsError>> + Send {
        (**self).statfs()
    }
    fn version(&self) -> u64 {
        (**self).version()
    }
    fn generation(&self) -> u64 {
        (**self).generation()
    }
    fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        (**self).watch()
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
    fn write_file(
        &self,
        path: &str,
        contents: WriteSource,
        mode: u32,
        mtime: SystemTime,
    ) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).write_file(path, contents, mode, mtime)
    }
    fn mkdir(&self, path: &str, mode: u32) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).mkdir(path, mode)
    }
    fn unlink(&self, path: &str) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).unlink(path)
    }
    fn rmdir(&self, path: &str) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).rmdir(path)
    }
    fn symlink(
        &self,
        target: &str,
        path: &str,
    ) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).symlink(target, path)
    }
    fn rename(&self, from: &str, to: &str) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).rename(from, to)
    }
    fn set_attr(
        &self,
        path: &str,
        changes: SetAttr,
    ) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).set_attr(path, changes)
    }
    fn setxattr(
        &self,
        path: &str,
        name: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).setxattr(path, name, value)
    }
    fn removexattr(
        &self,
        path: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), FsError>> + Send {
        (**self).removexattr(path, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_split() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(split("/a/b/c"), ("/a/b", "c"));
        assert_eq!(split("/"), ("/", ""));
    }
}
