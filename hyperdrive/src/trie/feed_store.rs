//! A [`TrieStore`] over a shared hypercore feed: how a hypertrie (a drive's metadata)
//! reads and writes a real feed that replication connections fill in the background.
//!
//! Reads of blocks that are not local wait for a peer, bounded by a read timeout, so
//! a lookup in a sparse remote trie fetches just the nodes it walks. A write appends all
//! blocks of one trie operation as one batch, so they get a single signature, as
//! hypertrie's batch append does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::store::TrieStore;
use super::TrieError;
use crate::core::CoreError;
use crate::protocol::replicate::{FetchError, SharedFeed};

/// How long a read waits for a missing block by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A trie's blocks in a [`SharedFeed`]. Cheap to clone (clones share the feed).
#[derive(Clone)]
pub struct FeedStore {
    feed: Arc<SharedFeed>,
    timeout: Duration,
}

impl std::fmt::Debug for FeedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedStore")
            .field("key", &hex::encode(self.feed.key()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl FeedStore {
    /// A store reading with [`DEFAULT_READ_TIMEOUT`].
    pub fn new(feed: Arc<SharedFeed>) -> Self {
        Self::with_timeout(feed, DEFAULT_READ_TIMEOUT)
    }

    /// A store whose reads of missing blocks give up after `timeout`.
    pub fn with_timeout(feed: Arc<SharedFeed>, timeout: Duration) -> Self {
        FeedStore { feed, timeout }
    }

    /// The feed.
    pub fn feed(&self) -> &Arc<SharedFeed> {
        &self.feed
    }

    /// The read timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

fn core_error(seq: u64, e: CoreError) -> TrieError {
    match e {
        CoreError::BlockMissing { index } => TrieError::BlockMissing { seq: index },
        CoreError::NotWritable => TrieError::NotWritable,
        other => TrieError::Store(format!("block {seq}: {other}")),
    }
}

fn fetch_error(seq: u64, e: FetchError) -> TrieError {
    match e {
        FetchError::Timeout { index, ms, .. } => TrieError::Timeout { seq: index, ms },
        FetchError::Core(e) => core_error(seq, e),
    }
}

impl TrieStore for FeedStore {
    fn len(&self) -> u64 {
        self.feed.len()
    }

    fn has(&self, seq: u64) -> bool {
        self.feed.has(seq)
    }

    fn writable(&self) -> bool {
        self.feed.lock().feed.writable()
    }

    fn get(&self, seq: u64) -> impl Future<Output = Result<Vec<u8>, TrieError>> + Send {
        let feed = self.feed.clone();
        let timeout = self.timeout;
        async move {
            // Only the writer extends its own feed: a block past its end never arrives.
            let (writable, len) = {
                let st = feed.lock();
                (st.feed.writable(), st.feed.len())
            };
            if writable && seq >= len {
                return Err(TrieError::BlockMissing { seq });
            }
            feed.get(seq, timeout)
                .await
                .map_err(|e| fetch_error(seq, e))
        }
    }

    fn append(&self, blocks: Vec<Vec<u8>>) -> impl Future<Output = Result<u64, TrieError>> + Send {
        let n = blocks.len() as u64;
        let res = if n == 0 {
            Ok(self.feed.len())
        } else {
            // `append_batch` holds the feed's lock for the whole write, so the new length
            // minus our blocks is where ours start even with other writers around.
            self.feed
                .append_batch(&blocks)
                .map(|len| len - n)
                .map_err(|e| core_error(self.feed.len(), e))
        };
        std::future::ready(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Feed, KeyPair};
    use crate::trie::{Trie, TrieOptions};

    #[tokio::test]
    async fn trie_on_a_feed_signs_each_write_once() {
        let feed = SharedFeed::new(Feed::in_memory(KeyPair::generate()));
        let store = FeedStore::new(feed.clone());
        assert!(store.writable());
        let trie = Trie::open(store.clone(), TrieOptions::default())
            .await
            .unwrap();
        assert_eq!(feed.len(), 1, "header block");
        trie.put("a", b"1").await.unwrap();
        trie.put("b/c", b"2").await.unwrap();
        assert_eq!(feed.len(), 3);
        let node = trie.get("b/c").await.unwrap().unwrap();
        assert_eq!(node.value.as_deref(), Some(&b"2"[..]));

        // A batch of blocks is one append: one signature for the new length only.
        let first = store.append(vec![b"x".to_vec(), b"y".to_vec()]).await;
        assert_eq!(first, Ok(3));
        {
            let mut st = feed.lock();
            assert_eq!(st.feed.len(), 5);
            // No signature for length 4 (slot 3): the next one is for length 5.
            assert_eq!(st.feed.signature(3).unwrap().map(|(slot, _)| slot), Some(4));
        }
        assert_eq!(store.append(Vec::new()).await, Ok(5));
        assert_eq!(
            store.get(9).await,
            Err(TrieError::BlockMissing { seq: 9 }),
            "a writer does not wait for its own future blocks"
        );
        assert_eq!(store.get(4).await.unwrap(), b"y");
    }

    #[tokio::test]
    async fn read_only_feed_times_out_and_refuses_writes() {
        let kp = KeyPair::generate();
        let ro = KeyPair::from_public(&kp.public_bytes()).unwrap();
        let feed = SharedFeed::new(Feed::in_memory(ro));
        let store = FeedStore::with_timeout(feed, Duration::from_millis(50));
        assert!(!store.writable());
        assert!(!store.has(0));
        assert_eq!(
            store.get(0).await,
            Err(TrieError::Timeout { seq: 0, ms: 50 })
        );
        assert_eq!(
            store.append(vec![b"z".to_vec()]).await,
            Err(TrieError::NotWritable)
        );
        // Opening a trie on an empty read-only feed writes nothing.
        let trie = Trie::open(store.clone(), TrieOptions::default())
            .await
            .unwrap();
        assert_eq!(trie.version(), 0);
    }
}
