//! The hypercore 9 bitfield (lib/bitfield.js, tree-index.js, sparse-bitfield): which
//! blocks and tree nodes a feed holds, in 3584-byte pages laid out exactly as the
//! reference writes them, plus the tree-index algorithms that read the tree bits.
//!
//! The structure is sparse: a page exists in memory only once one of its bytes became
//! non-zero, so a reader that holds block 2^50 costs one page, not terabytes. Besides the
//! page bytes it keeps the few counters of the reference that change observable results:
//! the memory-pager length (bounds the index region's propagation) and each region's
//! sparse-bitfield byte length (bounds `digest` and `blocks`). It never does I/O: the
//! storage layer writes the pages returned by [`Bitfield::take_dirty`].
//!
//! Indices at or above [`MAX_NODE`] (tree) / [`MAX_BLOCK`] (data) are never held: reads
//! return "absent" and writes are ignored. The reference cannot address them either
//! (JavaScript numbers stop at 2^53), and the bound keeps every flat-tree step in `u64`.

use std::collections::{BTreeMap, BTreeSet};

use super::flat_tree;

/// Bytes per page in the `bitfield` file (after its 32-byte header).
pub const PAGE_SIZE: usize = 3584;
/// Page bytes `0..1024`: one bit per block.
pub const DATA_REGION: usize = 1024;
/// Page bytes `1024..3072`: one bit per tree node.
pub const TREE_REGION: usize = 2048;
/// Page bytes `3072..3584`: 2-bit summaries of the data bits.
pub const INDEX_REGION: usize = 512;

/// Tree nodes `>= MAX_NODE` are never held (the reference's limit is 2^53).
pub const MAX_NODE: u64 = 1 << 60;
/// Blocks `>= MAX_BLOCK` are never held.
pub const MAX_BLOCK: u64 = MAX_NODE / 2;

/// Blocks covered by one page's data region.
const BLOCKS_PER_PAGE: u64 = DATA_REGION as u64 * 8;

type Page = [u8; PAGE_SIZE];

/// The three regions of a page, each a sparse-bitfield view over the shared pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Data,
    Tree,
    Index,
}

impl Region {
    /// (page, byte offset inside the page) of the region's global byte `byte`.
    #[inline]
    fn locate(self, byte: u64) -> (u64, usize) {
        match self {
            Region::Data => (byte >> 10, (byte & 1023) as usize),
            Region::Tree => (byte >> 11, DATA_REGION + (byte & 2047) as usize),
            Region::Index => (byte >> 9, DATA_REGION + TREE_REGION + (byte & 511) as usize),
        }
    }
}

/// `MAP_PARENT_RIGHT` of lib/bitfield.js: the 4-bit summary of an index byte (each
/// nibble: 3 = all ones, 0 = all zeros, 1 = mixed).
#[inline]
fn summary(byte: u8) -> u8 {
    fn nibble(n: u8) -> u8 {
        match n {
            15 => 3,
            0 => 0,
            _ => 1,
        }
    }
    (nibble(byte >> 4) << 2) | nibble(byte & 15)
}

/// The 2-bit value a data byte contributes to its index leaf (`getIndexValue`), in the
/// top two bits.
#[inline]
fn index_value(data: u8) -> u8 {
    match data {
        255 => 192,
        0 => 0,
        _ => 64,
    }
}

/// Count the one bits of `bytes` (MSB first) in bit range `from..to`.
fn count_bits(bytes: &[u8], from: usize, to: usize) -> u64 {
    if to <= from {
        return 0;
    }
    let (fb, tb) = (from / 8, (to - 1) / 8);
    let head_mask = 0xffu8 >> (from % 8);
    let tail_mask = 0xffu8 << (7 - (to - 1) % 8);
    if fb == tb {
        return u64::from((bytes[fb] & head_mask & tail_mask).count_ones());
    }
    let mut n = u64::from((bytes[fb] & head_mask).count_ones());
    n += bytes[fb + 1..tb]
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum::<u64>();
    n + u64::from((bytes[tb] & tail_mask).count_ones())
}

