//! [`Backend`] over a Hyperdrive 10 [`Drive`] (live, or a checkout of one version).
//!
//! Every call maps to one or a few drive operations; drive errors become [`FsError`]s that
//! keep the drive path. What the drive cannot do directly is emulated here:
//!
//! - `rename`: Stat copies at the new paths (sharing content blocks), then deletes of the
//!   old ones (see [`crate::backend`]).
//! - `write_file`: the scratch file is streamed into the content feed in blocks of at most
//!   512 KiB ([`MAX_BLOCK_SIZE`]), keeping the replaced file's xattrs, owner and mode.
//! - reads of blocks no peer has delivered wait at most [`DriveBackendOptions::read_timeout`]
//!   and then fail with `EIO`, with a warning naming the file; sequential reads
//!   select the next few blocks for download so the network stays ahead of the reader.
//! - `watch` follows the metadata feed's length (local writes and replication alike).

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyperdrive::drive::{Drive, DriveError, FileHandle, Stat, WriteOptions, MAX_BLOCK_SIZE};
use hyperdrive::protocol::replicate::SharedFeed;
use tokio::sync::watch;

use crate::backend::{
    join, split, Attr, Backend, DirEntry, FileKind, SetAttr, StatFs, WriteSource,
};
use crate::error::FsError;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;

/// Bound on cached open file handles (one per recently read path).
const MAX_HANDLES: usize = 256;
/// Bound on handles kept from listings (see `DriveBackend::listed`).
const MAX_LISTED: usize = 1 << 16;
/// Held blocks summed exactly by `statfs`; above this the byte count is estimated from
/// the block count (a bitfield count is cheap, one tree node per block is not).
const STATFS_EXACT_BLOCKS: u64 = 65_536;
/// What a writable drive reports as free: drives have no quota, and 0 would make `df`
/// show the mount as full.
const NOMINAL_FREE: u64 = 1 << 40;
/// How often the version watcher re-arms its wait on the metadata feed.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// Default [`DriveBackendOptions::prefetch_small_files`].
pub const SMALL_FILE: u64 = 64 * 1024;
/// How far the read-ahead window may grow, as a multiple of `prefetch_blocks`: a
/// long sequential reader (`cat` of a big file) keeps the network busy with a deep
/// window, a short or random one never gets past the first.
const PREFETCH_GROWTH: u64 = 8;
/// How far behind the furthest end a read may start and still count as sequential.
const SEQUENTIAL_SLACK: u64 = 8 << 20;
/// Bound on the content one listing selects for download.
const PREFETCH_LISTING_BYTES: u64 = 8 << 20;

/// Tuning of a [`DriveBackend`].
#[derive(Clone, Debug)]
pub struct DriveBackendOptions {
    /// Longest a read waits for blocks no peer has delivered yet (then `EIO`).
    pub read_timeout: Duration,
    /// Content blocks selected for download ahead of a sequential reader (0: off).
    pub prefetch_blocks: u64,
    /// Refuse writes even if the drive is writable.
    pub read_only: bool,
    /// Select the whole metadata feed of a drive we cannot write for download as soon
    /// as the backend is made: a walk (`ls -lR`, `find`) then waits for a stream of
    /// blocks instead of one round trip per trie node.
    pub eager_metadata: bool,
    /// Files up to this size have their content selected for download when their
    /// directory is listed (0: off): `grep -r` reads every file right after the
    /// listing, and one selection per directory beats one round trip per file.
    pub prefetch_small_files: u64,
}

impl Default for DriveBackendOptions {
    fn default() -> Self {
        DriveBackendOptions {
            read_timeout: Duration::from_secs(15),
            prefetch_blocks: 8,
            read_only: false,
            eager_metadata: true,
            prefetch_small_files: SMALL_FILE,
        }
    }
}

/// An open file remembered between reads: FUSE reads come in pieces of at most 1 MiB,
/// and re-resolving the path for each would cost a trie lookup per piece.
struct CachedFile {
    /// The drive generation the handle was opened at.
    version: u64,
    handle: FileHandle,
    /// Furthest end of the current sequential stream of reads (a read starting here,
    /// or a little before, continues it).
    next: u64,
    /// Content blocks below this index were already selected for download.
    prefetched_to: u64,
    /// Size of the last selection: doubles (up to [`PREFETCH_GROWTH`] times the
    /// configured window) each time a sequential reader uses half of it up.
    window: u64,
}

/// A [`Backend`] over a drive.
pub struct DriveBackend {
    drive: Drive,
    opts: DriveBackendOptions,
    writable: bool,
    versions: Arc<watch::Sender<u64>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    files: Mutex<HashMap<String, CachedFile>>,
    /// Read handles made from the Stats of recent listings, with the generation they
    /// were listed at: `grep -r` opens every file right after listing its directory,
    /// and this spares each read a trie lookup. Bounded by [`MAX_LISTED`].
    listed: Mutex<HashMap<String, (u64, FileHandle)>>,
    /// Node count for `statfs`, with the version it was counted at.
    node_count: Mutex<Option<(u64, u64)>>,
    /// The whole-metadata download selection (see `eager_metadata`), dropped with us.
    eager: Option<u64>,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for DriveBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveBackend")
            .field("key", &hex_key(&self.drive))
            .field("version", &self.drive.version())
            .field("writable", &self.writable)
            .finish()
    }
}

