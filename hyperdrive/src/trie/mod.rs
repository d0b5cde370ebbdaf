//! Hypertrie 5 (with the record formats of mountable-hypertrie 2.8): a single-writer
//! hash trie stored in one hypercore feed, byte-compatible with `hypertrie@5.1.3`.
//!
//! This module owns the block formats (header, node, trieBuffer, extension and mount
//! messages) and the algorithms over them: get, put, delete, batch, iteration,
//! history, diff and the extension's server side. It never touches the network or the
//! disk itself: blocks come from a [`TrieStore`], which may wait for a remote peer.
//! Crossing into mounted tries is the drive layer's job; see [`mount`].

mod del;
mod diff;
pub mod extension;
pub mod feed_store;
mod get;
pub mod hash;
mod history;
mod list;
pub mod mount;
pub mod node;
mod put;
pub mod store;
pub mod trie_buffer;
mod wire;

use std::sync::{Arc, Mutex};

pub use del::DelOptions;
pub use diff::{Diff, DiffEntry, DiffOptions};
pub use get::GetOptions;
pub use hash::{default_hash, normalize_key, split_key, HashFn};
pub use history::{History, HistoryOptions};
pub use list::{Iter, ListOptions};
pub use node::{Header, Node};
pub use put::{BatchOp, Condition, DelCondition, PutOptions};
pub use store::{MemoryStore, TrieStore};
pub use trie_buffer::TrieBuffer;

use store::NodeCache;

