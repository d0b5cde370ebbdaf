//! History (hypertrie §10): raw nodes by block index. A reset marker reads as "no
//! node" and ends the walk, as in the reference.

use std::sync::Arc;

use super::node::Node;
use super::{Trie, TrieError, TrieStore};

/// Bounds of [`Trie::history`]; all inclusive after `gt`/`lt` are converted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryOptions {
    /// First seq (default 1).
    pub gte: Option<u64>,
    /// Last seq (default and maximum: the head seq).
    pub lte: Option<u64>,
    /// Exclusive lower bound (overrides `gte`).
    pub gt: Option<u64>,
    /// Exclusive upper bound (overrides `lte`).
    pub lt: Option<u64>,
    /// Newest first.
    pub reverse: bool,
}

/// An iterator over the trie's nodes by seq.
pub struct History<S> {
    trie: Trie<S>,
    gte: i128,
    lte: Option<i128>,
    reverse: bool,
    opened: bool,
    done: bool,
}

impl<S: TrieStore> Trie<S> {
    /// Nodes by block index within `opts`' bounds.
    pub fn history(&self, opts: HistoryOptions) -> History<S> {
        let gte = opts
            .gt
            .map(|g| i128::from(g) + 1)
            .or(opts.gte.map(i128::from));
        let lte = opts
            .lt
            .map(|l| i128::from(l) - 1)
            .or(opts.lte.map(i128::from));
        History {
            trie: self.clone(),
            gte: gte.unwrap_or(1),
            lte,
            reverse: opts.reverse,
            opened: false,
            done: false,
        }
    }
}

impl<S: TrieStore> History<S> {
    /// The next node, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Arc<Node>>, TrieError> {
        if !self.opened {
            let head = self.trie.head().await?;
            let head_seq = head.map(|h| i128::from(h.seq)).unwrap_or(-1);
            self.lte = Some(match self.lte {
                None | Some(-1) => head_seq,
                Some(l) => l.min(head_seq),
            });
            self.opened = true;
        }
        let lte = self.lte.unwrap_or(-1);
        if self.done || self.gte > lte {
            return Ok(None);
        }
        let seq = if self.reverse {
            self.lte = Some(lte - 1);
            lte
        } else {
            self.gte += 1;
            self.gte - 1
        };
        let node = match u64::try_from(seq) {
            Ok(s) => self.trie.get_by_seq(s).await?,
            Err(_) => None,
        };
        if node.is_none() {
            self.done = true;
        }
        Ok(node)
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
