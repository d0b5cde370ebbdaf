//! Opening cores: the cache of open feeds behind [`Corestore`] and the rules corestore 5
//! follows for each way of asking for a core.
//!
//! * One [`SharedFeed`] per discovery key: a second open returns the same `Arc`, so local
//!   readers, writers and every replication connection see one feed, one lock and one
//!   set of wants.
//! * File handles are bounded: at most `max_open` cores stay open (each holds up to six
//!   files). When an open goes over the limit, the least recently used cores that nobody
//!   else holds (the cache's `Arc` is the only one) are closed; asking for them again
//!   reopens them from disk. A core someone holds is never closed, so there is never a
//!   second `SharedFeed` for the same core. In-memory stores never close cores (closing
//!   would lose them; they hold no files).
//! * Every open (first or re-) is announced on a broadcast channel, which is how live
//!   replication connections learn about cores opened after they started
//!   (corestore's `_injectIntoReplicationStreams`).
//!
//! Opening does file I/O while holding the cache's mutex: opens are short (a few small
//! reads) and serialising them is what keeps two opens of one core from racing.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::{read_name_file, CoreLocation, Corestore, StoreError, DEFAULT_NAME};
use crate::core::crypto::{discovery_key, KeyPair};
use crate::core::storage::Storage;
use crate::core::Feed;
use crate::protocol::driver::FeedSource;
use crate::protocol::replicate::SharedFeed;

/// Cores kept open by default before idle ones are closed (corestore's cache holds 1000
/// cores; each of ours may hold six file descriptors, so we stay lower).
pub const DEFAULT_MAX_OPEN: usize = 512;

/// Opens announced to live connections that have not read them yet. A connection that
/// falls further behind misses the announcement; the remote can still ask for the core
/// by discovery key.
const OPENED_CAPACITY: usize = 256;

struct Entry {
    feed: Arc<SharedFeed>,
    /// Tick of the last use (key into `State::order`).
    used: u64,
}

#[derive(Default)]
struct State {
    tick: u64,
    entries: HashMap<[u8; 32], Entry>,
    /// Last-use tick → discovery key, oldest first.
    order: BTreeMap<u64, [u8; 32]>,
    /// In-memory stores: the `name` "file" of each core created by name.
    names: HashMap<[u8; 32], Vec<u8>>,
}

impl State {
    fn touch(&mut self, dk: &[u8; 32]) -> Option<Arc<SharedFeed>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(dk)?;
        self.order.remove(&entry.used);
        entry.used = tick;
        self.order.insert(tick, *dk);
        Some(entry.feed.clone())
    }

    fn insert(&mut self, feed: Arc<SharedFeed>) {
        self.tick += 1;
        let dk = feed.discovery_key();
        if let Some(old) = self.entries.insert(
            dk,
            Entry {
                feed,
                used: self.tick,
            },
        ) {
            self.order.remove(&old.used);
        }
        self.order.insert(self.tick, dk);
    }

    /// Close least recently used cores nobody else holds until at most `max` are open.
    fn evict(&mut self, max: usize) -> usize {
        let excess = self.entries.len().saturating_sub(max);
        if excess == 0 {
            return 0;
        }
        let victims: Vec<(u64, [u8; 32])> = self
            .order
            .iter()
            .filter(|(_, dk)| {
                self.entries
                    .get(*dk)
                    .is_some_and(|e| Arc::strong_count(&e.feed) == 1)
            })
            .take(excess)
            .map(|(t, dk)| (*t, *dk))
            .collect();
        for (tick, dk) in &victims {
            self.order.remove(tick);
            // Dropping the last Arc closes the feed's files and releases its lock.
            self.entries.remove(dk);
        }
        victims.len()
    }
}

/// The shared part of a [`Corestore`]: open feeds, the open limit and the announcement
/// channel.
pub struct Cache {
    in_memory: bool,
    max_open: AtomicUsize,
    state: Mutex<State>,
    opened: broadcast::Sender<Arc<SharedFeed>>,
}

impl Cache {
    pub(super) fn new(in_memory: bool) -> Self {
        Cache {
            in_memory,
            max_open: AtomicUsize::new(DEFAULT_MAX_OPEN),
            state: Mutex::new(State::default()),
            opened: broadcast::channel(OPENED_CAPACITY).0,
        }
    }

