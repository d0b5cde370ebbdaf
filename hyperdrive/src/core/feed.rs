//! `Feed`: one hypercore. Append, read, seek, prove and verify-and-insert, persisted
//! so that Node opens what we write and we open what Node writes.
//!
//! CONTRACT STUB: the signatures below are the interface other modules build on.

use std::path::Path;

use super::bitfield::Bitfield;
use super::crypto::{KeyPair, Node, Signature};
use super::error::Result;
use super::proof::{Proof, RemoteTree};

/// What happened when a verified block was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The feed length grew to this (a newer signed length was learned).
    pub new_length: Option<u64>,
    /// The block was not held before.
    pub stored: bool,
}

pub struct Feed {}

impl Feed {
    /// A new writable feed with a fresh key pair in `dir` (created if missing).
    pub fn create(_dir: impl AsRef<Path>) -> Result<Feed> {
        todo!()
    }
    /// A feed with the given key pair in `dir`; if `dir` already holds a feed its key
    /// must match. Read-only when the key pair has no secret.
    pub fn open_with_keypair(_dir: impl AsRef<Path>, _kp: KeyPair) -> Result<Feed> {
        todo!()
    }
    /// Open the feed stored in `dir` (key from `key`, writable if `secret_key` exists).
    pub fn open(_dir: impl AsRef<Path>) -> Result<Feed> {
        todo!()
    }
    /// A feed kept in memory only.
    pub fn in_memory(_kp: KeyPair) -> Feed {
        todo!()
    }
    pub fn key(&self) -> [u8; 32] {
        todo!()
    }
    pub fn discovery_key(&self) -> [u8; 32] {
        todo!()
    }
    pub fn writable(&self) -> bool {
        todo!()
    }
    /// Number of blocks (the signed length).
    pub fn len(&self) -> u64 {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn byte_len(&self) -> u64 {
        todo!()
    }
    /// Append one block; one signature. Returns the new length.
    pub fn append(&mut self, _block: &[u8]) -> Result<u64> {
        todo!()
    }
    /// Append several blocks with one signature (for the last one). Returns the new length.
    pub fn append_batch<B: AsRef<[u8]>>(&mut self, _blocks: &[B]) -> Result<u64> {
        todo!()
    }
    pub fn has(&self, _index: u64) -> bool {
        todo!()
    }
    /// The block, or `CoreError::BlockMissing` when it is not held.
    pub fn get(&mut self, _index: u64) -> Result<Vec<u8>> {
        todo!()
    }
    /// Byte offset -> (block index, offset inside it).
    pub fn seek(&mut self, _byte: u64) -> Result<(u64, u64)> {
        todo!()
    }
    pub fn node(&mut self, _index: u64) -> Result<Option<Node>> {
        todo!()
    }
    /// The first non-empty signature slot >= `index` (hypercore `signature(i)`).
    pub fn signature(&mut self, _index: u64) -> Result<Option<(u64, Signature)>> {
        todo!()
    }
    pub fn bitfield(&self) -> &Bitfield {
        todo!()
    }
    /// `Request.nodes` digest for block `index` (what we hold on its path).
    pub fn digest(&self, _index: u64) -> u64 {
        todo!()
    }
    /// Build the reply to `Request{index, nodes: digest, hash}`; `None` if not held.
    pub fn proof(
        &mut self,
        _index: u64,
        _digest: u64,
        _hash: bool,
        _remote: &mut RemoteTree,
    ) -> Result<Option<Proof>> {
        todo!()
    }
    /// Verify `value` (None for hash-only replies) with `proof` against our trusted
    /// nodes or a signed root, then store it. Nothing is written if it fails.
    pub fn verify_and_put(&mut self, _value: Option<&[u8]>, _proof: &Proof) -> Result<PutOutcome> {
        todo!()
    }
    /// Make every write so far durable (fsync data, tree, signatures, bitfield).
    pub fn sync(&mut self) -> Result<()> {
        todo!()
    }
}
