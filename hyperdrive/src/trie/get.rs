//! Lookup (hypertrie §6): walk from the head following one pointer per differing
//! digit. There is no final key comparison, which is what makes `"a"` and `"a/"` alias
//! and what makes `prefix` lookups work.

use std::sync::Arc;

use super::node::{terminator, Node};
use super::{Ctx, Trie, TrieError, TrieStore};

/// Options of [`Trie::get_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Look in the hidden sub-tree.
    pub hidden: bool,
    /// Do not compare the end marker: any node under the key matches.
    pub prefix: bool,
    /// When the walk ends on an empty slot, return the node reached so far.
    pub closest: bool,
}

impl<S: TrieStore> Trie<S> {
    /// `get(key)` with default options.
    pub async fn get(&self, key: &str) -> Result<Option<Arc<Node>>, TrieError> {
        self.get_with(key, GetOptions::default()).await
    }

    /// `get(key, opts)`.
    pub async fn get_with(
        &self,
        key: &str,
        opts: GetOptions,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        let probe = self.probe(key, opts.hidden);
        self.get_ctx(&mut Ctx::default(), &probe, opts).await
    }

    /// Like [`get_with`](Self::get_with), also returning every block index read, head
    /// first (the reference's `onseq` trace).
    pub async fn get_traced(
        &self,
        key: &str,
        opts: GetOptions,
    ) -> Result<(Option<Arc<Node>>, Vec<u64>), TrieError> {
        let probe = self.probe(key, opts.hidden);
        let mut ctx = Ctx::tracing();
        let node = self.get_ctx(&mut ctx, &probe, opts).await?;
        Ok((node, ctx.touched.unwrap_or_default()))
    }

    pub(crate) async fn get_ctx(
        &self,
        ctx: &mut Ctx,
        probe: &Node,
        opts: GetOptions,
    ) -> Result<Option<Arc<Node>>, TrieError> {
        let length = probe.path_len() - usize::from(opts.prefix);
        let head_seq = self.head_seq();
        if head_seq == 0 {
            return Ok(None);
        }
        let Some(mut head) = self.fetch(ctx, head_seq).await? else {
            return Ok(None);
        };
        let mut i = 0;
        while i < length {
            let val = probe.path(i);
            let check = terminator(i);
            if head.path(i) == val && (!check || !probe.collides(&head, i)) {
                i += 1;
                continue;
            }
            let bucket = head.trie.bucket(i).to_vec();
            if check {
                let mut found = None;
                for &seq in bucket.iter().skip(val as usize).step_by(5) {
                    if seq == 0 {
                        break;
                    }
                    if let Some(n) = self.fetch(ctx, seq).await? {
                        if !n.collides(probe, i) {
                            found = Some(n);
                        }
                    }
                }
                // The reference means to honour `closest` here too but reads it from
                // the wrong object, so a failed collision branch always yields null.
                match found {
                    Some(n) => head = n,
                    None => return Ok(None),
                }
            } else {
                let seq = bucket.get(val as usize).copied().unwrap_or(0);
                if seq == 0 {
                    return Ok(if opts.closest { Some(head) } else { None });
                }
                match self.fetch(ctx, seq).await? {
                    Some(n) => head = n,
                    None => return Ok(None),
                }
            }
            i += 1;
        }
        Ok(Some(head))
    }
}
