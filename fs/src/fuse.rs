//! [`HyperFs`]: the `fuser::Filesystem` that serves a [`Backend`] to the kernel.
//!
//! The FUSE session thread never waits for the backend. It answers what it already
//! knows at the backend's current generation ([`crate::meta_cache`]: lookups, attributes,
//! extended attributes, access checks, listings; and read-only open/flush/release, which
//! need no backend at all) and otherwise spawns a task on the tokio runtime; the task
//! awaits the backend (bounded by a timeout), fills the cache and replies. So a read
//! waiting for a peer never stalls `ls` elsewhere on the mount, and a warm `ls -l` costs
//! no task at all.
//!
//! Writes go to a per-open-file scratch file (copy-on-write of the whole file, as the
//! drive is append-only) and are committed as ONE new file version on flush, fsync or
//! release. Read-only backends get EROFS for every mutating call before any task runs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::consts::{
    FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE, FUSE_CACHE_SYMLINKS, FUSE_DO_READDIRPLUS,
    FUSE_PARALLEL_DIROPS, FUSE_READDIRPLUS_AUTO,
};
use fuser::{
    FileAttr, FileType, KernelConfig, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};
use tokio::runtime::Handle;

use crate::backend::{join, split, Attr, Backend, DirEntry, FileKind, SetAttr, WriteSource};
use crate::error::{errno, FsError};
use crate::inode::{InodeTable, ROOT};
use crate::keep_cache::KeepCache;
use crate::meta_cache::{dir_nlink, MetaCache};

/// Block size reported in `st_blksize` and `statfs`: large, so `cat`/`cp` ask for big
/// reads.
pub const BLKSIZE: u32 = 128 * 1024;
/// Longest name a drive path component may have (as on Linux file systems).
pub const NAME_MAX: usize = 255;
/// Bound on open file handles.
const MAX_HANDLES: usize = 4096;
/// Chunk used to copy an existing file into a scratch file.
const COPY_CHUNK: u32 = 1 << 20;
/// Subdirectory listings a READDIRPLUS fetches at once (for their link counts).
const CHILD_LISTINGS: usize = 16;

/// How the mount presents the backend.
#[derive(Clone, Debug)]
pub struct HyperFsOptions {
    /// A fixed version (checkout): nothing changes, so the kernel may cache for long and
    /// keep page caches across opens.
    pub immutable: bool,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    /// Bound on every read-side backend call (stat, readdir, read, xattr, statfs).
    pub op_timeout: Duration,
    /// Owner shown for every node (the mounting user).
    pub uid: u32,
    pub gid: u32,
}

impl HyperFsOptions {
    /// A live drive: short TTLs so remote updates show within a second.
    pub fn live() -> Self {
        let (uid, gid) = process_owner();
        HyperFsOptions {
            immutable: false,
            entry_ttl: Duration::from_secs(1),
            attr_ttl: Duration::from_secs(1),
            op_timeout: Duration::from_secs(30),
            uid,
            gid,
        }
    }

    /// A fixed version: long TTLs, negative-entry caching and keep_cache.
    pub fn immutable() -> Self {
        HyperFsOptions {
            immutable: true,
            entry_ttl: Duration::from_secs(3600),
            attr_ttl: Duration::from_secs(3600),
            ..Self::live()
        }
    }
}

/// uid/gid of this process, read from `/proc/self` (no `unsafe` getuid needed).
pub fn process_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

/// A file opened for writing: its whole content lives in a scratch file until commit.
#[derive(Debug)]
struct WriteState {
    scratch: std::fs::File,
    len: u64,
    dirty: bool,
    mode: u32,
    mtime: Option<SystemTime>,
}

#[derive(Debug)]
struct OpenFile {
    path: Mutex<String>,
    write: Option<tokio::sync::Mutex<WriteState>>,
    /// Scratch length of a dirty writer (for getattr while the file is open), else 0.
    pending_len: AtomicU64,
    dirty: std::sync::atomic::AtomicBool,
}

impl OpenFile {
    fn path(&self) -> String {
        lock(&self.path).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by the session thread and the tasks.
struct Shared<B> {
    backend: B,
    opts: HyperFsOptions,
    inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    /// Attributes and listings at the backend's current generation: what lets the
    /// session thread answer lookup/getattr/xattr/readdir calls without a task.
    cache: Mutex<MetaCache>,
    /// Attributes at each inode's last open, for `keep_cache` on live mounts.
    keep: Mutex<KeepCache>,
}

/// Live counters of a mounted [`HyperFs`].
#[derive(Clone)]
pub struct FsStats {
    inodes: Arc<dyn Fn() -> usize + Send + Sync>,
    handles: Arc<dyn Fn() -> usize + Send + Sync>,
}

impl FsStats {
    /// Inodes the kernel holds (root included).
    pub fn inodes(&self) -> usize {
        (self.inodes)()
    }

    /// Open file handles.
    pub fn open_files(&self) -> usize {
        (self.handles)()
    }
}

impl std::fmt::Debug for FsStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStats")
            .field("inodes", &self.inodes())
            .field("open_files", &self.open_files())
            .finish()
    }
}

/// See [`HyperFs::change_feed`].
pub struct ChangeFeed {
    pub versions: tokio::sync::watch::Receiver<u64>,
    inodes: Arc<dyn Fn() -> Vec<u64> + Send + Sync>,
    pub rt: Handle,
}

