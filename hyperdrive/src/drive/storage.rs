//! Where a drive's feeds come from. The drive asks a [`FeedProvider`] for feeds by
//! derivation name (a new writable drive and its content feed) or by public key (a
//! mounted, remote or reopened drive); the provider decides whether they live in
//! memory, in a corestore folder, or are replicated. Every feed is a
//! [`SharedFeed`] so connections can serve and fetch its blocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::core::{Feed, KeyPair};
use crate::protocol::replicate::SharedFeed;
use crate::store::derive_keypair;

use super::DriveError;

/// Opens feeds for drives.
pub trait FeedProvider: Send + Sync + 'static {
    /// The feed derived from `name` (writable; created if new).
    fn feed_by_name(&self, name: &str) -> Result<Arc<SharedFeed>, DriveError>;
    /// The feed with public key `key` (writable only if the provider holds its secret).
    fn feed_by_key(&self, key: &[u8; 32]) -> Result<Arc<SharedFeed>, DriveError>;
}

/// Feeds held in memory, keys derived from a master key like corestore 5 does, so a
/// drive built here has the same keys (and bytes) as one the reference builds in a
/// corestore with the same master key.
pub struct MemoryProvider {
    master_key: [u8; 32],
    feeds: Mutex<HashMap<[u8; 32], Arc<SharedFeed>>>,
}

impl MemoryProvider {
    /// A provider deriving keys from `master_key`.
    pub fn new(master_key: [u8; 32]) -> Self {
        MemoryProvider {
            master_key,
            feeds: Mutex::new(HashMap::new()),
        }
    }

    /// Adds an existing feed (e.g. a read-only replica) so `feed_by_key` finds it.
    pub fn insert(&self, feed: Arc<SharedFeed>) {
        self.lock().insert(feed.key(), feed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<SharedFeed>>> {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FeedProvider for MemoryProvider {
    fn feed_by_name(&self, name: &str) -> Result<Arc<SharedFeed>, DriveError> {
        let kp = derive_keypair(&self.master_key, name.as_bytes());
        let key = kp.public_bytes();
        let mut feeds = self.lock();
        Ok(feeds
            .entry(key)
            .or_insert_with(|| SharedFeed::new(Feed::in_memory(kp)))
            .clone())
    }

    fn feed_by_key(&self, key: &[u8; 32]) -> Result<Arc<SharedFeed>, DriveError> {
        let mut feeds = self.lock();
        if let Some(f) = feeds.get(key) {
            return Ok(f.clone());
        }
        // An unknown key: an empty read-only feed whose blocks can only arrive by
        // replication.
        let kp = KeyPair::from_public(key).map_err(|e| DriveError::Storage {
            path: hex::encode(key),
            reason: e.to_string(),
        })?;
        let feed = SharedFeed::new(Feed::in_memory(kp));
        feeds.insert(*key, feed.clone());
        Ok(feed)
    }
}

/// The trie store drives use: a shared feed with bounded waits for missing blocks.
pub type FeedTrieStore = crate::trie::feed_store::FeedStore;

/// Feeds in a corestore-5 folder on disk (the layout the reference's `Corestore(dir)`
/// uses): cores created by name get a `name` file so either implementation re-derives
/// their secret key on reopening. Open feeds are cached by key, so each core folder is
/// opened once per provider.
pub struct DirProvider {
    store: crate::store::Corestore,
    read_only: bool,
    feeds: Mutex<HashMap<[u8; 32], Arc<SharedFeed>>>,
}

impl DirProvider {
    /// A provider over `store`.
    pub fn new(store: crate::store::Corestore) -> Self {
        DirProvider {
            store,
            read_only: false,
            feeds: Mutex::new(HashMap::new()),
        }
    }

    /// A provider that never writes to the folder: feeds open without their secret
    /// keys and nothing can be created by name.
    pub fn read_only(store: crate::store::Corestore) -> Self {
        DirProvider {
            read_only: true,
            ..DirProvider::new(store)
        }
    }

    fn open(
        &self,
        mut loc: crate::store::CoreLocation,
        write_name: bool,
    ) -> Result<Arc<SharedFeed>, DriveError> {
        let key = loc.keypair.public_bytes();
        if self.read_only {
            if !loc.paths.key.exists() {
                return Err(DriveError::ReadOnly {
                    path: loc.paths.dir.display().to_string(),
                });
            }
            loc.keypair.secret = None;
        }
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = feeds.get(&key) {
            return Ok(f.clone());
        }
        let err = |reason: String| DriveError::Storage {
            path: loc.paths.dir.display().to_string(),
            reason,
        };
        if write_name && !loc.paths.key.exists() {
            self.store
                .write_name(&loc)
                .map_err(|e| err(e.to_string()))?;
        }
        let feed = Feed::open_with_keypair(&loc.paths.dir, loc.keypair.clone())
            .map_err(|e| err(e.to_string()))?;
        let shared = SharedFeed::new(feed);
        feeds.insert(key, shared.clone());
        Ok(shared)
    }
}

impl FeedProvider for DirProvider {
    fn feed_by_name(&self, name: &str) -> Result<Arc<SharedFeed>, DriveError> {
        let loc = self.store.locate_by_name(name.as_bytes());
        self.open(loc, true)
    }

    fn feed_by_key(&self, key: &[u8; 32]) -> Result<Arc<SharedFeed>, DriveError> {
        let loc = self
            .store
            .locate_by_key(key)
            .map_err(|e| DriveError::Storage {
                path: hex::encode(key),
                reason: e.to_string(),
            })?;
        self.open(loc, false)
    }
}

fn store_err(what: &str, e: crate::store::StoreError) -> DriveError {
    DriveError::Storage {
        path: what.to_string(),
        reason: e.to_string(),
    }
}

/// The corestore (on disk or in memory) hands out the feeds; its cache makes every
/// drive, mount and connection share one [`SharedFeed`] per core.
impl FeedProvider for crate::store::Corestore {
    fn feed_by_name(&self, name: &str) -> Result<Arc<SharedFeed>, DriveError> {
        self.get_by_name(name).map_err(|e| store_err(name, e))
    }

    fn feed_by_key(&self, key: &[u8; 32]) -> Result<Arc<SharedFeed>, DriveError> {
        self.get_by_key(key)
            .map_err(|e| store_err(&hex::encode(key), e))
    }
}