fn hex_key(d: &Drive) -> String {
    d.key().iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DriveBackend {
    /// Wraps `drive` (a checkout stays read-only and never changes). `rt` runs the task
    /// that follows new versions of a live drive and the prefetch tasks.
    pub fn new(drive: Drive, opts: DriveBackendOptions, rt: &tokio::runtime::Handle) -> Self {
        let writable = drive.writable() && !opts.read_only;
        let version = drive.version();
        let (tx, _) = watch::channel(version);
        let versions = Arc::new(tx);
        let watcher = if drive.trie().is_checkout() {
            None
        } else {
            let weak = Arc::downgrade(&versions);
            Some(rt.spawn(follow_versions(drive.clone(), version, weak)))
        };
        let remote = !drive.metadata_feed().lock().feed.writable();
        let eager = (opts.eager_metadata && remote).then(|| {
            // A checkout needs its own version only; a live drive everything, as it grows.
            let end = drive.trie().is_checkout().then(|| drive.version());
            drive.metadata_feed().download(0, end)
        });
        DriveBackend {
            drive,
            opts,
            writable,
            versions,
            watcher,
            files: Mutex::new(HashMap::new()),
            listed: Mutex::new(HashMap::new()),
            node_count: Mutex::new(None),
            eager,
            rt: rt.clone(),
        }
    }

    /// The drive served.
    pub fn drive(&self) -> &Drive {
        &self.drive
    }

    fn check_writable(&self, path: &str) -> Result<(), FsError> {
        if self.writable {
            Ok(())
        } else {
            Err(FsError::ReadOnly { path: path.into() })
        }
    }

    fn err(&self, path: &str, e: DriveError) -> FsError {
        drive_error(path, e, self.opts.read_timeout)
    }

    async fn lstat(&self, path: &str) -> Result<Stat, FsError> {
        self.drive.lstat(path).await.map_err(|e| self.err(path, e))
    }

    /// The parent of `path` must exist and be a directory.
    async fn check_parent(&self, path: &str) -> Result<(), FsError> {
        let (parent, name) = split(path);
        if name.is_empty() {
            return Err(FsError::invalid(path, "the root has no parent"));
        }
        let st = self
            .drive
            .stat(parent)
            .await
            .map_err(|e| self.err(path, e))?;
        if st.mode & S_IFMT != S_IFDIR {
            return Err(FsError::NotADirectory {
                path: parent.into(),
            });
        }
        Ok(())
    }

    /// Open handle for `path` at the current version (cached).
    async fn handle(&self, path: &str) -> Result<FileHandle, FsError> {
        // Keyed by generation, not version: a nested drive may change what a path holds.
        let version = self.drive.generation();
        if let Some(c) = lock(&self.files).get(path) {
            if c.version == version {
                return Ok(c.handle.clone());
            }
        }
        let listed = match lock(&self.listed).remove(path) {
            Some((g, h)) if g == version => Some(h),
            _ => None,
        };
        let handle = match listed {
            Some(h) => h,
            None => self
                .drive
                .open_file(path)
                .await
                .map_err(|e| self.err(path, e))?,
        };
        let mut files = lock(&self.files);
        if files.len() >= MAX_HANDLES {
            files.clear();
        }
        files.insert(
            path.to_string(),
            CachedFile {
                version,
                handle: handle.clone(),
                next: 0,
                prefetched_to: 0,
                window: 0,
            },
        );
        Ok(handle)
    }

    /// After a read of `path` ending at `end`: when the read continued the previous one,
    /// select the next `prefetch_blocks` blocks for download (once per window).
    async fn prefetch(&self, path: &str, h: &FileHandle, start: u64, end: u64) {
        let n = self.opts.prefetch_blocks;
        let st = &h.stat;
        let sequential = {
            let mut files = lock(&self.files);
            let Some(c) = files.get_mut(path) else { return };
            // The kernel reads ahead with several reads in flight, which finish (and
            // arrive here) in any order: a read that starts a little behind the
            // furthest end seen is still part of the sequential stream.
            let seq = start <= c.next && c.next - start <= SEQUENTIAL_SLACK;
            c.next = if seq { c.next.max(end) } else { end };
            if !seq {
                // A seek: the next window starts small again.
                c.window = 0;
            }
            seq
        };
        if n == 0 || !sequential || end >= st.size {
            return;
        }
        // The block holding `end` is local right after the read (or nearly: the read
        // ended at its start), so this does not wait for the network.
        let Ok(Ok((idx, _))) =
            tokio::time::timeout(Duration::from_millis(200), h.block_at(end)).await
        else {
            return;
        };
        let file_end = st.offset + st.blocks;
        let (from, to) = {
            let mut files = lock(&self.files);
            let Some(c) = files.get_mut(path) else { return };
            // Re-select only when the reader has used up half of the previous window.
            let last = c.window.max(n);
            if c.prefetched_to >= idx + last.div_ceil(2) || c.prefetched_to >= file_end {
                return;
            }
            let window = if c.window == 0 {
                n
            } else {
                (c.window * 2).min(n * PREFETCH_GROWTH)
            };
            let to = (idx + window).min(file_end);
            let from = c.prefetched_to.max(idx);
            c.prefetched_to = to;
            c.window = window;
            (from, to)
        };
        let feed = h.content_feed().clone();
        if from >= to || feed.lock().feed.bitfield().count_data(from, to) == to - from {
            return;
        }
        let id = feed.download(from, Some(to));
        let timeout = self.opts.read_timeout;
        self.rt.spawn(async move {
            // Bounded: a selection nobody completes is dropped after the read timeout.
            if !feed.downloaded(id, timeout).await {
                feed.lock().wants.deselect(id);
            }
        });
    }

    /// Selects for download the content of the small files of a listing that are not
    /// held yet (see [`DriveBackendOptions::prefetch_small_files`]), bounded per listing
    /// and merged into contiguous ranges per content feed. Selections nobody completes
    /// are dropped after the read timeout.
    fn prefetch_small_files(&self, entries: &[(hyperdrive::drive::DirEntry, Drive)]) {
        let max = self.opts.prefetch_small_files;
        if max == 0 {
            return;
        }
        let mut budget = PREFETCH_LISTING_BYTES;
        let mut by_feed: Vec<FeedRanges<'_>> = Vec::new();
        for (e, owner) in entries {
            let feed = owner.content_feed();
            let Some(st) = &e.stat else { continue };
            // A block holds at least one byte: more blocks than bytes is a bad Stat.
            if !st.is_file() || st.size > max || st.size > budget {
                continue;
            }
            if st.blocks == 0 || st.blocks > st.size {
                continue;
            }
            budget -= st.size;
            let range = (st.offset, st.offset.saturating_add(st.blocks));
            match by_feed.iter_mut().find(|(f, _)| Arc::ptr_eq(f, feed)) {
                Some((_, ranges)) => ranges.push(range),
                None => by_feed.push((feed, vec![range])),
            }
        }
        for (feed, ranges) in by_feed {
            let wanted: Vec<(u64, u64)> = {
                let st = feed.lock();
                if st.feed.writable() {
                    continue;
                }
                // Not clipped to the feed's length: a sparse reader may not know the
                // content feed's length yet; peers serve what the Stats point at.
                merge_ranges(ranges)
                    .into_iter()
                    .filter(|&(from, to)| st.feed.bitfield().count_data(from, to) < to - from)
                    .collect()
            };
            if wanted.is_empty() {
                continue;
            }
            let ids: Vec<u64> = wanted
                .into_iter()
                .map(|(from, to)| feed.download(from, Some(to)))
                .collect();
            // Completed selections are pruned as blocks arrive; what is left after the
            // read timeout (no peer has it) is dropped. One timer per listing, not a
            // task per range woken by every arriving block.
            let feed = feed.clone();
            let timeout = self.opts.read_timeout;
            self.rt.spawn(async move {
                tokio::time::sleep(timeout).await;
                let mut st = feed.lock();
                let hyperdrive::protocol::replicate::shared::FeedState { feed: f, wants, .. } =
                    &mut *st;
                wants.prune(f);
                for id in ids {
                    wants.deselect(id);
                }
            });
        }
    }

    /// Keeps read handles for the regular files of a listing of `dir` made at
    /// `generation` (see `listed`).
    fn remember_listed(
        &self,
        dir: &str,
        generation: u64,
        entries: &[(hyperdrive::drive::DirEntry, Drive)],
    ) {
        let handles: Vec<(String, FileHandle)> = entries
            .iter()
            .filter_map(|(e, owner)| {
                let path = join(dir, &e.name);
                let h = owner.listed_file(&path, e.stat.as_ref()?)?;
                Some((path, h))
            })
            .take(MAX_LISTED)
            .collect();
        if handles.is_empty() {
            return;
        }
        let mut listed = lock(&self.listed);
        if listed.len() + handles.len() > MAX_LISTED {
            listed.clear();
        }
        for (path, h) in handles {
            listed.insert(path, (generation, h));
        }
    }

    /// Number of nodes in the drive (cached per version).
    async fn node_count(&self) -> Result<u64, FsError> {
        let version = self.drive.version();
        if let Some((v, n)) = *lock(&self.node_count) {
            if v == version {
                return Ok(n);
            }
        }
        let n = self
            .drive
            .readdir_recursive("/", false)
            .await
            .map_err(|e| self.err("/", e))?
            .len() as u64
            + 1;
        *lock(&self.node_count) = Some((version, n));
        Ok(n)
    }

    /// Metadata key of the drive (this one or a mounted one) that holds `path`.
    async fn owner_of(&self, path: &str) -> Result<[u8; 32], FsError> {
        let mounts = self.drive.mounts().await.map_err(|e| self.err(path, e))?;
        Ok(mounts
            .iter()
            .filter(|m| is_within(&m.path, path))
            .max_by_key(|m| m.path.len())
            .map_or_else(|| self.drive.key(), |m| m.metadata))
    }

    /// Puts a copy of `st` at `path` (same content blocks; an existing node is replaced).
    async fn put_stat(&self, path: &str, st: &Stat) -> Result<(), FsError> {
        self.drive
            .upsert(path, |s| *s = st.clone())
            .await
            .map(|_| ())
            .map_err(|e| self.err(path, e))
    }
}

impl Drop for DriveBackend {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(id) = self.eager.take() {
            self.drive.metadata_feed().lock().wants.deselect(id);
        }
    }
}