    pub(super) fn in_memory(&self) -> bool {
        self.in_memory
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a map and an order kept consistent within each call; a panic in
        // another thread cannot leave them half-updated in a way that matters here.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cache a newly opened feed, close idle ones over the limit, announce it.
    fn admit(&self, st: &mut State, feed: Arc<SharedFeed>) {
        st.insert(feed.clone());
        if !self.in_memory {
            st.evict(self.max_open.load(Ordering::Relaxed));
        }
        // No receivers (no live connection) is fine.
        let _ = self.opened.send(feed);
    }
}

impl Corestore {
    /// Sets how many cores may stay open before idle ones are closed (at least 1).
    pub fn with_max_open(self, max_open: usize) -> Self {
        self.set_max_open(max_open);
        self
    }

    /// Changes the open-core limit; idle cores over it are closed now.
    pub fn set_max_open(&self, max_open: usize) {
        let max = max_open.max(1);
        self.cache.max_open.store(max, Ordering::Relaxed);
        if !self.cache.in_memory {
            self.cache.lock().evict(max);
        }
    }

    /// The open-core limit.
    pub fn max_open(&self) -> usize {
        self.cache.max_open.load(Ordering::Relaxed)
    }

    /// How many cores are open (cached) now.
    pub fn open_count(&self) -> usize {
        self.cache.lock().entries.len()
    }

    /// The cores open now, least recently used first.
    pub fn open_feeds(&self) -> Vec<Arc<SharedFeed>> {
        let st = self.cache.lock();
        st.order
            .values()
            .filter_map(|dk| st.entries.get(dk).map(|e| e.feed.clone()))
            .collect()
    }

    /// Closes every open core nobody else holds (releasing its files and lock); returns
    /// how many were closed. In-memory stores keep theirs.
    pub fn close_idle(&self) -> usize {
        if self.cache.in_memory {
            return 0;
        }
        self.cache.lock().evict(0)
    }

    /// Receives every core opened (or reopened) from now on.
    pub fn subscribe_opened(&self) -> broadcast::Receiver<Arc<SharedFeed>> {
        self.cache.opened.subscribe()
    }

    /// `store.get({ name })`: the writable core whose key pair derives from `name`.
    /// Records the name in the core's `name` file (never a `secret_key`) before the core
    /// writes anything, so the next open by key is writable again, here and in Node.
    pub fn get_by_name(&self, name: impl AsRef<[u8]>) -> Result<Arc<SharedFeed>, StoreError> {
        let name = name.as_ref();
        let loc = self.locate_by_name(name);
        let dk = loc.discovery_key();
        let mut st = self.cache.lock();
        if let Some(feed) = st.touch(&dk) {
            // Opened by key before (read-only if there was no name file yet): keep the one
            // feed, but record the name so the next open is writable.
            if self.cache.in_memory {
                st.names.entry(dk).or_insert_with(|| name.to_vec());
            } else if !feed.lock().feed.writable() && read_name_file(&loc.paths.dir)?.is_none() {
                self.write_name(&loc)?;
            }
            return Ok(feed);
        }
        if self.cache.in_memory {
            st.names.insert(dk, name.to_vec());
        } else {
            match read_name_file(&loc.paths.dir)? {
                Some(stored) if stored == name => {}
                // corestore: "Stored an incorrect name."
                Some(stored) => {
                    return Err(StoreError::NameMismatch {
                        path: loc.paths.name.clone(),
                        derived: hex::encode(self.keypair_for_name(&stored).discovery_key()),
                        expected: hex::encode(dk),
                    })
                }
                None => self.write_name(&loc)?,
            }
        }
        self.open_location(&mut st, loc)
    }

    /// `store.default()`: the core called "default" (a Hyperdrive's metadata core).
    pub fn default_feed(&self) -> Result<Arc<SharedFeed>, StoreError> {
        self.get_by_name(DEFAULT_NAME)
    }

    /// `store.get({ key })`: the core with public key `key`, created empty if this store
    /// has never seen it. Writable when its folder has a `name` file (the secret is
    /// re-derived from it; a name that derives another key is an error) or, for folders
    /// of older stores, a `secret_key` file; read-only otherwise.
    pub fn get_by_key(&self, key: &[u8; 32]) -> Result<Arc<SharedFeed>, StoreError> {
        let dk = discovery_key(key);
        let mut st = self.cache.lock();
        if let Some(feed) = st.touch(&dk) {
            return Ok(feed);
        }
        let loc = if self.cache.in_memory {
            match st.names.get(&dk).cloned() {
                Some(name) => self.locate_by_name(&name),
                None => self.locate_read_only(key)?,
            }
        } else {
            self.locate_by_key(key)?
        };
        self.open_location(&mut st, loc)
    }

