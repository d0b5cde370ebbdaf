//! What the local side wants of one feed, shared by all of its peers: blocks that
//! readers are waiting for (sparse `get`), ranges to download in full, and which blocks
//! are already requested from some peer (so two peers are not asked for the same one).

use std::collections::{BTreeMap, HashSet};

use crate::core::Feed;

/// A range selected for download. `end == None`: everything, including future appends
/// (what a mirror does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub id: u64,
    pub start: u64,
    pub end: Option<u64>,
    /// Lowest index in the range that may still be missing locally. Scans start here,
    /// so picking the next block costs O(blocks in flight), not O(range).
    pub(crate) low_water: u64,
}

/// The feed-level download state (hypercore's `_waiting`, `_selections`, `_reserved`).
#[derive(Debug, Default)]
pub struct Wants {
    /// Block index -> number of local readers waiting for it.
    waiting: BTreeMap<u64, usize>,
    selections: Vec<Selection>,
    reserved: HashSet<u64>,
    /// Learn new lengths eagerly: request the newest block a peer announces even when
    /// no selection covers it (a sparse live reader does this to see appends).
    pub track_length: bool,
    next_id: u64,
}

impl Wants {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a reader waiting for block `index`.
    pub fn wait(&mut self, index: u64) {
        *self.waiting.entry(index).or_insert(0) += 1;
    }

    /// A reader stopped waiting for `index` (got it, timed out or gave up).
    pub fn unwait(&mut self, index: u64) {
        if let Some(n) = self.waiting.get_mut(&index) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&index);
            }
        }
    }

    pub fn waiting(&self) -> impl Iterator<Item = u64> + '_ {
        self.waiting.keys().copied()
    }

    pub fn is_waiting(&self, index: u64) -> bool {
        self.waiting.contains_key(&index)
    }

    /// Select `start..end` (or `start..` when `end` is None) for download. Returns an id
    /// for [`Wants::deselect`] and [`Wants::is_done`].
    pub fn select(&mut self, start: u64, end: Option<u64>) -> u64 {
        self.next_id += 1;
        self.selections.push(Selection {
            id: self.next_id,
            start,
            end,
            low_water: start,
        });
        self.next_id
    }

    pub fn deselect(&mut self, id: u64) {
        self.selections.retain(|s| s.id != id);
    }

    pub fn selections(&self) -> &[Selection] {
        &self.selections
    }

    /// Whether the bounded selection `id` is complete in `feed` (never for open ranges).
    pub fn is_done(&self, id: u64, feed: &Feed) -> bool {
        match self.selections.iter().find(|s| s.id == id) {
            None => true,
            Some(Selection { end: None, .. }) => false,
            Some(&Selection {
                start,
                end: Some(end),
                low_water,
                ..
            }) => {
                let from = low_water.max(start);
                from >= end || feed.bitfield().count_data(from, end) == end - from
            }
        }
    }

    /// Whether anything is wanted at all (so a peer should be asked for data).
    pub fn any(&self) -> bool {
        !self.waiting.is_empty() || !self.selections.is_empty() || self.track_length
    }

    /// Mark `index` as requested from some peer. False if it already was.
    pub fn reserve(&mut self, index: u64) -> bool {
        self.reserved.insert(index)
    }

    pub fn release(&mut self, index: u64) {
        self.reserved.remove(&index);
    }

    pub fn is_reserved(&self, index: u64) -> bool {
        self.reserved.contains(&index)
    }

    /// Move every selection's low-water mark past the blocks now held, so scans for
    /// the next block to request do not walk the downloaded prefix again (without
    /// this a full download costs O(n²) bitfield lookups unless someone prunes).
    /// Amortized O(1) per stored block.
    pub fn advance_low_water(&mut self, feed: &Feed) {
        for s in &mut self.selections {
            let end = s.end.unwrap_or(u64::MAX);
            while s.low_water < end && s.low_water < feed.len() && feed.has(s.low_water) {
                s.low_water += 1;
            }
        }
    }

    /// Drop selections that are complete. Returns the ids that completed.
    pub fn prune(&mut self, feed: &Feed) -> Vec<u64> {
        let mut done = Vec::new();
        self.advance_low_water(feed);
        for s in &mut self.selections {
            if let Some(e) = s.end {
                if s.low_water >= e {
                    done.push(s.id);
                }
            }
        }
        self.selections.retain(|s| !done.contains(&s.id));
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::KeyPair;

    #[test]
    fn low_water_moves_past_held_blocks_only() {
        let mut feed = Feed::in_memory(KeyPair::generate());
        for i in 0..6u8 {
            feed.append(&[i]).expect("append");
        }
        let mut w = Wants::new();
        let id = w.select(2, Some(10));
        w.advance_low_water(&feed);
        // Held up to the feed's length (6); 6..10 are missing.
        assert_eq!(w.selections()[0].low_water, 6);
        assert!(!w.is_done(id, &feed));
        let open = w.select(4, None);
        w.advance_low_water(&feed);
        let s = w.selections().iter().find(|s| s.id == open).expect("open");
        assert_eq!(s.low_water, 6);
        assert_eq!(w.prune(&feed), Vec::<u64>::new());
        assert_eq!(w.selections().len(), 2);
    }
}