/// Publishes every new length of the drive's metadata feed until the backend is gone.
/// `current` is the version published at construction: the task may first run after
/// more writes, and those must still be announced.
async fn follow_versions(drive: Drive, mut current: u64, tx: Weak<watch::Sender<u64>>) {
    loop {
        let next = drive.watch(current, WATCH_POLL).await;
        let Some(tx) = tx.upgrade() else { return };
        if let Some(v) = next {
            current = v;
            tx.send_replace(v);
        }
    }
}

/// The one mapping from drive errors to file-system errors; `after` is the read bound
/// a timed-out read waited.
pub fn drive_error(path: &str, e: DriveError, after: Duration) -> FsError {
    match e {
        DriveError::NotFound { path } => FsError::NotFound { path },
        DriveError::NotADirectory { path } => FsError::NotADirectory { path },
        DriveError::IsADirectory { path } => FsError::IsADirectory { path },
        DriveError::Exists { path } => FsError::Exists { path },
        DriveError::NotEmpty { path } => FsError::NotEmpty { path },
        DriveError::ReadOnly { path } => FsError::ReadOnly { path },
        DriveError::Loop { path } => FsError::Loop { path },
        DriveError::InvalidPath { path, reason } if reason.starts_with("longer") => {
            FsError::NameTooLong { path }
        }
        DriveError::InvalidPath { path, reason } => FsError::Invalid {
            path,
            reason: reason.into(),
        },
        DriveError::InvalidArgument { path, reason } => FsError::Invalid { path, reason },
        DriveError::Timeout { path: p } => {
            tracing::warn!(path = %p, file = %path, after = ?after,
                "no peer delivered the data in time");
            FsError::Timeout { path: p, after }
        }
        DriveError::Corrupt { path, reason } => {
            tracing::warn!(path = %path, %reason, "drive data failed to decode");
            FsError::Corrupt { path }
        }
        DriveError::Storage { path: p, reason } => FsError::Io {
            path: if p.starts_with('/') { p } else { path.into() },
            source: std::io::Error::other(reason),
        },
    }
}

fn kind_of(st: &Stat) -> FileKind {
    match st.mode & S_IFMT {
        S_IFDIR => FileKind::Dir,
        S_IFLNK => FileKind::Symlink,
        _ => FileKind::File,
    }
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    ms_of(SystemTime::now())
}

/// The attributes the mount shows for a Stat.
pub fn attr_of(st: &Stat) -> Attr {
    let kind = kind_of(st);
    let size = match kind {
        FileKind::File => st.size,
        FileKind::Symlink => st.linkname.as_ref().map_or(0, |l| l.len() as u64),
        FileKind::Dir => 0,
    };
    let xattrs = st
        .metadata
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect();
    Attr {
        kind,
        size,
        mode: st.mode & 0o7777,
        mtime: time_of(st.mtime),
        ctime: time_of(st.ctime),
        xattrs: Arc::new(xattrs),
    }
}

/// Block ranges wanted from one content feed.
type FeedRanges<'a> = (&'a Arc<SharedFeed>, Vec<(u64, u64)>);

/// Sorted, merged `[from, to)` ranges (touching ranges join).
fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

/// `to` names `from` or something below it.
fn is_within(from: &str, to: &str) -> bool {
    from == "/" || to == from || to.starts_with(&format!("{from}/"))
}

impl Backend for DriveBackend {
    async fn stat(&self, path: &str) -> Result<Attr, FsError> {
        Ok(attr_of(&self.lstat(path).await?))
    }

    async fn readdir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        // Read before the listing: the handles below are valid at this generation only.
        let generation = self.drive.generation();
        let entries = self
            .drive
            .readdir_stats(path)
            .await
            .map_err(|e| self.err(path, e))?;
        self.prefetch_small_files(&entries);
        self.remember_listed(path, generation, &entries);
        let mut out = Vec::with_capacity(entries.len());
        for (e, _) in entries {
            let attr = match e.stat {
                Some(st) => attr_of(&st),
                None => self.stat(&join(path, &e.name)).await?,
            };
            out.push(DirEntry { name: e.name, attr });
        }
        Ok(out)
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, FsError> {
        let h = self.handle(path).await?;
        let after = self.opts.read_timeout;
        let data = match tokio::time::timeout(after, h.read(offset, u64::from(len))).await {
            Ok(r) => r.map_err(|e| self.err(path, e))?,
            Err(_) => {
                tracing::warn!(file = %path, offset, len, after = ?after,
                    "read timed out waiting for blocks from peers");
                return Err(FsError::Timeout {
                    path: path.into(),
                    after,
                });
            }
        };
        self.prefetch(path, &h, offset, offset + data.len() as u64)
            .await;
        Ok(data)
    }

    async fn readlink(&self, path: &str) -> Result<String, FsError> {
        let st = self.lstat(path).await?;
        match st.linkname {
            Some(l) if kind_of(&st) == FileKind::Symlink => Ok(l),
            _ => Err(FsError::NotASymlink { path: path.into() }),
        }
    }

