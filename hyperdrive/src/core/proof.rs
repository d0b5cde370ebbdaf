//! Proofs: which tree nodes an uploader sends with a block (tree-index.js `proof`),
//! and the shape of a proof on both sides.
//!
//! CONTRACT STUB: the signatures below are the interface other modules build on.

use super::bitfield::{Bitfield, MAX_BLOCK};
use super::crypto::{Node, Signature};
use super::flat_tree;

/// What a receiver gets with a block: sibling/root nodes and maybe a signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// Block index the proof is for.
    pub index: u64,
    /// Nodes in the order the uploader sends them.
    pub nodes: Vec<Node>,
    /// Signature over `signable(verified_by / 2)`, when the proof reaches the roots.
    pub signature: Option<Signature>,
}

/// The node indices an uploader must send, and for which length it must sign.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProofPlan {
    pub nodes: Vec<u64>,
    /// `Some(vb)` when the proof ends at the roots: send the signature of slot `vb/2 - 1`.
    pub verified_by: Option<u64>,
}

/// Per-peer record of the nodes a remote is known to hold (Node keeps one per peer so
/// later proofs on a connection may be shorter). A fresh one per request is also valid.
#[derive(Debug, Default, Clone)]
pub struct RemoteTree {
    pub bits: Bitfield,
}

/// tree-index.js `proof`: plan the proof of block `index` for a requester whose
/// `Request.nodes` digest is `digest`. `hash` = the request asked for the hash only.
/// `None` if the uploader lacks the block's node (the reference errors there).
///
/// The nodes the digest claims are first recorded in `remote`; then the walk from the
/// leaf towards the roots sends every sibling the remote lacks, and, when it reaches a
/// local root the remote does not hold, the other roots of the signed length
/// (`verified_by`), for which a signature must be attached.
pub fn plan(
    local: &Bitfield,
    index: u64,
    digest: u64,
    hash: bool,
    remote: &mut RemoteTree,
) -> Option<ProofPlan> {
    if index >= MAX_BLOCK {
        return None;
    }
    let leaf = 2 * index;
    if !local.get_tree(leaf) {
        return None;
    }
    let mut nodes = Vec::new();
    if hash {
        // Always sent, whatever the digest says.
        nodes.push(leaf);
    }
    if digest == 1 {
        return Some(ProofPlan {
            nodes,
            verified_by: None,
        });
    }

    // Record what the requester claims to hold (only nodes we hold ourselves).
    let has_root = digest & 1 == 1;
    let mut rest = digest >> 1;
    let mut next = leaf;
    // Nothing at depth >= 61 can be held; stopping there keeps the walk inside u64.
    while rest != 0 && flat_tree::depth(next) < 61 {
        if rest == 1 && has_root {
            if local.get_tree(next) {
                remote.bits.set_tree(next, true);
            }
            // Holding a root implies holding the roots to its left.
            let sib = flat_tree::sibling(next);
            if sib < next {
                next = sib;
            }
            for root in flat_tree::full_roots(flat_tree::right_span(next) + 2) {
                if local.get_tree(root) {
                    remote.bits.set_tree(root, true);
                }
            }
            break;
        }
        let sib = flat_tree::sibling(next);
        if rest & 1 == 1 && local.get_tree(sib) {
            remote.bits.set_tree(sib, true);
        }
        next = flat_tree::parent(next);
        rest >>= 1;
    }

    let mut next = leaf;
    while !remote.bits.get_tree(next) {
        let sib = flat_tree::sibling(next);
        if !local.get_tree(sib) {
            // `next` is a local root: finish with the other roots of the signed length.
            let vb = local.verified_by(next);
            for root in flat_tree::full_roots(vb) {
                if root != next && !remote.bits.get_tree(root) {
                    nodes.push(root);
                }
            }
            return Some(ProofPlan {
                nodes,
                verified_by: (vb != 0).then_some(vb),
            });
        }
        if !remote.bits.get_tree(sib) {
            nodes.push(sib);
        }
        next = flat_tree::parent(next);
    }
    Some(ProofPlan {
        nodes,
        verified_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn writer(len: u64) -> Bitfield {
        let mut bf = Bitfield::new();
        for b in 0..len {
            bf.set_tree(2 * b, true);
            bf.set_data(b, true);
        }
        bf
    }

    /// What a reader can verify: from the leaf, hash up with held or sent siblings until a
    /// node it already trusted, or until a local root whose length's roots are all known
    /// (then the signature covers them).
    fn verifiable(before: &Bitfield, leaf: u64, sent: &BTreeSet<u64>, p: &ProofPlan) -> bool {
        let known = |n: u64| before.get_tree(n) || sent.contains(&n);
        let mut next = leaf;
        loop {
            if before.get_tree(next) {
                return true;
            }
            let sib = flat_tree::sibling(next);
            if !known(sib) {
                return match p.verified_by {
                    Some(vb) => flat_tree::full_roots(vb)
                        .into_iter()
                        .all(|r| r == next || known(r)),
                    None => false,
                };
            }
            next = flat_tree::parent(next);
        }
    }

    #[test]
    fn digest_one_sends_nothing_but_the_requested_hash() {
        let w = writer(5);
        let mut remote = RemoteTree::default();
        let p = plan(&w, 3, 1, false, &mut remote).expect("held");
        assert_eq!(p, ProofPlan::default());
        let p = plan(&w, 3, 1, true, &mut remote).expect("held");
        assert_eq!(p.nodes, vec![6]);
        assert_eq!(plan(&w, 5, 0, false, &mut remote), None);
    }

    proptest! {
        /// A reader that already verified some blocks asks for another with its real
        /// digest: the plan sends only held nodes, no duplicates, and enough to verify.
        #[test]
        fn plans_are_sound_and_complete(
            len in 1u64..300,
            earlier in proptest::collection::vec(0u64..300, 0..6),
            want in 0u64..300,
            hash in any::<bool>(),
        ) {
            let w = writer(len);
            let want = want % len;
            let mut reader = Bitfield::new();
            for b in earlier {
                let b = b % len;
                let p = plan(&w, b, reader.digest(b), false, &mut RemoteTree::default())
                    .expect("held");
                reader.set_tree(2 * b, true);
                for n in p.nodes {
                    reader.set_tree(n, true);
                }
            }
            let digest = reader.digest(want);
            let p = plan(&w, want, digest, hash, &mut RemoteTree::default()).expect("held");
            let sent: BTreeSet<u64> = p.nodes.iter().copied().collect();
            prop_assert_eq!(sent.len(), p.nodes.len(), "duplicate nodes");
            for &n in &p.nodes {
                prop_assert!(w.get_tree(n), "sends node {} it does not hold", n);
            }
            if let Some(vb) = p.verified_by {
                prop_assert!(vb <= 2 * len && vb % 2 == 0);
            }
            prop_assert!(verifiable(&reader, 2 * want, &sent, &p));
        }
    }
}
