//! The drive itself: mount resolution, stat/readdir/read and the write operations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::protocol::replicate::{FetchError, SharedFeed};
use crate::store::content_name;
use crate::trie::feed_store::ReadAhead;
use crate::trie::mount::{
    del_refuses_mountpoint, is_mount_node, mount_ops, mount_record_key, put_refuses_mountpoint,
    unmount_ops, MountRecord,
};
use crate::trie::{
    BatchOp, DelOptions, DiffOptions, GetOptions, ListOptions, Node, PutOptions, Trie, TrieError,
    TrieOptions,
};

use super::block_cache::BlockCache;
use super::path::{dirname, is_within, join, resolve_link, trie_key, unixify};
use super::stat::{decode_varint, encode_varint, Stat, StatMount};
use super::storage::{FeedProvider, FeedTrieStore};
use super::DriveError;

/// Largest content block a write appends (the reference's write stream limit).
pub const MAX_BLOCK_SIZE: usize = 524_288;
/// Symlinks followed by one `stat` before [`DriveError::Loop`] (Linux's limit).
pub const MAX_SYMLINK_FOLLOWS: usize = 40;
/// Nested mounts crossed by one lookup before [`DriveError::Loop`].
pub const MAX_MOUNT_DEPTH: usize = 16;
/// Fd-style writes are coalesced into blocks of this size (the reference's batcher).
const BATCH_LIMIT: usize = 65_536;
/// Hidden prefix of tags.
const TAG_PREFIX: &str = "hyperdrive-tags";
/// Longest accepted path, in bytes.
const MAX_PATH: usize = 4096;

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;
type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriveError>> + Send + 'a>>;

/// Options of a drive (shared by every drive reached through its mounts).
#[derive(Clone)]
pub struct DriveOptions {
    /// How long a read waits for a missing block.
    pub timeout: Duration,
    /// Milliseconds since the epoch; pinned in tests.
    pub clock: Option<Clock>,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            timeout: Duration::from_secs(15),
            clock: None,
        }
    }
}

/// Attributes for a new file or directory; `None`/0 means the default.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Mode (type bits are added).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in ms (default now).
    pub mtime: Option<u64>,
    /// Change time in ms (default now).
    pub ctime: Option<u64>,
}

/// One `readdir` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Name relative to the listed directory.
    pub name: String,
    /// Its stat (only with `with_stats`).
    pub stat: Option<Stat>,
}

/// A mount found by [`Drive::mounts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// Drive path (`/` for the root drive).
    pub path: String,
    /// Metadata feed key.
    pub metadata: [u8; 32],
    /// Content feed key.
    pub content: [u8; 32],
}

/// One entry of [`Drive::diff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Drive path.
    pub path: String,
    /// Stat in the older version (`None` = absent).
    pub before: Option<Stat>,
    /// Stat in the newer version (`None` = deleted).
    pub after: Option<Stat>,
}

struct Ctx {
    provider: Arc<dyn FeedProvider>,
    opts: DriveOptions,
    /// Live drives by metadata key: one content state (and append lock) per feed.
    /// Holds the parts, not a `Drive`, so there is no `Arc` cycle through `ctx` and the
    /// feeds close when the last drive handle is dropped.
    drives: Mutex<HashMap<[u8; 32], DriveParts>>,
}

/// The per-feed state a drive handle is made of.
type DriveParts = (Trie<FeedTrieStore>, Arc<Content>);

struct Content {
    feed: Arc<SharedFeed>,
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Read-ahead over this content feed, shared by every handle of the drive so that
    /// reading many small adjacent files one after another streams like one big file.
    ahead: Arc<ReadAhead>,
    /// The last blocks read, shared by every handle of the drive.
    blocks: Arc<BlockCache>,
}

/// A Hyperdrive 10 (live, or a read-only checkout).
#[derive(Clone)]
pub struct Drive {
    ctx: Arc<Ctx>,
    trie: Trie<FeedTrieStore>,
    content: Arc<Content>,
}

/// The node a path resolves to, with the drive that owns it.
struct Found {
    drive: Drive,
    inner: String,
    node: Option<Arc<Node>>,
}

fn valid_key(path: &str) -> Result<String, DriveError> {
    if path.contains('\0') {
        return Err(DriveError::InvalidPath {
            path: path.into(),
            reason: "contains a NUL byte",
        });
    }
    if path.len() > MAX_PATH {
        return Err(DriveError::InvalidPath {
            path: path.into(),
            reason: "longer than 4096 bytes",
        });
    }
    Ok(trie_key(path))
}

fn writable_key(path: &str) -> Result<String, DriveError> {
    let key = valid_key(path)?;
    if key.is_empty() {
        return Err(DriveError::InvalidPath {
            path: path.into(),
            reason: "the root cannot be written",
        });
    }
    Ok(key)
}

fn display(key: &str) -> String {
    format!("/{key}")
}

fn decode_stat(key: &str, node: &Node) -> Result<Stat, DriveError> {
    Stat::decode(node.value.as_deref().unwrap_or_default()).map_err(|e| DriveError::Corrupt {
        path: display(key),
        reason: e.to_string(),
    })
}

/// Length of `dir` plus its separator in a child key (the root has none).
fn dir_prefix_len(dir: &str) -> usize {
    if dir.is_empty() {
        0
    } else {
        dir.len() + 1
    }
}

/// The first component of `key` below `dir` (`key` must be within `dir`).
fn child_name<'a>(dir: &str, key: &'a str) -> Option<&'a str> {
    let rel = key.get(dir_prefix_len(dir)..)?;
    rel.split('/').next().filter(|n| !n.is_empty())
}

fn inner_path(key: &str, local: &str) -> String {
    if key.len() <= local.len() {
        return String::new();
    }
    key[local.len()..].trim_start_matches('/').to_string()
}

impl Drive {
    /// Opens (creating if new) the writable drive whose metadata feed is derived from
    /// `name` (`"default"` for a corestore's main drive).
    pub async fn named(
        provider: Arc<dyn FeedProvider>,
        name: &str,
        opts: DriveOptions,
    ) -> Result<Drive, DriveError> {
        let feed = provider.feed_by_name(name)?;
        let ctx = Arc::new(Ctx {
            provider,
            opts,
            drives: Mutex::new(HashMap::new()),
        });
        Drive::open_feed(ctx, feed).await
    }

    /// Opens the drive with metadata key `key` (remote, mounted or reopened).
    pub async fn open(
        provider: Arc<dyn FeedProvider>,
        key: &[u8; 32],
        opts: DriveOptions,
    ) -> Result<Drive, DriveError> {
        let feed = provider.feed_by_key(key)?;
        let ctx = Arc::new(Ctx {
            provider,
            opts,
            drives: Mutex::new(HashMap::new()),
        });
        Drive::open_feed(ctx, feed).await
    }

    /// Another writable drive derived from `name`, sharing this drive's provider,
    /// options and content states (so mounts between them share append locks).
    pub async fn sibling(&self, name: &str) -> Result<Drive, DriveError> {
        let feed = self.ctx.provider.feed_by_name(name)?;
        Drive::open_feed(self.ctx.clone(), feed).await
    }

    /// Opens drive `key` with this drive's provider, options and content states.
    pub async fn open_other(&self, key: &[u8; 32]) -> Result<Drive, DriveError> {
        self.open_mounted(key, None).await
    }

