//! Iteration (hypertrie §9): a depth-first walk of the pointer trie in hash-digit
//! order, driven by an explicit stack so it can be checkpointed and resumed. The
//! order is the reference's (not sorted by name); non-recursive listing yields one
//! representative node per child component.

use std::cmp::Ordering;
use std::sync::Arc;

use super::get::GetOptions;
use super::node::Node;
use super::wire::{get_varint, put_varint};
use super::{normalize_key, Ctx, Trie, TrieError, TrieStore};

/// Push order per digit position; the stack pops the last push first.
const ORDER: [u8; 5] = [3, 2, 1, 0, 4];
const REVERSE_ORDER: [u8; 5] = [4, 0, 1, 2, 3];

/// Options of [`Trie::iter`] / [`Trie::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOptions {
    /// Descend into all depths (default) or yield one node per child component.
    pub recursive: bool,
    /// Mirror order.
    pub reverse: bool,
    /// Exclude the prefix node itself.
    pub gt: bool,
    /// Iterate the hidden sub-tree (only).
    pub hidden: bool,
    /// Resume from [`Iter::checkpoint`] output.
    pub checkpoint: Option<Vec<u8>>,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            recursive: true,
            reverse: false,
            gt: false,
            hidden: false,
            checkpoint: None,
        }
    }
}

impl ListOptions {
    /// The extension's flag word: 1 recursive, 2 reverse, 4 gt, 8 hidden.
    pub fn flags(&self) -> u64 {
        u64::from(self.recursive)
            | (u64::from(self.reverse) << 1)
            | (u64::from(self.gt) << 2)
            | (u64::from(self.hidden) << 3)
    }

    /// Options from a flag word (the reference applies it only when non-zero).
    pub fn from_flags(flags: u64) -> Self {
        ListOptions {
            recursive: flags & 1 != 0,
            reverse: flags & 2 != 0,
            gt: flags & 4 != 0,
            hidden: flags & 8 != 0,
            checkpoint: None,
        }
    }
}

#[derive(Clone)]
struct Entry {
    i: usize,
    node: Arc<Node>,
}

/// A resumable iterator over a trie (see module docs).
pub struct Iter<S> {
    trie: Trie<S>,
    prefix: String,
    opts: ListOptions,
    start: usize,
    end: usize,
    stack: Vec<Entry>,
    opened: bool,
    ctx: Ctx,
}

/// Compares as JavaScript compares strings: by UTF-16 code units.
fn js_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

impl<S: TrieStore> Trie<S> {
    /// An iterator over keys under `prefix` (component-wise: `"a"` matches `"a"` and
    /// `"a/…"`, never `"ab"`).
    pub fn iter(&self, prefix: &str, opts: ListOptions) -> Iter<S> {
        Iter {
            trie: self.clone(),
            prefix: normalize_key(prefix).to_string(),
            opts,
            start: 0,
            end: 0,
            stack: Vec::new(),
            opened: false,
            ctx: Ctx::default(),
        }
    }

    /// Collects [`iter`](Self::iter).
    pub async fn list(&self, prefix: &str, opts: ListOptions) -> Result<Vec<Arc<Node>>, TrieError> {
        self.iter(prefix, opts).collect().await
    }
}

impl<S: TrieStore> Iter<S> {
    /// Records every block index fetched from now on (the reference's `onseq`).
    pub fn trace(&mut self) {
        self.ctx.touched = Some(Vec::new());
    }

    /// Reads only local blocks: a missing block is [`TrieError::NotLocal`].
    pub fn local_only(&mut self) {
        self.ctx.local_only = true;
    }

    /// Takes the block indices recorded since the last call (see [`trace`](Self::trace)).
    pub fn take_touched(&mut self) -> Vec<u64> {
        match self.ctx.touched.as_mut() {
            Some(t) => std::mem::take(t),
            None => Vec::new(),
        }
    }

    /// Whether the iterator has run its opening lookup.
    pub fn is_opened(&self) -> bool {
        self.opened
    }

