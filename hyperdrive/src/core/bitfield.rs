//! The hypercore 9 bitfield (lib/bitfield.js, tree-index.js, sparse-bitfield): which
//! blocks and tree nodes a feed holds, in 3584-byte pages laid out exactly as the
//! reference writes them, plus the tree-index algorithms that read the tree bits.
//!
//! CONTRACT STUB: the signatures below are the interface other modules build on.

/// Bytes per page in the `bitfield` file (after its 32-byte header).
pub const PAGE_SIZE: usize = 3584;
/// Page bytes `0..1024`: one bit per block.
pub const DATA_REGION: usize = 1024;
/// Page bytes `1024..3072`: one bit per tree node.
pub const TREE_REGION: usize = 2048;
/// Page bytes `3072..3584`: 2-bit summaries of the data bits.
pub const INDEX_REGION: usize = 512;

/// In-memory bitfield with dirty-page tracking.
#[derive(Debug, Default, Clone)]
pub struct Bitfield {}

impl Bitfield {
    pub fn new() -> Self {
        todo!()
    }
    /// From the bytes after the file header (whole pages; a short tail is zero-padded).
    pub fn from_bytes(_pages: &[u8]) -> Self {
        todo!()
    }
    /// Number of allocated pages (what the file must hold).
    pub fn page_count(&self) -> usize {
        todo!()
    }
    /// The exact bytes of page `page` (zeros if unallocated).
    pub fn page(&self, _page: usize) -> [u8; PAGE_SIZE] {
        todo!()
    }
    /// Pages changed since the last call, ascending; clears the dirty set.
    pub fn take_dirty(&mut self) -> Vec<usize> {
        todo!()
    }
    pub fn get_data(&self, _block: u64) -> bool {
        todo!()
    }
    /// Set or clear the have-bit of a block, keeping the index region as Node does.
    /// Returns whether the bit changed.
    pub fn set_data(&mut self, _block: u64, _value: bool) -> bool {
        todo!()
    }
    pub fn get_tree(&self, _node: u64) -> bool {
        todo!()
    }
    /// Set or clear the bit of tree node `node`. Setting also sets the parent while the
    /// sibling is set (tree-index.js `set`). Returns whether the bit changed.
    pub fn set_tree(&mut self, _node: u64, _value: bool) -> bool {
        todo!()
    }
    /// The feed length implied by the tree bits (tree-index.js `blocks`, hypercore.md §6.6).
    pub fn blocks(&self) -> u64 {
        todo!()
    }
    /// tree-index.js `verifiedBy(node)`: 2 × the length whose roots prove `node`.
    pub fn verified_by(&self, _node: u64) -> u64 {
        todo!()
    }
    /// tree-index.js `digest(2*index)`: what a requester holds on the path of a block.
    pub fn digest(&self, _index: u64) -> u64 {
        todo!()
    }
    /// Data bits for blocks `start..start+len`, MSB first, as bytes (for `Have` bitfields).
    pub fn data_bytes(&self, _start: u64, _len: u64) -> Vec<u8> {
        todo!()
    }
    /// Number of blocks held in `start..end`.
    pub fn count_data(&self, _start: u64, _end: u64) -> u64 {
        todo!()
    }
}