/// In-memory bitfield with dirty-page tracking.
#[derive(Debug, Default, Clone)]
pub struct Bitfield {
    /// Pages with at least one byte ever made non-zero.
    pages: BTreeMap<u64, Box<Page>>,
    /// memory-pager `length`: 1 + the highest page ever touched by a write (even one that
    /// changed nothing) or loaded. Bounds the index-region propagation.
    pager_len: u64,
    /// Pages changed since the last [`Bitfield::take_dirty`].
    dirty: BTreeSet<u64>,
    /// The page last added to `dirty` since the last take (saves a set insert).
    last_dirty: Option<u64>,
    /// sparse-bitfield `byteLength` of each region (1 + highest changed byte, or the
    /// loaded size).
    data_len: u64,
    tree_len: u64,
    index_len: u64,
}

impl Bitfield {
    pub fn new() -> Self {
        Self::default()
    }

    /// From the bytes after the file header (whole pages; a short tail is zero-padded).
    pub fn from_bytes(pages: &[u8]) -> Self {
        let mut bf = Self::new();
        let count = pages.len().div_ceil(PAGE_SIZE) as u64;
        for (i, chunk) in pages.chunks(PAGE_SIZE).enumerate() {
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let mut page = Box::new([0u8; PAGE_SIZE]);
            page[..chunk.len()].copy_from_slice(chunk);
            bf.pages.insert(i as u64, page);
        }
        bf.pager_len = count;
        bf.data_len = count * DATA_REGION as u64;
        bf.tree_len = count * TREE_REGION as u64;
        bf.index_len = count * INDEX_REGION as u64;
        bf
    }

    /// Number of allocated pages (what the file must hold).
    pub fn page_count(&self) -> usize {
        usize::try_from(self.pager_len).unwrap_or(usize::MAX)
    }

    /// The exact bytes of page `page` (zeros if unallocated).
    pub fn page(&self, page: usize) -> [u8; PAGE_SIZE] {
        self.pages
            .get(&(page as u64))
            .map_or([0u8; PAGE_SIZE], |p| **p)
    }

