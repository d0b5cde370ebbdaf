//! A [`TrieStore`] over a shared hypercore feed: how a hypertrie (a drive's metadata)
//! reads and writes a real feed that replication connections fill in the background.
//!
//! Reads of blocks that are not local wait for a peer, bounded by a read timeout, so
//! a lookup in a sparse remote trie fetches just the nodes it walks. A write appends all
//! blocks of one trie operation as one batch, so they get a single signature, as
//! hypertrie's batch append does.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::TrieStore;
use super::TrieError;
use crate::core::CoreError;
use crate::protocol::replicate::{FetchError, SharedFeed};

/// How long a read waits for a missing block by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Sequential read-ahead for a sparse replica: one round trip per block is what makes
/// reading many small files of a remote drive slow, and their blocks (a file's trie node,
/// its content) are usually adjacent to the next file's. When reads walk forward through
/// a feed, the blocks ahead are selected for download, in a window that doubles while the
/// walk goes on; scattered reads (one lookup, one stat) never trigger it, so they still
/// fetch only the blocks they touch.
#[derive(Debug, Default)]
pub struct ReadAhead {
    state: Mutex<AheadState>,
}

#[derive(Debug, Default)]
struct AheadState {
    /// Highest block of the current forward walk.
    last: u64,
    /// Forward steps in a row.
    run: u32,
    /// Reads off the walk since its last forward step.
    off: u32,
    /// The last read off the walk, and how many such reads walked forward in a row.
    shadow_last: u64,
    shadow_run: u32,
    /// Blocks below this are already selected.
    selected_until: u64,
    /// Blocks recently requested by [`TrieStore::prefetch`] (a listing): their reads
    /// are not a sequential walk even when they look like one.
    prefetched: std::collections::VecDeque<u64>,
}

impl ReadAhead {
    /// Forward steps before read-ahead starts.
    const TRIGGER: u32 = 4;
    /// A read at most this far past the walk's last block continues it.
    const STRIDE: u64 = 16;
    /// Reads elsewhere tolerated before the walk is forgotten (lookups interleave reads
    /// of a few shared upper trie nodes with the walk).
    const PATIENCE: u32 = 8;
    const MIN_WINDOW: u64 = 16;
    /// How many prefetched blocks are remembered.
    const PREFETCH_MEMORY: usize = 512;

    /// Remembers blocks a listing asked for (see [`AheadState::prefetched`]).
    fn prefetching(&self, seqs: &[u64]) {
        let mut a = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &s in seqs {
            if a.prefetched.len() == Self::PREFETCH_MEMORY {
                a.prefetched.pop_front();
            }
            a.prefetched.push_back(s);
        }
    }
    const MAX_WINDOW: u64 = 1024;

    /// Notes a read of block `seq` of `feed`; selects blocks ahead if this continues a
    /// forward walk. Does nothing for a writable feed (it has every block). Blocks a
    /// listing prefetched do not count: fetching them was no walk.
    pub fn note(&self, feed: &SharedFeed, seq: u64) {
        self.note_until(feed, seq, u64::MAX)
    }

    /// As [`note`](Self::note), selecting nothing at or past block `limit` (a content
    /// feed bounds read-ahead in bytes: small files may be followed by huge blocks).
    pub fn note_until(&self, feed: &SharedFeed, seq: u64, limit: u64) {
        let range = {
            let mut a = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if a.prefetched.contains(&seq) {
                return;
            }
            if seq > a.last && seq <= a.last + Self::STRIDE {
                a.last = seq;
                a.run = a.run.saturating_add(1);
                a.off = 0;
            } else if seq == a.last {
                return;
            } else {
                // Off the walk: maybe the start of another one (followed in the shadow
                // fields), which replaces it once it is a walk in its own right.
                a.off += 1;
                a.shadow_run = if seq > a.shadow_last && seq <= a.shadow_last + Self::STRIDE {
                    a.shadow_run.saturating_add(1)
                } else {
                    1
                };
                a.shadow_last = seq;
                if a.shadow_run < Self::TRIGGER && a.off <= Self::PATIENCE {
                    return;
                }
                a.last = seq;
                a.run = a.shadow_run;
                a.off = 0;
                a.shadow_run = 0;
            }
            if a.run < Self::TRIGGER {
                return;
            }
            let window =
                (Self::MIN_WINDOW << ((a.run - Self::TRIGGER) / 4).min(10)).min(Self::MAX_WINDOW);
            // Top up when the walk is within half a window of the selected end.
            if seq + window / 2 < a.selected_until {
                return;
            }
            let start = a.selected_until.max(seq + 1);
            let end = (seq + 1 + window).min(limit);
            if end <= start {
                return;
            }
            a.selected_until = end;
            (start, end)
        };
        let (start, end) = range;
        {
            let mut st = feed.lock();
            if st.feed.writable() {
                return;
            }
            let end = end.min(st.feed.len());
            if start >= end {
                return;
            }
            let crate::protocol::replicate::shared::FeedState { feed: f, wants, .. } = &mut *st;
            wants.prune(f);
            if f.bitfield().count_data(start, end) == end - start {
                return;
            }
            wants.select(start, Some(end));
        }
        feed.wake_peers();
    }
}

