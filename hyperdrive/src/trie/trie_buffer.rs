//! The compressed pointer trie stored in every node (hypertrie §5).
//!
//! Conceptually an array indexed by digit position; entry `i` is a bucket of slots,
//! slot `j` (< 5) pointing at the nearest node that agrees with this one on digits
//! `0..i` and has digit `j` at `i`; slots `j+5, j+10, …` hold collisions. Stored
//! sparsely (sorted by position) so a hostile `trieLength` or position costs nothing.

use super::wire::{get_varint, put_varint};
use super::DecodeError;

/// Most slots a bucket may have: the bitfield is a varint we read as a u64. (The
/// reference computes it with 32-bit operations, so it never writes more than 31.)
pub const MAX_SLOTS: usize = 64;

/// A decoded or under-construction trie: buckets by digit position, 0 = empty slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrieBuffer {
    buckets: Vec<(usize, Vec<u64>)>,
}

impl TrieBuffer {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket at digit position `i` (empty if absent).
    pub fn bucket(&self, i: usize) -> &[u64] {
        match self.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(n) => &self.buckets[n].1,
            Err(_) => &[],
        }
    }

    /// Slot `j` of bucket `i` (0 when empty or out of range).
    pub fn slot(&self, i: usize, j: usize) -> u64 {
        self.bucket(i).get(j).copied().unwrap_or(0)
    }

    /// The array length the reference would see: highest position + 1 (0 if none).
    pub fn length(&self) -> usize {
        self.buckets.last().map(|b| b.0 + 1).unwrap_or(0)
    }

    /// All present buckets in ascending position.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, &[u64])> {
        self.buckets.iter().map(|(i, b)| (*i, b.as_slice()))
    }

    fn bucket_mut(&mut self, i: usize) -> &mut Vec<u64> {
        let n = match self.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(n) => n,
            Err(n) => {
                self.buckets.insert(n, (i, Vec::new()));
                n
            }
        };
        &mut self.buckets[n].1
    }

    /// Inserts `seq` for digit `val` at position `i` the way put does (§7 `push`):
    /// the first free slot among `val mod 5, +5, +10, …`, unless `seq` is already in
    /// the bucket.
    pub fn push(&mut self, i: usize, val: usize, seq: u64) {
        let mut j = val % 5;
        let bucket = self.bucket_mut(i);
        while bucket.get(j).is_some_and(|&s| s != 0) {
            j += 5;
        }
        if bucket.contains(&seq) {
            return;
        }
        if bucket.len() <= j {
            bucket.resize(j + 1, 0);
        }
        bucket[j] = seq;
    }

    /// Sets a whole bucket (used by decoding and tests).
    pub fn set_bucket(&mut self, i: usize, slots: Vec<u64>) {
        *self.bucket_mut(i) = slots;
    }

    /// Encodes: `varint length`, then per bucket `varint i, varint bitfield, seqs…`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`encode`](Self::encode) appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.length() as u64);
        for (i, bucket) in &self.buckets {
            put_varint(out, *i as u64);
            let mut bitfield: u64 = 0;
            for (j, &seq) in bucket.iter().enumerate().take(MAX_SLOTS) {
                if seq != 0 {
                    bitfield |= 1 << j;
                }
            }
            put_varint(out, bitfield);
            for &seq in bucket.iter().take(MAX_SLOTS) {
                if seq != 0 {
                    put_varint(out, seq);
                }
            }
        }
    }

    /// Decodes a trieBuffer. Each bucket gets length = highest set bit + 1; a position
    /// repeated later replaces the earlier bucket (as assigning into a JS array does).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut pos = 0;
        // The declared length only sized the JS array; positions past it still count.
        let _length = get_varint(buf, &mut pos)?;
        let mut buckets: Vec<(usize, Vec<u64>)> = Vec::new();
        while pos < buf.len() {
            let i = usize::try_from(get_varint(buf, &mut pos)?)
                .map_err(|_| DecodeError::TooLarge("trie position"))?;
            let mut bitfield = get_varint(buf, &mut pos)?;
            let len = 64 - bitfield.leading_zeros() as usize;
            let mut bucket = vec![0u64; len];
            let mut j = 0;
            while bitfield != 0 {
                if bitfield & 1 == 1 {
                    bucket[j] = get_varint(buf, &mut pos)?;
                }
                bitfield >>= 1;
                j += 1;
            }
            buckets.push((i, bucket));
        }
        // Later occurrences of a position win; sort once instead of inserting sorted
        // (a hostile block could list positions in descending order).
        buckets.reverse();
        buckets.sort_by_key(|b| b.0);
        buckets.dedup_by_key(|b| b.0);
        Ok(TrieBuffer { buckets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let t = TrieBuffer::decode(&hex::decode("04030801").unwrap()).unwrap();
        assert_eq!(t.length(), 4);
        assert_eq!(t.bucket(3), &[0, 0, 0, 1]);
        assert_eq!(t.encode(), hex::decode("04030801").unwrap());

        let t = TrieBuffer::decode(&hex::decode("2120840102 01".replace(' ', "")).unwrap());
        let t = t.unwrap();
        assert_eq!(t.bucket(32), &[0, 0, 2, 0, 0, 0, 0, 1]);
        assert_eq!(hex::encode(t.encode()), "21208401020 1".replace(' ', ""));
        assert_eq!(TrieBuffer::new().encode(), vec![0]);
    }

    #[test]
    fn push_uses_overflow_slots_and_skips_duplicates() {
        let mut t = TrieBuffer::new();
        t.push(32, 2, 2);
        t.push(32, 7, 1);
        t.push(32, 2, 1);
        assert_eq!(t.bucket(32), &[0, 0, 2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(TrieBuffer::decode(&[]).is_err());
        assert!(TrieBuffer::decode(&[0x04, 0x03, 0x08]).is_err());
        assert!(TrieBuffer::decode(&[0x04, 0x03]).is_err());
    }
}