/// Why a block could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated input")]
    Truncated,
    /// A varint longer than 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A field tag with number 0 or an unsupported wire type.
    #[error("invalid field tag {0}")]
    BadTag(u64),
    /// A known field with the wrong wire type.
    #[error("wrong wire type for {0}")]
    WireType(&'static str),
    /// A string field that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A required field is absent.
    #[error("missing required field {0}")]
    MissingField(&'static str),
    /// A number that does not fit where it is used.
    #[error("{0} is too large")]
    TooLarge(&'static str),
}

/// Errors of trie operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    /// Block `seq` is not a valid node (or header, for seq 0).
    #[error("block {seq} does not decode: {source}")]
    Decode {
        /// Block index.
        seq: u64,
        /// What was wrong.
        source: DecodeError,
    },
    /// The store has no block `seq` (past the end, or a fetch failed for good).
    #[error("block {seq} is not available")]
    BlockMissing {
        /// Block index.
        seq: u64,
    },
    /// Block `seq` is not local and this read was not allowed to wait.
    #[error("block {seq} is not local")]
    NotLocal {
        /// Block index.
        seq: u64,
    },
    /// A write on a read-only feed or on a checkout.
    #[error("trie is not writable")]
    NotWritable,
    /// The underlying feed failed.
    #[error("store error: {0}")]
    Store(String),
    /// Block `seq` is not local and no peer delivered it in time.
    #[error("block {seq} did not arrive within {ms} ms")]
    Timeout {
        /// Block index.
        seq: u64,
        /// How long the read waited.
        ms: u64,
    },
    /// The trie's pointers are inconsistent (a pointer leads to a reset marker where a
    /// keyed node is required).
    #[error("corrupt trie at block {seq}: {reason}")]
    Corrupt {
        /// Block index.
        seq: u64,
        /// What was inconsistent.
        reason: &'static str,
    },
    /// A put/del condition refused with an error (e.g. mountable-hypertrie's
    /// "mountpoint" check).
    #[error("condition failed: {0}")]
    Condition(String),
    /// An algorithm exceeded its step bound (malformed or adversarial trie).
    #[error("too many steps while {0}")]
    TooManySteps(&'static str),
}

/// Options for opening a trie.
#[derive(Clone, Default)]
pub struct TrieOptions {
    /// Custom node hash (the reference's `opts.hash`); `None` = SipHash per component.
    pub hash: Option<HashFn>,
    /// Header metadata written when the feed is empty and writable.
    pub metadata: Option<Vec<u8>>,
    /// Header subtype written when the feed is empty and writable.
    pub subtype: Option<String>,
    /// Decoded-node cache size (default 32768, like the reference's block cache).
    pub cache_size: Option<usize>,
}

struct Inner<S> {
    store: S,
    hash: Option<HashFn>,
    cache: Mutex<NodeCache>,
    /// Serialises writers: each put/del/batch reads the head and appends one write.
    write_lock: tokio::sync::Mutex<()>,
}

/// A hypertrie over a [`TrieStore`]; a live view, or a read-only checkout.
pub struct Trie<S> {
    inner: Arc<Inner<S>>,
    checkout: Option<u64>,
}

impl<S> Clone for Trie<S> {
    fn clone(&self) -> Self {
        Trie {
            inner: self.inner.clone(),
            checkout: self.checkout,
        }
    }
}

/// Per-operation read context: which blocks were touched (the reference's `onseq`)
/// and whether reads may wait for the network.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) touched: Option<Vec<u64>>,
    pub(crate) local_only: bool,
}

impl Ctx {
    pub(crate) fn tracing() -> Self {
        Ctx {
            touched: Some(Vec::new()),
            local_only: false,
        }
    }
}

impl<S: TrieStore> Trie<S> {
    /// Opens a trie; writes the header when the feed is empty and writable.
    pub async fn open(store: S, opts: TrieOptions) -> Result<Self, TrieError> {
        if store.is_empty() && store.writable() {
            let header = Header::new(opts.metadata.clone(), opts.subtype.clone());
            store.append(vec![header.encode()]).await?;
        }
        Ok(Trie {
            inner: Arc::new(Inner {
                store,
                hash: opts.hash,
                cache: Mutex::new(NodeCache::new(opts.cache_size.unwrap_or(32768))),
                write_lock: tokio::sync::Mutex::new(()),
            }),
            checkout: None,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The custom hash function, if any.
    pub fn hash_fn(&self) -> Option<&HashFn> {
        self.inner.hash.as_ref()
    }

    /// Checkout version, or the feed length for a live trie.
    pub fn version(&self) -> u64 {
        self.checkout.unwrap_or_else(|| self.inner.store.len())
    }

    /// Whether this is a read-only checkout.
    pub fn is_checkout(&self) -> bool {
        self.checkout.is_some()
    }

    /// A read-only view at `version` (0 is treated as 1): its head is block `version-1`.
    pub fn checkout(&self, version: u64) -> Self {
        Trie {
            inner: self.inner.clone(),
            checkout: Some(version.max(1)),
        }
    }

    /// `checkout(version())`.
    pub fn snapshot(&self) -> Self {
        self.checkout(self.version())
    }

    /// Index of the head block, 0 when there is none.
    pub fn head_seq(&self) -> u64 {
        match self.checkout {
            Some(v) => v - 1,
            None => self.inner.store.len().saturating_sub(1),
        }
    }

    /// The head node (`None` for an empty trie or a reset head).
    pub async fn head(&self) -> Result<Option<Arc<Node>>, TrieError> {
        self.get_by_seq(self.head_seq()).await
    }

    /// The node at block `seq` (`None` for seq 0 or a reset marker).
    pub async fn get_by_seq(&self, seq: u64) -> Result<Option<Arc<Node>>, TrieError> {
        self.fetch(&mut Ctx::default(), seq).await
    }

    /// Decodes block 0.
    pub async fn header(&self) -> Result<Header, TrieError> {
        let buf = self.inner.store.get(0).await?;
        Header::decode(&buf).map_err(|source| TrieError::Decode { seq: 0, source })
    }

    /// `Header.metadata` of block 0 (hyperdrive: the content feed key).
    pub async fn metadata(&self) -> Result<Option<Vec<u8>>, TrieError> {
        Ok(self.header().await?.metadata)
    }

    /// Reads and decodes block `seq`, unfiltered (reset markers included), via the cache.
    pub(crate) async fn fetch_raw(&self, ctx: &mut Ctx, seq: u64) -> Result<Arc<Node>, TrieError> {
        if let Some(t) = ctx.touched.as_mut() {
            t.push(seq);
        }
        if let Some(node) = self.cache().get(seq) {
            return Ok(node);
        }
        if ctx.local_only && !self.inner.store.has(seq) {
            return Err(TrieError::NotLocal { seq });
        }
        let buf = self.inner.store.get(seq).await?;
        let node = Node::decode(&buf, seq, self.inner.hash.as_ref())
            .map_err(|source| TrieError::Decode { seq, source })?;
        let node = Arc::new(node);
        self.cache().insert(seq, node.clone());
        Ok(node)
    }

    /// `getBySeq`: `None` for seq < 1 and for reset markers (empty key).
    pub(crate) async fn fetch(
        &self,
        ctx: &mut Ctx,
        seq: u64,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        if seq < 1 {
            return Ok(None);
        }
        let node = self.fetch_raw(ctx, seq).await?;
        Ok(if node.is_reset() { None } else { Some(node) })
    }

    /// Asks the store to fetch, in one go, those of `seqs` that are neither decoded in
    /// the cache nor local (a listing about to walk every pointer of a bucket).
    pub(crate) fn prefetch(&self, seqs: &[u64]) {
        let mut want: Vec<u64> = {
            let cache = self.cache();
            seqs.iter()
                .copied()
                .filter(|&s| s >= 1 && !cache.contains(s))
                .collect()
        };
        want.retain(|&s| !self.inner.store.has(s));
        if want.len() > 1 {
            want.sort_unstable();
            want.dedup();
            self.inner.store.prefetch(&want);
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, NodeCache> {
        // The cache holds no invariants a panic could break mid-update that matter
        // for correctness beyond a missed hit.
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn probe(&self, key: &str, hidden: bool) -> Node {
        Node::probe(key, hidden, self.inner.hash.as_ref())
    }

    fn check_writable(&self) -> Result<(), TrieError> {
        if self.checkout.is_some() || !self.inner.store.writable() {
            return Err(TrieError::NotWritable);
        }
        Ok(())
    }
}

/// Appends one `(i, left, right)` diff checkpoint triple.
pub(crate) fn put_checkpoint_triple(out: &mut Vec<u8>, i: u64, l: u64, r: u64) {
    wire::put_varint(out, i);
    wire::put_varint(out, l);
    wire::put_varint(out, r);
}

#[cfg(test)]
mod tests;
