//! A complete in-memory [`Backend`]: a `BTreeMap` of paths, writable or read-only, with
//! injectable per-path delays so tests can show that a slow read does not stall the
//! FUSE loop. Used by the tests of this crate and of `mount/`; also handy as a model of
//! what the drive adapter must do.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::backend::{split, Attr, Backend, DirEntry, FileKind, SetAttr, StatFs, WriteSource};
use crate::error::FsError;

#[derive(Clone, Debug)]
struct Node {
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    /// File content, or the symlink target's bytes.
    data: Arc<Vec<u8>>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

impl Node {
    fn new(kind: FileKind, mode: u32, data: Vec<u8>) -> Self {
        let now = SystemTime::now();
        Node {
            kind,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            mtime: now,
            ctime: now,
            data: Arc::new(data),
            xattrs: BTreeMap::new(),
        }
    }

    fn attr(&self) -> Attr {
        Attr {
            kind: self.kind,
            size: if self.kind == FileKind::Dir {
                0
            } else {
                self.data.len() as u64
            },
            mode: self.mode,
            mtime: self.mtime,
            ctime: self.ctime,
            xattrs: Arc::new(self.xattrs.clone()),
        }
    }
}

/// A node as seen by tests ([`MemoryBackend::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryNode {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub data: Vec<u8>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Largest file the in-memory backend accepts (bounds memory in tests).
pub const MAX_FILE: u64 = 1 << 30;

/// An in-memory drive.
pub struct MemoryBackend {
    writable: bool,
    nodes: Mutex<BTreeMap<String, Node>>,
    version: watch::Sender<u64>,
    delays: Mutex<Vec<(String, Duration)>>,
    /// Read-side calls served (stat, readdir, read, readlink, xattrs), and reads alone:
    /// tests count them to show what the adapter answers from its caches.
    calls: AtomicU64,
    reads: AtomicU64,
}

impl MemoryBackend {
    /// An empty drive with just `/`.
    pub fn new(writable: bool) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), Node::new(FileKind::Dir, 0o755, Vec::new()));
        MemoryBackend {
            writable,
            nodes: Mutex::new(nodes),
            version: watch::channel(1).0,
            delays: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Node>> {
        // A panic while holding the lock cannot leave the map half-updated in a way
        // later readers could not cope with, so poisoning is ignored.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Every op on a path starting with `prefix` sleeps `delay` first.
    pub fn set_delay(&self, prefix: &str, delay: Duration) {
        let mut d = self.delays.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|(p, _)| p != prefix);
        if !delay.is_zero() {
            d.push((prefix.to_string(), delay));
        }
    }

    /// Read-side backend calls served so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Content reads served so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Counts a read-side call and waits out the delay set for `path`.
    async fn delay(&self, path: &str) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let wait = {
            let d = self.delays.lock().unwrap_or_else(|e| e.into_inner());
            d.iter()
                .filter(|(p, _)| path.starts_with(p.as_str()))
                .map(|(_, t)| *t)
                .max()
        };
        if let Some(t) = wait {
            tokio::time::sleep(t).await;
        }
    }

    fn seed(&self, path: &str, node: Node) {
        let mut nodes = self.lock();
        let mut dir = split(path).0.to_string();
        let mut parents = Vec::new();
        while dir != "/" && !nodes.contains_key(&dir) {
            parents.push(dir.clone());
            dir = split(&dir).0.to_string();
        }
        for p in parents {
            nodes.insert(p, Node::new(FileKind::Dir, 0o755, Vec::new()));
        }
        nodes.insert(path.to_string(), node);
        drop(nodes);
        self.bump();
    }

    /// Test setup, allowed on read-only backends: a file (parents made as needed).
    pub fn insert_file(&self, path: &str, data: &[u8], mode: u32) {
        self.seed(path, Node::new(FileKind::File, mode, data.to_vec()));
    }

    /// Test setup: a directory (parents made as needed).
    pub fn insert_dir(&self, path: &str) {
        self.seed(path, Node::new(FileKind::Dir, 0o755, Vec::new()));
    }

    /// Test setup: a symlink (parents made as needed).
    pub fn insert_symlink(&self, path: &str, target: &str) {
        self.seed(
            path,
            Node::new(FileKind::Symlink, 0o777, target.as_bytes().to_vec()),
        );
    }

    /// Test setup: an extended attribute on an existing node.
    pub fn insert_xattr(&self, path: &str, name: &str, value: &[u8]) {
        if let Some(n) = self.lock().get_mut(path) {
            n.xattrs.insert(name.to_string(), value.to_vec());
        }
        self.bump();
    }

    /// Copy of every node, for assertions.
    pub fn snapshot(&self) -> BTreeMap<String, MemoryNode> {
        self.lock()
            .iter()
            .map(|(p, n)| {
                (
                    p.clone(),
                    MemoryNode {
                        kind: n.kind,
                        mode: n.mode,
                        uid: n.uid,
                        gid: n.gid,
                        mtime: n.mtime,
                        data: n.data.to_vec(),
                        xattrs: n.xattrs.clone(),
                    },
                )
            })
            .collect()
    }

    fn check_writable(&self, path: &str) -> Result<(), FsError> {
        if self.writable {
            Ok(())
        } else {
            Err(FsError::ReadOnly {
                path: path.to_string(),
            })
        }
    }
}

