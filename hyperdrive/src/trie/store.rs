//! Where a trie's blocks live. The trie only needs to read blocks by index (possibly
//! waiting for the network), ask whether a block is already local, and append.
//!
//! Design: a small trait with `impl Future` methods so a remote, sparse feed can make
//! `get` wait for a download while the in-memory store answers at once. `append` takes
//! all blocks of one write (a put is one block, a batch several) so the feed can sign
//! them together, and returns the index of the first.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::node::Node;
use super::TrieError;

/// Block storage for a trie: one hypercore feed.
pub trait TrieStore: Send + Sync + 'static {
    /// Feed length (number of blocks); the trie's live version.
    fn len(&self) -> u64;

    /// Whether the feed has no blocks yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether block `seq` can be read without waiting for the network.
    fn has(&self, seq: u64) -> bool;

    /// Whether this feed can append (we hold its secret key).
    fn writable(&self) -> bool;

    /// Reads block `seq`; may wait for the network on a sparse feed.
    fn get(&self, seq: u64) -> impl Future<Output = Result<Vec<u8>, TrieError>> + Send;

    /// Appends `blocks` in order as one write; returns the index of the first.
    fn append(&self, blocks: Vec<Vec<u8>>) -> impl Future<Output = Result<u64, TrieError>> + Send;

    /// Hints that blocks `seqs` (ascending, none local) are about to be read one after
    /// another, so a sparse feed can request them all in one round trip instead of one
    /// per `get`. Local stores ignore it.
    fn prefetch(&self, seqs: &[u64]) {
        let _ = seqs;
    }
}

/// An in-memory, always-writable feed for tests and scratch tries.
#[derive(Clone, Default)]
pub struct MemoryStore {
    blocks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store pre-filled with `blocks` (e.g. a feed dumped by the reference).
    pub fn from_blocks(blocks: Vec<Vec<u8>>) -> Self {
        MemoryStore {
            blocks: Arc::new(Mutex::new(blocks)),
        }
    }

    /// A copy of all blocks.
    pub fn blocks(&self) -> Vec<Vec<u8>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A poisoned lock only means another thread panicked mid-push; the Vec is intact.
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TrieStore for MemoryStore {
    fn len(&self) -> u64 {
        self.lock().len() as u64
    }

    fn has(&self, seq: u64) -> bool {
        seq < self.len()
    }

    fn writable(&self) -> bool {
        true
    }

    fn get(&self, seq: u64) -> impl Future<Output = Result<Vec<u8>, TrieError>> + Send {
        let res = usize::try_from(seq)
            .ok()
            .and_then(|i| self.lock().get(i).cloned())
            .ok_or(TrieError::BlockMissing { seq });
        std::future::ready(res)
    }

    fn append(&self, blocks: Vec<Vec<u8>>) -> impl Future<Output = Result<u64, TrieError>> + Send {
        let mut all = self.lock();
        let first = all.len() as u64;
        all.extend(blocks);
        std::future::ready(Ok(first))
    }
}

/// A bounded least-recently-used cache of decoded nodes by block index. Lookups
/// re-read the same few nodes near the head, so this saves decoding and fetching.
pub(crate) struct NodeCache {
    capacity: usize,
    tick: u64,
    map: HashMap<u64, (Arc<Node>, u64)>,
    order: BTreeMap<u64, u64>,
}

impl NodeCache {
    pub(crate) fn new(capacity: usize) -> Self {
        NodeCache {
            capacity: capacity.max(1),
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&mut self, seq: u64) -> Option<Arc<Node>> {
        self.tick += 1;
        let tick = self.tick;
        let (node, used) = self.map.get_mut(&seq)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, seq);
        Some(node.clone())
    }

    /// Whether `seq` is cached (without counting as a use).
    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.map.contains_key(&seq)
    }

    pub(crate) fn insert(&mut self, seq: u64, node: Arc<Node>) {
        self.tick += 1;
        if let Some((_, used)) = self.map.insert(seq, (node, self.tick)) {
            self.order.remove(&used);
        }
        self.order.insert(self.tick, seq);
        while self.map.len() > self.capacity {
            match self.order.pop_first() {
                Some((_, old)) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trie::trie_buffer::TrieBuffer;

    #[test]
    fn cache_is_bounded_and_evicts_least_recent() {
        let mut c = NodeCache::new(2);
        let n = |s| Arc::new(Node::new("k", None, 0, TrieBuffer::new(), s, None));
        c.insert(1, n(1));
        c.insert(2, n(2));
        assert!(c.get(1).is_some());
        c.insert(3, n(3));
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some());
        assert!(c.get(3).is_some());
        assert_eq!(c.map.len(), 2);
        assert_eq!(c.order.len(), 2);
    }
}
