//! The last few content blocks read, shared by every handle of a drive.
//!
//! Why: the kernel reads a FUSE file in pieces of 128 KiB while drives written by us (and
//! by the reference's default writer) store blocks of up to 512 KiB, so a sequential
//! reader asks for every block four times; without this each ask reads the whole block
//! from storage again. Blocks of a feed never change once held (append-only, verified
//! before they are stored), so a cached copy is never stale.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Blocks larger than this are not cached (a feed written with huge blocks would make
/// the cache hold too much).
pub const MAX_CACHED_BLOCK: usize = 1 << 20;
/// Total bytes the cache holds at most.
pub const CACHE_BYTES: usize = 4 << 20;

/// A small most-recently-used list of `(block index, bytes)`.
#[derive(Debug, Default)]
pub struct BlockCache {
    blocks: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
}

impl BlockCache {
    /// Block `index` if cached (it becomes the most recent).
    pub fn get(&self, index: u64) -> Option<Arc<Vec<u8>>> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let pos = blocks.iter().position(|(i, _)| *i == index)?;
        let entry = blocks.remove(pos)?;
        let data = entry.1.clone();
        blocks.push_front(entry);
        Some(data)
    }

    /// Remembers block `index`, dropping the least recent blocks beyond the bounds.
    pub fn put(&self, index: u64, data: Arc<Vec<u8>>) {
        if data.len() > MAX_CACHED_BLOCK {
            return;
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.retain(|(i, _)| *i != index);
        blocks.push_front((index, data));
        let mut total = 0;
        let mut keep = 0;
        for (_, b) in blocks.iter() {
            if total + b.len() > CACHE_BYTES && keep > 0 {
                break;
            }
            total += b.len();
            keep += 1;
        }
        blocks.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_blocks_within_the_byte_bound() {
        let c = BlockCache::default();
        assert!(c.get(0).is_none());
        let block = |n: usize| Arc::new(vec![n as u8; 512 * 1024]);
        for i in 0..10u64 {
            c.put(i, block(i as usize));
        }
        // 4 MiB of 512 KiB blocks: the 8 most recent.
        assert!(c.get(1).is_none());
        assert_eq!(c.get(2).map(|b| b[0]), Some(2));
        assert_eq!(c.get(9).map(|b| b[0]), Some(9));
        // 2 was used last: it survives the next insertions, 3 does not.
        c.put(10, block(10));
        assert!(c.get(3).is_none());
        assert!(c.get(2).is_some());
        c.put(99, Arc::new(vec![0; MAX_CACHED_BLOCK + 1]));
        assert!(c.get(99).is_none(), "too big to cache");
        c.put(5, Arc::new(vec![7]));
        assert_eq!(c.get(5).map(|b| b[0]), Some(7), "replaced");
    }
}