impl ChangeFeed {
    /// A feed of `versions`; `inodes` lists what the kernel holds; `rt` runs watchers.
    pub fn new(
        versions: tokio::sync::watch::Receiver<u64>,
        inodes: Arc<dyn Fn() -> Vec<u64> + Send + Sync>,
        rt: Handle,
    ) -> Self {
        ChangeFeed {
            versions,
            inodes,
            rt,
        }
    }

    /// Inodes the kernel currently holds.
    pub fn inodes(&self) -> Vec<u64> {
        (self.inodes)()
    }
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("version", &*self.versions.borrow())
            .finish()
    }
}

/// The FUSE file system over a backend.
pub struct HyperFs<B: Backend> {
    shared: Arc<Shared<B>>,
    rt: Handle,
}

impl<B: Backend> HyperFs<B> {
    /// `rt` runs every backend call; the FUSE thread never waits on one.
    pub fn new(backend: B, rt: Handle, opts: HyperFsOptions) -> Self {
        HyperFs {
            shared: Arc::new(Shared {
                backend,
                opts,
                inodes: Mutex::new(InodeTable::new()),
                handles: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                cache: Mutex::new(MetaCache::new()),
                keep: Mutex::new(KeepCache::new()),
            }),
            rt,
        }
    }

    pub fn options(&self) -> &HyperFsOptions {
        &self.shared.opts
    }

    /// Number of inodes the kernel currently holds (for tests and `status`).
    pub fn inode_count(&self) -> usize {
        lock(&self.shared.inodes).len()
    }

    /// For a live read-only mount (a remote drive that others update): the version feed,
    /// the inodes the kernel holds and the runtime, so `mount/` can tell the kernel to drop
    /// cached attributes and pages when a new version arrives. `None` when nothing can
    /// change behind the kernel's back (immutable checkouts) or every change goes through
    /// this mount (writable drives: the kernel already knows).
    pub fn change_feed(&self) -> Option<ChangeFeed> {
        if self.shared.opts.immutable || self.shared.backend.writable() {
            return None;
        }
        let s = self.shared.clone();
        Some(ChangeFeed {
            versions: self.shared.backend.watch(),
            inodes: Arc::new(move || lock(&s.inodes).inodes()),
            rt: self.rt.clone(),
        })
    }

    /// A handle that stays usable after the file system moved into its FUSE session.
    pub fn stats(&self) -> FsStats {
        let s = self.shared.clone();
        let h = self.shared.clone();
        FsStats {
            inodes: Arc::new(move || lock(&s.inodes).len()),
            handles: Arc::new(move || lock(&h.handles).len()),
        }
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.rt.spawn(fut);
    }

