//! Diff (hypertrie §10): walks two versions of the same feed in parallel, pruning
//! sub-tries whose pointers are equal, and yields every key whose node block differs.
//! A faithful port of the reference's stack machine, including where it pairs left
//! and right entries by stack position and how it untangles terminator collisions, so
//! the output order matches.
//!
//! The reference's `reconnect` mode (a prefetch optimisation) is not implemented.

use std::sync::Arc;

use super::get::GetOptions;
use super::node::{terminator, Node};
use super::wire::get_varint;
use super::{put_checkpoint_triple, Ctx, DecodeError, Trie, TrieError, TrieStore};

/// Options of [`Trie::diff`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Diff the hidden sub-tree.
    pub hidden: bool,
    /// Do not descend into sub-tries that only the other side has.
    pub skip_left_null: bool,
    /// Do not descend into sub-tries that only this side has.
    pub skip_right_null: bool,
    /// Resume from [`Diff::checkpoint`] output.
    pub checkpoint: Option<Vec<u8>>,
}

/// One difference: `left` is this trie's node, `right` the other's; `None` = absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    /// Key of the node (left's if present).
    pub key: String,
    /// Node in this trie.
    pub left: Option<Arc<Node>>,
    /// Node in the other trie.
    pub right: Option<Arc<Node>>,
}

#[derive(Clone, Default)]
struct Top {
    i: usize,
    left: Option<Arc<Node>>,
    right: Option<Arc<Node>>,
    skip: bool,
}

/// A resumable diff iterator.
pub struct Diff<S> {
    db: Trie<S>,
    other: Trie<S>,
    prefix: String,
    opts: DiffOptions,
    stack: Vec<Top>,
    opened: bool,
}

fn seq_of(n: &Option<Arc<Node>>) -> u64 {
    n.as_ref().map(|n| n.seq).unwrap_or(0)
}

fn done(n: &Option<Arc<Node>>, i: usize) -> bool {
    n.as_ref().is_some_and(|n| i >= n.path_len())
}

fn not_in_bucket(val: usize, seq: u64, bucket: &[u64]) -> bool {
    !bucket.iter().skip(val).step_by(5).any(|&s| s == seq)
}

fn top_collides(top: &Top) -> bool {
    match (&top.left, &top.right) {
        (Some(l), Some(r)) if terminator(top.i) => l.collides(r, top.i),
        _ => false,
    }
}

impl<S: TrieStore> Trie<S> {
    /// Differences between this trie (left) and `other` (right), which must be a view
    /// of the same feed (the reference reads both sides through this trie).
    pub fn diff(&self, other: &Trie<S>, prefix: &str, opts: DiffOptions) -> Diff<S> {
        Diff {
            db: self.clone(),
            other: other.clone(),
            prefix: prefix.to_string(),
            opts,
            stack: Vec::new(),
            opened: false,
        }
    }

    /// Differences between this trie and its checkout at `version` (0 = empty).
    pub fn diff_version(&self, version: u64, prefix: &str, opts: DiffOptions) -> Diff<S> {
        let other = self.checkout(version);
        self.diff(&other, prefix, opts)
    }
}

