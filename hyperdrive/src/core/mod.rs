//! Hypercore 9: a signed append-only log whose files and proofs match hypercore@9.12.0
//! byte for byte.
//!
//! This module owns the Merkle tree, signatures, proofs, the bitfield and the on-disk
//! layout. It never touches the network: replication asks it for proofs and hands it
//! blocks to verify.

pub mod bitfield;
pub mod crypto;
pub mod error;
pub mod feed;
pub mod flat_tree;
pub mod proof;
pub mod storage;

pub use bitfield::Bitfield;
pub use crypto::{discovery_key, KeyPair, Node, PublicKey, SecretKey};
pub use error::CoreError;
pub use feed::{Feed, PutOutcome};
pub use proof::{Proof, ProofPlan, RemoteTree};