    /// Pages changed since the last call, ascending; clears the dirty set.
    pub fn take_dirty(&mut self) -> Vec<usize> {
        self.last_dirty = None;
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|p| p as usize)
            .collect()
    }

    /// Whether any page changed since the last [`Bitfield::take_dirty`].
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    #[inline]
    fn get_byte(&self, region: Region, byte: u64) -> u8 {
        let (page, off) = region.locate(byte);
        self.pages.get(&page).map_or(0, |p| p[off])
    }

    /// sparse-bitfield `setByte`: the page counts as allocated even when nothing changes.
    fn set_byte(&mut self, region: Region, byte: u64, value: u8) -> bool {
        let (page, off) = region.locate(byte);
        self.pager_len = self.pager_len.max(page + 1);
        // One map lookup in the common case (the page exists).
        match self.pages.get_mut(&page) {
            Some(p) if p[off] == value => return false,
            Some(p) => p[off] = value,
            None if value == 0 => return false,
            None => {
                let mut p = Box::new([0u8; PAGE_SIZE]);
                p[off] = value;
                self.pages.insert(page, p);
            }
        }
        let len = match region {
            Region::Data => &mut self.data_len,
            Region::Tree => &mut self.tree_len,
            Region::Index => &mut self.index_len,
        };
        if byte >= *len {
            *len = byte + 1;
        }
        // Appends touch the same page over and over: skip the set when it is the last.
        if self.last_dirty != Some(page) {
            self.dirty.insert(page);
            self.last_dirty = Some(page);
        }
        true
    }

    pub fn get_data(&self, block: u64) -> bool {
        block < MAX_BLOCK && self.get_byte(Region::Data, block >> 3) & (0x80 >> (block & 7)) != 0
    }

    /// Set or clear the have-bit of a block, keeping the index region as Node does.
    /// Returns whether the bit changed.
    pub fn set_data(&mut self, block: u64, value: bool) -> bool {
        if block >= MAX_BLOCK {
            return false;
        }
        let byte = block >> 3;
        let mask = 0x80u8 >> (block & 7);
        let cur = self.get_byte(Region::Data, byte);
        let next = if value { cur | mask } else { cur & !mask };
        if !self.set_byte(Region::Data, byte, next) {
            return false;
        }
        self.update_index(byte, next);
        true
    }

    /// lib/bitfield.js `_setIndex`: rewrite the index leaf of data byte `byte` and its
    /// ancestors while they change and stay below 512 × pager length, then `_expand`.
    fn update_index(&mut self, byte: u64, value: u8) {
        const UPDATE_MASK: [u8; 4] = [63, 207, 243, 252];
        let o = (byte & 3) as usize;
        let start = 2 * (byte >> 2);
        let mut v = (self.get_byte(Region::Index, start) & UPDATE_MASK[o])
            | (index_value(value) >> (2 * o));
        let len_before = self.index_len;
        let max = self.pager_len.saturating_mul(INDEX_REGION as u64);
        let mut pos = start;
        while pos < max && self.set_byte(Region::Index, pos, v) {
            v = self.index_parent_byte(pos, v);
            pos = flat_tree::parent(pos);
        }
        if len_before != self.index_len {
            self.expand_index(len_before * 8);
        }
    }

    /// The byte of `pos`'s parent given `pos` holds `v` (`MAP_PARENT_LEFT/RIGHT`).
    #[inline]
    fn index_parent_byte(&self, pos: u64, v: u8) -> u8 {
        let sib = self.get_byte(Region::Index, flat_tree::sibling(pos));
        if flat_tree::offset(pos) & 1 == 0 {
            (summary(v) << 4) | summary(sib)
        } else {
            summary(v) | (summary(sib) << 4)
        }
    }

    /// lib/bitfield.js `_expand(len)`: recompute ancestors of the roots of `2·len`, only
    /// within the index region's current byte length.
    fn expand_index(&mut self, len: u64) {
        for root in flat_tree::full_roots(len.saturating_mul(2) & !1) {
            let mut pos = root;
            let mut v = self.get_byte(Region::Index, pos);
            loop {
                if flat_tree::depth(pos) >= 62 {
                    break;
                }
                v = self.index_parent_byte(pos, v);
                pos = flat_tree::parent(pos);
                if pos >= self.index_len || !self.set_byte(Region::Index, pos, v) {
                    break;
                }
            }
        }
    }

    pub fn get_tree(&self, node: u64) -> bool {
        node < MAX_NODE && self.get_byte(Region::Tree, node >> 3) & (0x80 >> (node & 7)) != 0
    }

    fn set_tree_bit(&mut self, node: u64, value: bool) -> bool {
        let byte = node >> 3;
        let mask = 0x80u8 >> (node & 7);
        let cur = self.get_byte(Region::Tree, byte);
        let next = if value { cur | mask } else { cur & !mask };
        self.set_byte(Region::Tree, byte, next)
    }

    /// Set or clear the bit of tree node `node`. Setting also sets the parent while the
    /// sibling is set (tree-index.js `set`). Returns whether the bit changed.
    pub fn set_tree(&mut self, node: u64, value: bool) -> bool {
        if node >= MAX_NODE {
            return false;
        }
        if !self.set_tree_bit(node, value) {
            return false;
        }
        if value {
            let mut n = node;
            // Both children held (and both < MAX_NODE), so the parent lies between them.
            while self.get_tree(flat_tree::sibling(n)) {
                n = flat_tree::parent(n);
                if !self.set_tree_bit(n, true) {
                    break;
                }
            }
        }
        true
    }

    /// Tree nodes the reference considers in its scans (`8 × byteLength`).
    fn tree_bits_len(&self) -> u64 {
        self.tree_len.saturating_mul(8)
    }

    /// The feed length implied by the tree bits (tree-index.js `blocks`, hypercore.md §6.6).
    pub fn blocks(&self) -> u64 {
        let max = self.tree_bits_len();
        let mut top = 0;
        let mut next = 0;
        while flat_tree::right_span(next) < max && flat_tree::depth(next) < 62 {
            next = flat_tree::parent(next);
            if self.get_tree(next) {
                top = next;
            }
        }
        if self.get_tree(top) {
            self.verified_by(top) / 2
        } else {
            0
        }
    }

    /// tree-index.js `verifiedBy(node)`: 2 × the length whose roots prove `node`.
    pub fn verified_by(&self, node: u64) -> u64 {
        if !self.get_tree(node) {
            return 0;
        }
        // Climb to the root of the complete subtree holding `node`.
        let mut top = node;
        while self.get_tree(flat_tree::parent(top)) && self.get_tree(flat_tree::sibling(top)) {
            top = flat_tree::parent(top);
        }
        // Walk down the right edge: each step goes to the right neighbour's left child,
        // then left while the node is not held.
        let mut depth = flat_tree::depth(top);
        while depth > 0 {
            top = flat_tree::index(depth - 1, 2 * (flat_tree::offset(top) + 1));
            depth -= 1;
            while depth > 0 && !self.get_tree(top) {
                top = flat_tree::index(depth - 1, 2 * flat_tree::offset(top));
                depth -= 1;
            }
        }
        if self.get_tree(top) {
            top + 2
        } else {
            top
        }
    }

    /// tree-index.js `digest(2*index)` for block `index`: a bit set per node a requester
    /// holds on the path to the roots (`Request.nodes`); 1 = "I hold the leaf itself".
    pub fn digest(&self, index: u64) -> u64 {
        if index >= MAX_BLOCK {
            return 0;
        }
        let index = 2 * index;
        if self.get_tree(index) {
            return 1;
        }
        let mut digest: u64 = 0;
        let mut next = flat_tree::sibling(index);
        let max = (next + 2).max(self.tree_bits_len());
        let mut bit: u64 = 2;
        let mut parent = flat_tree::parent(next);
        while (flat_tree::right_span(next) < max || flat_tree::left_span(parent) > 0)
            && flat_tree::depth(parent) < 62
        {
            if self.get_tree(next) {
                digest += bit;
            }
            if self.get_tree(parent) {
                digest += 2 * bit;
                if digest & 1 == 0 {
                    digest += 1;
                }
                if Some(digest + 1) == bit.checked_mul(4) {
                    return 1;
                }
                return digest;
            }
            next = flat_tree::sibling(parent);
            parent = flat_tree::parent(next);
            bit *= 2;
        }
        digest
    }

    /// Data bits for blocks `start..start+len`, MSB first, as bytes (for `Have` bitfields).
    /// The caller bounds `len`: the result has `ceil(len / 8)` bytes.
    pub fn data_bytes(&self, start: u64, len: u64) -> Vec<u8> {
        let out_len = len.div_ceil(8) as usize;
        let first = start >> 3;
        let shift = (start & 7) as u32;
        // One extra source byte when unaligned.
        let src = self.data_run(first, out_len + usize::from(shift != 0));
        let mut out: Vec<u8> = if shift == 0 {
            src
        } else {
            src.windows(2)
                .map(|w| (w[0] << shift) | (w[1] >> (8 - shift)))
                .collect()
        };
        out.truncate(out_len);
        let tail = (len & 7) as u32;
        if tail != 0 {
            if let Some(last) = out.last_mut() {
                *last &= 0xffu8 << (8 - tail);
            }
        }
        out
    }

    /// `count` data bytes from data byte `first`, copied page by page.
    fn data_run(&self, first: u64, count: usize) -> Vec<u8> {
        let mut out = vec![0u8; count];
        let mut done = 0usize;
        while done < count {
            let byte = first.saturating_add(done as u64);
            let (page, off) = Region::Data.locate(byte);
            let n = (DATA_REGION - off).min(count - done);
            if byte < MAX_BLOCK / 8 {
                if let Some(p) = self.pages.get(&page) {
                    out[done..done + n].copy_from_slice(&p[off..off + n]);
                }
            }
            done += n;
        }
        out
    }

    /// Number of blocks held in `start..end`.
    pub fn count_data(&self, start: u64, end: u64) -> u64 {
        let end = end.min(MAX_BLOCK);
        if end <= start {
            return 0;
        }
        let first_page = start / BLOCKS_PER_PAGE;
        let last_page = (end - 1) / BLOCKS_PER_PAGE;
        self.pages
            .range(first_page..=last_page)
            .map(|(&p, page)| {
                let base = p * BLOCKS_PER_PAGE;
                let from = start.max(base) - base;
                let to = end.min(base + BLOCKS_PER_PAGE) - base;
                count_bits(&page[..DATA_REGION], from as usize, to as usize)
            })
            .sum()
    }

    /// The first block in `start..end` whose have-bit is clear.
    pub fn next_missing(&self, start: u64, end: u64) -> Option<u64> {
        let end = end.min(MAX_BLOCK);
        let mut b = start;
        while b < end {
            let page = b / BLOCKS_PER_PAGE;
            let Some(p) = self.pages.get(&page) else {
                return Some(b);
            };
            let page_end = ((page + 1) * BLOCKS_PER_PAGE).min(end);
            while b < page_end {
                let off = ((b >> 3) & 1023) as usize;
                let byte = p[off] | !(0xffu8 >> (b & 7));
                if byte != 0xff {
                    let hit = (b & !7) + u64::from(byte.leading_ones());
                    return (hit < end).then_some(hit);
                }
                b = (b | 7) + 1;
            }
        }
        None
    }

    /// The first block in `start..end` whose have-bit is set.
    pub fn next_present(&self, start: u64, end: u64) -> Option<u64> {
        let end = end.min(MAX_BLOCK);
        if end <= start {
            return None;
        }
        let first_page = start / BLOCKS_PER_PAGE;
        let last_page = (end - 1) / BLOCKS_PER_PAGE;
        for (&pg, p) in self.pages.range(first_page..=last_page) {
            let base = pg * BLOCKS_PER_PAGE;
            let mut b = start.max(base);
            let page_end = end.min(base + BLOCKS_PER_PAGE);
            while b < page_end {
                let off = ((b >> 3) & 1023) as usize;
                let byte = p[off] & (0xffu8 >> (b & 7));
                if byte != 0 {
                    let hit = (b & !7) + u64::from(byte.leading_zeros());
                    return (hit < end).then_some(hit);
                }
                b = (b | 7) + 1;
            }
        }
        None
    }

    /// The highest block whose have-bit is set.
    pub fn last_data(&self) -> Option<u64> {
        self.pages.iter().rev().find_map(|(&pg, p)| {
            let data = &p[..DATA_REGION];
            let off = data.iter().rposition(|&b| b != 0)?;
            let bit = 7 - u64::from(data[off].trailing_zeros());
            Some(pg * BLOCKS_PER_PAGE + off as u64 * 8 + bit)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tree bits a writer holds after appending `len` blocks (leaves, then the parents
    /// the tree-index propagation derives).
    fn appended(len: u64) -> Bitfield {
        let mut bf = Bitfield::new();
        for b in 0..len {
            bf.set_data(b, true);
            bf.set_tree(2 * b, true);
        }
        bf
    }

    #[test]
    fn regions_are_msb_first() {
        let mut bf = Bitfield::new();
        assert!(bf.set_data(0, true));
        assert!(!bf.set_data(0, true));
        assert!(bf.set_data(9, true));
        assert!(bf.set_tree(3, true));
        let p = bf.page(0);
        assert_eq!(p[0], 0x80);
        assert_eq!(p[1], 0x40);
        assert_eq!(p[DATA_REGION], 0x10);
        assert_eq!(bf.take_dirty(), vec![0]);
        assert!(bf.take_dirty().is_empty());
        // Block 8192 is the first bit of page 1; node 16384 likewise.
        bf.set_data(8192, true);
        bf.set_tree(16384, true);
        assert_eq!(bf.page(1)[0], 0x80);
        assert_eq!(bf.page(1)[DATA_REGION], 0x80);
        assert_eq!(bf.page_count(), 2);
        assert!(bf.set_data(9, false));
        assert!(!bf.get_data(9));
        assert!(bf.set_tree(3, false));
        assert!(!bf.get_tree(3));
    }

    #[test]
    fn set_tree_propagates_to_parents() {
        let mut bf = Bitfield::new();
        bf.set_tree(0, true);
        assert!(!bf.get_tree(1));
        bf.set_tree(2, true);
        assert!(bf.get_tree(1));
        bf.set_tree(4, true);
        bf.set_tree(6, true);
        assert!(bf.get_tree(5) && bf.get_tree(3));
        assert!(!bf.get_tree(7));
    }

    #[test]
    fn blocks_and_verified_by() {
        for len in 0..40 {
            let bf = appended(len);
            assert_eq!(bf.blocks(), len, "length {len}");
            if len > 0 {
                assert_eq!(bf.verified_by(0), 2 * len);
                assert_eq!(bf.verified_by(2 * (len - 1)), 2 * len);
            }
        }
        // A sparse reader holding the proof of block 0 at length 7: nodes 0, 2, 5, 9, 12
        // (parents 1, 3 derived).
        let mut r = Bitfield::new();
        for n in [0, 2, 5, 9, 12] {
            r.set_tree(n, true);
        }
        assert_eq!(r.blocks(), 7);
        assert_eq!(r.verified_by(0), 14);
        assert_eq!(r.verified_by(9), 14);
        assert_eq!(r.verified_by(4), 0);
        // Only the root of length 8 (node 7).
        let mut r = Bitfield::new();
        r.set_tree(7, true);
        assert_eq!(r.blocks(), 8);
        // A lone leaf far right without a spine node is not a length.
        let mut r = Bitfield::new();
        r.set_tree(20, true);
        assert_eq!(r.blocks(), 0);
        assert_eq!(r.verified_by(20), 22);
    }

    #[test]
    fn digest_claims() {
        let mut r = Bitfield::new();
        for n in [0, 1, 2, 3, 5, 9, 12] {
            r.set_tree(n, true);
        }
        assert_eq!(r.digest(0), 1);
        assert_eq!(r.digest(4), 5);
        assert_eq!(Bitfield::new().digest(3), 0);
    }

    #[test]
    fn index_region_single_page_fixed_point() {
        let bf = appended(7);
        let p = bf.page(0);
        for (i, &b) in p[DATA_REGION + TREE_REGION..].iter().enumerate() {
            let want = if (i + 1).is_power_of_two() { 0x40 } else { 0 };
            assert_eq!(b, want, "index byte {i}");
        }
        // 32 full blocks: the first leaf says "byte 0..3 all full".
        let bf = appended(32);
        assert_eq!(bf.page(0)[DATA_REGION + TREE_REGION], 0xff);
        // Clearing brings the summaries back to mixed.
        let mut bf = bf;
        bf.set_data(31, false);
        assert_eq!(bf.page(0)[DATA_REGION + TREE_REGION], 0xfd);
    }

    #[test]
    fn from_bytes_round_trips() {
        let mut bf = appended(9000);
        bf.set_tree(40000, true);
        let mut file = Vec::new();
        for p in 0..bf.page_count() {
            file.extend_from_slice(&bf.page(p));
        }
        let back = Bitfield::from_bytes(&file[..file.len() - 100]);
        assert_eq!(back.page_count(), bf.page_count());
        assert_eq!(back.blocks(), 9000);
        assert!(back.get_tree(40000));
        assert_eq!(back.count_data(0, u64::MAX), 9000);
        assert!(!back.is_dirty());
    }

    #[test]
    fn range_helpers() {
        let mut bf = Bitfield::new();
        for b in [3u64, 4, 5, 9, 8191, 8192, 20000] {
            bf.set_data(b, true);
        }
        assert_eq!(bf.count_data(0, 10), 4);
        assert_eq!(bf.count_data(4, 9), 2);
        assert_eq!(bf.count_data(0, u64::MAX), 7);
        assert_eq!(bf.count_data(5, 5), 0);
        assert_eq!(bf.next_missing(3, 100), Some(6));
        assert_eq!(bf.next_missing(0, 3), Some(0));
        assert_eq!(bf.next_missing(3, 6), None);
        assert_eq!(bf.next_missing(8191, 8193), None);
        assert_eq!(bf.next_missing(8191, 9000), Some(8193));
        assert_eq!(bf.next_present(6, 100), Some(9));
        assert_eq!(bf.next_present(10, 8191), None);
        assert_eq!(bf.next_present(10, u64::MAX), Some(8191));
        assert_eq!(bf.next_present(8193, u64::MAX), Some(20000));
        assert_eq!(bf.last_data(), Some(20000));
        assert_eq!(Bitfield::new().last_data(), None);
        assert_eq!(bf.data_bytes(0, 16), vec![0b0001_1100, 0b0100_0000]);
        assert_eq!(bf.data_bytes(3, 3), vec![0b1110_0000]);
        assert_eq!(bf.data_bytes(4, 6), vec![0b1100_0100]);
        assert_eq!(bf.data_bytes(8190, 4), vec![0b0110_0000]);
        assert!(bf.data_bytes(0, 0).is_empty());
    }

    #[test]
    fn limits_do_not_panic() {
        let mut bf = Bitfield::new();
        for i in [
            u64::MAX,
            u64::MAX - 1,
            MAX_NODE,
            MAX_NODE - 1,
            MAX_NODE - 2,
            1 << 52,
            (1 << 53) - 1,
        ] {
            bf.set_data(i, true);
            bf.set_tree(i, true);
            bf.get_data(i);
            bf.get_tree(i);
            bf.verified_by(i);
            bf.digest(i);
            bf.count_data(i, u64::MAX);
            bf.next_missing(i, u64::MAX);
            bf.next_present(i, u64::MAX);
            bf.data_bytes(i, 64);
        }
        bf.blocks();
        bf.last_data();
        assert!(bf.get_data(1 << 52));
        assert!(!bf.get_data(u64::MAX));
        assert!(bf.get_tree(MAX_NODE - 1));
    }

    proptest! {
        #[test]
        fn blocks_equal_appended_length(lens in proptest::collection::vec(1u64..300, 1..6)) {
            let mut bf = Bitfield::new();
            let mut len = 0;
            for add in lens {
                for b in len..len + add {
                    bf.set_data(b, true);
                    bf.set_tree(2 * b, true);
                }
                len += add;
                prop_assert_eq!(bf.blocks(), len);
                prop_assert_eq!(bf.count_data(0, len), len);
                prop_assert_eq!(bf.next_missing(0, u64::MAX), Some(len));
            }
        }

        #[test]
        fn digest_claims_only_held_nodes(
            nodes in proptest::collection::vec(0u64..200, 0..40),
            block in 0u64..120,
        ) {
            let mut bf = Bitfield::new();
            for n in nodes {
                bf.set_tree(n, true);
            }
            let d = bf.digest(block);
            let leaf = 2 * block;
            if d == 1 {
                // Either the leaf, or everything up to a held ancestor.
                let mut n = leaf;
                let mut ok = bf.get_tree(n);
                while !ok && flat_tree::depth(n) < 10 {
                    n = flat_tree::parent(n);
                    ok = bf.get_tree(n);
                }
                prop_assert!(ok);
            } else if d != 0 {
                // Bit k+1 = sibling at depth k; with the low bit set the top bit is the
                // held ancestor.
                let has_root = d & 1 == 1;
                let mut rest = d >> 1;
                let mut next = leaf;
                while rest != 0 {
                    if rest == 1 && has_root {
                        prop_assert!(bf.get_tree(next), "claimed root {} not held", next);
                        break;
                    }
                    if rest & 1 == 1 {
                        let s = flat_tree::sibling(next);
                        prop_assert!(bf.get_tree(s), "claimed node {} not held", s);
                    }
                    next = flat_tree::parent(next);
                    rest >>= 1;
                }
            }
        }

        #[test]
        fn any_index_is_safe(i in any::<u64>(), j in any::<u64>()) {
            let mut bf = Bitfield::new();
            bf.set_data(i, true);
            bf.set_tree(i, true);
            bf.set_tree(j, true);
            let _ = (bf.blocks(), bf.verified_by(i), bf.digest(i), bf.digest(j));
            let _ = bf.count_data(j, i);
            let _ = bf.next_missing(i, j);
            let _ = bf.data_bytes(i, 16);
        }
    }
}