    async fn getxattr(&self, path: &str, name: &str) -> Result<Vec<u8>, FsError> {
        let st = self.lstat(path).await?;
        st.xattr(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| FsError::NoAttr {
                path: path.into(),
                name: name.into(),
            })
    }

    async fn listxattr(&self, path: &str) -> Result<Vec<String>, FsError> {
        let st = self.lstat(path).await?;
        let mut names: Vec<String> = st
            .metadata
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn statfs(&self) -> Result<StatFs, FsError> {
        let files = self.node_count().await?;
        let feed = self.drive.content_feed();
        let (total_bytes, bytes_held) = {
            let mut st = feed.lock();
            let len = st.feed.len();
            let total = st.feed.byte_len();
            let held = st.feed.bitfield().count_data(0, len);
            let bytes = if held == len {
                total
            } else if held <= STATFS_EXACT_BLOCKS {
                let mut sum = 0u64;
                for i in 0..len {
                    if st.feed.has(i) {
                        if let Ok(Some(n)) = st.feed.node(2 * i) {
                            sum += n.size;
                        }
                    }
                }
                sum
            } else {
                // Proportional estimate; exact once everything is held.
                u64::try_from(u128::from(total) * u128::from(held) / u128::from(len.max(1)))
                    .unwrap_or(total)
            };
            (total, bytes)
        };
        Ok(StatFs {
            bytes_held,
            total_bytes,
            files,
            free_bytes: if self.writable { NOMINAL_FREE } else { 0 },
        })
    }

    fn version(&self) -> u64 {
        self.drive.version()
    }

    fn generation(&self) -> u64 {
        self.drive.generation()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
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
        self.check_parent(path).await?;
        let now = now_ms();
        let mut base = match self.drive.lstat(path).await {
            Ok(st) if kind_of(&st) == FileKind::Dir => {
                return Err(FsError::IsADirectory { path: path.into() })
            }
            // Keep xattrs and owner of the replaced file.
            Ok(st) => st,
            Err(DriveError::NotFound { .. }) => Stat::file(0, now),
            Err(e) => return Err(self.err(path, e)),
        };
        base.mode = (mode & 0o7777) | S_IFREG;
        base.mtime = ms_of(mtime);
        base.ctime = now;
        base.linkname = None;
        base.mount = None;
        let mut w = self
            .drive
            .open_writer(path, base)
            .await
            .map_err(|e| self.err(path, e))?;
        match contents {
            WriteSource::Bytes(b) => {
                for chunk in b.chunks(MAX_BLOCK_SIZE) {
                    w.write(chunk).await.map_err(|e| self.err(path, e))?;
                }
            }
            WriteSource::File { file, len } => {
                let mut buf = vec![0u8; MAX_BLOCK_SIZE];
                let mut pos = 0u64;
                while pos < len {
                    let n = usize::try_from(len - pos)
                        .unwrap_or(MAX_BLOCK_SIZE)
                        .min(MAX_BLOCK_SIZE);
                    file.read_exact_at(&mut buf[..n], pos)
                        .map_err(|e| FsError::io(path, e))?;
                    w.write(&buf[..n]).await.map_err(|e| self.err(path, e))?;
                    pos += n as u64;
                }
            }
        }
        w.finish().await.map_err(|e| self.err(path, e))
    }

    async fn mkdir(&self, path: &str, mode: u32) -> Result<(), FsError> {
        self.check_writable(path)?;
        self.check_parent(path).await?;
        let opts = WriteOptions {
            mode: mode & 0o7777,
            ..WriteOptions::default()
        };
        self.drive
            .mkdir(path, opts)
            .await
            .map_err(|e| self.err(path, e))
    }

    async fn unlink(&self, path: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        let st = self.lstat(path).await?;
        if kind_of(&st) == FileKind::Dir {
            return Err(FsError::IsADirectory { path: path.into() });
        }
        self.drive.unlink(path).await.map_err(|e| self.err(path, e))
    }

    async fn rmdir(&self, path: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        if path == "/" {
            return Err(FsError::NotPermitted {
                path: path.into(),
                reason: "cannot remove the root".into(),
            });
        }
        self.drive.rmdir(path).await.map_err(|e| self.err(path, e))
    }

    async fn symlink(&self, target: &str, path: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        self.check_parent(path).await?;
        self.drive
            .symlink(target, path)
            .await
            .map_err(|e| self.err(path, e))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.check_writable(from)?;
        let src = self.lstat(from).await?;
        if from == to {
            return Ok(());
        }
        if from == "/" || is_within(from, to) {
            return Err(FsError::invalid(to, "cannot move a directory into itself"));
        }
        self.check_parent(to).await?;
        let from_kind = kind_of(&src);
        match self.drive.lstat(to).await {
            Ok(existing) => {
                match (from_kind, kind_of(&existing)) {
                    (FileKind::Dir, FileKind::Dir) => {
                        let children = self
                            .drive
                            .readdir(to, false)
                            .await
                            .map_err(|e| self.err(to, e))?;
                        if !children.is_empty() {
                            return Err(FsError::NotEmpty { path: to.into() });
                        }
                        self.drive.rmdir(to).await.map_err(|e| self.err(to, e))?;
                    }
                    (FileKind::Dir, _) => return Err(FsError::NotADirectory { path: to.into() }),
                    (_, FileKind::Dir) => return Err(FsError::IsADirectory { path: to.into() }),
                    // A file or link target is simply overwritten by the copy below.
                    _ => {}
                }
            }
            Err(DriveError::NotFound { .. }) => {}
            Err(e) => return Err(self.err(to, e)),
        }
        // Every node at or under `from`, shallowest first.
        let mut moved: Vec<(String, Stat)> = vec![(String::new(), src.clone())];
        if from_kind == FileKind::Dir {
            let below = self
                .drive
                .readdir_recursive(from, true)
                .await
                .map_err(|e| self.err(from, e))?;
            for rel in below {
                let old = format!("{from}/{rel}");
                let st = self.lstat(&old).await?;
                moved.push((format!("/{rel}"), st));
            }
        }
        // Shared blocks are only valid inside one drive: across a mount boundary (or
        // moving a mount point) answer EXDEV, and `mv` falls back to copy + delete.
        if moved.iter().any(|(_, st)| st.mount.is_some())
            || self.owner_of(from).await? != self.owner_of(to).await?
        {
            return Err(FsError::io(
                from,
                std::io::Error::from_raw_os_error(libc::EXDEV),
            ));
        }
        for (rel, st) in &moved {
            self.put_stat(&format!("{to}{rel}"), st).await?;
        }
        // Deepest first, so no directory is removed before its children. An implicit
        // directory has no node: nothing to delete there.
        for (rel, _) in moved.iter().rev() {
            let old = format!("{from}{rel}");
            match self.drive.unlink(&old).await {
                Ok(()) | Err(DriveError::NotFound { .. }) => {}
                Err(e) => return Err(self.err(&old, e)),
            }
        }
        Ok(())
    }

    async fn set_attr(&self, path: &str, changes: SetAttr) -> Result<(), FsError> {
        self.check_writable(path)?;
        let st = self.lstat(path).await?;
        if let Some(size) = changes.size {
            match kind_of(&st) {
                FileKind::Dir => return Err(FsError::IsADirectory { path: path.into() }),
                FileKind::Symlink => return Err(FsError::invalid(path, "truncate of a link")),
                FileKind::File => {}
            }
            if size != st.size {
                self.drive
                    .truncate(path, size)
                    .await
                    .map_err(|e| self.err(path, e))?;
            }
        }
        let now = now_ms();
        let truncated = changes.size.is_some_and(|s| s != st.size);
        // A shrinking truncate writes a fresh Stat: put mode, owner and xattrs back.
        let keep = truncated.then(|| (st.mode, st.uid, st.gid, st.metadata.clone()));
        let SetAttr {
            mode,
            uid,
            gid,
            mtime,
            size: _,
        } = changes;
        if mode.is_none() && uid.is_none() && gid.is_none() && mtime.is_none() && !truncated {
            return Ok(());
        }
        self.drive
            .update(path, |s| {
                if let Some((m, u, g, meta)) = keep {
                    s.mode = (s.mode & S_IFMT) | (m & 0o7777);
                    s.uid = u;
                    s.gid = g;
                    s.metadata = meta;
                }
                if let Some(m) = mode {
                    s.mode = (s.mode & S_IFMT) | (m & 0o7777);
                }
                if let Some(u) = uid {
                    s.uid = u;
                }
                if let Some(g) = gid {
                    s.gid = g;
                }
                match mtime {
                    Some(t) => s.mtime = ms_of(t),
                    None if truncated => s.mtime = now,
                    None => {}
                }
                s.ctime = now;
            })
            .await
            .map(|_| ())
            .map_err(|e| self.err(path, e))
    }

    async fn setxattr(&self, path: &str, name: &str, value: &[u8]) -> Result<(), FsError> {
        self.check_writable(path)?;
        self.lstat(path).await?;
        self.drive
            .set_xattr(path, name, value)
            .await
            .map_err(|e| self.err(path, e))
    }

    async fn removexattr(&self, path: &str, name: &str) -> Result<(), FsError> {
        self.check_writable(path)?;
        let st = self.lstat(path).await?;
        if st.xattr(name).is_none() {
            return Err(FsError::NoAttr {
                path: path.into(),
                name: name.into(),
            });
        }
        self.drive
            .remove_xattr(path, name)
            .await
            .map_err(|e| self.err(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperdrive::drive::{DriveOptions, MemoryProvider};

    async fn backend(rt: &tokio::runtime::Handle) -> DriveBackend {
        let provider = Arc::new(MemoryProvider::new([3; 32]));
        let d = Drive::named(provider, "default", DriveOptions::default())
            .await
            .expect("drive");
        DriveBackend::new(d, DriveBackendOptions::default(), rt)
    }

    fn bytes(b: &[u8]) -> WriteSource {
        WriteSource::Bytes(b.to_vec())
    }

    /// A second drive holding `/in.txt` ("inner"), mounted in `b`'s drive at `at`.
    async fn mount_inner(b: &DriveBackend, at: &str) -> Drive {
        let other = b.drive().sibling("other").await.expect("sibling");
        other
            .write_file("/in.txt", b"inner", WriteOptions::default())
            .await
            .expect("w");
        b.drive()
            .mount(at, &other.key(), None, WriteOptions::default())
            .await
            .expect("mount");
        other
    }

    #[tokio::test]
    async fn write_read_stat_and_errors() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        let t = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        b.mkdir("/d", 0o750).await.expect("mkdir");
        b.write_file("/d/f", bytes(b"hello"), 0o640, t)
            .await
            .expect("write");
        let a = b.stat("/d/f").await.expect("stat");
        assert_eq!(
            (a.kind, a.size, a.mode, a.mtime),
            (FileKind::File, 5, 0o640, t)
        );
        assert_eq!(b.stat("/d").await.expect("dir").mode, 0o750);
        assert_eq!(b.read("/d/f", 1, 3).await.expect("read"), b"ell");
        assert_eq!(b.read("/d/f", 9, 3).await.expect("past end"), b"");
        assert!(matches!(b.stat("/x").await, Err(FsError::NotFound { path }) if path == "/x"));
        assert!(matches!(
            b.write_file("/nope/f", bytes(b""), 0o644, t).await,
            Err(FsError::NotFound { .. })
        ));
        assert!(matches!(
            b.write_file("/d/f/g", bytes(b""), 0o644, t).await,
            Err(FsError::NotADirectory { .. })
        ));
        assert!(matches!(
            b.write_file("/d", bytes(b""), 0o644, t).await,
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(
            b.mkdir("/d", 0o755).await,
            Err(FsError::Exists { .. })
        ));
        assert!(matches!(b.rmdir("/d").await, Err(FsError::NotEmpty { .. })));
        assert!(matches!(
            b.rmdir("/d/f").await,
            Err(FsError::NotADirectory { .. })
        ));
        assert!(matches!(
            b.unlink("/d").await,
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(
            b.readlink("/d/f").await,
            Err(FsError::NotASymlink { .. })
        ));
        b.symlink("d/f", "/l").await.expect("symlink");
        assert_eq!(b.readlink("/l").await.expect("readlink"), "d/f");
        assert_eq!(b.stat("/l").await.expect("lstat").kind, FileKind::Symlink);
        let names: Vec<_> = b
            .readdir("/")
            .await
            .expect("readdir")
            .into_iter()
            .map(|e| (e.name, e.attr.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("d".to_string(), FileKind::Dir),
                ("l".into(), FileKind::Symlink)
            ]
        );
        assert!(matches!(
            b.readdir("/d/f").await,
            Err(FsError::NotADirectory { .. })
        ));
    }

    #[tokio::test]
    async fn large_write_uses_bounded_blocks_and_keeps_xattrs() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        let t = SystemTime::now();
        b.write_file("/f", bytes(b"x"), 0o644, t).await.expect("w1");
        b.setxattr("/f", "user.k", b"v").await.expect("setxattr");
        let data: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
        let mut scratch = tempfile::tempfile().expect("tmp");
        std::io::Write::write_all(&mut scratch, &data).expect("fill");
        let before = b.drive().content_feed().len();
        b.write_file(
            "/f",
            WriteSource::File {
                file: scratch,
                len: data.len() as u64,
            },
            0o600,
            t,
        )
        .await
        .expect("w2");
        let blocks = b.drive().content_feed().len() - before;
        assert_eq!(blocks, 3, "1.3 MB in blocks of at most 512 KiB");
        assert_eq!(b.read("/f", 0, 2_000_000).await.expect("read"), data);
        assert_eq!(b.getxattr("/f", "user.k").await.expect("kept"), b"v");
        assert_eq!(b.stat("/f").await.expect("stat").mode, 0o600);
        assert_eq!(b.listxattr("/f").await.expect("list"), ["user.k"]);
        b.removexattr("/f", "user.k").await.expect("rm");
        assert!(matches!(
            b.getxattr("/f", "user.k").await,
            Err(FsError::NoAttr { .. })
        ));
        assert!(matches!(
            b.removexattr("/f", "user.k").await,
            Err(FsError::NoAttr { .. })
        ));
        let s = b.statfs().await.expect("statfs");
        assert_eq!(s.bytes_held, s.total_bytes);
        assert!(s.total_bytes >= data.len() as u64);
        assert_eq!(s.files, 2);
    }

    #[tokio::test]
    async fn rename_shares_blocks_for_files_and_trees() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        let t = SystemTime::now();
        b.mkdir("/a", 0o755).await.expect("mkdir");
        b.mkdir("/a/s", 0o755).await.expect("mkdir");
        b.write_file("/a/s/f", bytes(b"deep"), 0o644, t)
            .await
            .expect("w");
        b.write_file("/a/g", bytes(b"top"), 0o644, t)
            .await
            .expect("w");
        b.symlink("g", "/a/l").await.expect("ln");
        let content_len = b.drive().content_feed().len();
        b.rename("/a", "/b").await.expect("rename dir");
        assert_eq!(
            b.drive().content_feed().len(),
            content_len,
            "no content copied"
        );
        assert!(matches!(b.stat("/a").await, Err(FsError::NotFound { .. })));
        assert!(matches!(
            b.stat("/a/s/f").await,
            Err(FsError::NotFound { .. })
        ));
        assert_eq!(b.read("/b/s/f", 0, 10).await.expect("read"), b"deep");
        assert_eq!(b.readlink("/b/l").await.expect("link"), "g");
        b.rename("/b/g", "/b/s/f").await.expect("replace file");
        assert_eq!(b.read("/b/s/f", 0, 10).await.expect("read"), b"top");
        assert!(matches!(
            b.rename("/b", "/b/s/x").await,
            Err(FsError::Invalid { .. })
        ));
        b.mkdir("/e", 0o755).await.expect("mkdir");
        assert!(matches!(
            b.rename("/e", "/b").await,
            Err(FsError::NotEmpty { .. })
        ));
        assert!(matches!(
            b.rename("/b/s/f", "/e").await,
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(
            b.rename("/b", "/b/s/f").await,
            Err(FsError::Invalid { .. })
        ));
        b.rename("/b/s", "/e").await.expect("over an empty dir");
        assert_eq!(b.read("/e/f", 0, 10).await.expect("read"), b"top");
        assert!(matches!(
            b.rename("/zz", "/q").await,
            Err(FsError::NotFound { .. })
        ));
        // Across a mounted drive: EXDEV (mv copies instead).
        mount_inner(&b, "/m").await;
        let e = b.rename("/m/in.txt", "/out.txt").await.expect_err("xdev");
        assert_eq!(crate::errno(&e), libc::EXDEV);
        let e = b.rename("/e/f", "/m/f").await.expect_err("xdev");
        assert_eq!(crate::errno(&e), libc::EXDEV);
        let e = b.rename("/m", "/m2").await.expect_err("mount point");
        assert_eq!(crate::errno(&e), libc::EXDEV);
        b.rename("/m/in.txt", "/m/in2.txt")
            .await
            .expect("inside the mount");
        assert_eq!(b.read("/m/in2.txt", 0, 10).await.expect("read"), b"inner");
    }

    #[tokio::test]
    async fn set_attr_truncates_and_keeps_attributes() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        let t = SystemTime::now();
        b.write_file("/f", bytes(b"hello world"), 0o640, t)
            .await
            .expect("w");
        b.setxattr("/f", "user.a", b"1").await.expect("x");
        b.set_attr(
            "/f",
            SetAttr {
                size: Some(5),
                ..SetAttr::default()
            },
        )
        .await
        .expect("shrink");
        assert_eq!(b.read("/f", 0, 100).await.expect("read"), b"hello");
        assert_eq!(b.stat("/f").await.expect("stat").mode, 0o640);
        assert_eq!(b.getxattr("/f", "user.a").await.expect("kept"), b"1");
        let m = UNIX_EPOCH + Duration::from_secs(1000);
        b.set_attr(
            "/f",
            SetAttr {
                size: Some(7),
                mode: Some(0o600),
                mtime: Some(m),
                ..SetAttr::default()
            },
        )
        .await
        .expect("grow");
        let a = b.stat("/f").await.expect("stat");
        assert_eq!((a.size, a.mode, a.mtime), (7, 0o600, m));
        assert_eq!(b.read("/f", 0, 100).await.expect("read"), b"hello\0\0");
        b.mkdir("/d", 0o755).await.expect("mkdir");
        assert!(matches!(
            b.set_attr(
                "/d",
                SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                }
            )
            .await,
            Err(FsError::IsADirectory { .. })
        ));
    }

    #[tokio::test]
    async fn checkout_is_read_only_and_fixed() {
        let rt = tokio::runtime::Handle::current();
        let live = backend(&rt).await;
        live.write_file("/f", bytes(b"one"), 0o644, SystemTime::now())
            .await
            .expect("w");
        let v = live.version();
        let mut rx = live.watch();
        live.write_file("/f", bytes(b"two"), 0o644, SystemTime::now())
            .await
            .expect("w");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("watch fires")
            .expect("sender alive");
        assert_eq!(*rx.borrow(), live.version());
        let old = DriveBackend::new(
            live.drive().checkout(v),
            DriveBackendOptions::default(),
            &rt,
        );
        assert!(!old.writable());
        assert_eq!(old.version(), v);
        assert_eq!(old.read("/f", 0, 10).await.expect("old"), b"one");
        assert!(matches!(
            old.write_file("/g", bytes(b""), 0o644, SystemTime::now())
                .await,
            Err(FsError::ReadOnly { .. })
        ));
        assert!(matches!(
            old.mkdir("/g", 0o755).await,
            Err(FsError::ReadOnly { .. })
        ));
        let ro = DriveBackend::new(
            live.drive().clone(),
            DriveBackendOptions {
                read_only: true,
                ..DriveBackendOptions::default()
            },
            &rt,
        );
        assert!(matches!(
            ro.unlink("/f").await,
            Err(FsError::ReadOnly { .. })
        ));
    }

    /// A writer drive of 64 blocks of 16 KiB replicated over an in-memory pipe to a
    /// sparse reader; returns (reader drive, stop sender).
    async fn sparse_pair() -> (Drive, tokio::sync::watch::Sender<bool>, Vec<u8>) {
        use hyperdrive::store::Corestore;
        let w_store = Corestore::in_memory([5; 32]);
        let w = Drive::named(
            Arc::new(w_store.clone()),
            "default",
            DriveOptions::default(),
        )
        .await
        .expect("writer");
        let data: Vec<u8> = (0..64 * 16_384u32).map(|i| (i % 253) as u8).collect();
        let mut fw = w
            .create_writer("/f", WriteOptions::default())
            .await
            .expect("writer");
        for c in data.chunks(16_384) {
            fw.write(c).await.expect("write");
        }
        fw.finish().await.expect("finish");
        let (r, stop) = replica(w_store, &w).await;
        (r, stop, data)
    }

    /// A sparse reader of `w` (held in `w_store`) over an in-memory pipe; returns the
    /// reader drive (at `w`'s version) and the replication's stop sender.
    async fn replica(
        w_store: hyperdrive::store::Corestore,
        w: &Drive,
    ) -> (Drive, tokio::sync::watch::Sender<bool>) {
        use hyperdrive::protocol::driver::{
            replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
        };
        use hyperdrive::store::Corestore;
        let r_store = Corestore::in_memory([6; 32]);
        let (x, y) = tokio::io::duplex(1 << 20);
        let (stop, rx) = shutdown_channel();
        for (io, init, store) in [(x, true, r_store.clone()), (y, false, w_store)] {
            let src: Arc<dyn FeedSource> = Arc::new(store);
            let rx = rx.clone();
            tokio::spawn(async move {
                let _ = replicate(
                    io,
                    init,
                    src,
                    ReplicateOptions::default(),
                    Arc::new(ConnectionStats::default()),
                    rx,
                )
                .await;
            });
        }
        let opts = DriveOptions {
            timeout: Duration::from_secs(10),
            ..DriveOptions::default()
        };
        let r = Drive::open(Arc::new(r_store), &w.key(), opts)
            .await
            .expect("reader");
        let v = w.version();
        assert_eq!(
            r.metadata_feed()
                .wait_for_length(v, Duration::from_secs(10))
                .await,
            v
        );
        (r, stop)
    }

    fn held_of(f: &SharedFeed, from: u64, to: u64) -> u64 {
        f.lock().feed.bitfield().count_data(from, to)
    }

    /// Waits (bounded) until `cond` holds.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = std::time::Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(10), "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_drives_fetch_metadata_eagerly_and_small_files_on_listing() {
        use hyperdrive::store::Corestore;
        let rt = tokio::runtime::Handle::current();
        let w_store = Corestore::in_memory([7; 32]);
        let w = Drive::named(
            Arc::new(w_store.clone()),
            "default",
            DriveOptions::default(),
        )
        .await
        .expect("writer");
        for i in 0..40 {
            w.write_file(
                &format!("/d/f{i:02}"),
                &[i as u8; 1000],
                WriteOptions::default(),
            )
            .await
            .expect("small");
        }
        let mut fw = w
            .create_writer("/d/big", WriteOptions::default())
            .await
            .expect("writer");
        for _ in 0..8 {
            fw.write(&[9u8; 16_384]).await.expect("write");
        }
        fw.finish().await.expect("finish");
        w.write_file("/e/g", b"elsewhere", WriteOptions::default())
            .await
            .expect("w");

        // Off: nothing is fetched beyond what is asked.
        let (r, stop) = replica(w_store.clone(), &w).await;
        let md = r.metadata_feed().clone();
        let off = DriveBackendOptions {
            eager_metadata: false,
            prefetch_small_files: 0,
            ..DriveBackendOptions::default()
        };
        let b = DriveBackend::new(r.clone(), off, &rt);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            held_of(&md, 0, md.len()) < md.len(),
            "metadata stays sparse"
        );
        assert_eq!(b.readdir("/d").await.expect("readdir").len(), 41);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(held(&r), 0, "no content without reads");
        drop(b);
        let _ = stop.send(true);

        // On (the defaults): the whole metadata feed arrives without any call, and a
        // listing brings the small files' content, not the big one's.
        let (r, stop) = replica(w_store, &w).await;
        let md = r.metadata_feed().clone();
        let on = DriveBackendOptions {
            read_timeout: Duration::from_millis(500),
            ..DriveBackendOptions::default()
        };
        assert!(on.eager_metadata && on.prefetch_small_files == SMALL_FILE);
        let b = DriveBackend::new(r.clone(), on, &rt);
        eventually("all metadata held", || {
            held_of(&md, 0, md.len()) == md.len()
        })
        .await;
        assert_eq!(held(&r), 0);
        let list = b.readdir("/d").await.expect("readdir");
        let content = r.content_feed().clone();
        let big = r.lstat("/d/big").await.expect("stat");
        assert_eq!(big.blocks, 8);
        eventually("small files held", || held(&r) >= 40).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(held(&r), 40, "exactly the small files");
        assert_eq!(held_of(&content, big.offset, big.offset + big.blocks), 0);
        let _ = stop.send(true);
        // Content no peer delivers is not wanted forever: dropped after the read timeout
        // (and the completed selections are gone too).
        b.readdir("/e").await.expect("readdir");
        assert!(!content.lock().wants.selections().is_empty(), "selected");
        eventually("selections dropped", || {
            content.lock().wants.selections().is_empty()
        })
        .await;
        // The small files' content is local: reads need no peer.
        for e in list.iter().filter(|e| e.name != "big") {
            let data = b
                .read(&format!("/d/{}", e.name), 0, 2000)
                .await
                .expect("read");
            assert_eq!(data.len(), 1000);
        }
        drop(b);
        assert!(
            md.lock().wants.selections().is_empty(),
            "the eager selection ends with the backend"
        );
    }

