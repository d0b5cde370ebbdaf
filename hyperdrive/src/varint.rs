//! Unsigned LEB128 varints, the one implementation for every layer: protocol frames,
//! headers, extension ids and bitfield-rle tokens, and the hand-written protobuf of
//! the trie, Stat and DHT messages.
//!
//! Decoding is strict about size: at most 10 bytes and no bits beyond 64, so a
//! remote cannot make us loop or silently wrap. Encoding always writes the
//! shortest form, which is what the Node `varint` module writes.

use thiserror::Error;

/// The longest varint a `u64` can need.
pub const MAX_VARINT_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VarintError {
    /// The input ended before a byte without the continuation bit.
    #[error("varint is truncated")]
    Truncated,
    /// More than 10 bytes, or a 10th byte with bits beyond 2^64.
    #[error("varint overflows 64 bits")]
    Overflow,
}

/// Number of bytes `encode(value)` writes (1..=10).
pub fn encoded_len(value: u64) -> usize {
    // 7 payload bits per byte; a zero still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Append the shortest LEB128 encoding of `value` to `out`.
pub fn encode(value: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; MAX_VARINT_LEN];
    let n = encode_to_array(value, &mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Write the encoding into a fixed array, returning the number of bytes used.
pub fn encode_to_array(mut value: u64, buf: &mut [u8; MAX_VARINT_LEN]) -> usize {
    let mut i = 0;
    while value >= 0x80 {
        buf[i] = (value as u8) | 0x80;
        value >>= 7;
        i += 1;
    }
    buf[i] = value as u8;
    i + 1
}

/// Decode one varint from the start of `input`: the value and the number of
/// bytes it took.
pub fn decode(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(MAX_VARINT_LEN) {
        let payload = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && payload > 1 {
            // The 10th byte holds bit 63 only.
            return Err(VarintError::Overflow);
        }
        value |= payload << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= MAX_VARINT_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (1_048_576, &[0x80, 0x80, 0x40]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(out, bytes, "encode {value}");
            assert_eq!(encoded_len(value), bytes.len());
            assert_eq!(decode(bytes), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn errors() {
        assert_eq!(decode(&[]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0xff; 9]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::Overflow));
        assert_eq!(decode(&[0xff; 11]), Err(VarintError::Overflow));
        // 10th byte carrying bit 64.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(decode(&over), Err(VarintError::Overflow));
        // Trailing bytes after a complete varint are left alone.
        assert_eq!(decode(&[0x05, 0xff]), Ok((5, 1)));
    }

    proptest! {
        #[test]
        fn roundtrip(value: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            encode(value, &mut out);
            prop_assert_eq!(out.len(), encoded_len(value));
            let n = out.len();
            out.extend_from_slice(&tail);
            prop_assert_eq!(decode(&out), Ok((value, n)));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode(&bytes);
        }
    }
}