/// A trie's blocks in a [`SharedFeed`]. Cheap to clone (clones share the feed and the
/// read-ahead state).
#[derive(Clone)]
pub struct FeedStore {
    feed: Arc<SharedFeed>,
    timeout: Duration,
    ahead: Arc<ReadAhead>,
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
        FeedStore {
            feed,
            timeout,
            ahead: Arc::default(),
        }
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

    fn prefetch(&self, seqs: &[u64]) {
        self.ahead.prefetching(seqs);
        {
            let mut st = self.feed.lock();
            if st.feed.writable() {
                return;
            }
            let crate::protocol::replicate::shared::FeedState { feed, wants, .. } = &mut *st;
            wants.prune(feed);
            let len = feed.len();
            // Runs of consecutive seqs become one selection each.
            let mut i = 0;
            while i < seqs.len() {
                let start = seqs[i];
                let mut end = start + 1;
                while i + 1 < seqs.len() && seqs[i + 1] == end {
                    end += 1;
                    i += 1;
                }
                i += 1;
                let end = end.min(len);
                if start < end && feed.bitfield().count_data(start, end) < end - start {
                    wants.select(start, Some(end));
                }
            }
        }
        self.feed.wake_peers();
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
        let ahead = self.ahead.clone();
        async move {
            // Only the writer extends its own feed: a block past its end never arrives.
            let (writable, len) = {
                let st = feed.lock();
                (st.feed.writable(), st.feed.len())
            };
            if writable && seq >= len {
                return Err(TrieError::BlockMissing { seq });
            }
            if !writable {
                ahead.note(&feed, seq);
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

    /// A read-only feed of `len` blocks known only by length (as a sparse replica).
    fn remote_feed(len: u64) -> Arc<SharedFeed> {
        let kp = KeyPair::generate();
        let mut src = Feed::in_memory(kp.clone());
        for i in 0..len {
            src.append(&[i as u8]).unwrap();
        }
        let ro = KeyPair::from_public(&kp.public_bytes()).unwrap();
        let mut dst = Feed::in_memory(ro);
        // The last block with its proof makes the length known without the other blocks.
        let proof = src
            .proof(len - 1, 0, false, &mut crate::core::RemoteTree::default())
            .unwrap()
            .unwrap();
        let value = src.get(len - 1).unwrap();
        dst.verify_and_put(Some(&value), &proof).unwrap();
        SharedFeed::new(dst)
    }

    fn selected(feed: &SharedFeed) -> Vec<(u64, Option<u64>)> {
        let st = feed.lock();
        st.wants
            .selections()
            .iter()
            .map(|s| (s.start, s.end))
            .collect()
    }

    #[test]
    fn read_ahead_follows_forward_walks_only() {
        let feed = remote_feed(1000);
        assert_eq!(feed.len(), 1000);
        let ra = ReadAhead::default();
        // Scattered reads (a lookup) select nothing.
        for seq in [900, 17, 512, 3, 640, 77] {
            ra.note(&feed, seq);
        }
        assert!(selected(&feed).is_empty());
        // A forward walk starts read-ahead after a few steps...
        for seq in 100..104 {
            ra.note(&feed, seq);
        }
        assert_eq!(
            selected(&feed),
            vec![(104, Some(104 + ReadAhead::MIN_WINDOW))]
        );
        // ...and tops it up, with a growing window, while it goes on.
        for seq in 104..140 {
            ra.note(&feed, seq);
        }
        let sel = selected(&feed);
        assert!(sel.len() > 1, "{sel:?}");
        let end = sel.iter().filter_map(|s| s.1).max().unwrap();
        assert!(end > 140 + ReadAhead::MIN_WINDOW, "selected up to {end}");
        assert!(end <= 1000);
        // Blocks a listing prefetched never count as a walk.
        let feed2 = remote_feed(1000);
        let store = FeedStore::new(feed2.clone());
        store.prefetch(&[10, 11, 12, 13, 14, 15, 20]);
        assert_eq!(selected(&feed2), vec![(10, Some(16)), (20, Some(21))]);
        for seq in 10..16 {
            store.ahead.note(&feed2, seq);
        }
        assert_eq!(
            selected(&feed2).len(),
            2,
            "no read-ahead from prefetched reads"
        );
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