    /// The core a remote asked for by discovery key, as corestore 5 answers a remote
    /// Open: an open core, else one whose folder has a readable 32-byte `key` file;
    /// `None` when this store does not hold it (the connection then refuses it).
    pub fn get_by_discovery_key(
        &self,
        dk: &[u8; 32],
    ) -> Result<Option<Arc<SharedFeed>>, StoreError> {
        let mut st = self.cache.lock();
        if let Some(feed) = st.touch(dk) {
            return Ok(Some(feed));
        }
        if self.cache.in_memory {
            return Ok(None);
        }
        let path = self.paths_for_discovery_key(dk).key;
        let mut bytes = Vec::with_capacity(32);
        match File::open(&path) {
            Ok(f) => f
                .take(32)
                .read_to_end(&mut bytes)
                .map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        // A short key file fails corestore's read too, which then refuses the core.
        let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            return Ok(None);
        };
        if discovery_key(&key) != *dk {
            return Err(StoreError::InvalidKey {
                key: hex::encode(key),
                reason: format!(
                    "stored in {} but its discovery key is not the folder's",
                    path.display()
                ),
            });
        }
        let loc = self.locate_by_key(&key)?;
        self.open_location(&mut st, loc).map(Some)
    }

    fn locate_read_only(&self, key: &[u8; 32]) -> Result<CoreLocation, StoreError> {
        let keypair = KeyPair::from_public(key).map_err(|e| StoreError::InvalidKey {
            key: hex::encode(key),
            reason: e.to_string(),
        })?;
        Ok(CoreLocation {
            paths: self.paths_for_discovery_key(&keypair.discovery_key()),
            keypair,
            name: None,
        })
    }

    /// Opens the feed at `loc` (never writing `secret_key`) and caches it.
    fn open_location(
        &self,
        st: &mut State,
        loc: CoreLocation,
    ) -> Result<Arc<SharedFeed>, StoreError> {
        let storage = if self.cache.in_memory {
            Storage::in_memory()
        } else {
            Storage::open_dir(&loc.paths.dir)?
        };
        let feed = Feed::from_storage_unpersisted_secret(storage, loc.keypair)?;
        let feed = SharedFeed::new(feed);
        self.cache.admit(st, feed.clone());
        Ok(feed)
    }
}

/// A corestore replicates every core it has open, answers remote Opens with the cores
/// it holds on disk, and adds cores opened later to live connections (protocol.md §10).
///
/// Note that a connection holds the feeds it replicates, so they stay open (and count
/// against the open limit without being closable) while it lives.
impl FeedSource for Corestore {
    fn feeds(&self) -> Vec<Arc<SharedFeed>> {
        self.open_feeds()
    }

    fn by_discovery_key(&self, discovery_key: &[u8; 32]) -> Option<Arc<SharedFeed>> {
        match self.get_by_discovery_key(discovery_key) {
            Ok(feed) => feed,
            Err(e) => {
                tracing::warn!(
                    discovery_key = %hex::encode(discovery_key),
                    error = %e,
                    "cannot open a core a peer asked for"
                );
                None
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<SharedFeed>> {
        self.subscribe_opened()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("core-{i}")).collect()
    }

    #[test]
    fn same_core_is_one_feed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::open(tmp.path()).unwrap();
        let a = store.default_feed().unwrap();
        let b = store.get_by_name("default").unwrap();
        let c = store.get_by_key(&a.key()).unwrap();
        let d = store
            .get_by_discovery_key(&a.discovery_key())
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c) && Arc::ptr_eq(&a, &d));
        assert_eq!(store.open_count(), 1);
        // A clone of the store shares the cache.
        assert!(Arc::ptr_eq(&a, &store.clone().default_feed().unwrap()));
    }