impl<S: TrieStore> Diff<S> {
    /// The stack as `(varint i, varint leftSeq, varint rightSeq)` triples.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for t in self.stack.iter().filter(|t| !t.skip) {
            put_checkpoint_triple(&mut out, t.i as u64, seq_of(&t.left), seq_of(&t.right));
        }
        out
    }

    async fn open(&mut self) -> Result<(), TrieError> {
        self.opened = true;
        if let Some(cp) = self.opts.checkpoint.take() {
            let mut pos = 0;
            let dec = |source| TrieError::Decode { seq: 0, source };
            while pos < cp.len() {
                let i = get_varint(&cp, &mut pos).map_err(dec)?;
                let l = get_varint(&cp, &mut pos).map_err(dec)?;
                let r = get_varint(&cp, &mut pos).map_err(dec)?;
                let i = usize::try_from(i).map_err(|_| dec(DecodeError::TooLarge("checkpoint")))?;
                let left = self.db.get_by_seq(l).await?;
                let right = self.db.get_by_seq(r).await?;
                self.stack.push(Top {
                    i,
                    left,
                    right,
                    skip: false,
                });
            }
            return Ok(());
        }
        let gopts = GetOptions {
            hidden: self.opts.hidden,
            prefix: true,
            closest: false,
        };
        let probe = self.db.probe(&self.prefix, self.opts.hidden);
        let left = self.db.get_ctx(&mut Ctx::default(), &probe, gopts).await?;
        let right = self
            .other
            .get_ctx(&mut Ctx::default(), &probe, gopts)
            .await?;
        self.stack.push(Top {
            i: probe.path_len() - 1,
            left,
            right,
            skip: false,
        });
        Ok(())
    }

    fn push_stack(&mut self, at: usize, i: usize) -> usize {
        if self.stack.len() == at {
            self.stack.push(Top {
                i,
                ..Top::default()
            });
        }
        at
    }

    /// The next difference, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<DiffEntry>, TrieError> {
        if !self.opened {
            self.open().await?;
        }
        while let Some(top) = self.stack.pop() {
            let Top {
                i,
                left,
                right,
                skip,
            } = top;
            if skip || seq_of(&left) == seq_of(&right) {
                continue;
            }
            let done_left = done(&left, i);
            let done_right = done(&right, i);
            if done_left && done_right {
                return Ok(Some(entry(left, right)));
            }
            if right.is_none() && left.is_some() && self.opts.skip_right_null {
                continue;
            }
            if right.is_some() && left.is_none() && self.opts.skip_left_null {
                continue;
            }
            let left_val = left.as_ref().map(|n| usize::from(n.path(i))).unwrap_or(5);
            let right_val = right.as_ref().map(|n| usize::from(n.path(i))).unwrap_or(6);
            let empty: &[u64] = &[];
            let left_bucket = left
                .as_ref()
                .map(|n| n.trie.bucket(i))
                .unwrap_or(empty)
                .to_vec();
            let right_bucket = right
                .as_ref()
                .map(|n| n.trie.bucket(i))
                .unwrap_or(empty)
                .to_vec();

            // Node loads the reference starts asynchronously: applied after this step.
            let mut loads: Vec<(usize, bool, u64)> = Vec::new();
            let mut needs_check: Vec<(usize, usize)> = Vec::new();

            for j in 0..5 {
                let left_seq = if left_val == j { seq_of(&left) } else { 0 };
                let right_seq = if right_val == j { seq_of(&right) } else { 0 };
                let len = self.stack.len();
                let mut left_len = len;
                let mut right_len = len;

                if left_seq != right_seq {
                    if !done_left && left_seq != 0 && not_in_bucket(j, left_seq, &right_bucket) {
                        let k = self.push_stack(left_len, i + 1);
                        left_len += 1;
                        self.stack[k].left = left.clone();
                    }
                    if !done_right && right_seq != 0 && not_in_bucket(j, right_seq, &left_bucket) {
                        let k = self.push_stack(right_len, i + 1);
                        right_len += 1;
                        self.stack[k].right = right.clone();
                    }
                }

                if !done_left {
                    let push_left =
                        !self.opts.skip_right_null || right_bucket.get(j).is_some_and(|&s| s != 0);
                    for &seq in left_bucket.iter().skip(j).step_by(5) {
                        if seq == 0 {
                            break;
                        }
                        if seq != right_seq && not_in_bucket(j, seq, &right_bucket) {
                            let k = self.push_stack(left_len, i + 1);
                            left_len += 1;
                            if push_left || self.stack[k].right.is_some() {
                                loads.push((k, true, seq));
                            } else {
                                self.stack[k].skip = true;
                            }
                        }
                    }
                }

                if !done_right {
                    let push_right =
                        !self.opts.skip_left_null || left_bucket.get(j).is_some_and(|&s| s != 0);
                    for &seq in right_bucket.iter().skip(j).step_by(5) {
                        if seq == 0 {
                            break;
                        }
                        if seq != left_seq && not_in_bucket(j, seq, &left_bucket) {
                            let k = self.push_stack(right_len, i + 1);
                            right_len += 1;
                            if push_right || self.stack[k].left.is_some() {
                                loads.push((k, false, seq));
                            } else {
                                self.stack[k].skip = true;
                            }
                        }
                    }
                }

                if terminator(i) && self.stack.len() > len {
                    if loads.is_empty() {
                        self.maybe_collides(len, self.stack.len())?;
                    } else {
                        needs_check.push((len, self.stack.len()));
                    }
                }
            }

            for (k, is_left, seq) in loads {
                if let Some(node) = self.db.get_by_seq(seq).await? {
                    if is_left {
                        self.stack[k].left = Some(node);
                    } else {
                        self.stack[k].right = Some(node);
                    }
                }
            }
            while let Some((start, end)) = needs_check.pop() {
                self.maybe_collides(start, end)?;
            }

            if done_left {
                return Ok(Some(entry(left, None)));
            }
            if done_right {
                return Ok(Some(entry(None, right)));
            }
        }
        Ok(None)
    }

    /// Entries `start..end` share a hash prefix ending at a terminator: split pairs
    /// whose component strings differ (a 64-bit collision) into separate entries.
    fn maybe_collides(&mut self, start: usize, end: usize) -> Result<(), TrieError> {
        if end - start == 1 {
            if top_collides(&self.stack[start]) {
                let top = &mut self.stack[start];
                let moved = Top {
                    i: top.i,
                    left: None,
                    right: top.right.take(),
                    skip: top.skip,
                };
                self.stack.push(moved);
            }
            return Ok(());
        }
        let budget = (end - start) * (end - start) * 4 + 16;
        let mut steps = 0;
        let mut i = start;
        while i < end {
            steps += 1;
            if steps > budget {
                return Err(TrieError::TooManySteps("untangling diff collisions"));
            }
            if top_collides(&self.stack[i]) || self.stack[i].left.is_none() {
                let right = self.stack[i].right.clone();
                // The reference calls `collides` here without a position, which is
                // always false: any entry with a left node qualifies.
                let mut same = true;
                if let Some(j) = (start..end).find(|&j| self.stack[j].left.is_some()) {
                    if j != i {
                        let other_right = self.stack[j].right.clone();
                        same = other_right.is_none() && right.is_none();
                        self.stack[i].right = other_right;
                        self.stack[j].right = right.clone();
                    }
                    if same && self.stack[i].left.is_some() {
                        let top = &mut self.stack[i];
                        let moved = Top {
                            i: top.i,
                            left: None,
                            right: top.right.take(),
                            skip: top.skip,
                        };
                        self.stack.push(moved);
                    }
                    // Revisit this entry: it may still collide.
                    continue;
                }
                if self.stack[i].left.is_some() {
                    let top = &mut self.stack[i];
                    let moved = Top {
                        i: top.i,
                        left: None,
                        right: top.right.take(),
                        skip: top.skip,
                    };
                    self.stack.push(moved);
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Drains the iterator.
    pub async fn collect(mut self) -> Result<Vec<DiffEntry>, TrieError> {
        let mut out = Vec::new();
        while let Some(d) = self.next().await? {
            out.push(d);
        }
        Ok(out)
    }
}

fn entry(left: Option<Arc<Node>>, right: Option<Arc<Node>>) -> DiffEntry {
    let key = left
        .as_ref()
        .or(right.as_ref())
        .map(|n| n.key.clone())
        .unwrap_or_default();
    DiffEntry { key, left, right }
}