    async fn open_feed(ctx: Arc<Ctx>, feed: Arc<SharedFeed>) -> Result<Drive, DriveError> {
        let key = feed.key();
        if let Some((trie, content)) = ctx
            .drives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Drive {
                ctx: ctx.clone(),
                trie: trie.clone(),
                content: content.clone(),
            });
        }
        let keyhex = hex::encode(key);
        let store = FeedTrieStore::with_timeout(feed.clone(), ctx.opts.timeout);
        let writable = feed.lock().feed.writable();
        let (trie, content_feed) = if feed.is_empty() && writable {
            let content = ctx.provider.feed_by_name(&content_name(&key))?;
            let trie = Trie::open(
                store,
                TrieOptions {
                    metadata: Some(content.key().to_vec()),
                    subtype: Some("hyperdrive".into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriveError::from_trie(&keyhex, e))?;
            (trie, content)
        } else {
            if !writable {
                // A remote (sparse, live) drive: learn new lengths as peers announce them.
                feed.set_track_length(true);
            }
            let trie = Trie::open(store, TrieOptions::default())
                .await
                .map_err(|e| DriveError::from_trie(&keyhex, e))?;
            let header = trie
                .header()
                .await
                .map_err(|e| DriveError::from_trie(&keyhex, e))?;
            let ck: [u8; 32] = header
                .metadata
                .as_deref()
                .and_then(|m| m.try_into().ok())
                .ok_or_else(|| DriveError::Corrupt {
                    path: keyhex.clone(),
                    reason: "header has no 32-byte content key".into(),
                })?;
            (trie, ctx.provider.feed_by_key(&ck)?)
        };
        // One-round-trip sparse reads for peers (and from them), as the reference.
        crate::trie::extension::TrieExtension::register(&trie);
        let drive = Drive {
            ctx: ctx.clone(),
            trie,
            content: Arc::new(Content {
                feed: content_feed,
                lock: Arc::new(tokio::sync::Mutex::new(())),
                ahead: Arc::default(),
                blocks: Arc::default(),
            }),
        };
        let mut drives = ctx.drives.lock().unwrap_or_else(|e| e.into_inner());
        let (trie, content) = drives
            .entry(key)
            .or_insert((drive.trie.clone(), drive.content.clone()));
        Ok(Drive {
            ctx: ctx.clone(),
            trie: trie.clone(),
            content: content.clone(),
        })
    }

    async fn open_mounted(
        &self,
        key: &[u8; 32],
        version: Option<u64>,
    ) -> Result<Drive, DriveError> {
        let feed = self.ctx.provider.feed_by_key(key)?;
        let d = Drive::open_feed(self.ctx.clone(), feed).await?;
        Ok(match version {
            Some(v) => d.checkout(v),
            None => d,
        })
    }

    /// Metadata feed key (the drive's key).
    pub fn key(&self) -> [u8; 32] {
        self.trie.store().feed().key()
    }

    /// Discovery key of the metadata feed.
    pub fn discovery_key(&self) -> [u8; 32] {
        self.trie.store().feed().discovery_key()
    }

    /// The metadata feed.
    pub fn metadata_feed(&self) -> &Arc<SharedFeed> {
        self.trie.store().feed()
    }

    /// The content feed.
    pub fn content_feed(&self) -> &Arc<SharedFeed> {
        &self.content.feed
    }

    /// The metadata trie.
    pub fn trie(&self) -> &Trie<FeedTrieStore> {
        &self.trie
    }

    /// Drive version = metadata feed length (or the checkout's version).
    pub fn version(&self) -> u64 {
        self.trie.version()
    }

    /// A change counter for everything this drive shows: its version plus the lengths
    /// of the other live drives opened through it (nested mounts), which change without
    /// this drive's version moving. Never decreases (feeds only grow); cheap (one short
    /// lock per open drive), never waits. Caches of what a path resolves to key by it.
    pub fn generation(&self) -> u64 {
        let own = self.key();
        let others: Vec<Arc<SharedFeed>> = self
            .ctx
            .drives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| **k != own)
            .map(|(_, (trie, _))| trie.store().feed().clone())
            .collect();
        others
            .iter()
            .fold(self.version(), |sum, f| sum.saturating_add(f.len()))
    }

    /// Whether writes are possible (live view of a writable feed).
    pub fn writable(&self) -> bool {
        !self.trie.is_checkout() && self.metadata_feed().lock().feed.writable()
    }

    /// A read-only view at `version`; mounts inside open at their own recorded versions.
    pub fn checkout(&self, version: u64) -> Drive {
        Drive {
            ctx: self.ctx.clone(),
            trie: self.trie.checkout(version),
            content: self.content.clone(),
        }
    }

    fn now(&self) -> u64 {
        match &self.ctx.opts.clock {
            Some(c) => c(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    fn check_writable(&self, key: &str) -> Result<(), DriveError> {
        if self.writable() {
            Ok(())
        } else {
            Err(DriveError::ReadOnly { path: display(key) })
        }
    }

    // ---- mount resolution (mountable-hypertrie §4) ----

    /// `_getSubtrie`: the mounted drive owning `key` and the mount's local path, or
    /// `None` if this drive owns it.
    async fn subtrie(&self, key: &str) -> Result<Option<(Drive, String)>, DriveError> {
        let rec_key = mount_record_key(key);
        let node = self
            .trie
            .get_with(
                &rec_key,
                GetOptions {
                    hidden: true,
                    closest: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriveError::from_trie(&display(key), e))?;
        let Some(node) = node.filter(|n| is_mount_node(n)) else {
            return Ok(None);
        };
        let mount_path = node.key.strip_prefix("mounts").unwrap_or("");
        let mount_path = mount_path.trim_start_matches('/');
        if !is_within(mount_path, key) {
            return Ok(None);
        }
        let rec = MountRecord::decode(node.value.as_deref().unwrap_or_default()).map_err(|e| {
            DriveError::Corrupt {
                path: display(mount_path),
                reason: e.to_string(),
            }
        })?;
        let mkey: [u8; 32] = rec
            .key
            .as_slice()
            .try_into()
            .map_err(|_| DriveError::Corrupt {
                path: display(mount_path),
                reason: "mount key is not 32 bytes".into(),
            })?;
        let d = self.open_mounted(&mkey, rec.version).await?;
        Ok(Some((d, rec.local_path)))
    }

    /// mountable-hypertrie `get`: the node at `key` and its owner.
    fn find<'a>(&'a self, key: &'a str, depth: usize) -> BoxFut<'a, Found> {
        Box::pin(async move {
            if depth > MAX_MOUNT_DEPTH {
                return Err(DriveError::Loop { path: display(key) });
            }
            let here = |node: Option<Arc<Node>>| Found {
                drive: self.clone(),
                inner: key.to_string(),
                node,
            };
            let node = self
                .trie
                .get_with(
                    key,
                    GetOptions {
                        closest: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| DriveError::from_trie(&display(key), e))?;
            let Some(node) = node else {
                return Ok(here(None));
            };
            if !is_mount_node(&node) {
                let hit = node.key == key && node.value.is_some();
                return Ok(here(hit.then_some(node)));
            }
            if node.key == key {
                return Ok(here(Some(node)));
            }
            match self.subtrie(key).await? {
                None => {
                    let exact = self
                        .trie
                        .get(key)
                        .await
                        .map_err(|e| DriveError::from_trie(&display(key), e))?
                        .filter(|n| n.key == key && n.value.is_some());
                    Ok(here(exact))
                }
                Some((sub, local)) => {
                    let inner = inner_path(key, &local);
                    let found = sub.find(&inner, depth + 1).await?;
                    let ok = found.node.as_ref().is_some_and(|n| n.key == found.inner);
                    Ok(Found {
                        node: if ok { found.node } else { None },
                        ..found
                    })
                }
            }
        })
    }

    /// mountable-hypertrie `put` with the mountpoint condition; returns the owner drive.
    fn put_node<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        flags: u64,
        depth: usize,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if depth > MAX_MOUNT_DEPTH {
                return Err(DriveError::Loop { path: display(key) });
            }
            self.check_writable(key)?;
            let cond: crate::trie::Condition =
                Box::new(|closest, new| put_refuses_mountpoint(closest, new).map(|_| true));
            let res = self
                .trie
                .put_with(
                    key,
                    Some(value.clone()),
                    PutOptions {
                        flags,
                        closest: true,
                        condition: Some(cond),
                        ..Default::default()
                    },
                )
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(TrieError::Condition(m)) if m == "mountpoint" => {
                    let Some((sub, local)) = self.subtrie(key).await? else {
                        return Err(DriveError::Corrupt {
                            path: display(key),
                            reason: "mount node without a mount record".into(),
                        });
                    };
                    let inner = inner_path(key, &local);
                    sub.put_node(&inner, value, flags, depth + 1).await
                }
                Err(e) => Err(DriveError::from_trie(&display(key), e)),
            }
        })
    }

    /// mountable-hypertrie `del`.
    fn del_node<'a>(&'a self, key: &'a str, depth: usize) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if depth > MAX_MOUNT_DEPTH {
                return Err(DriveError::Loop { path: display(key) });
            }
            self.check_writable(key)?;
            let k = key.to_string();
            let cond: crate::trie::DelCondition =
                Box::new(move |closest| del_refuses_mountpoint(closest, &k).map(|_| true));
            let res = self
                .trie
                .del_with(
                    key,
                    DelOptions {
                        closest: true,
                        condition: Some(cond),
                        ..Default::default()
                    },
                )
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(TrieError::Condition(m)) if m == "mountpoint" => {
                    let Some((sub, local)) = self.subtrie(key).await? else {
                        return Err(DriveError::NotFound { path: display(key) });
                    };
                    let inner = inner_path(key, &local);
                    sub.del_node(&inner, depth + 1).await
                }
                Err(e) => Err(DriveError::from_trie(&display(key), e)),
            }
        })
    }

    /// mountable-hypertrie `iterator`: `(outer key, node, owner)` in trie order.
    fn iterate<'a>(
        &'a self,
        prefix: &'a str,
        recursive: bool,
        no_mounts: bool,
        depth: usize,
    ) -> BoxFut<'a, Vec<(String, Arc<Node>, Drive)>> {
        Box::pin(async move {
            if depth > MAX_MOUNT_DEPTH {
                return Err(DriveError::Loop {
                    path: display(prefix),
                });
            }
            if let Some((sub, local)) = self.subtrie(prefix).await? {
                let inner = inner_path(prefix, &local);
                let items = sub.iterate(&inner, recursive, no_mounts, depth + 1).await?;
                return Ok(items
                    .into_iter()
                    .map(|(k, n, d)| (join(&local, &k), n, d))
                    .collect());
            }
            let nodes = self
                .trie
                .list(
                    prefix,
                    ListOptions {
                        recursive,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| DriveError::from_trie(&display(prefix), e))?;
            let mut out = Vec::new();
            for node in nodes {
                let descend =
                    is_mount_node(&node) && !no_mounts && (recursive || node.key == prefix);
                let key = node.key.clone();
                out.push((key.clone(), node, self.clone()));
                if descend {
                    if let Some((sub, local)) = self.subtrie(&key).await? {
                        let inner = inner_path(&key, &local);
                        let items = sub.iterate(&inner, recursive, no_mounts, depth + 1).await?;
                        out.extend(items.into_iter().map(|(k, n, d)| (join(&local, &k), n, d)));
                    }
                }
            }
            Ok(out)
        })
    }

    // ---- reads ----

    async fn lstat_key(&self, key: &str) -> Result<(Stat, Drive), DriveError> {
        let found = self.find(key, 0).await?;
        self.lstat_found(key, found).await
    }

    /// [`lstat_key`](Self::lstat_key) given the lookup of `key` already made.
    async fn lstat_found(&self, key: &str, found: Found) -> Result<(Stat, Drive), DriveError> {
        if let Some(node) = &found.node {
            let mut st = decode_stat(key, node)?;
            self.fill_times(&mut st);
            return Ok((st, found.drive));
        }
        if key.is_empty() {
            let now = self.now();
            return Ok((Stat::directory(0, now), self.clone()));
        }
        // Implicit directory: some entry lies below `key`.
        let items = self.iterate(key, true, false, 0).await?;
        for (k, node, owner) in items {
            if node.value.is_none() {
                continue;
            }
            if k == key {
                // Reached through a mount record whose visible node is gone: the entry
                // itself, not a directory (the reference reports a directory).
                let mut st = decode_stat(key, &node)?;
                self.fill_times(&mut st);
                return Ok((st, owner));
            }
            if is_within(key, &k) {
                let below = decode_stat(&k, &node)?;
                let mut st = Stat::directory(0, below.mtime);
                st.ctime = below.ctime;
                st.uid = below.uid;
                st.gid = below.gid;
                self.fill_times(&mut st);
                return Ok((st, owner));
            }
        }
        Err(DriveError::NotFound { path: display(key) })
    }

    fn fill_times(&self, st: &mut Stat) {
        if st.mtime == 0 {
            st.mtime = self.now();
        }
        if st.ctime == 0 {
            st.ctime = self.now();
        }
    }

    async fn stat_key(&self, key: &str) -> Result<(Stat, Drive, String), DriveError> {
        let mut key = key.to_string();
        for _ in 0..=MAX_SYMLINK_FOLLOWS {
            let (st, owner) = self.lstat_key(&key).await?;
            match st.linkname.as_deref() {
                Some(target) if st.is_symlink() => key = resolve_link(&key, target),
                _ => return Ok((st, owner, key)),
            }
        }
        Err(DriveError::Loop {
            path: display(&key),
        })
    }

    /// Stat without following a final symlink (implicit directories included).
    pub async fn lstat(&self, path: &str) -> Result<Stat, DriveError> {
        let key = valid_key(path)?;
        Ok(self.lstat_key(&key).await?.0)
    }

    /// Stat following symlinks (at most [`MAX_SYMLINK_FOLLOWS`]).
    pub async fn stat(&self, path: &str) -> Result<Stat, DriveError> {
        let key = valid_key(path)?;
        Ok(self.stat_key(&key).await?.0)
    }

    /// Whether `path` exists (as an entry or an implicit directory).
    pub async fn exists(&self, path: &str) -> Result<bool, DriveError> {
        match self.lstat(path).await {
            Ok(_) => Ok(true),
            Err(DriveError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Symlink target, verbatim.
    pub async fn readlink(&self, path: &str) -> Result<String, DriveError> {
        let key = valid_key(path)?;
        let (st, _) = self.lstat_key(&key).await?;
        match st.linkname {
            Some(l) if st.is_symlink() => Ok(l),
            _ => Err(DriveError::InvalidArgument {
                path: display(&key),
                reason: "not a symbolic link".into(),
            }),
        }
    }

    /// Entries of a directory, sorted by name. A symlink to a directory lists the
    /// target. A file gives `NotADirectory`, a missing path `NotFound` (the reference
    /// answers `[]` for both).
    pub async fn readdir(&self, path: &str, with_stats: bool) -> Result<Vec<DirEntry>, DriveError> {
        if with_stats {
            return Ok(self
                .readdir_stats(path)
                .await?
                .into_iter()
                .map(|(e, _)| e)
                .collect());
        }
        let (_, items) = self.child_nodes(path).await?;
        let names: BTreeSet<String> = items.into_iter().map(|(name, ..)| name).collect();
        Ok(names
            .into_iter()
            .map(|name| DirEntry { name, stat: None })
            .collect())
    }

    /// The nodes under directory `path` that name something in it: (child name, key,
    /// node, owning drive) in trie order, and the directory's key. Errors if `path` is
    /// missing or not a directory.
    async fn child_nodes(
        &self,
        path: &str,
    ) -> Result<(String, Vec<(String, String, Arc<Node>, Drive)>), DriveError> {
        let key = valid_key(path)?;
        let (st, _, dir) = self.stat_key(&key).await?;
        if !st.is_dir() {
            return Err(DriveError::NotADirectory {
                path: display(&key),
            });
        }
        let items = self.iterate(&dir, false, false, 0).await?;
        let children = items
            .into_iter()
            .filter(|(k, node, _)| *k != dir && node.value.is_some() && is_within(&dir, k))
            .filter_map(|(k, node, owner)| {
                let name = child_name(&dir, &k)?.to_string();
                Some((name, k, node, owner))
            })
            .collect();
        Ok((dir, children))
    }

    /// The children of directory `path` with their stats (every entry has one), each
    /// with the drive it belongs to (inside a mount: the mounted drive), sorted by name.
    /// A child whose own node the listing already holds is decoded from it; only
    /// implicit directories and mount points take a lookup of their own, so a listing
    /// costs one walk of the directory, not one per entry.
    pub async fn readdir_stats(&self, path: &str) -> Result<Vec<(DirEntry, Drive)>, DriveError> {
        let (dir, items) = self.child_nodes(path).await?;
        let mut names: BTreeMap<String, Option<(Stat, Drive)>> = BTreeMap::new();
        for (name, k, node, owner) in items {
            let slot = names.entry(name.clone()).or_insert(None);
            if slot.is_none() && k.len() == dir_prefix_len(&dir) + name.len() {
                // The child's own node: what a lookup of it would find, unless it is a
                // mount point (resolved by the lookup below).
                let mut st = decode_stat(&k, &node)?;
                if st.mount.is_none() {
                    self.fill_times(&mut st);
                    *slot = Some((st, owner));
                }
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for (name, found) in names {
            let (stat, owner) = match found {
                Some(f) => f,
                None => self.lstat_key(&join(&dir, &name)).await?,
            };
            out.push((
                DirEntry {
                    name,
                    stat: Some(stat),
                },
                owner,
            ));
        }
        Ok(out)
    }

    /// Every entry below `path` (recursive, mounts crossed unless `no_mounts`), as
    /// drive paths relative to `path`, sorted. Symlinks are listed, not followed.
    pub async fn readdir_recursive(
        &self,
        path: &str,
        no_mounts: bool,
    ) -> Result<Vec<String>, DriveError> {
        let key = valid_key(path)?;
        let items = self.iterate(&key, true, no_mounts, 0).await?;
        let mut out: Vec<String> = items
            .into_iter()
            .filter(|(k, n, _)| n.value.is_some() && k != &key && is_within(&key, k))
            .map(|(k, _, _)| {
                if key.is_empty() {
                    k
                } else {
                    k[key.len() + 1..].to_string()
                }
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// A read handle for the regular file at drive path `path` whose Stat a listing
    /// returned, `self` being the drive [`Drive::readdir_stats`] named as its owner: what
    /// [`Drive::open_file`] gives for that path at the listing's version, without the
    /// lookup. `None` for anything else (`open_file` follows symlinks; directories and
    /// mounts are not files).
    pub fn listed_file(&self, path: &str, stat: &Stat) -> Option<FileHandle> {
        if !stat.is_file() || stat.mount.is_some() {
            return None;
        }
        Some(FileHandle {
            content: self.content.feed.clone(),
            ahead: self.content.ahead.clone(),
            blocks: self.content.blocks.clone(),
            timeout: self.ctx.opts.timeout,
            path: path.to_string(),
            stat: stat.clone(),
        })
    }

    /// Opens a file for reading (following symlinks).
    pub async fn open_file(&self, path: &str) -> Result<FileHandle, DriveError> {
        let key = valid_key(path)?;
        let (stat, owner, key) = self.stat_key(&key).await?;
        if stat.is_dir() {
            return Err(DriveError::IsADirectory {
                path: display(&key),
            });
        }
        if stat.mount.as_ref().is_some_and(|m| m.hypercore) {
            return Err(DriveError::InvalidArgument {
                path: display(&key),
                reason: "hypercore mounts are not readable as files".into(),
            });
        }
        Ok(FileHandle {
            content: owner.content.feed.clone(),
            ahead: owner.content.ahead.clone(),
            blocks: owner.content.blocks.clone(),
            timeout: self.ctx.opts.timeout,
            path: display(&key),
            stat,
        })
    }

    /// Reads `len` bytes at `offset` of `path` (short at end of file).
    pub async fn read(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, DriveError> {
        self.open_file(path).await?.read(offset, len).await
    }

    /// The whole file.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, DriveError> {
        let h = self.open_file(path).await?;
        let size = h.stat.size;
        h.read(0, size).await
    }

    // ---- writes ----

    /// The drive that owns `key` (crossing mounts) and the inner key there.
    async fn owner(&self, key: &str) -> Result<(Drive, String), DriveError> {
        let f = self.find(key, 0).await?;
        Ok((f.drive, f.inner))
    }

    /// Starts a streaming write of `path`; the Stat is put by [`FileWriter::finish`].
    /// Each `write` appends one block (split at 512 KiB), like the reference's
    /// `createWriteStream`.
    pub async fn create_writer(
        &self,
        path: &str,
        opts: WriteOptions,
    ) -> Result<FileWriter, DriveError> {
        let key = writable_key(path)?;
        let now = self.now();
        let mut base = Stat::file(opts.mode, now);
        base.uid = opts.uid;
        base.gid = opts.gid;
        base.mtime = opts.mtime.unwrap_or(now);
        base.ctime = opts.ctime.unwrap_or(now);
        self.writer_with(&key, base, false).await
    }

    /// A writer that keeps `base` (mode, times, xattrs) and coalesces small writes into
    /// blocks of up to 64 KiB, like the reference's file descriptors.
    pub async fn open_writer(&self, path: &str, base: Stat) -> Result<FileWriter, DriveError> {
        let key = writable_key(path)?;
        self.writer_with(&key, base, true).await
    }

    async fn writer_with(
        &self,
        key: &str,
        base: Stat,
        coalesce: bool,
    ) -> Result<FileWriter, DriveError> {
        self.check_writable(key)?;
        // One lookup answers both "is it a directory" and "which drive owns it".
        let found = self.find(key, 0).await?;
        let (owner, inner) = (found.drive.clone(), found.inner.clone());
        if let Ok((st, _)) = self.lstat_found(key, found).await {
            if st.is_dir() {
                return Err(DriveError::IsADirectory { path: display(key) });
            }
        }
        owner.check_writable(&inner)?;
        let guard = owner.content.lock.clone().lock_owned().await;
        let (offset, byte_offset) = {
            let st = owner.content.feed.lock();
            (st.feed.len(), st.feed.byte_len())
        };
        Ok(FileWriter {
            drive: owner,
            key: inner,
            base,
            offset,
            byte_offset,
            coalesce,
            pending: Vec::new(),
            _guard: guard,
        })
    }

    /// Writes a whole file: one block (split at 512 KiB; an empty file gets one empty
    /// block, as the reference does).
    pub async fn write_file(
        &self,
        path: &str,
        data: &[u8],
        opts: WriteOptions,
    ) -> Result<(), DriveError> {
        let mut w = self.create_writer(path, opts).await?;
        w.write(data).await?;
        w.finish().await
    }

    /// Writes many whole files: every content block in one append and every Stat in one
    /// trie batch, so the whole call costs two signatures instead of two per file (a
    /// signature is most of the cost of writing a small file). The feeds end up with the
    /// same blocks as [`write_file`](Self::write_file) on each file in order; files that
    /// live in a mounted drive or replace a mountpoint are written one by one after the
    /// others. A path that is a directory fails the call before anything is written.
    pub async fn write_files(
        &self,
        files: &[(&str, &[u8])],
        opts: WriteOptions,
    ) -> Result<(), DriveError> {
        let mut here = Vec::with_capacity(files.len());
        let mut elsewhere = Vec::new();
        for &(path, data) in files {
            let key = writable_key(path)?;
            self.check_writable(&key)?;
            let found = self.find(&key, 0).await?;
            let own = found.drive.key() == self.key()
                && found.inner == key
                && !found.node.as_deref().is_some_and(is_mount_node);
            if let Ok((st, _)) = self.lstat_found(&key, found).await {
                if st.is_dir() {
                    return Err(DriveError::IsADirectory {
                        path: display(&key),
                    });
                }
            }
            if own {
                here.push((key, data));
            } else {
                elsewhere.push((path, data));
            }
        }
        if !here.is_empty() {
            let _guard = self.content.lock.clone().lock_owned().await;
            let (mut offset, mut byte_offset) = {
                let st = self.content.feed.lock();
                (st.feed.len(), st.feed.byte_len())
            };
            let now = self.now();
            let mut blocks: Vec<&[u8]> = Vec::new();
            let mut ops = Vec::with_capacity(here.len());
            for (key, data) in &here {
                let before = blocks.len();
                if data.is_empty() {
                    blocks.push(data);
                } else {
                    blocks.extend(data.chunks(MAX_BLOCK_SIZE));
                }
                let mut st = Stat::file(opts.mode, now);
                st.mode |= super::stat::S_IFREG;
                st.uid = opts.uid;
                st.gid = opts.gid;
                st.mtime = opts.mtime.unwrap_or(now);
                st.ctime = opts.ctime.unwrap_or(now);
                st.offset = offset;
                st.byte_offset = byte_offset;
                st.size = data.len() as u64;
                st.blocks = (blocks.len() - before) as u64;
                offset += st.blocks;
                byte_offset += st.size;
                ops.push(BatchOp::Put {
                    key: key.clone(),
                    value: Some(st.encode()),
                    hidden: false,
                    flags: 0,
                });
            }
            self.content
                .feed
                .append_batch(&blocks)
                .map_err(|e| DriveError::Storage {
                    path: display(&here[0].0),
                    reason: e.to_string(),
                })?;
            self.trie
                .batch(ops)
                .await
                .map_err(|e| DriveError::from_trie(&display(&here[0].0), e))?;
        }
        for (path, data) in elsewhere {
            self.write_file(path, data, opts.clone()).await?;
        }
        Ok(())
    }

    /// Creates an empty file if `path` is absent (existing entries are left alone).
    pub async fn create(&self, path: &str, opts: WriteOptions) -> Result<(), DriveError> {
        let key = writable_key(path)?;
        if self.find(&key, 0).await?.node.is_some() {
            return Ok(());
        }
        let now = self.now();
        let mut st = Stat::file(opts.mode, now);
        st.uid = opts.uid;
        st.gid = opts.gid;
        st.mtime = opts.mtime.unwrap_or(now);
        st.ctime = opts.ctime.unwrap_or(now);
        self.put_node(&key, st.encode(), 0, 0).await
    }

    /// Creates a directory (`Exists` if anything is there).
    pub async fn mkdir(&self, path: &str, opts: WriteOptions) -> Result<(), DriveError> {
        let key = valid_key(path)?;
        if key.is_empty() || self.find(&key, 0).await?.node.is_some() {
            return Err(DriveError::Exists {
                path: display(&key),
            });
        }
        let (owner, _) = self.owner(&key).await?;
        let now = self.now();
        let mut st = Stat::directory(opts.mode, now);
        st.uid = opts.uid;
        st.gid = opts.gid;
        st.mtime = opts.mtime.unwrap_or(now);
        st.ctime = opts.ctime.unwrap_or(now);
        {
            let c = owner.content.feed.lock();
            st.offset = c.feed.len();
            st.byte_offset = c.feed.byte_len();
        }
        self.put_node(&key, st.encode(), 0, 0).await
    }

    /// Removes an entry (file, symlink or mount point; a mount point's hidden record
    /// stays, as in the reference).
    pub async fn unlink(&self, path: &str) -> Result<(), DriveError> {
        let key = writable_key(path)?;
        if self.find(&key, 0).await?.node.is_none() {
            return Err(DriveError::NotFound {
                path: display(&key),
            });
        }
        self.del_node(&key, 0).await
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, path: &str) -> Result<(), DriveError> {
        let key = writable_key(path)?;
        let items = self.iterate(&key, false, false, 0).await?;
        if items
            .iter()
            .any(|(k, n, _)| k != &key && n.value.is_some() && is_within(&key, k))
        {
            return Err(DriveError::NotEmpty {
                path: display(&key),
            });
        }
        let found = self.find(&key, 0).await?;
        let Some(node) = found.node else {
            return Err(DriveError::NotFound {
                path: display(&key),
            });
        };
        if !decode_stat(&key, &node)?.is_dir() {
            return Err(DriveError::NotADirectory {
                path: display(&key),
            });
        }
        self.del_node(&key, 0).await
    }

    /// Creates a symlink at `path` pointing to `target` (stored verbatim, unixified).
    pub async fn symlink(&self, target: &str, path: &str) -> Result<(), DriveError> {
        let key = writable_key(path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(DriveError::InvalidPath {
                path: target.into(),
                reason: "empty or NUL in symlink target",
            });
        }
        if self.find(&key, 0).await?.node.is_some() {
            return Err(DriveError::Exists {
                path: display(&key),
            });
        }
        let st = Stat::symlink(&unixify(target), self.now());
        self.put_node(&key, st.encode(), 0, 0).await
    }

    /// `_update`: read the node's Stat, change it, put it back with the same flags.
    pub async fn update(
        &self,
        path: &str,
        change: impl FnOnce(&mut Stat),
    ) -> Result<Stat, DriveError> {
        let key = writable_key(path)?;
        let found = self.find(&key, 0).await?;
        let Some(node) = found.node else {
            return Err(DriveError::NotFound {
                path: display(&key),
            });
        };
        let mut st = decode_stat(&key, &node)?;
        change(&mut st);
        self.put_node(&key, st.encode(), node.flags(), 0).await?;
        Ok(st)
    }

    /// `_upsert`: like [`update`](Self::update), starting from a default file Stat when
    /// absent (an fd opened with O_TRUNC does this with size/blocks 0).
    pub async fn upsert(
        &self,
        path: &str,
        change: impl FnOnce(&mut Stat),
    ) -> Result<Stat, DriveError> {
        let key = writable_key(path)?;
        let found = self.find(&key, 0).await?;
        let (mut st, flags) = match &found.node {
            Some(n) => (decode_stat(&key, n)?, n.flags()),
            None => (Stat::file(0, self.now()), 0),
        };
        change(&mut st);
        self.put_node(&key, st.encode(), flags, 0).await?;
        Ok(st)
    }

    /// Sets extended attribute `name`.
    pub async fn set_xattr(&self, path: &str, name: &str, value: &[u8]) -> Result<(), DriveError> {
        self.update(path, |s| s.set_xattr(name, Some(value.to_vec())))
            .await
            .map(|_| ())
    }

    /// Removes extended attribute `name` (the key stays listed without a value, as in
    /// the reference's encoding).
    pub async fn remove_xattr(&self, path: &str, name: &str) -> Result<(), DriveError> {
        self.update(path, |s| s.set_xattr(name, None))
            .await
            .map(|_| ())
    }

    /// Extended attributes with values (following symlinks).
    pub async fn list_xattrs(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>, DriveError> {
        let st = self.stat(path).await?;
        Ok(st
            .metadata
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Sets the size of a file: 0 empties it, shrinking re-appends the kept prefix,
    /// growing appends zeros (mode, times and xattrs kept except on shrink, which
    /// writes a fresh Stat as the reference does).
    pub async fn truncate(&self, path: &str, size: u64) -> Result<(), DriveError> {
        let key = writable_key(path)?;
        let (st, _, target) = match self.stat_key(&key).await {
            Ok(x) => x,
            Err(DriveError::NotFound { .. }) => {
                self.create(path, WriteOptions::default()).await?;
                if size == 0 {
                    return Ok(());
                }
                self.stat_key(&key).await?
            }
            Err(e) => return Err(e),
        };
        if st.is_dir() {
            return Err(DriveError::IsADirectory {
                path: display(&key),
            });
        }
        let tpath = display(&target);
        if size == st.size {
            return Ok(());
        }
        if size == 0 {
            self.update(&tpath, |s| {
                s.size = 0;
                s.blocks = 0;
            })
            .await?;
            return Ok(());
        }
        let h = self.open_file(&tpath).await?;
        if size < st.size {
            // Re-append the kept prefix block by block, with a fresh Stat.
            let chunks = h.read_blocks(0, size).await?;
            let mut w = self.create_writer(&tpath, WriteOptions::default()).await?;
            for c in chunks {
                w.write(&c).await?;
            }
            return w.finish().await;
        }
        let mut data = h.read(0, st.size).await?;
        data.resize(
            usize::try_from(size).map_err(|_| DriveError::InvalidArgument {
                path: tpath.clone(),
                reason: "size too large".into(),
            })?,
            0,
        );
        let mut w = self.open_writer(&tpath, st).await?;
        w.write(&data).await?;
        w.finish().await
    }

    /// Copies `from` to `to` (no-op if `to` exists). Within one drive the new entry
    /// shares the content blocks; across mounts the bytes are copied.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), DriveError> {
        let tkey = writable_key(to)?;
        let fkey = valid_key(from)?;
        let (st, src_owner, _) = self.stat_key(&fkey).await?;
        if st.is_dir() {
            return Err(DriveError::IsADirectory {
                path: display(&fkey),
            });
        }
        if self.find(&tkey, 0).await?.node.is_some() {
            return Ok(());
        }
        let (dst_owner, _) = self.owner(&tkey).await?;
        if dst_owner.key() == src_owner.key() {
            let mut copy = st.clone();
            copy.mode |= super::stat::S_IFREG;
            return self.put_node(&tkey, copy.encode(), 0, 0).await;
        }
        let data = self.read_file(from).await?;
        let mut w = self.open_writer(to, st).await?;
        w.write(&data).await?;
        w.finish().await
    }

    /// Mounts the drive `key` at `path` (optionally pinned at `version`).
    pub async fn mount(
        &self,
        path: &str,
        key: &[u8; 32],
        version: Option<u64>,
        opts: WriteOptions,
    ) -> Result<(), DriveError> {
        let pkey = writable_key(path)?;
        if self.find(&pkey, 0).await?.node.is_some() {
            return Err(DriveError::Exists {
                path: display(&pkey),
            });
        }
        let mut drive = self.clone();
        let mut inner = pkey.clone();
        for _ in 0..=MAX_MOUNT_DEPTH {
            match drive.subtrie(&inner).await? {
                None => {
                    drive.check_writable(&inner)?;
                    let now = self.now();
                    let mut st = Stat::directory(0, now);
                    st.uid = opts.uid;
                    st.gid = opts.gid;
                    st.mount = Some(StatMount {
                        key: key.to_vec(),
                        version,
                        hash: None,
                        hypercore: false,
                    });
                    {
                        let c = drive.content.feed.lock();
                        st.offset = c.feed.len();
                        st.byte_offset = c.feed.byte_len();
                    }
                    let rec = MountRecord {
                        key: key.to_vec(),
                        local_path: inner.clone(),
                        version,
                        ..Default::default()
                    };
                    drive
                        .trie
                        .batch(mount_ops(&inner, &rec, Some(st.encode())))
                        .await
                        .map_err(|e| DriveError::from_trie(&display(&pkey), e))?;
                    return Ok(());
                }
                Some((sub, local)) => {
                    inner = inner_path(&inner, &local);
                    drive = sub;
                }
            }
        }
        Err(DriveError::Loop {
            path: display(&pkey),
        })
    }

    /// Removes the mount at `path` (both the record and the visible node).
    pub async fn unmount(&self, path: &str) -> Result<(), DriveError> {
        let key = writable_key(path)?;
        let (st, _) = self.lstat_key(&key).await?;
        if st.mount.is_none() {
            return Err(DriveError::InvalidArgument {
                path: display(&key),
                reason: "not a mount point".into(),
            });
        }
        let parent = dirname(&key);
        let (drive, local) = match self.subtrie(parent).await? {
            Some((d, l)) => (d, l),
            None => (self.clone(), String::new()),
        };
        let inner = inner_path(&key, &local);
        drive.check_writable(&inner)?;
        drive
            .trie
            .batch(unmount_ops(&inner))
            .await
            .map_err(|e| DriveError::from_trie(&display(&key), e))?;
        Ok(())
    }

    /// The root drive (`/`) and every mount below it (crossing mounts), with keys.
    pub async fn mounts(&self) -> Result<Vec<MountInfo>, DriveError> {
        let mut out = vec![MountInfo {
            path: "/".into(),
            metadata: self.key(),
            content: self.content.feed.key(),
        }];
        self.collect_mounts("", 0, &mut out).await?;
        Ok(out)
    }

    fn collect_mounts<'a>(
        &'a self,
        prefix: &'a str,
        depth: usize,
        out: &'a mut Vec<MountInfo>,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if depth > MAX_MOUNT_DEPTH {
                return Err(DriveError::Loop {
                    path: display(prefix),
                });
            }
            let nodes = self
                .trie
                .list(
                    "mounts",
                    ListOptions {
                        hidden: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| DriveError::from_trie("/mounts", e))?;
            for n in nodes {
                if !is_mount_node(&n) {
                    continue;
                }
                let Ok(rec) = MountRecord::decode(n.value.as_deref().unwrap_or_default()) else {
                    continue;
                };
                let Ok(k) = <[u8; 32]>::try_from(rec.key.as_slice()) else {
                    continue;
                };
                let sub = self.open_mounted(&k, rec.version).await?;
                let path = join(prefix, &rec.local_path);
                out.push(MountInfo {
                    path: display(&path),
                    metadata: k,
                    content: sub.content.feed.key(),
                });
                if out.len() > 10_000 {
                    return Err(DriveError::Loop {
                        path: display(&path),
                    });
                }
                sub.collect_mounts(&path, depth + 1, out).await?;
            }
            Ok(())
        })
    }

    /// Stores tag `name` = `version` (hidden `hyperdrive-tags/<name>`).
    pub async fn create_tag(&self, name: &str, version: u64) -> Result<(), DriveError> {
        self.put_tag_value(name, encode_varint(version)).await
    }

    /// Stores raw tag bytes (the reference's promise API writes 10 zero bytes; kept so
    /// such drives can be reproduced).
    pub async fn put_tag_value(&self, name: &str, value: Vec<u8>) -> Result<(), DriveError> {
        if name.is_empty() || name.contains('\0') {
            return Err(DriveError::InvalidPath {
                path: name.into(),
                reason: "bad tag name",
            });
        }
        let key = format!("{TAG_PREFIX}/{name}");
        self.check_writable(&key)?;
        self.trie
            .put_with(
                &key,
                Some(value),
                PutOptions {
                    hidden: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriveError::from_trie(&key, e))?;
        Ok(())
    }

    /// Version of tag `name`.
    pub async fn tag(&self, name: &str) -> Result<u64, DriveError> {
        let key = format!("{TAG_PREFIX}/{name}");
        let node = self
            .trie
            .get_with(
                &key,
                GetOptions {
                    hidden: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriveError::from_trie(&key, e))?
            .filter(|n| n.key == key && n.value.is_some())
            .ok_or(DriveError::NotFound { path: key.clone() })?;
        decode_varint(node.value.as_deref().unwrap_or_default()).map_err(|e| DriveError::Corrupt {
            path: key,
            reason: e.to_string(),
        })
    }

    /// All tags, in trie order.
    pub async fn tags(&self) -> Result<Vec<(String, u64)>, DriveError> {
        let nodes = self
            .trie
            .list(
                TAG_PREFIX,
                ListOptions {
                    hidden: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriveError::from_trie(TAG_PREFIX, e))?;
        let mut out = Vec::new();
        for n in nodes {
            let (Some(name), Some(v)) = (n.key.strip_prefix("hyperdrive-tags/"), &n.value) else {
                continue;
            };
            let v = decode_varint(v).map_err(|e| DriveError::Corrupt {
                path: n.key.clone(),
                reason: e.to_string(),
            })?;
            out.push((name.to_string(), v));
        }
        Ok(out)
    }

    /// Removes tag `name`.
    pub async fn delete_tag(&self, name: &str) -> Result<(), DriveError> {
        let key = format!("{TAG_PREFIX}/{name}");
        self.check_writable(&key)?;
        self.trie
            .del_with(
                &key,
                DelOptions {
                    hidden: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DriveError::from_trie(&key, e))?;
        Ok(())
    }

    /// Visible entries that differ between versions `from` and `to` of this drive
    /// (mounted drives are not descended into).
    pub async fn diff(&self, from: u64, to: u64) -> Result<Vec<Change>, DriveError> {
        let newer = self.trie.checkout(to);
        let older = self.trie.checkout(from);
        let entries = newer
            .diff(&older, "", DiffOptions::default())
            .collect()
            .await
            .map_err(|e| DriveError::from_trie("/", e))?;
        let dec = |n: &Option<Arc<Node>>, key: &str| -> Result<Option<Stat>, DriveError> {
            match n {
                Some(n) if n.value.is_some() => Ok(Some(decode_stat(key, n)?)),
                _ => Ok(None),
            }
        };
        let mut out = Vec::new();
        for e in entries {
            let after = dec(&e.left, &e.key)?;
            let before = dec(&e.right, &e.key)?;
            if before == after {
                continue;
            }
            out.push(Change {
                path: display(&e.key),
                before,
                after,
            });
        }
        Ok(out)
    }

    /// Waits until the metadata feed grows past `since` (or `timeout` passes); returns
    /// the new version, or `None` on timeout. A live watcher calls this in a loop.
    pub async fn watch(&self, since: u64, timeout: Duration) -> Option<u64> {
        let feed = self.metadata_feed();
        let len = feed.wait_for_length(since + 1, timeout).await;
        (len > since).then_some(len)
    }
}

/// An open file's Stat and its content feed, for positional reads.
#[derive(Clone)]
pub struct FileHandle {
    content: Arc<SharedFeed>,
    ahead: Arc<ReadAhead>,
    blocks: Arc<BlockCache>,
    timeout: Duration,
    path: String,
    /// The Stat the handle was opened with.
    pub stat: Stat,
}

impl FileHandle {
    fn fetch_err(&self, e: FetchError) -> DriveError {
        match e {
            FetchError::Timeout { .. } => DriveError::Timeout {
                path: self.path.clone(),
            },
            FetchError::Core(c) => DriveError::Storage {
                path: self.path.clone(),
                reason: c.to_string(),
            },
        }
    }

    /// Block index and offset inside it of file byte `pos` (< size). Uses the feed's
    /// tree when local. Otherwise (a sparse replica) it searches the file's blocks:
    /// each fetched block arrives with the tree nodes that prove it, which give its byte
    /// offset, so an interpolation guess (exact when the blocks are equal-sized) narrowed
    /// by bisection finds the block in a few fetches instead of walking the whole file.
    async fn locate(&self, pos: u64) -> Result<(u64, u64), DriveError> {
        let st = &self.stat;
        let target = st.byte_offset + pos;
        let (mut lo, mut hi) = (st.offset, st.offset + st.blocks);
        let (mut lo_byte, mut hi_byte) = (st.byte_offset, st.byte_offset + st.size);
        // Each round either answers or shrinks [lo, hi) by at least one block.
        while lo < hi {
            if let Ok((idx, off)) = self.content.lock().feed.seek(target) {
                if idx >= st.offset && idx < st.offset + st.blocks {
                    return Ok((idx, off));
                }
            }
            let span = (hi_byte.saturating_sub(lo_byte)).max(1);
            let guess =
                (target.saturating_sub(lo_byte) as u128 * (hi - lo) as u128 / span as u128) as u64;
            let idx = lo + guess.min(hi - lo - 1);
            let b = self
                .content
                .get(idx, self.timeout)
                .await
                .map_err(|e| self.fetch_err(e))?;
            let len = b.len() as u64;
            let Some(start) = byte_offset_of(&mut self.content.lock().feed, idx) else {
                break;
            };
            if target < start {
                hi = idx;
                hi_byte = start;
            } else if target < start + len {
                return Ok((idx, target - start));
            } else {
                lo = idx + 1;
                lo_byte = start + len;
            }
        }
        let mut acc = 0u64;
        for idx in st.offset..st.offset + st.blocks {
            let b = self
                .content
                .get(idx, self.timeout)
                .await
                .map_err(|e| self.fetch_err(e))?;
            let len = b.len() as u64;
            if pos < acc + len {
                return Ok((idx, pos - acc));
            }
            acc += len;
        }
        Err(DriveError::Corrupt {
            path: self.path.clone(),
            reason: "file blocks are shorter than its size".into(),
        })
    }

    /// Block-aligned pieces covering `[offset, offset+len)` clipped to the file.
    async fn read_blocks(&self, offset: u64, len: u64) -> Result<Vec<Vec<u8>>, DriveError> {
        Ok(self
            .read_pieces(offset, len)
            .await?
            .into_iter()
            .map(|(b, r)| b[r].to_vec())
            .collect())
    }

    /// Block `idx`: from the drive's block cache, or from the feed (then cached, and
    /// the read-ahead told what follows it).
    async fn block(&self, idx: u64) -> Result<Arc<Vec<u8>>, DriveError> {
        if let Some(b) = self.blocks.get(idx) {
            return Ok(b);
        }
        let b = Arc::new(
            self.content
                .get(idx, self.timeout)
                .await
                .map_err(|e| self.fetch_err(e))?,
        );
        // After the block: its proof tells how big the blocks after it are.
        let limit = ahead_limit(&mut self.content.lock().feed, idx);
        self.ahead.note_until(&self.content, idx, limit);
        self.blocks.put(idx, b.clone());
        Ok(b)
    }

    /// The blocks covering `len` bytes at `offset`, each with the byte range of it
    /// that is wanted (no copies).
    async fn read_pieces(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<(Arc<Vec<u8>>, std::ops::Range<usize>)>, DriveError> {
        let st = &self.stat;
        let start = offset.min(st.size);
        let end = start.saturating_add(len).min(st.size);
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let (mut idx, mut skip) = self.locate(start).await?;
        let mut want = end - start;
        while want > 0 {
            if idx >= st.offset + st.blocks {
                return Err(DriveError::Corrupt {
                    path: self.path.clone(),
                    reason: "file blocks are shorter than its size".into(),
                });
            }
            let b = self.block(idx).await?;
            let s = usize::try_from(skip).unwrap_or(usize::MAX).min(b.len());
            let take = ((b.len() - s) as u64).min(want) as usize;
            if take > 0 {
                out.push((b, s..s + take));
            }
            want -= take as u64;
            skip = 0;
            idx += 1;
        }
        Ok(out)
    }

    /// The content feed holding this file's blocks (the owning drive's, across mounts);
    /// readers use it to prefetch ahead of sequential reads.
    pub fn content_feed(&self) -> &Arc<SharedFeed> {
        &self.content
    }

    /// Content-feed block index holding file byte `pos` (< size) and the offset in it.
    pub async fn block_at(&self, pos: u64) -> Result<(u64, u64), DriveError> {
        self.locate(pos).await
    }

    /// Reads up to `len` bytes at `offset` (short at end of file, empty past it).
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, DriveError> {
        let pieces = self.read_pieces(offset, len).await?;
        let mut out = Vec::with_capacity(pieces.iter().map(|(_, r)| r.len()).sum());
        for (b, r) in pieces {
            out.extend_from_slice(&b[r]);
        }
        Ok(out)
    }
}

/// Read-ahead of a content feed stops after this many bytes.
const CONTENT_AHEAD_BYTES: u64 = 4 << 20;

/// The end of the read-ahead after block `idx`: the farthest block boundary whose byte
/// offset the local tree knows (the proof of `idx` brought the sizes of the subtrees to
/// its right) within [`CONTENT_AHEAD_BYTES`] of `idx`'s end. `idx + 1` if none is known.
fn ahead_limit(feed: &mut crate::core::Feed, idx: u64) -> u64 {
    let start = idx + 1;
    let Some(base) = byte_offset_of(feed, start) else {
        return start;
    };
    let len = feed.len();
    let mut limit = start;
    for k in 0..12u32 {
        for e in [((idx >> k) + 1) << k, ((idx >> k) + 2) << k] {
            if e <= limit || e > len {
                continue;
            }
            match byte_offset_of(feed, e) {
                Some(off) if off.saturating_sub(base) <= CONTENT_AHEAD_BYTES => limit = e,
                Some(_) => return limit,
                None => {}
            }
        }
    }
    limit
}

/// Byte offset of block `index` from the tree nodes held locally (the roots left of
/// it and the left siblings on its path), or `None` if one of them is missing.
fn byte_offset_of(feed: &mut crate::core::Feed, index: u64) -> Option<u64> {
    use crate::core::flat_tree as ft;
    let leaf = 2 * index;
    let mut off = 0u64;
    for r in ft::full_roots(2 * feed.len()) {
        if leaf > ft::right_span(r) {
            off += feed.node(r).ok()??.size;
            continue;
        }
        let mut n = r;
        while n != leaf {
            let (l, right) = ft::children(n)?;
            if leaf < n {
                n = l;
            } else {
                off += feed.node(l).ok()??.size;
                n = right;
            }
        }
        return Some(off);
    }
    None
}

/// A streaming file write holding the content feed's append lock.
pub struct FileWriter {
    drive: Drive,
    key: String,
    base: Stat,
    offset: u64,
    byte_offset: u64,
    coalesce: bool,
    pending: Vec<u8>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl FileWriter {
    fn append(&self, data: &[u8]) -> Result<(), DriveError> {
        let blocks: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(MAX_BLOCK_SIZE).collect()
        };
        self.drive
            .content
            .feed
            .append_batch(&blocks)
            .map_err(|e| DriveError::Storage {
                path: display(&self.key),
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// Appends `data` (one block per call, or coalesced for fd-style writers).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), DriveError> {
        if !self.coalesce {
            return self.append(data);
        }
        if data.is_empty() {
            return Ok(());
        }
        if self.pending.len() + data.len() > BATCH_LIMIT && !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            self.append(&p)?;
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= BATCH_LIMIT {
            let p = std::mem::take(&mut self.pending);
            self.append(&p)?;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.drive.content.feed.byte_len() - self.byte_offset + self.pending.len() as u64
    }

    /// Flushes and puts the file's Stat.
    pub async fn finish(mut self) -> Result<(), DriveError> {
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            self.append(&p)?;
        }
        let (len, byte_len) = {
            let c = self.drive.content.feed.lock();
            (c.feed.len(), c.feed.byte_len())
        };
        let mut st = self.base.clone();
        st.mode |= super::stat::S_IFREG;
        st.offset = self.offset;
        st.byte_offset = self.byte_offset;
        st.size = byte_len - self.byte_offset;
        st.blocks = len - self.offset;
        self.drive.put_node(&self.key, st.encode(), 0, 0).await
    }
}