    #[test]
    fn idle_cores_close_and_held_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::open(tmp.path()).unwrap().with_max_open(4);
        let held: Vec<_> = names(6)
            .iter()
            .map(|n| store.get_by_name(n).unwrap())
            .collect();
        // Everything is held: nothing may be closed, the limit is exceeded.
        assert_eq!(store.open_count(), 6);
        for (i, f) in held.iter().enumerate() {
            f.append(format!("block {i}").as_bytes()).unwrap();
        }
        let first_key = held[0].key();
        drop(held);
        // The next open closes the least recently used idle cores down to the limit.
        let extra = store.get_by_name("extra").unwrap();
        assert_eq!(store.open_count(), 4);
        assert!(store.open_feeds().iter().any(|f| Arc::ptr_eq(f, &extra)));
        // core-0 was closed; it reopens from disk, writable, with its block.
        assert!(!store.open_feeds().iter().any(|f| f.key() == first_key));
        let again = store.get_by_key(&first_key).unwrap();
        let mut st = again.lock();
        assert!(st.feed.writable());
        assert_eq!(st.feed.get(0).unwrap(), b"block 0");
        drop(st);
        drop((again, extra));
        assert_eq!(store.close_idle(), 4);
        assert_eq!(store.open_count(), 0);
    }

    #[test]
    fn no_secret_key_file_and_name_file_written() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::open(tmp.path()).unwrap();
        let feed = store.get_by_name("x").unwrap();
        feed.append(b"hello").unwrap();
        let loc = store.locate_by_name(b"x");
        let mut files: Vec<String> = std::fs::read_dir(&loc.paths.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["bitfield", "data", "key", "name", "signatures", "tree"]
        );
        assert_eq!(read_name_file(&loc.paths.dir).unwrap().unwrap(), b"x");
    }

    #[test]
    fn discovery_key_opens_only_stored_cores() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::open(tmp.path()).unwrap();
        let other = store.locate_by_name(b"never-opened");
        assert!(store
            .get_by_discovery_key(&other.discovery_key())
            .unwrap()
            .is_none());
        assert!(
            !other.paths.dir.exists(),
            "a refused lookup creates nothing"
        );

        let key = store.get_by_name("y").unwrap().key();
        assert_eq!(store.close_idle(), 1);
        let f = store
            .get_by_discovery_key(&discovery_key(&key))
            .unwrap()
            .expect("stored core");
        assert_eq!(f.key(), key);
        assert!(f.lock().feed.writable());

        // A key file holding some other key is refused with an error.
        let loc = store.locate_by_name(b"z");
        std::fs::create_dir_all(&loc.paths.dir).unwrap();
        std::fs::write(&loc.paths.key, key).unwrap();
        assert!(matches!(
            store.get_by_discovery_key(&loc.discovery_key()),
            Err(StoreError::InvalidKey { .. })
        ));
        // A short key file: not held.
        std::fs::write(&loc.paths.key, [1u8; 5]).unwrap();
        assert!(store
            .get_by_discovery_key(&loc.discovery_key())
            .unwrap()
            .is_none());
    }

    #[test]
    fn known_by_key_then_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::open(tmp.path()).unwrap();
        let key = store.locate_by_name(b"late").keypair.public_bytes();
        let ro = store.get_by_key(&key).unwrap();
        assert!(!ro.lock().feed.writable());
        // The open feed stays the one feed, but the name is recorded...
        let named = store.get_by_name("late").unwrap();
        assert!(Arc::ptr_eq(&ro, &named));
        drop((ro, named));
        assert_eq!(store.close_idle(), 1);
        // ...so the next open is writable.
        assert!(store.get_by_key(&key).unwrap().lock().feed.writable());
    }

    #[test]
    fn a_wrong_name_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::open(tmp.path()).unwrap();
        let loc = store.locate_by_name(b"a");
        super::super::write_name_file(&loc.paths.dir, b"b").unwrap();
        assert!(matches!(
            store.get_by_name("a"),
            Err(StoreError::NameMismatch { .. })
        ));
    }

    #[test]
    fn in_memory_store() {
        let store = Corestore::in_memory([3u8; 32]).with_max_open(1);
        assert!(store.is_in_memory());
        let d = store.default_feed().unwrap();
        d.append(b"a").unwrap();
        let key = d.key();
        drop(d);
        for n in names(5) {
            store.get_by_name(&n).unwrap();
        }
        // Nothing is closed in memory; by key it is the same writable core.
        assert_eq!(store.open_count(), 6);
        let d = store.get_by_key(&key).unwrap();
        assert!(d.lock().feed.writable());
        assert_eq!(d.lock().feed.get(0).unwrap(), b"a");
        assert_eq!(
            d.key(),
            Corestore::with_master_key("/unused", [3u8; 32])
                .locate_default()
                .keypair
                .public_bytes()
        );
        // Unknown keys: read-only and empty; unknown discovery keys: not held.
        let foreign = crate::store::derive_keypair(&[5u8; 32], b"x").public_bytes();
        let ro = store.get_by_key(&foreign).unwrap();
        assert!(!ro.lock().feed.writable());
        assert_eq!(ro.len(), 0);
        let unknown = store.locate_by_name(b"nope").discovery_key();
        assert!(store.get_by_discovery_key(&unknown).unwrap().is_none());
    }

    #[tokio::test]
    async fn opens_are_announced() {
        let store = Corestore::in_memory([4u8; 32]);
        let mut rx = FeedSource::subscribe(&store);
        let f = store.get_by_name("n").unwrap();
        let got = rx.recv().await.unwrap();
        assert!(Arc::ptr_eq(&f, &got));
        // A cache hit is not a new open.
        store.get_by_name("n").unwrap();
        assert!(rx.try_recv().is_err());
        assert_eq!(FeedSource::feeds(&store).len(), 1);
    }
}