fn not_found(path: &str) -> FsError {
    FsError::NotFound {
        path: path.to_string(),
    }
}

/// The parent of `path` must be an existing directory.
fn check_parent(nodes: &BTreeMap<String, Node>, path: &str) -> Result<(), FsError> {
    if path == "/" {
        return Err(FsError::Exists { path: path.into() });
    }
    let (parent, _) = split(path);
    match nodes.get(parent) {
        None => Err(not_found(path)),
        Some(n) if n.kind != FileKind::Dir => Err(FsError::NotADirectory { path: path.into() }),
        Some(_) => Ok(()),
    }
}

fn descendants_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    }
}

fn has_children(nodes: &BTreeMap<String, Node>, path: &str) -> bool {
    let prefix = descendants_prefix(path);
    nodes
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .any(|(k, _)| k != path)
}

fn node_mut<'a>(
    nodes: &'a mut BTreeMap<String, Node>,
    path: &str,
) -> Result<&'a mut Node, FsError> {
    nodes.get_mut(path).ok_or_else(|| not_found(path))
}

impl Backend for MemoryBackend {
    async fn stat(&self, path: &str) -> Result<Attr, FsError> {
        self.delay(path).await;
        self.lock()
            .get(path)
            .map(Node::attr)
            .ok_or_else(|| not_found(path))
    }

