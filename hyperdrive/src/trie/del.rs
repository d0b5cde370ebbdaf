//! Delete (hypertrie §8). There are no tombstones: deleting a key re-puts the closest
//! other node (same key, value and flags, with a fresh trie that omits the deleted
//! node), or writes a reset marker (empty key) when nothing else is reachable. There is
//! no collision handling, as in the reference.

use std::sync::Arc;

use super::node::Node;
use super::put::{DelCondition, Pending, PutOptions};
use super::{Trie, TrieError, TrieStore};

/// Options of [`Trie::del_with`].
#[derive(Default)]
pub struct DelOptions {
    /// Delete from the hidden sub-tree.
    pub hidden: bool,
    /// Also call `condition` (with the node where the walk stopped) when the key is
    /// absent, so it can raise an error; its answer is then ignored.
    pub closest: bool,
    /// Checked before writing.
    pub condition: Option<DelCondition>,
}

fn first_other_seq(bucket: &[u64], val: usize) -> u64 {
    bucket
        .iter()
        .enumerate()
        .find(|&(j, &s)| j != val && s != 0)
        .map(|(_, &s)| s)
        .unwrap_or(0)
}

impl<S: TrieStore> Trie<S> {
    /// `del(key)`; returns the node appended (`None` when the key was absent).
    pub async fn del(&self, key: &str) -> Result<Option<Arc<Node>>, TrieError> {
        self.del_with(key, DelOptions::default()).await
    }

    /// `del(key, opts)`.
    pub async fn del_with(
        &self,
        key: &str,
        opts: DelOptions,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        self.check_writable()?;
        let _guard = self.inner.write_lock.lock().await;
        let mut pending = self.begin().await?;
        let node = self.op_del(&mut pending, key, opts).await?;
        self.commit(pending).await?;
        Ok(node)
    }

    pub(crate) async fn op_del(
        &self,
        pending: &mut Pending,
        key: &str,
        opts: DelOptions,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        let probe = self.probe(key, opts.hidden);
        let mut closest = 0u64;
        // `stopped` = the node the walk ended on (`None`: no head, or a reset marker).
        let mut stopped = None;
        let mut found = false;
        if let Some(mut h) = pending.head.clone() {
            let len = probe.path_len();
            let mut i = 0;
            let mut alive = true;
            while i < len {
                let val = probe.path(i) as usize;
                let bucket = h.trie.bucket(i);
                if h.path(i) as usize == val {
                    let c = first_other_seq(bucket, val);
                    if c != 0 {
                        closest = c;
                    }
                    i += 1;
                    continue;
                }
                let seq = bucket.get(val).copied().unwrap_or(0);
                if seq == 0 {
                    break;
                }
                closest = h.seq;
                match self.load(pending, seq).await? {
                    Some(n) => h = n,
                    None => {
                        alive = false;
                        break;
                    }
                }
                i += 1;
            }
            if alive {
                found = i >= len && h.key == probe.key;
                stopped = Some(h);
            }
        }

        let target = match stopped {
            Some(t) if found => t,
            _ => {
                // Not present. With `closest`, the condition still sees where the walk
                // stopped (mountable-hypertrie detects mount points this way); only
                // its error matters.
                if let (Some(cond), true) = (opts.condition, opts.closest) {
                    cond(stopped.as_deref())?;
                }
                return Ok(None);
            }
        };
        if let Some(cond) = opts.condition {
            if !cond(Some(&target))? {
                return Ok(None);
            }
        }

        let replacement = if closest != 0 {
            self.load(pending, closest).await?
        } else {
            None
        };
        let (key, value, hidden, flags) = match &replacement {
            Some(c) => (c.key.clone(), c.value.clone(), c.hidden(), c.flags()),
            None => (String::new(), None, target.hidden(), 0),
        };
        let opts = PutOptions {
            hidden,
            flags,
            ..PutOptions::default()
        };
        self.op_put(pending, &key, value, opts, target.seq).await
    }
}
