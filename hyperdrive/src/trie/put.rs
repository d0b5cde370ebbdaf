//! Insert and batch (hypertrie §7). A new node copies every sibling pointer along its
//! own path from the nodes it walks through, adds the node it branches away from and
//! drops the pointer for its own branch (which it now represents).
//!
//! Every write runs against a [`Pending`] write: nodes built so far in this batch are
//! served from memory with consecutive seqs from the feed length, and are appended in
//! one store write at the end. A single put or delete is a batch of one.

use std::sync::Arc;

use super::node::{terminator, Node, FLAG_HIDDEN};
use super::trie_buffer::TrieBuffer;
use super::{Ctx, Trie, TrieError, TrieStore};

/// A put condition: `(existing, new) -> proceed?`. `existing` is the node with the
/// same key (or, with `closest`, the node where the walk stopped). Returning `Ok(false)`
/// writes nothing; an error aborts the put.
pub type Condition = Box<dyn FnOnce(Option<&Node>, &Node) -> Result<bool, TrieError> + Send>;

/// A delete condition: receives the node about to be deleted (or, with `closest`, the
/// node where a failed walk stopped; the result is then ignored except for errors).
pub type DelCondition = Box<dyn FnOnce(Option<&Node>) -> Result<bool, TrieError> + Send>;

/// Options of [`Trie::put_with`].
#[derive(Default)]
pub struct PutOptions {
    /// Store in the hidden sub-tree.
    pub hidden: bool,
    /// User flags (stored shifted left by 8; keep below 2^23 like the reference).
    pub flags: u64,
    /// Pass the closest node (not only a same-key node) to `condition`.
    pub closest: bool,
    /// Checked before appending.
    pub condition: Option<Condition>,
}

/// One operation of [`Trie::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Insert or replace `key`.
    Put {
        /// Key.
        key: String,
        /// Value (`None` = null).
        value: Option<Vec<u8>>,
        /// Hidden sub-tree.
        hidden: bool,
        /// User flags.
        flags: u64,
    },
    /// Delete `key`.
    Del {
        /// Key.
        key: String,
        /// Hidden sub-tree.
        hidden: bool,
    },
}

/// Nodes of the write in progress.
pub(crate) struct Pending {
    /// Seq of the first node of this write (the feed length when it started).
    pub(crate) offset: u64,
    pub(crate) nodes: Vec<Arc<Node>>,
    /// Head for the next operation: the trie head, then the last node written.
    pub(crate) head: Option<Arc<Node>>,
}

/// What a put walk produced.
pub(crate) struct Built {
    pub(crate) node: Node,
    /// The node where the walk stopped (`_head` in the reference), if any.
    pub(crate) stopped_at: Option<Arc<Node>>,
}

fn push(trie: &mut TrieBuffer, excluded: u64, i: usize, val: usize, seq: u64) {
    if seq != excluded {
        trie.push(i, val, seq);
    }
}

