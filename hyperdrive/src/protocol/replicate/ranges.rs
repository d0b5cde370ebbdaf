//! A set of block indices stored as disjoint half-open ranges.
//!
//! Used for what a remote peer claims to hold: a `Have{start, length}` may cover 2^50
//! blocks, so a bitmap would let one message allocate without bound, while a range set
//! costs one entry per run. The number of runs is capped; a peer that fragments it
//! past the cap is flooding and gets disconnected.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent ranges: `start -> end` (exclusive).
#[derive(Debug, Clone, Default)]
pub struct RangeSet {
    runs: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of disjoint runs (what memory use is proportional to).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn clear(&mut self) {
        self.runs.clear();
    }

    pub fn contains(&self, i: u64) -> bool {
        self.runs
            .range(..=i)
            .next_back()
            .is_some_and(|(_, &end)| i < end)
    }

    /// One past the highest member, or 0 when empty.
    pub fn end(&self) -> u64 {
        self.runs.iter().next_back().map_or(0, |(_, &e)| e)
    }

    /// Add `r` to the set, merging with touching runs.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let mut start = r.start;
        let mut end = r.end;
        // A run that starts at or before `start` and reaches it merges in.
        if let Some((&s, &e)) = self.runs.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        // Runs starting inside [start, end] merge in.
        let overlapping: Vec<u64> = self.runs.range(start..=end).map(|(&s, _)| s).collect();
        for s in overlapping {
            if let Some(e) = self.runs.remove(&s) {
                end = end.max(e);
            }
        }
        self.runs.insert(start, end);
    }

    /// Remove `r` from the set.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let mut touched: Vec<(u64, u64)> = Vec::new();
        if let Some((&s, &e)) = self.runs.range(..r.start).next_back() {
            if e > r.start {
                touched.push((s, e));
            }
        }
        touched.extend(self.runs.range(r.start..r.end).map(|(&s, &e)| (s, e)));
        for (s, e) in touched {
            self.runs.remove(&s);
            if s < r.start {
                self.runs.insert(s, r.start);
            }
            if e > r.end {
                self.runs.insert(r.end, e);
            }
        }
    }

    /// The lowest member `>= from` and `< to`, if any.
    pub fn next_in(&self, from: u64, to: u64) -> Option<u64> {
        if from >= to {
            return None;
        }
        if let Some((_, &e)) = self.runs.range(..=from).next_back() {
            if from < e {
                return Some(from);
            }
        }
        self.runs
            .range(from..to)
            .next()
            .map(|(&s, _)| s)
            .filter(|&s| s < to)
    }

    /// Iterate the runs that intersect `from..to`, clipped to it.
    pub fn runs_in(&self, from: u64, to: u64) -> impl Iterator<Item = Range<u64>> + '_ {
        let first = self
            .runs
            .range(..=from)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(from);
        // An empty query (`from >= to`) yields nothing; BTreeMap::range would panic
        // on the inverted range `first..to`.
        self.runs
            .range(first.min(to)..to)
            .map(move |(&s, &e)| s.max(from)..e.min(to))
            .filter(|r| r.start < r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_and_splits() {
        let mut s = RangeSet::new();
        s.insert(0..4);
        s.insert(4..8);
        assert_eq!(s.runs(), 1);
        s.insert(10..12);
        assert_eq!(s.runs(), 2);
        s.remove(2..11);
        assert!(s.contains(1) && !s.contains(2) && !s.contains(10) && s.contains(11));
        assert_eq!(s.next_in(2, 100), Some(11));
        assert_eq!(s.end(), 12);
        s.insert(0..u64::MAX);
        assert_eq!(s.runs(), 1);
    }

    proptest! {
        #[test]
        fn model(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..16), 0..60), probe in 0u64..80) {
            let mut s = RangeSet::new();
            let mut m = BTreeSet::new();
            for (add, start, len) in ops {
                if add { s.insert(start..start + len); m.extend(start..start + len); }
                else { s.remove(start..start + len); for i in start..start + len { m.remove(&i); } }
            }
            for i in 0..80 { prop_assert_eq!(s.contains(i), m.contains(&i)); }
            prop_assert_eq!(s.next_in(probe, 80), m.range(probe..80).next().copied());
            let flat: Vec<u64> = s.runs_in(probe, 70).flatten().collect();
            // BTreeSet::range panics on an inverted range; runs_in yields nothing.
            let want: Vec<u64> = m.range(probe.min(70)..70).copied().collect();
            prop_assert_eq!(flat, want);
        }
    }
}