    fn path(&self, ino: u64) -> Result<String, i32> {
        lock(&self.shared.inodes)
            .path(ino)
            .map(str::to_string)
            .ok_or(libc::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<String, i32> {
        let name = name_str(name)?;
        let dir = self.path(parent)?;
        Ok(join(&dir, name))
    }

    fn read_only(&self) -> bool {
        !self.shared.backend.writable()
    }
}

fn name_str(name: &OsStr) -> Result<&str, i32> {
    let s = name.to_str().ok_or(libc::EINVAL)?;
    if s.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(libc::EINVAL);
    }
    Ok(s)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn system_time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl<B: Backend> Shared<B> {
    async fn timed<T>(
        &self,
        path: &str,
        fut: impl Future<Output = Result<T, FsError>>,
    ) -> Result<T, FsError> {
        match tokio::time::timeout(self.opts.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(FsError::Timeout {
                path: path.to_string(),
                after: self.opts.op_timeout,
            }),
        }
    }

    fn generation(&self) -> u64 {
        self.backend.generation()
    }

    /// Attributes of `path` (cached per generation). The generation is read before the
    /// backend call, so what is stored can only be older-labelled, never stale.
    async fn stat(&self, path: &str) -> Result<Attr, FsError> {
        let generation = self.generation();
        if let Some(c) = lock(&self.cache).attr(generation, path) {
            return Ok(c.attr.clone());
        }
        let attr = self.timed(path, self.backend.stat(path)).await?;
        lock(&self.cache).put_attr(generation, path, attr.clone());
        Ok(attr)
    }

    /// The listing of `path` and the generation it belongs to (cached per generation).
    async fn listing_at(&self, path: &str) -> Result<(u64, Arc<Vec<DirEntry>>), FsError> {
        let generation = self.generation();
        if let Some(l) = lock(&self.cache).listing(generation, path) {
            return Ok((generation, l));
        }
        let list = Arc::new(self.timed(path, self.backend.readdir(path)).await?);
        lock(&self.cache).put_listing(generation, path, list.clone());
        Ok((generation, list))
    }

    async fn listing(&self, path: &str) -> Result<Arc<Vec<DirEntry>>, FsError> {
        Ok(self.listing_at(path).await?.1)
    }

    /// Directories link to themselves, their parent entry, and each subdirectory's `..`.
    async fn nlink(&self, path: &str, attr: &Attr) -> Result<u32, FsError> {
        if attr.kind != FileKind::Dir {
            return Ok(1);
        }
        let (generation, list) = self.listing_at(path).await?;
        let n = dir_nlink(&list);
        lock(&self.cache).put_nlink(generation, path, n);
        Ok(n)
    }

    /// Attributes and link count of `path` if the cache holds both at the current
    /// generation: the session thread's fast path (no backend call, no task).
    fn cached(&self, path: &str) -> Option<(Attr, u32)> {
        let generation = self.generation();
        lock(&self.cache)
            .complete(generation, path)
            .map(|(a, n)| (a.clone(), n))
    }

    /// Attributes of `path` if cached at the current generation (link count unknown for
    /// an uncounted directory).
    fn cached_attr(&self, path: &str) -> Option<Attr> {
        let generation = self.generation();
        lock(&self.cache)
            .attr(generation, path)
            .map(|c| c.attr.clone())
    }

    /// Whether `path` is known not to exist (its parent's listing is cached without it).
    fn known_absent(&self, path: &str) -> bool {
        let generation = self.generation();
        lock(&self.cache).absent(generation, path)
    }

    /// The listing of `path` if cached at the current generation.
    fn cached_listing(&self, path: &str) -> Option<Arc<Vec<DirEntry>>> {
        let generation = self.generation();
        lock(&self.cache).listing(generation, path)
    }

    /// The kernel attributes of `path` from the cache, or `None` on a miss.
    fn cached_file_attr(&self, ino: u64, path: &str) -> Option<FileAttr> {
        let (attr, nlink) = self.cached(path)?;
        Some(self.file_attr(ino, &attr, nlink, self.pending_for(path, &attr)))
    }

    /// Size of a file with a dirty writer (files only).
    fn pending_for(&self, path: &str, attr: &Attr) -> Option<u64> {
        (attr.kind == FileKind::File)
            .then(|| self.pending_size(path))
            .flatten()
    }

    /// Size of a file with a dirty open writer: what the writer has so far.
    fn pending_size(&self, path: &str) -> Option<u64> {
        lock(&self.handles)
            .values()
            .filter(|h| h.dirty.load(Ordering::Acquire) && *lock(&h.path) == path)
            .map(|h| h.pending_len.load(Ordering::Acquire))
            .max()
    }

    fn writers(&self, path: &str) -> Vec<Arc<OpenFile>> {
        lock(&self.handles)
            .values()
            .filter(|h| h.write.is_some() && *lock(&h.path) == path)
            .cloned()
            .collect()
    }

    /// Answers a lookup of a name that does not exist: a negative entry the kernel
    /// caches on immutable mounts, ENOENT (asked again next time) on live ones.
    fn reply_absent(&self, reply: ReplyEntry) {
        if self.opts.immutable {
            // Inode 0 = negative entry: the kernel caches the absence.
            let mut neg = self.file_attr(0, &placeholder(), 1, None);
            neg.ino = 0;
            reply.entry(&self.opts.entry_ttl, &neg, 0)
        } else {
            reply.error(libc::ENOENT)
        }
    }

    /// The kernel dropped references to inodes.
    fn forget(&self, nodes: &[(u64, u64)]) {
        let mut gone = Vec::new();
        {
            let mut t = lock(&self.inodes);
            for &(ino, n) in nodes {
                t.forget(ino, n);
                if t.path(ino).is_none() {
                    gone.push(ino);
                }
            }
        }
        if !gone.is_empty() {
            let mut keep = lock(&self.keep);
            for ino in gone {
                keep.forget(ino);
            }
        }
    }

    /// Opens `path` for reading. Immutable mounts always keep the kernel's pages; live
    /// ones only when the attributes are those of the last open and nobody writes the
    /// file (`attr` is `None` when they could not be read: then the pages go).
    fn reply_opened(&self, reply: ReplyOpen, ino: u64, path: &str, attr: Option<&Attr>) {
        let keep = if self.opts.immutable {
            true
        } else {
            match attr {
                Some(a) if self.writers(path).is_empty() => lock(&self.keep).open(ino, a),
                _ => {
                    lock(&self.keep).changed(ino);
                    false
                }
            }
        };
        match self.add_handle(path, None) {
            Ok(fh) => reply.opened(fh, if keep { FOPEN_KEEP_CACHE } else { 0 }),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Fills a READDIR reply from `offset` (`.` and `..` first).
    fn fill_dir(
        &self,
        reply: &mut ReplyDirectory,
        ino: u64,
        path: &str,
        offset: i64,
        list: &[DirEntry],
    ) {
        let t = lock(&self.inodes);
        let parent_ino = t.ino(split(path).0).unwrap_or(ROOT);
        let dots = [(ino, "."), (parent_ino, "..")];
        let mut i = usize::try_from(offset).unwrap_or(0);
        while i < dots.len() {
            let (n, name) = dots[i];
            if reply.add(n, (i + 1) as i64, FileType::Directory, name) {
                return;
            }
            i += 1;
        }
        for (j, e) in list.iter().enumerate().skip(i - dots.len()) {
            let child = join(path, &e.name);
            // d_ino only; unknown children get a stable number outside the table's range.
            let n = t.ino(&child).unwrap_or_else(|| pseudo_ino(&child));
            let next = (dots.len() + j + 1) as i64;
            if reply.add(n, next, file_type(e.attr.kind), &e.name) {
                break;
            }
        }
    }

    /// Everything a READDIRPLUS reply from `start` needs, if the cache holds it all:
    /// the listing, the directory's attributes and the link count of every entry.
    fn cached_plus(
        &self,
        ino: u64,
        path: &str,
        start: usize,
    ) -> Option<(Arc<Vec<DirEntry>>, FileAttr, Vec<u32>)> {
        let list = self.cached_listing(path)?;
        let dir_attr = self.cached_file_attr(ino, path)?;
        let generation = self.generation();
        let mut cache = lock(&self.cache);
        let mut nlinks = Vec::with_capacity(list.len().saturating_sub(start));
        for e in list.iter().skip(start.saturating_sub(2)) {
            nlinks.push(match e.attr.kind {
                FileKind::Dir => cache.complete(generation, &join(path, &e.name))?.1,
                FileKind::File | FileKind::Symlink => 1,
            });
        }
        Some((list, dir_attr, nlinks))
    }

    /// Link counts of the entries of `list` from `start` (READDIRPLUS offsets: `.` and
    /// `..` come first). Subdirectories are listed concurrently, so a cold walk waits
    /// for one round of fetches instead of one per subdirectory.
    async fn child_nlinks(
        self: &Arc<Self>,
        path: &str,
        list: &[DirEntry],
        start: usize,
    ) -> Result<Vec<u32>, FsError> {
        let skip = start.saturating_sub(2);
        let mut nlinks = vec![1u32; list.len().saturating_sub(skip)];
        let mut tasks = tokio::task::JoinSet::new();
        let mut first_err = None;
        let mut collect = |r: Result<(usize, Result<u32, FsError>), tokio::task::JoinError>,
                           nlinks: &mut Vec<u32>| match r {
            Ok((k, Ok(n))) => nlinks[k] = n,
            Ok((_, Err(e))) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(FsError::io(path, std::io::Error::other(e)));
            }
        };
        for (k, e) in list.iter().skip(skip).enumerate() {
            if e.attr.kind != FileKind::Dir {
                continue;
            }
            if tasks.len() >= CHILD_LISTINGS {
                if let Some(r) = tasks.join_next().await {
                    collect(r, &mut nlinks);
                }
            }
            let s = self.clone();
            let child = join(path, &e.name);
            let attr = e.attr.clone();
            tasks.spawn(async move { (k, s.nlink(&child, &attr).await) });
        }
        while let Some(r) = tasks.join_next().await {
            collect(r, &mut nlinks);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(nlinks),
        }
    }

    /// Fills a READDIRPLUS reply from `start`; every entry handed over is counted as a
    /// lookup. `nlinks[k]` is the link count of `list[start - 2 + k]`.
    fn fill_plus(
        &self,
        reply: &mut ReplyDirectoryPlus,
        path: &str,
        start: usize,
        list: &[DirEntry],
        dir_attr: &FileAttr,
        nlinks: &[u32],
    ) {
        let ino = dir_attr.ino;
        let parent_ino = lock(&self.inodes).ino(split(path).0).unwrap_or(ROOT);
        let ttl = self.opts.entry_ttl;
        if start == 0 && reply.add(ino, 1, ".", &ttl, dir_attr, 0) {
            return;
        }
        if start <= 1 {
            let mut pa = *dir_attr;
            pa.ino = parent_ino;
            if reply.add(parent_ino, 2, "..", &ttl, &pa, 0) {
                return;
            }
        }
        let skip = start.saturating_sub(2);
        for (k, e) in list.iter().skip(skip).enumerate() {
            let child = join(path, &e.name);
            let nlink = nlinks.get(k).copied().unwrap_or(1);
            let pending = self.pending_for(&child, &e.attr);
            let Some(cino) = lock(&self.inodes).remember(&child) else {
                break;
            };
            let attr = self.file_attr(cino, &e.attr, nlink, pending);
            if reply.add(cino, (skip + k + 3) as i64, &e.name, &ttl, &attr, 0) {
                // Did not fit: the kernel never saw it, so it will not forget it.
                lock(&self.inodes).forget(cino, 1);
                break;
            }
        }
    }

    fn file_attr(&self, ino: u64, attr: &Attr, nlink: u32, pending: Option<u64>) -> FileAttr {
        let size = pending.unwrap_or(attr.size);
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: attr.mtime,
            mtime: attr.mtime,
            ctime: attr.ctime,
            crtime: attr.ctime,
            kind: file_type(attr.kind),
            perm: (attr.mode & 0o7777) as u16,
            nlink,
            uid: self.opts.uid,
            gid: self.opts.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// stat + nlink + pending size, as the kernel wants it.
    async fn attr_of(&self, ino: u64, path: &str) -> Result<FileAttr, FsError> {
        let attr = self.stat(path).await?;
        let nlink = self.nlink(path, &attr).await?;
        Ok(self.file_attr(ino, &attr, nlink, self.pending_for(path, &attr)))
    }

    /// Hands `path` to the kernel (its inode, counted) with its attributes.
    fn entry_of(&self, path: &str, attr: &Attr, nlink: u32) -> Result<FileAttr, FsError> {
        let ino = lock(&self.inodes)
            .remember(path)
            .ok_or_else(|| FsError::io(path, std::io::Error::from_raw_os_error(libc::ENFILE)))?;
        Ok(self.file_attr(ino, attr, nlink, self.pending_for(path, attr)))
    }

    /// Looks `path` up and hands its inode to the kernel (counted).
    async fn entry(&self, path: &str) -> Result<FileAttr, FsError> {
        let attr = self.stat(path).await?;
        let nlink = self.nlink(path, &attr).await?;
        self.entry_of(path, &attr, nlink)
    }

    fn add_handle(&self, path: &str, write: Option<WriteState>) -> Result<u64, FsError> {
        let mut handles = lock(&self.handles);
        if handles.len() >= MAX_HANDLES {
            return Err(FsError::io(
                path,
                std::io::Error::from_raw_os_error(libc::ENFILE),
            ));
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let dirty = write.as_ref().is_some_and(|w| w.dirty);
        let len = write.as_ref().map_or(0, |w| w.len);
        handles.insert(
            fh,
            Arc::new(OpenFile {
                path: Mutex::new(path.to_string()),
                write: write.map(tokio::sync::Mutex::new),
                pending_len: AtomicU64::new(len),
                dirty: std::sync::atomic::AtomicBool::new(dirty),
            }),
        );
        Ok(fh)
    }

    fn handle(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::io("?", std::io::Error::from_raw_os_error(libc::EBADF)))
    }

    /// Opens `path` for writing: a scratch file holding the current content (unless
    /// truncated).
    async fn open_writer(&self, path: &str, truncate: bool) -> Result<WriteState, FsError> {
        let attr = self.stat(path).await?;
        match attr.kind {
            FileKind::Dir => return Err(FsError::IsADirectory { path: path.into() }),
            FileKind::Symlink => return Err(FsError::invalid(path, "write through a symlink")),
            FileKind::File => {}
        }
        let scratch = tempfile::tempfile().map_err(|e| FsError::io(path, e))?;
        let mut len = 0u64;
        if !truncate {
            while len < attr.size {
                let want = u32::try_from((attr.size - len).min(u64::from(COPY_CHUNK)))
                    .unwrap_or(COPY_CHUNK);
                let chunk = self.timed(path, self.backend.read(path, len, want)).await?;
                if chunk.is_empty() {
                    break;
                }
                scratch
                    .write_all_at(&chunk, len)
                    .map_err(|e| FsError::io(path, e))?;
                len += chunk.len() as u64;
            }
        }
        Ok(WriteState {
            scratch,
            len,
            dirty: truncate && attr.size > 0,
            mode: attr.mode,
            mtime: None,
        })
    }

    /// Commits a dirty writer as one file version.
    async fn commit(&self, h: &OpenFile) -> Result<(), FsError> {
        let Some(w) = &h.write else { return Ok(()) };
        let mut w = w.lock().await;
        if !w.dirty {
            return Ok(());
        }
        let path = h.path();
        let file = w.scratch.try_clone().map_err(|e| FsError::io(&path, e))?;
        let src = WriteSource::File { file, len: w.len };
        let mtime = w.mtime.unwrap_or_else(SystemTime::now);
        self.backend.write_file(&path, src, w.mode, mtime).await?;
        w.dirty = false;
        h.dirty.store(false, Ordering::Release);
        Ok(())
    }

    async fn do_setattr(
        &self,
        ino: u64,
        path: &str,
        fh: Option<u64>,
        mut changes: SetAttr,
    ) -> Result<FileAttr, FsError> {
        for (id, want) in [(changes.uid, self.opts.uid), (changes.gid, self.opts.gid)] {
            if id.is_some_and(|id| id != want) {
                return Err(FsError::NotPermitted {
                    path: path.into(),
                    reason: "ownership can only be the mounting user".into(),
                });
            }
        }
        // Open writers of this file see size/mode/mtime changes first, so a later commit
        // does not undo them (`cp -p`, `truncate` through an fd).
        let mut writers = self.writers(path);
        if let Some(fh) = fh {
            if let Ok(h) = self.handle(fh) {
                if h.write.is_some() && !writers.iter().any(|w| Arc::ptr_eq(w, &h)) {
                    writers.push(h);
                }
            }
        }
        let mut handled_size = false;
        for h in &writers {
            let Some(w) = &h.write else { continue };
            let mut w = w.lock().await;
            if let Some(size) = changes.size {
                w.scratch.set_len(size).map_err(|e| FsError::io(path, e))?;
                w.len = size;
                w.dirty = true;
                h.pending_len.store(size, Ordering::Release);
                h.dirty.store(true, Ordering::Release);
                handled_size = true;
            }
            if let Some(mode) = changes.mode {
                w.mode = mode & 0o7777;
            }
            if let Some(t) = changes.mtime {
                w.mtime = Some(t);
            }
        }
        if handled_size {
            changes.size = None;
        }
        if changes != SetAttr::default() {
            self.backend.set_attr(path, changes).await?;
        }
        self.attr_of(ino, path).await
    }
}

fn erofs() -> i32 {
    libc::EROFS
}

impl<B: Backend> fuser::Filesystem for HyperFs<B> {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        let mut caps = FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS;
        if self.shared.opts.immutable {
            caps |= FUSE_CACHE_SYMLINKS;
        }
        for cap in [
            FUSE_DO_READDIRPLUS,
            FUSE_READDIRPLUS_AUTO,
            FUSE_PARALLEL_DIROPS,
            FUSE_CACHE_SYMLINKS,
        ] {
            if caps & cap != 0 {
                // Unsupported by this kernel: simply not used.
                let _ = config.add_capabilities(cap);
            }
        }
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        if let Some((attr, nlink)) = s.cached(&path) {
            return match s.entry_of(&path, &attr, nlink) {
                Ok(attr) => reply.entry(&s.opts.entry_ttl, &attr, 0),
                Err(e) => reply.error(errno(&e)),
            };
        }
        if s.known_absent(&path) {
            return s.reply_absent(reply);
        }
        self.spawn(async move {
            match s.entry(&path).await {
                Ok(attr) => reply.entry(&s.opts.entry_ttl, &attr, 0),
                Err(FsError::NotFound { .. }) => s.reply_absent(reply),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.shared.forget(&[(ino, nlookup)]);
    }

    fn batch_forget(&mut self, _req: &Request<'_>, nodes: &[fuser::fuse_forget_one]) {
        let nodes: Vec<(u64, u64)> = nodes.iter().map(|n| (n.nodeid, n.nlookup)).collect();
        self.shared.forget(&nodes);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        if let Some(attr) = s.cached_file_attr(ino, &path) {
            return reply.attr(&s.opts.attr_ttl, &attr);
        }
        self.spawn(async move {
            match s.attr_of(ino, &path).await {
                Ok(attr) => reply.attr(&s.opts.attr_ttl, &attr),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let changes = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            mtime: mtime.map(system_time),
            size,
        };
        let s = self.shared.clone();
        self.spawn(async move {
            match s.do_setattr(ino, &path, fh, changes).await {
                Ok(attr) => reply.attr(&s.opts.attr_ttl, &attr),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            match s.timed(&path, s.backend.readlink(&path)).await {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        // Drives hold files, directories and links only: no fifos, sockets or devices.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(libc::EPERM);
        }
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                if s.backend.stat(&path).await.is_ok() {
                    return Err(FsError::Exists { path: path.clone() });
                }
                let src = WriteSource::Bytes(Vec::new());
                s.backend
                    .write_file(&path, src, mode & !umask & 0o7777, SystemTime::now())
                    .await?;
                s.entry(&path).await
            }
            .await;
            match r {
                Ok(attr) => reply.entry(&s.opts.entry_ttl, &attr, 0),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                s.backend.mkdir(&path, mode & !umask & 0o7777).await?;
                s.entry(&path).await
            }
            .await;
            match r {
                Ok(attr) => reply.entry(&s.opts.entry_ttl, &attr, 0),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            match s.backend.unlink(&path).await {
                Ok(()) => {
                    lock(&s.inodes).unlinked(&path);
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            match s.backend.rmdir(&path).await {
                Ok(()) => {
                    lock(&s.inodes).unlinked(&path);
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.child(parent, link_name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let Some(target) = target.to_str().map(str::to_string) else {
            return reply.error(libc::EINVAL);
        };
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                s.backend.symlink(&target, &path).await?;
                s.entry(&path).await
            }
            .await;
            match r {
                Ok(attr) => reply.entry(&s.opts.entry_ttl, &attr, 0),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        if flags & libc::RENAME_EXCHANGE != 0 || flags & libc::RENAME_WHITEOUT != 0 {
            return reply.error(libc::EINVAL);
        }
        let (from, to) = match (self.child(parent, name), self.child(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                if flags & libc::RENAME_NOREPLACE != 0 && s.backend.stat(&to).await.is_ok() {
                    return Err(FsError::Exists { path: to.clone() });
                }
                // Commit writers of the source first so their data moves with it.
                for h in s.writers(&from) {
                    s.commit(&h).await?;
                }
                s.backend.rename(&from, &to).await?;
                lock(&s.inodes).renamed(&from, &to);
                let prefix = format!("{from}/");
                for h in lock(&s.handles).values() {
                    let mut p = lock(&h.path);
                    if *p == from || p.starts_with(&prefix) {
                        *p = format!("{to}{}", &p[from.len()..]);
                    }
                }
                Ok(())
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _newparent: u64,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // Hyperdrive 10 has no hard links.
        reply.error(if self.read_only() {
            erofs()
        } else {
            libc::EPERM
        });
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write && self.read_only() {
            return reply.error(erofs());
        }
        let s = self.shared.clone();
        if write {
            lock(&s.keep).changed(ino);
            return self.spawn(async move {
                let r = async {
                    let state = s.open_writer(&path, flags & libc::O_TRUNC != 0).await?;
                    s.add_handle(&path, Some(state))
                }
                .await;
                match r {
                    Ok(fh) => reply.opened(fh, 0),
                    Err(e) => reply.error(errno(&e)),
                }
            });
        }
        // A read-only open needs no backend call when the attributes are cached.
        let attr = if s.opts.immutable {
            None
        } else {
            match s.cached_attr(&path) {
                Some(a) => Some(a),
                None => {
                    return self.spawn(async move {
                        let attr = s.stat(&path).await.ok();
                        s.reply_opened(reply, ino, &path, attr.as_ref());
                    })
                }
            }
        };
        s.reply_opened(reply, ino, &path, attr.as_ref());
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                let h = s.handle(fh)?;
                let path = h.path();
                if let Some(w) = &h.write {
                    let w = w.lock().await;
                    let end = offset.saturating_add(u64::from(size)).min(w.len);
                    let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
                    w.scratch
                        .read_exact_at(&mut buf, offset)
                        .map_err(|e| FsError::io(&path, e))?;
                    return Ok(buf);
                }
                s.timed(&path, s.backend.read(&path, offset, size)).await
            }
            .await;
            match r {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let data = data.to_vec();
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                let h = s.handle(fh)?;
                let path = h.path();
                let Some(w) = &h.write else {
                    return Err(FsError::io(
                        &path,
                        std::io::Error::from_raw_os_error(libc::EBADF),
                    ));
                };
                let mut w = w.lock().await;
                w.scratch
                    .write_all_at(&data, offset)
                    .map_err(|e| FsError::io(&path, e))?;
                w.len = w.len.max(offset + data.len() as u64);
                w.dirty = true;
                h.pending_len.store(w.len, Ordering::Release);
                h.dirty.store(true, Ordering::Release);
                Ok(data.len() as u32)
            }
            .await;
            match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _lock: u64, reply: ReplyEmpty) {
        let s = self.shared.clone();
        // A reader has nothing to commit: answered here (`grep -r` closes every file).
        match s.handle(fh) {
            Ok(h) if h.write.is_none() => return reply.ok(),
            Err(e) => return reply.error(errno(&e)),
            Ok(_) => {}
        }
        self.spawn(async move {
            let r = async { s.commit(&*s.handle(fh)?).await }.await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let s = self.shared.clone();
        let h = lock(&s.handles).remove(&fh);
        let h = match h {
            Some(h) if h.write.is_some() => h,
            // A reader (or an unknown handle) has nothing to commit.
            _ => return reply.ok(),
        };
        self.spawn(async move {
            let r = s.commit(&h).await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "commit on release failed");
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _ds: bool, reply: ReplyEmpty) {
        self.flush(_req, _ino, fh, 0, reply);
    }

    fn opendir(&mut self, _req: &Request<'_>, _ino: u64, _flags: i32, reply: ReplyOpen) {
        let flags = if self.shared.opts.immutable {
            FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR
        } else {
            0
        };
        reply.opened(0, flags);
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        if let Some(list) = s.cached_listing(&path) {
            s.fill_dir(&mut reply, ino, &path, offset, &list);
            return reply.ok();
        }
        self.spawn(async move {
            match s.listing(&path).await {
                Ok(list) => {
                    s.fill_dir(&mut reply, ino, &path, offset, &list);
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        let start = usize::try_from(offset).unwrap_or(0);
        if let Some((list, dir_attr, nlinks)) = s.cached_plus(ino, &path, start) {
            s.fill_plus(&mut reply, &path, start, &list, &dir_attr, &nlinks);
            return reply.ok();
        }
        self.spawn(async move {
            let r = async {
                let list = s.listing(&path).await?;
                let dir_attr = s.attr_of(ino, &path).await?;
                let nlinks = s.child_nlinks(&path, &list, start).await?;
                Ok::<_, FsError>((list, dir_attr, nlinks))
            }
            .await;
            match r {
                Ok((list, dir_attr, nlinks)) => {
                    s.fill_plus(&mut reply, &path, start, &list, &dir_attr, &nlinks);
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let s = self.shared.clone();
        self.spawn(async move {
            match s.timed("/", s.backend.statfs()).await {
                Ok(st) => {
                    let b = u64::from(BLKSIZE);
                    let free = st.free_bytes / b;
                    reply.statfs(
                        st.total_bytes.div_ceil(b) + free,
                        free,
                        free,
                        st.files,
                        if s.backend.writable() { 1 << 20 } else { 0 },
                        BLKSIZE,
                        NAME_MAX as u32,
                        BLKSIZE,
                    )
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let (path, name) = match (self.path(ino), name.to_str()) {
            (Ok(p), Some(n)) => (p, n.to_string()),
            (Err(e), _) => return reply.error(e),
            (_, None) => return reply.error(libc::EINVAL),
        };
        let value = value.to_vec();
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                if flags & (libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
                    let exists = match s.backend.getxattr(&path, &name).await {
                        Ok(_) => true,
                        Err(FsError::NoAttr { .. }) => false,
                        Err(e) => return Err(e),
                    };
                    if exists && flags & libc::XATTR_CREATE != 0 {
                        return Err(FsError::Exists { path: path.clone() });
                    }
                    if !exists && flags & libc::XATTR_REPLACE != 0 {
                        return Err(FsError::NoAttr {
                            path: path.clone(),
                            name: name.clone(),
                        });
                    }
                }
                s.backend.setxattr(&path, &name, &value).await
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let (path, name) = match (self.path(ino), name.to_str()) {
            (Ok(p), Some(n)) => (p, n.to_string()),
            (Err(e), _) => return reply.error(e),
            (_, None) => return reply.error(libc::ENODATA),
        };
        let s = self.shared.clone();
        // `ls -l` asks two of these per file and the kernel caches no answer: answer
        // from the cached attributes (a missing name is ENODATA at once).
        if let Some(attr) = s.cached_attr(&path) {
            return getxattr_reply(reply, size, &attr, &name);
        }
        self.spawn(async move {
            match s.stat(&path).await {
                Ok(attr) => getxattr_reply(reply, size, &attr, &name),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        if let Some(attr) = s.cached_attr(&path) {
            return xattr_reply(reply, size, &xattr_names(&attr));
        }
        self.spawn(async move {
            match s.stat(&path).await {
                Ok(attr) => xattr_reply(reply, size, &xattr_names(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn removexattr(&mut self, _req: &Request<'_>, ino: u64, name: &OsStr, reply: ReplyEmpty) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let (path, name) = match (self.path(ino), name.to_str()) {
            (Ok(p), Some(n)) => (p, n.to_string()),
            (Err(e), _) => return reply.error(e),
            (_, None) => return reply.error(libc::ENODATA),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            match s.backend.removexattr(&path, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn access(&mut self, req: &Request<'_>, ino: u64, mask: i32, reply: ReplyEmpty) {
        if mask & libc::W_OK != 0 && self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let caller = req.uid();
        let s = self.shared.clone();
        let answer = move |reply: ReplyEmpty, attr: &Attr, owner: u32| {
            if permitted(attr, mask, caller, owner) {
                reply.ok()
            } else {
                reply.error(libc::EACCES)
            }
        };
        if let Some(attr) = s.cached_attr(&path) {
            return answer(reply, &attr, s.opts.uid);
        }
        self.spawn(async move {
            match s.stat(&path).await {
                Ok(attr) => answer(reply, &attr, s.opts.uid),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if self.read_only() {
            return reply.error(erofs());
        }
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let s = self.shared.clone();
        self.spawn(async move {
            let r = async {
                let mode = mode & !umask & 0o7777;
                match s.backend.stat(&path).await {
                    Ok(_) if flags & libc::O_EXCL != 0 => {
                        return Err(FsError::Exists { path: path.clone() })
                    }
                    Ok(_) => {}
                    Err(FsError::NotFound { .. }) => {
                        // The name must exist at once (other processes may look it up);
                        // the content follows as one more version on close.
                        let src = WriteSource::Bytes(Vec::new());
                        s.backend
                            .write_file(&path, src, mode, SystemTime::now())
                            .await?;
                    }
                    Err(e) => return Err(e),
                }
                let state = s.open_writer(&path, flags & libc::O_TRUNC != 0).await?;
                let attr = s.entry(&path).await?;
                let fh = match s.add_handle(&path, Some(state)) {
                    Ok(fh) => fh,
                    Err(e) => {
                        lock(&s.inodes).forget(attr.ino, 1);
                        return Err(e);
                    }
                };
                Ok((attr, fh))
            }
            .await;
            match r {
                Ok((attr, fh)) => reply.created(&s.opts.entry_ttl, &attr, 0, fh, 0),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

/// GETXATTR from attributes: the value, or why there is none (see [`unset_xattr`]).
fn getxattr_reply(reply: ReplyXattr, size: u32, attr: &Attr, name: &str) {
    match attr.xattrs.get(name) {
        Some(v) => xattr_reply(reply, size, v),
        None => reply.error(unset_xattr(name)),
    }
}

/// The errno for an unset extended attribute. The mount implements neither POSIX ACLs
/// nor security labels, so in the `system.` and `security.` namespaces an unset name is
/// EOPNOTSUPP, as on file systems without them: `ls -l` then remembers (per device)
/// that there are none, instead of two round trips per file that the kernel never
/// caches. Everywhere else (`user.`, `trusted.`) it is ENODATA.
fn unset_xattr(name: &str) -> i32 {
    if name.starts_with("system.") || name.starts_with("security.") {
        libc::EOPNOTSUPP
    } else {
        libc::ENODATA
    }
}

/// LISTXATTR payload: the names, sorted, each NUL-terminated.
fn xattr_names(attr: &Attr) -> Vec<u8> {
    let mut buf = Vec::new();
    for n in attr.xattrs.keys() {
        buf.extend_from_slice(n.as_bytes());
        buf.push(0);
    }
    buf
}

fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(libc::ERANGE)
    } else {
        reply.data(value)
    }
}

/// `access(2)` against the mode bits, with every node owned by the mounting user.
fn permitted(attr: &Attr, mask: i32, caller: u32, owner: u32) -> bool {
    if mask == libc::F_OK {
        return true;
    }
    let any_x = attr.mode & 0o111 != 0 || attr.kind == FileKind::Dir;
    if caller == 0 {
        return mask & libc::X_OK == 0 || any_x;
    }
    let bits = if caller == owner {
        (attr.mode >> 6) & 7
    } else {
        attr.mode & 7
    };
    let want = (mask as u32) & 7;
    bits & want == want
}

/// A stable d_ino for a child the kernel has not looked up yet (top bit set, so it never
/// collides with a table inode).
fn pseudo_ino(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() | (1 << 63)
}

fn placeholder() -> Attr {
    Attr {
        kind: FileKind::File,
        size: 0,
        mode: 0,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        xattrs: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: FileKind, mode: u32) -> Attr {
        Attr {
            mode,
            kind,
            ..placeholder()
        }
    }

    #[test]
    fn access_bits() {
        let f = attr(FileKind::File, 0o640);
        assert!(permitted(&f, libc::R_OK | libc::W_OK, 1000, 1000));
        assert!(!permitted(&f, libc::X_OK, 1000, 1000));
        assert!(!permitted(&f, libc::R_OK, 1001, 1000));
        assert!(permitted(&f, libc::R_OK | libc::W_OK, 0, 1000));
        assert!(!permitted(&f, libc::X_OK, 0, 1000));
        assert!(permitted(&attr(FileKind::Dir, 0o700), libc::X_OK, 0, 1000));
        assert!(permitted(&f, libc::F_OK, 1001, 1000));
    }

    #[test]
    fn names() {
        assert_eq!(name_str(OsStr::new("a")), Ok("a"));
        assert_eq!(name_str(OsStr::new("..")), Err(libc::EINVAL));
        assert_eq!(
            name_str(OsStr::new(&"x".repeat(256))),
            Err(libc::ENAMETOOLONG)
        );
    }

    #[test]
    fn unset_xattrs_outside_user_namespaces_are_unsupported() {
        assert_eq!(unset_xattr("user.k"), libc::ENODATA);
        assert_eq!(unset_xattr("trusted.k"), libc::ENODATA);
        assert_eq!(unset_xattr("system.posix_acl_access"), libc::EOPNOTSUPP);
        assert_eq!(unset_xattr("security.selinux"), libc::EOPNOTSUPP);
        let names = xattr_names(&Attr {
            xattrs: Arc::new(
                [
                    ("user.b".to_string(), vec![]),
                    ("user.a".to_string(), vec![1]),
                ]
                .into_iter()
                .collect(),
            ),
            ..placeholder()
        });
        assert_eq!(names, b"user.a\0user.b\0");
    }

    #[test]
    fn pseudo_inodes_are_outside_the_table() {
        assert!(pseudo_ino("/a") >= 1 << 63);
        assert_eq!(pseudo_ino("/a"), pseudo_ino("/a"));
    }
}