impl<S: TrieStore> Trie<S> {
    /// `put(key, value)`; returns the node written.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<Arc<Node>, TrieError> {
        let node = self
            .put_with(key, Some(value.to_vec()), PutOptions::default())
            .await?;
        // Without a condition a put always writes.
        node.ok_or(TrieError::Condition(
            "put without condition wrote nothing".into(),
        ))
    }

    /// `put(key, value, opts)`; `None` when the condition said no.
    pub async fn put_with(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
        opts: PutOptions,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        self.check_writable()?;
        let _guard = self.inner.write_lock.lock().await;
        let mut pending = self.begin().await?;
        let node = self.op_put(&mut pending, key, value, opts, 0).await?;
        self.commit(pending).await?;
        Ok(node)
    }

    /// Runs `ops` in order, each seeing the previous ones, and appends all resulting
    /// nodes in one write. Returns the nodes written.
    pub async fn batch(&self, ops: Vec<BatchOp>) -> Result<Vec<Arc<Node>>, TrieError> {
        self.check_writable()?;
        let _guard = self.inner.write_lock.lock().await;
        let mut pending = self.begin().await?;
        for op in ops {
            match op {
                BatchOp::Put {
                    key,
                    value,
                    hidden,
                    flags,
                } => {
                    let opts = PutOptions {
                        hidden,
                        flags,
                        ..PutOptions::default()
                    };
                    self.op_put(&mut pending, &key, value, opts, 0).await?;
                }
                BatchOp::Del { key, hidden } => {
                    let opts = super::DelOptions {
                        hidden,
                        ..Default::default()
                    };
                    self.op_del(&mut pending, &key, opts).await?;
                }
            }
        }
        let nodes = pending.nodes.clone();
        self.commit(pending).await?;
        Ok(nodes)
    }

    pub(crate) async fn begin(&self) -> Result<Pending, TrieError> {
        Ok(Pending {
            offset: self.inner.store.len(),
            nodes: Vec::new(),
            head: self.head().await?,
        })
    }

    pub(crate) async fn commit(&self, pending: Pending) -> Result<(), TrieError> {
        if pending.nodes.is_empty() {
            return Ok(());
        }
        let blocks = pending.nodes.iter().map(|n| n.encode()).collect();
        let first = self.inner.store.append(blocks).await?;
        if first != pending.offset {
            return Err(TrieError::Store(format!(
                "appended at {first}, expected {}",
                pending.offset
            )));
        }
        Ok(())
    }

    /// A node by seq during a write: this write's nodes from memory (reset markers
    /// included, as the reference's batch does), older ones from the feed.
    pub(crate) async fn load(
        &self,
        pending: &Pending,
        seq: u64,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        if seq >= pending.offset {
            if let Some(n) = usize::try_from(seq - pending.offset)
                .ok()
                .and_then(|k| pending.nodes.get(k))
            {
                return Ok(Some(n.clone()));
            }
        }
        self.fetch(&mut Ctx::default(), seq).await
    }

    /// One put inside a write. `excluded` is the seq a delete removes (0 for a put).
    pub(crate) async fn op_put(
        &self,
        pending: &mut Pending,
        key: &str,
        value: Option<Vec<u8>>,
        opts: PutOptions,
        excluded: u64,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        let raw_flags = (opts.flags << 8) | if opts.hidden { FLAG_HIDDEN } else { 0 };
        let node = Node::new(
            key,
            value,
            raw_flags,
            TrieBuffer::new(),
            0,
            self.inner.hash.as_ref(),
        );
        let head = pending.head.clone();
        let built = self.build_put(pending, node, head, excluded).await?;
        let Built {
            mut node,
            stopped_at,
        } = built;
        if let Some(cond) = opts.condition {
            let same = stopped_at.as_ref().filter(|h| h.key == node.key);
            let existing = if opts.closest {
                stopped_at.as_deref()
            } else {
                same.map(|n| &**n)
            };
            if !cond(existing, &node)? {
                return Ok(None);
            }
        }
        node.seq = pending.offset + pending.nodes.len() as u64;
        node.seq_field = node.seq;
        let node = Arc::new(node);
        pending.nodes.push(node.clone());
        pending.head = Some(node.clone());
        Ok(Some(node))
    }

    /// The put walk (`Put._update`): builds `node.trie` from `head`.
    pub(crate) async fn build_put(
        &self,
        pending: &Pending,
        mut node: Node,
        head: Option<Arc<Node>>,
        excluded: u64,
    ) -> Result<Built, TrieError> {
        let Some(mut head) = head else {
            return Ok(Built {
                node,
                stopped_at: None,
            });
        };
        let len = node.path_len();
        let mut i = 0;
        let stopped_at = loop {
            if i >= len {
                break Some(head);
            }
            let check = terminator(i);
            let val = node.path(i) as usize;
            let head_val = head.path(i) as usize;
            let bucket = head.trie.bucket(i).to_vec();
            let mut collidable = Vec::new();
            for (j, &seq) in bucket.iter().enumerate() {
                if (j == val && !check) || seq == 0 {
                    continue;
                }
                if check {
                    collidable.push((j, seq));
                } else {
                    push(&mut node.trie, excluded, i, j, seq);
                }
            }
            let same = head_val == val && (!check || !node.collides(&head, i));
            if !same {
                push(&mut node.trie, excluded, i, head_val, head.seq);
            }
            // The reference loads these asynchronously, so their pushes land after the
            // head's push at this position, in request order.
            for (j, seq) in collidable {
                if seq == excluded {
                    continue;
                }
                let other = self.load(pending, seq).await?.ok_or(TrieError::Corrupt {
                    seq,
                    reason: "collision slot points at a reset marker",
                })?;
                if other.collides(&node, i) {
                    node.trie.push(i, j, seq);
                }
            }
            if same {
                i += 1;
                continue;
            }
            if check {
                let mut found = None;
                for &seq in bucket.iter().skip(val).step_by(5) {
                    if seq == 0 {
                        break;
                    }
                    if let Some(n) = self.load(pending, seq).await? {
                        if !n.collides(&node, i) {
                            found = Some(n);
                        }
                    }
                }
                match found {
                    Some(n) => head = n,
                    None => break None,
                }
                i += 1;
                continue;
            }
            let seq = bucket.get(val).copied().unwrap_or(0);
            if seq == 0 {
                break Some(head);
            }
            match self.load(pending, seq).await? {
                Some(n) => head = n,
                None => break None,
            }
            i += 1;
        };
        Ok(Built { node, stopped_at })
    }
}
