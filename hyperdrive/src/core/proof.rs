//! Proofs: which tree nodes an uploader sends with a block (tree-index.js `proof`),
//! and the shape of a proof on both sides.
//!
//! CONTRACT STUB: the signatures below are the interface other modules build on.

use super::bitfield::Bitfield;
use super::crypto::{Node, Signature};

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
pub fn plan(
    _local: &Bitfield,
    _index: u64,
    _digest: u64,
    _hash: bool,
    _remote: &mut RemoteTree,
) -> Option<ProofPlan> {
    todo!()
}
