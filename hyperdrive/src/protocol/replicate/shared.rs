//! A feed shared between local readers/writers and every connection that replicates
//! it. Readers `get` blocks and wait, bounded in time, for missing ones; connections
//! are woken to fetch them and to announce what is new.
//!
//! The lock is a plain mutex held only for in-memory work and short positional file
//! I/O; it is never held across an `.await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::core::{CoreError, Feed};

use super::extension::{ExtensionHandler, Extensions};
use super::wants::Wants;

/// How many "new blocks" records are kept for connections to announce. A connection
/// that falls further behind re-sends its whole bitfield instead.
const LOG_CAPACITY: usize = 4096;

/// Blocks that became available locally: `start..start+length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    pub seq: u64,
    pub start: u64,
    pub length: u64,
}

/// Errors a reader of a shared feed sees.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("block {index} of feed {key} did not arrive within {ms} ms (no peer served it)")]
    Timeout { key: String, index: u64, ms: u64 },
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// The state behind the lock.
pub struct FeedState {
    pub feed: Feed,
    pub wants: Wants,
    log: VecDeque<Announcement>,
    next_seq: u64,
}

impl FeedState {
    /// Record that `start..start+length` is now held (appended or downloaded).
    pub fn record(&mut self, start: u64, length: u64) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(Announcement {
            seq: self.next_seq,
            start,
            length,
        });
        self.next_seq += 1;
    }

    /// Announcements with `seq >= from`, or `None` if some were already dropped (the
    /// caller must then re-send everything it holds).
    pub fn announcements_since(&self, from: u64) -> Option<Vec<Announcement>> {
        // Sequence numbers in the log are consecutive: index straight to `from`
        // instead of filtering up to LOG_CAPACITY entries on every wake-up.
        match self.log.front() {
            Some(first) if first.seq > from => None,
            Some(first) => {
                let skip = usize::try_from(from - first.seq).unwrap_or(usize::MAX);
                Some(
                    self.log
                        .range(skip.min(self.log.len())..)
                        .copied()
                        .collect(),
                )
            }
            None => Some(Vec::new()),
        }
    }

    /// The sequence number the next announcement will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// One feed, shareable across tasks.
pub struct SharedFeed {
    key: [u8; 32],
    discovery_key: [u8; 32],
    state: Mutex<FeedState>,
    /// Woken whenever blocks arrive or the length changes.
    data: Notify,
    /// Connection tasks to wake when something is wanted or new.
    subscribers: Mutex<Vec<mpsc::Sender<()>>>,
    /// Feed-level extensions announced on every channel of this feed.
    extensions: Mutex<Extensions>,
}

impl SharedFeed {
    pub fn new(feed: Feed) -> Arc<Self> {
        Arc::new(SharedFeed {
            key: feed.key(),
            discovery_key: feed.discovery_key(),
            state: Mutex::new(FeedState {
                feed,
                wants: Wants::new(),
                log: VecDeque::new(),
                next_seq: 0,
            }),
            data: Notify::new(),
            subscribers: Mutex::new(Vec::new()),
            extensions: Mutex::new(Extensions::default()),
        })
    }

    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    pub fn discovery_key(&self) -> [u8; 32] {
        self.discovery_key
    }