    /// The stack as `(varint i, varint seq)` pairs, bottom to top.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.stack {
            put_varint(&mut out, e.i as u64);
            put_varint(&mut out, e.node.seq);
        }
        out
    }

    /// Runs the opening lookup now (otherwise the first [`next`](Self::next) does).
    pub async fn open_now(&mut self) -> Result<(), TrieError> {
        if self.opened {
            return Ok(());
        }
        self.open().await
    }

    async fn open(&mut self) -> Result<(), TrieError> {
        let probe = self.trie.probe(&self.prefix, self.opts.hidden);
        let gopts = GetOptions {
            hidden: self.opts.hidden,
            prefix: true,
            closest: false,
        };
        let node = self.trie.get_ctx(&mut self.ctx, &probe, gopts).await?;
        let length = probe.path_len() - 1;
        let checkpoint = self.opts.checkpoint.take();
        self.start = length;
        self.end = if self.opts.recursive {
            usize::MAX
        } else {
            length + 32
        };
        if let (Some(node), None) = (node, &checkpoint) {
            self.prefetch_below(&node, length);
            self.stack.push(Entry { i: length, node });
        }
        if let Some(cp) = checkpoint {
            let mut pos = 0;
            while pos < cp.len() {
                let i = get_varint(&cp, &mut pos)
                    .map_err(|source| TrieError::Decode { seq: 0, source })?;
                let seq = get_varint(&cp, &mut pos)
                    .map_err(|source| TrieError::Decode { seq: 0, source })?;
                let i = usize::try_from(i).map_err(|_| TrieError::Decode {
                    seq,
                    source: super::DecodeError::TooLarge("checkpoint position"),
                })?;
                self.push(i, seq).await?;
            }
        }
        self.opened = true;
        Ok(())
    }

    async fn push(&mut self, i: usize, seq: u64) -> Result<(), TrieError> {
        // A pointer to a reset marker (written when a batch deletes the last key and
        // then puts another) stands for nothing. The reference crashes on it; we skip.
        if let Some(node) = self.trie.fetch(&mut self.ctx, seq).await? {
            self.prefetch_below(&node, i);
            self.stack.push(Entry { i, node });
        }
        Ok(())
    }

    /// A node entering the stack at position `i` will have every pointer in its
    /// buckets `i..end` visited: request them all now, so a sparse replica fetches a
    /// listing in about as many round trips as the trie is deep, not one per node.
    fn prefetch_below(&self, node: &Node, i: usize) {
        let end = node.path_len().min(self.end);
        let seqs: Vec<u64> = node
            .trie
            .buckets()
            .filter(|(b, _)| *b >= i && *b < end)
            .flat_map(|(_, slots)| slots.iter().copied())
            .filter(|&s| s != 0)
            .collect();
        if seqs.len() > 1 {
            self.trie.prefetch(&seqs);
        }
    }

    /// The next node, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Arc<Node>>, TrieError> {
        if !self.opened {
            self.open().await?;
        }
        let order = if self.opts.reverse {
            REVERSE_ORDER
        } else {
            ORDER
        };
        while let Some(mut top) = self.stack.pop() {
            let len = top.node.path_len().min(self.end);
            let i = top.i;
            top.i += 1;
            if i >= len {
                return Ok(Some(top.node));
            }
            let bucket = top.node.trie.bucket(i).to_vec();
            let mut sort_ranges = Vec::new();
            for val in order {
                if val == 4 && self.opts.gt && i == self.start {
                    continue;
                }
                let base = self.stack.len();
                if top.node.path(i) == val {
                    self.stack.push(top.clone());
                }
                for &seq in bucket.iter().skip(val as usize).step_by(5) {
                    if seq != 0 {
                        self.push(i + 1, seq).await?;
                    }
                }
                if self.stack.len() - base > 1 {
                    sort_ranges.push((base, self.stack.len()));
                }
            }
            // Colliding siblings pop in ascending key order.
            for (from, to) in sort_ranges {
                self.stack[from..to].sort_by(|a, b| js_cmp(&b.node.key, &a.node.key));
            }
        }
        Ok(None)
    }

    /// Drains the iterator.
    pub async fn collect(mut self) -> Result<Vec<Arc<Node>>, TrieError> {
        let mut out = Vec::new();
        while let Some(n) = self.next().await? {
            out.push(n);
        }
        Ok(out)
    }
}