    #[test]
    fn ranges_merge() {
        assert_eq!(
            merge_ranges(vec![(5, 6), (0, 2), (2, 3), (8, 9), (1, 2)]),
            [(0, 3), (5, 6), (8, 9)]
        );
        assert!(merge_ranges(Vec::new()).is_empty());
    }

    #[tokio::test]
    async fn attrs_carry_xattrs_and_generation_follows_nested_drives() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        b.write_file("/f", bytes(b"x"), 0o644, SystemTime::now())
            .await
            .expect("w");
        b.setxattr("/f", "user.k", b"v").await.expect("xattr");
        let a = b.stat("/f").await.expect("stat");
        assert_eq!(a.xattrs.get("user.k"), Some(&b"v".to_vec()));
        let other = b.drive().sibling("other").await.expect("sibling");
        b.drive()
            .mount("/m", &other.key(), None, WriteOptions::default())
            .await
            .expect("mount");
        let (v, g) = (b.version(), b.generation());
        other
            .write_file("/in.txt", b"inner", WriteOptions::default())
            .await
            .expect("w");
        assert_eq!(b.version(), v, "a nested drive's write is not our version");
        assert!(b.generation() > g, "but it moves the generation");
        let g = b.generation();
        b.write_file("/f", bytes(b"xy"), 0o644, SystemTime::now())
            .await
            .expect("w");
        assert!(b.generation() > g, "and so does our own write");
    }

    #[tokio::test]
    async fn reads_use_listed_handles_until_anything_changes() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        let t = SystemTime::now();
        b.mkdir("/d", 0o755).await.expect("mkdir");
        b.write_file("/d/a", bytes(b"one"), 0o644, t)
            .await
            .expect("w");
        b.symlink("a", "/d/l").await.expect("ln");
        let other = mount_inner(&b, "/d/m").await;
        b.readdir("/d").await.expect("readdir");
        b.readdir("/d/m").await.expect("readdir");
        let listed = |p: &str| lock(&b.listed).contains_key(p);
        assert!(listed("/d/a") && listed("/d/m/in.txt"));
        assert!(!listed("/d/l") && !listed("/d/m"), "files only");
        assert_eq!(b.read("/d/a", 0, 10).await.expect("read"), b"one");
        assert!(!listed("/d/a"), "taken by the read");
        // A file of the nested drive reads from that drive's content feed.
        assert_eq!(b.read("/d/m/in.txt", 0, 10).await.expect("read"), b"inner");
        assert_eq!(b.read("/d/l", 0, 10).await.expect("read"), b"one");
        // Our own rewrite, and a change inside the nested drive: both show at once.
        b.readdir("/d").await.expect("readdir");
        b.write_file("/d/a", bytes(b"two!"), 0o644, t)
            .await
            .expect("w");
        assert_eq!(b.read("/d/a", 0, 10).await.expect("read"), b"two!");
        other
            .write_file("/in.txt", b"changed", WriteOptions::default())
            .await
            .expect("w");
        assert_eq!(
            b.read("/d/m/in.txt", 0, 10).await.expect("read"),
            b"changed"
        );
    }

    #[tokio::test]
    async fn listing_attrs_match_lookups() {
        let b = backend(&tokio::runtime::Handle::current()).await;
        let t = SystemTime::now();
        b.mkdir("/d", 0o750).await.expect("mkdir");
        b.write_file("/d/f", bytes(b"hello"), 0o640, t)
            .await
            .expect("w");
        b.setxattr("/d/f", "user.k", b"v").await.expect("xattr");
        b.symlink("f", "/d/l").await.expect("ln");
        // Implicit directories: only the file below them has a node.
        b.drive()
            .write_file("/imp/x/y", b"deep", WriteOptions::default())
            .await
            .expect("w");
        b.write_file("/d/f", bytes(b"rewritten"), 0o600, t)
            .await
            .expect("w");
        b.unlink("/d/l").await.expect("rm");
        b.symlink("f", "/d/l2").await.expect("ln");
        mount_inner(&b, "/d/m").await;
        for dir in ["/", "/d", "/imp", "/imp/x", "/d/m"] {
            let list = b.readdir(dir).await.expect("readdir");
            assert!(!list.is_empty(), "{dir}");
            for e in list {
                let p = join(dir, &e.name);
                assert_eq!(e.attr, b.stat(&p).await.expect("stat"), "{p}");
            }
        }
        let names: Vec<_> = b
            .readdir("/d")
            .await
            .expect("readdir")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["f", "l2", "m"]);
    }

    fn held(d: &Drive) -> u64 {
        let st = d.content_feed().lock();
        st.feed.bitfield().count_data(0, st.feed.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_ahead_grows_while_sequential() {
        let rt = tokio::runtime::Handle::current();
        let (r, stop, data) = sparse_pair().await;
        let opts = DriveBackendOptions {
            prefetch_blocks: 4,
            ..DriveBackendOptions::default()
        };
        let b = DriveBackend::new(r.clone(), opts, &rt);
        // 12 sequential block-sized reads. A fixed window of 4 would stop at block 16;
        // the doubling one (4, 8, 16, capped at 32) has selected well past that.
        for i in 0..12u64 {
            let at = i * 16_384;
            let got = b.read("/f", at, 16_384).await.expect("read");
            assert_eq!(got, data[at as usize..at as usize + 16_384]);
        }
        eventually("a grown window", || held(&r) >= 24).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(held(&r) <= 12 + 32, "bounded: held {}", held(&r));
        // A seek starts over with the small window.
        assert_eq!(
            b.read("/f", 60 * 16_384, 10).await.expect("seek"),
            data[60 * 16_384..60 * 16_384 + 10]
        );
        let _ = stop.send(true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sequential_reads_prefetch_and_missing_blocks_time_out() {
        let rt = tokio::runtime::Handle::current();
        let (r, stop, data) = sparse_pair().await;
        let opts = DriveBackendOptions {
            read_timeout: Duration::from_millis(500),
            prefetch_blocks: 8,
            ..DriveBackendOptions::default()
        };
        let b = DriveBackend::new(r.clone(), opts, &rt);
        assert!(!b.writable());
        assert_eq!(b.read("/f", 0, 16_384).await.expect("r0"), data[..16_384]);
        assert_eq!(
            b.read("/f", 16_384, 16_384).await.expect("r1"),
            data[16_384..32_768]
        );
        let t0 = std::time::Instant::now();
        while held(&r) < 9 && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = held(&r);
        // A read from the start counts as sequential: blocks 1..9 are selected after
        // the first read, and the second read is still inside that window.
        assert!(
            (9..=12).contains(&n),
            "two reads + 8 prefetched blocks, held {n}"
        );
        assert!(held(&r) < 64);
        // A non-sequential read does not prefetch.
        assert_eq!(
            b.read("/f", 40 * 16_384, 100).await.expect("jump"),
            data[40 * 16_384..40 * 16_384 + 100]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(held(&r), n + 1);
        let fs = b.statfs().await.expect("statfs");
        assert_eq!(fs.total_bytes, data.len() as u64);
        assert_eq!(
            fs.bytes_held,
            (n + 1) * 16_384,
            "exact bytes from the bitfield"
        );
        assert_eq!((fs.files, fs.free_bytes), (2, 0));
        // Without peers a missing block times out with EIO, naming the file.
        let _ = stop.send(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let e = b.read("/f", 60 * 16_384, 10).await.expect_err("no peer");
        assert_eq!(crate::errno(&e), libc::EIO);
        assert_eq!(e.path(), "/f");
    }

    #[test]
    fn errors_keep_the_path() {
        let d = Duration::from_secs(2);
        let e = drive_error("/a", DriveError::Timeout { path: "/a".into() }, d);
        assert!(matches!(&e, FsError::Timeout { path, after } if path == "/a" && *after == d));
        assert_eq!(crate::errno(&e), libc::EIO);
        let e = drive_error(
            "/b",
            DriveError::Storage {
                path: "abcd".into(),
                reason: "gone".into(),
            },
            d,
        );
        assert_eq!(e.path(), "/b");
        assert_eq!(crate::errno(&e), libc::EIO);
        let e = drive_error(
            "/c",
            DriveError::InvalidPath {
                path: "/c".into(),
                reason: "longer than 4096 bytes",
            },
            d,
        );
        assert_eq!(crate::errno(&e), libc::ENAMETOOLONG);
    }
}