    /// Lock the state. Poisoning is recovered: the feed's own invariants hold between
    /// calls, so a panic elsewhere does not make the data unsafe to read.
    pub fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> u64 {
        self.lock().feed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn byte_len(&self) -> u64 {
        self.lock().feed.byte_len()
    }

    pub fn has(&self, index: u64) -> bool {
        self.lock().feed.has(index)
    }

    /// Register a feed-level extension handler under `name` (replacing one of the
    /// same name). Connections announce the new list in `Options`.
    pub fn register_extension(&self, name: &str, handler: Arc<dyn ExtensionHandler>) {
        self.extensions().register(name, handler);
        self.wake_peers();
    }

    /// The feed's extensions (lock held briefly; never across an `.await`).
    pub fn extensions(&self) -> MutexGuard<'_, Extensions> {
        self.extensions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages received and sent under extension `name` so far.
    pub fn extension_counts(&self, name: &str) -> (u64, u64) {
        self.extensions().counts(name)
    }

    /// Register a connection task's wake-up channel.
    pub fn subscribe(&self, tx: mpsc::Sender<()>) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| !s.is_closed());
        subs.push(tx);
    }

    /// Wake every connection task (something is wanted or new). Never blocks: a task
    /// that already has a wake-up pending needs no second one.
    pub fn wake_peers(&self) {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            let _ = s.try_send(());
        }
    }

    /// Whether any connection currently replicates this feed.
    pub fn peer_count(&self) -> usize {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.iter().filter(|s| !s.is_closed()).count()
    }

    /// Blocks arrived or the length changed: wake readers and connections.
    pub fn notify_data(&self) {
        self.data.notify_waiters();
        self.wake_peers();
    }

    /// Append blocks (one signature) and announce them to peers.
    pub fn append_batch<B: AsRef<[u8]>>(&self, blocks: &[B]) -> Result<u64, CoreError> {
        let len = {
            let mut st = self.lock();
            let start = st.feed.len();
            let len = st.feed.append_batch(blocks)?;
            st.record(start, len - start);
            len
        };
        self.notify_data();
        Ok(len)
    }

    pub fn append(&self, block: &[u8]) -> Result<u64, CoreError> {
        self.append_batch(&[block])
    }

    /// Read block `index`, fetching it from peers if it is missing; waits at most
    /// `timeout`.
    pub async fn get(&self, index: u64, timeout: Duration) -> Result<Vec<u8>, FetchError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut registered = false;
        let result = loop {
            let notified = self.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.feed.has(index) {
                    break st.feed.get(index).map_err(FetchError::from);
                }
                if !registered {
                    st.wants.wait(index);
                    registered = true;
                }
            }
            self.wake_peers();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break Err(FetchError::Timeout {
                    key: hex::encode(self.key),
                    index,
                    ms: timeout.as_millis() as u64,
                });
            }
        };
        if registered {
            self.lock().wants.unwait(index);
        }
        result
    }

    /// Wait until the feed has at least `length` blocks, or the timeout passes.
    /// Returns the length reached.
    pub async fn wait_for_length(&self, length: u64, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let len = self.len();
            if len >= length {
                return len;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len();
            }
        }
    }

    /// Select `start..end` (or everything from `start`, live, if `end` is None) for
    /// download; returns the selection id.
    pub fn download(&self, start: u64, end: Option<u64>) -> u64 {
        let id = self.lock().wants.select(start, end);
        self.wake_peers();
        id
    }

    /// Wait until the bounded selection `id` is complete, or the timeout passes.
    /// Returns whether it completed.
    pub async fn downloaded(&self, id: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                let FeedState { feed, wants, .. } = &mut *st;
                wants.prune(feed);
                if wants.is_done(id, feed) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Ask connections to learn new lengths as soon as peers announce them (a sparse
    /// live reader wants this; a full download does it anyway).
    pub fn set_track_length(&self, on: bool) {
        self.lock().wants.track_length = on;
        self.wake_peers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::KeyPair;

    #[test]
    fn announcements_since_indexes_the_log() {
        let shared = SharedFeed::new(Feed::in_memory(KeyPair::generate()));
        let mut st = shared.lock();
        assert_eq!(st.announcements_since(0), Some(vec![]));
        for i in 0..(LOG_CAPACITY as u64 + 10) {
            st.record(i * 2, 1);
        }
        // The first 10 records were dropped.
        assert_eq!(st.announcements_since(9), None);
        let all = st.announcements_since(10).expect("kept");
        assert_eq!(all.len(), LOG_CAPACITY);
        assert_eq!((all[0].seq, all[0].start), (10, 20));
        let tail = st
            .announcements_since(LOG_CAPACITY as u64 + 8)
            .expect("kept");
        assert_eq!(
            tail.iter().map(|a| a.seq).collect::<Vec<_>>(),
            vec![LOG_CAPACITY as u64 + 8, LOG_CAPACITY as u64 + 9]
        );
        assert_eq!(st.announcements_since(st.next_seq()), Some(vec![]));
        assert_eq!(st.announcements_since(st.next_seq() + 5), Some(vec![]));
    }
}