    async fn readdir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        self.delay(path).await;
        let nodes = self.lock();
        match nodes.get(path) {
            None => return Err(not_found(path)),
            Some(n) if n.kind != FileKind::Dir => {
                return Err(FsError::NotADirectory { path: path.into() })
            }
            Some(_) => {}
        }
        let prefix = descendants_prefix(path);
        // BTreeMap order of full paths is not name order ("a/b" vs "a-b"), so sort.
        let mut out: Vec<DirEntry> = nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, n)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| DirEntry {
                    name: rest.to_string(),
                    attr: n.attr(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, FsError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.delay(path).await;
        let nodes = self.lock();
        let n = nodes.get(path).ok_or_else(|| not_found(path))?;
        match n.kind {
            FileKind::Dir => Err(FsError::IsADirectory { path: path.into() }),
            FileKind::Symlink => Err(FsError::invalid(path, "read of a symlink")),
            FileKind::File => {
                let size = n.data.len() as u64;
                let start = offset.min(size) as usize;
                let end = offset.saturating_add(u64::from(len)).min(size) as usize;
                Ok(n.data[start..end].to_vec())
            }
        }
    }

    async fn readlink(&self, path: &str) -> Result<String, FsError> {
        self.delay(path).await;
        let nodes = self.lock();
        let n = nodes.get(path).ok_or_else(|| not_found(path))?;
        if n.kind != FileKind::Symlink {
            return Err(FsError::NotASymlink { path: path.into() });
        }
        String::from_utf8(n.data.to_vec()).map_err(|_| FsError::invalid(path, "target not UTF-8"))
    }

    async fn getxattr(&self, path: &str, name: &str) -> Result<Vec<u8>, FsError> {
        self.delay(path).await;
        let nodes = self.lock();
        let n = nodes.get(path).ok_or_else(|| not_found(path))?;
        n.xattrs.get(name).cloned().ok_or_else(|| FsError::NoAttr {
            path: path.into(),
            name: name.into(),
        })
    }

    async fn listxattr(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.delay(path).await;
        let nodes = self.lock();
        let n = nodes.get(path).ok_or_else(|| not_found(path))?;
        Ok(n.xattrs.keys().cloned().collect())
    }

    async fn statfs(&self) -> Result<StatFs, FsError> {
        let nodes = self.lock();
        let total: u64 = nodes
            .values()
            .filter(|n| n.kind == FileKind::File)
            .map(|n| n.data.len() as u64)
            .sum();
        Ok(StatFs {
            bytes_held: total,
            total_bytes: total,
            files: nodes.len() as u64,
            free_bytes: if self.writable {
                MAX_FILE.saturating_sub(total)
            } else {
                0
            },
        })
    }

    fn version(&self) -> u64 {
        *self.version.borrow()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn writable(&self) -> bool {
        self.writable
    }

    async fn write_file(
        &self,
        path: &str,
        contents: WriteSource,
        mode: u32,
        mtime: SystemTime,
    ) -> Result<(), FsError> {
        self.check_writable(path)?;
        if contents.len() > MAX_FILE {
            return Err(FsError::io(
                path,
                std::io::Error::from_raw_os_error(libc::EFBIG),
            ));
        }
        let data = match contents {
            WriteSource::Bytes(b) => b,
            WriteSource::File { file, len } => {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, 0)
                    .map_err(|e| FsError::io(path, e))?;
                buf
            }
        };
        let mut nodes = self.lock();
        check_parent(&nodes, path)?;
        let xattrs = match nodes.get(path) {
            Some(n) if n.kind == FileKind::Dir => {
                return Err(FsError::IsADirectory { path: path.into() })
            }
            Some(n) => n.xattrs.clone(),
            None => BTreeMap::new(),
        };
        let mut node = Node::new(FileKind::File, mode, data);
        node.mtime = mtime;
        node.xattrs = xattrs;
        nodes.insert(path.to_string(), node);
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn mkdir(&self, path: &str, mode: u32) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        check_parent(&nodes, path)?;
        if nodes.contains_key(path) {
            return Err(FsError::Exists { path: path.into() });
        }
        nodes.insert(path.to_string(), Node::new(FileKind::Dir, mode, Vec::new()));
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn unlink(&self, path: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        match nodes.get(path) {
            None => return Err(not_found(path)),
            Some(n) if n.kind == FileKind::Dir => {
                return Err(FsError::IsADirectory { path: path.into() })
            }
            Some(_) => {}
        }
        nodes.remove(path);
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn rmdir(&self, path: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        match nodes.get(path) {
            None => return Err(not_found(path)),
            Some(n) if n.kind != FileKind::Dir => {
                return Err(FsError::NotADirectory { path: path.into() })
            }
            Some(_) => {}
        }
        if path == "/" {
            return Err(FsError::NotPermitted {
                path: path.into(),
                reason: "cannot remove the root".into(),
            });
        }
        if has_children(&nodes, path) {
            return Err(FsError::NotEmpty { path: path.into() });
        }
        nodes.remove(path);
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn symlink(&self, target: &str, path: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        check_parent(&nodes, path)?;
        if nodes.contains_key(path) {
            return Err(FsError::Exists { path: path.into() });
        }
        nodes.insert(
            path.to_string(),
            Node::new(FileKind::Symlink, 0o777, target.as_bytes().to_vec()),
        );
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.check_writable(from)?;
        let mut nodes = self.lock();
        let from_kind = nodes.get(from).ok_or_else(|| not_found(from))?.kind;
        if from == to {
            return Ok(());
        }
        if from == "/" || to.starts_with(&descendants_prefix(from)) {
            return Err(FsError::invalid(to, "cannot move a directory into itself"));
        }
        check_parent(&nodes, to)?;
        if let Some(existing) = nodes.get(to) {
            match (from_kind, existing.kind) {
                (FileKind::Dir, FileKind::Dir) if has_children(&nodes, to) => {
                    return Err(FsError::NotEmpty { path: to.into() })
                }
                (FileKind::Dir, FileKind::Dir) => {}
                (FileKind::Dir, _) => return Err(FsError::NotADirectory { path: to.into() }),
                (_, FileKind::Dir) => return Err(FsError::IsADirectory { path: to.into() }),
                _ => {}
            }
            nodes.remove(to);
        }
        // Copy every node at or under `from` to its new path, then drop the old ones:
        // the same two steps the drive adapter takes with Stat nodes.
        let prefix = descendants_prefix(from);
        // "/d-z" sorts between "/d" and "/d/", so the subtree is its own range.
        let moved: Vec<String> = std::iter::once(from.to_string())
            .chain(
                nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        for old in &moved {
            let rest = &old[from.len()..];
            if let Some(n) = nodes.get(old).cloned() {
                nodes.insert(format!("{to}{rest}"), n);
            }
        }
        for old in &moved {
            nodes.remove(old);
        }
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn set_attr(&self, path: &str, changes: SetAttr) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        let n = node_mut(&mut nodes, path)?;
        let now = SystemTime::now();
        if let Some(size) = changes.size {
            if n.kind == FileKind::Dir {
                return Err(FsError::IsADirectory { path: path.into() });
            }
            if n.kind != FileKind::File {
                return Err(FsError::invalid(path, "truncate of a non-file"));
            }
            if size > MAX_FILE {
                return Err(FsError::io(
                    path,
                    std::io::Error::from_raw_os_error(libc::EFBIG),
                ));
            }
            let mut data = n.data.to_vec();
            data.resize(size as usize, 0);
            n.data = Arc::new(data);
            n.mtime = now;
        }
        if let Some(mode) = changes.mode {
            n.mode = mode & 0o7777;
        }
        if let Some(uid) = changes.uid {
            n.uid = uid;
        }
        if let Some(gid) = changes.gid {
            n.gid = gid;
        }
        if let Some(mtime) = changes.mtime {
            n.mtime = mtime;
        }
        n.ctime = now;
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn setxattr(&self, path: &str, name: &str, value: &[u8]) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        node_mut(&mut nodes, path)?
            .xattrs
            .insert(name.to_string(), value.to_vec());
        drop(nodes);
        self.bump();
        Ok(())
    }

    async fn removexattr(&self, path: &str, name: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        let mut nodes = self.lock();
        if node_mut(&mut nodes, path)?.xattrs.remove(name).is_none() {
            return Err(FsError::NoAttr {
                path: path.into(),
                name: name.into(),
            });
        }
        drop(nodes);
        self.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn read_only_refuses_every_mutation() {
        rt().block_on(async {
            let b = MemoryBackend::new(false);
            b.insert_file("/a", b"x", 0o644);
            let now = SystemTime::now();
            let w = WriteSource::Bytes(vec![]);
            assert!(matches!(
                b.write_file("/b", w, 0o644, now).await,
                Err(FsError::ReadOnly { .. })
            ));
            assert!(matches!(
                b.mkdir("/d", 0o755).await,
                Err(FsError::ReadOnly { .. })
            ));
            assert!(matches!(
                b.unlink("/a").await,
                Err(FsError::ReadOnly { .. })
            ));
            assert!(matches!(
                b.rename("/a", "/c").await,
                Err(FsError::ReadOnly { .. })
            ));
            assert!(matches!(
                b.setxattr("/a", "user.k", b"v").await,
                Err(FsError::ReadOnly { .. })
            ));
            assert_eq!(b.read("/a", 0, 10).await.ok(), Some(b"x".to_vec()));
        });
    }

    #[test]
    fn rename_moves_a_tree_and_keeps_content() {
        rt().block_on(async {
            let b = MemoryBackend::new(true);
            b.insert_file("/d/x", b"1", 0o644);
            b.insert_file("/d/s/y", b"22", 0o600);
            b.insert_file("/d-z", b"3", 0o644);
            b.rename("/d", "/e").await.expect("rename");
            let s = b.snapshot();
            let paths: Vec<_> = s.keys().cloned().collect();
            assert_eq!(paths, ["/", "/d-z", "/e", "/e/s", "/e/s/y", "/e/x"]);
            assert_eq!(s["/e/s/y"].data, b"22");
            assert_eq!(s["/e/s/y"].mode, 0o600);
            assert!(matches!(
                b.rename("/e", "/e/s/q").await,
                Err(FsError::Invalid { .. })
            ));
            b.insert_file("/f/g", b"", 0o644);
            assert!(matches!(
                b.rename("/e", "/f").await,
                Err(FsError::NotEmpty { .. })
            ));
            assert!(matches!(
                b.rename("/d-z", "/f").await,
                Err(FsError::IsADirectory { .. })
            ));
            assert!(matches!(
                b.rename("/e", "/d-z").await,
                Err(FsError::NotADirectory { .. })
            ));
        });
    }

    #[test]
    fn readdir_sorted_and_typed_errors() {
        rt().block_on(async {
            let b = MemoryBackend::new(true);
            b.insert_file("/a-b", b"", 0o644);
            b.insert_file("/a/b", b"", 0o644);
            b.insert_file("/0", b"", 0o644);
            let names: Vec<_> = b
                .readdir("/")
                .await
                .expect("ls")
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(names, ["0", "a", "a-b"]);
            assert!(matches!(
                b.readdir("/0").await,
                Err(FsError::NotADirectory { .. })
            ));
            assert!(matches!(
                b.readdir("/nope").await,
                Err(FsError::NotFound { .. })
            ));
            assert!(matches!(b.rmdir("/a").await, Err(FsError::NotEmpty { .. })));
            assert!(matches!(
                b.unlink("/a").await,
                Err(FsError::IsADirectory { .. })
            ));
            assert!(matches!(
                b.mkdir("/x/y", 0o755).await,
                Err(FsError::NotFound { .. })
            ));
            assert!(matches!(
                b.mkdir("/0/y", 0o755).await,
                Err(FsError::NotADirectory { .. })
            ));
        });
    }

    #[test]
    fn read_past_end_is_short_and_version_moves() {
        rt().block_on(async {
            let b = MemoryBackend::new(true);
            let v0 = b.version();
            b.write_file(
                "/f",
                WriteSource::Bytes(b"hello".to_vec()),
                0o644,
                SystemTime::now(),
            )
            .await
            .expect("write");
            assert!(b.version() > v0);
            let (calls, reads) = (b.calls(), b.reads());
            assert_eq!(b.read("/f", 3, 100).await.expect("read"), b"lo");
            assert_eq!((b.calls(), b.reads()), (calls + 1, reads + 1), "counted");
            b.stat("/f").await.expect("stat");
            assert_eq!((b.calls(), b.reads()), (calls + 2, reads + 1));
            let v1 = b.version();
            b.insert_xattr("/f", "user.k", b"v");
            assert!(b.version() > v1, "test setup moves the version too");
            assert_eq!(
                b.stat("/f").await.expect("stat").xattrs.get("user.k"),
                Some(&b"v".to_vec()),
                "attributes carry the xattrs"
            );
            assert_eq!(b.read("/f", 10, 100).await.expect("read"), b"");
            b.set_attr(
                "/f",
                SetAttr {
                    size: Some(7),
                    ..Default::default()
                },
            )
            .await
            .expect("trunc");
            assert_eq!(b.read("/f", 0, 100).await.expect("read"), b"hello\0\0");
        });
    }
}
