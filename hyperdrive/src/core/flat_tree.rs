//! Flat-tree arithmetic (flat-tree@1.13.0): the in-order numbering of a binary tree
//! laid over a list. Block `b` is node `2b`; parents are odd.
//!
//! All functions are total on `u64` inputs that a feed can reach (indices < 2^62).

/// Number of trailing one bits: the node's height above the leaves.
#[inline]
pub fn depth(i: u64) -> u32 {
    (!i).trailing_zeros()
}

/// Position of `i` among the nodes of its depth.
#[inline]
pub fn offset(i: u64) -> u64 {
    i >> (depth(i) + 1)
}

/// The node at `depth` and `offset`.
#[inline]
pub fn index(depth: u32, offset: u64) -> u64 {
    ((offset << 1) + 1) * (1u64 << depth) - 1
}

#[inline]
pub fn parent(i: u64) -> u64 {
    let d = depth(i);
    index(d + 1, offset(i) >> 1)
}

#[inline]
pub fn sibling(i: u64) -> u64 {
    let d = depth(i);
    index(d, offset(i) ^ 1)
}

/// Left and right children, or `None` for a leaf.
#[inline]
pub fn children(i: u64) -> Option<(u64, u64)> {
    let d = depth(i);
    if d == 0 {
        return None;
    }
    let o = offset(i) * 2;
    Some((index(d - 1, o), index(d - 1, o + 1)))
}

#[inline]
pub fn left_child(i: u64) -> Option<u64> {
    children(i).map(|c| c.0)
}

#[inline]
pub fn right_child(i: u64) -> Option<u64> {
    children(i).map(|c| c.1)
}

/// Leftmost leaf node under `i` (`i` itself for a leaf).
#[inline]
pub fn left_span(i: u64) -> u64 {
    let d = depth(i);
    if d == 0 {
        return i;
    }
    offset(i) * (2u64 << d)
}

/// Rightmost leaf node under `i` (`i` itself for a leaf).
#[inline]
pub fn right_span(i: u64) -> u64 {
    let d = depth(i);
    if d == 0 {
        return i;
    }
    (offset(i) + 1) * (2u64 << d) - 2
}

/// Number of nodes in the subtree rooted at `i`, including `i`.
#[inline]
pub fn count(i: u64) -> u64 {
    (2u64 << depth(i)) - 1
}

/// The roots of the perfect subtrees that exactly cover leaf nodes `0..i`
/// (`i` is a node index, so `full_roots(2 * len)` gives the roots at length `len`).
/// Left to right. `i` must be even.
pub fn full_roots(i: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(64);
    full_roots_into(i, &mut out);
    out
}

/// As [`full_roots`], appending into `out` (which is cleared first).
pub fn full_roots_into(i: u64, out: &mut Vec<u64>) {
    out.clear();
    debug_assert!(i & 1 == 0, "full_roots takes an even node index");
    let mut tmp = i >> 1;
    let mut off = 0u64;
    let mut factor = 1u64;
    loop {
        if tmp == 0 {
            return;
        }
        while factor * 2 <= tmp {
            factor *= 2;
        }
        out.push(off + factor - 1);
        off += 2 * factor;
        tmp -= factor;
        factor = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        assert_eq!(parent(0), 1);
        assert_eq!(parent(2), 1);
        assert_eq!(parent(1), 3);
        assert_eq!(sibling(3), 11);
        assert_eq!(children(7), Some((3, 11)));
        assert_eq!(children(0), None);
        assert_eq!((left_span(3), right_span(3)), (0, 6));
        assert_eq!(count(3), 7);
        assert_eq!(full_roots(0), Vec::<u64>::new());
        assert_eq!(full_roots(14), vec![3, 9, 12]);
        assert_eq!(full_roots(20), vec![7, 17]);
    }
}
