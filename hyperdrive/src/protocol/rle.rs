//! bitfield-rle (spec §8.3): the run-length code of the bitfield in a `Have`.
//!
//! A token starts with a varint `n`. Odd `n` is a run of `n >> 2` bytes, `0xff` if
//! `n & 2` else `0x00`; even `n` is a literal of the `n >> 1` bytes that follow.
//! The encoder reproduces the reference's choices exactly (a run is split out of the
//! pending literal only when that makes the output strictly shorter), so our `Have`
//! messages are byte-identical to Node's. The decoder takes a caller's bound on the
//! output size: a few bytes of input can describe gigabytes of zeros.

use thiserror::Error;

use super::varint;
use super::ProtocolError;

/// Why an encoded bitfield was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RleError {
    #[error("truncated bitfield-rle token varint at byte {offset}")]
    Truncated { offset: usize },
    #[error("bitfield-rle literal at byte {offset} runs past the end")]
    LiteralPastEnd { offset: usize },
    #[error("bitfield-rle token varint at byte {offset} overflows")]
    Overflow { offset: usize },
    #[error("bitfield-rle decodes to more than {max} bytes")]
    TooLarge { max: usize },
}

impl From<RleError> for ProtocolError {
    fn from(e: RleError) -> Self {
        ProtocolError::Malformed {
            what: "bitfield-rle",
            reason: e.to_string(),
        }
    }
}

/// Encode `bitfield` byte-identically to bitfield-rle@2 `encode`.
pub fn encode(bitfield: &[u8]) -> Vec<u8> {
    let mut enc = Encoder {
        input: trim_trailing_zeros(bitfield),
        input_offset: 0,
        out: Vec::new(),
    };
    let input = enc.input;
    let mut len: usize = 0;
    let mut bits: u8 = 0;
    for (i, &byte) in input.iter().enumerate() {
        if byte == bits {
            len += 1;
            continue;
        }
        if len > 0 {
            enc.update(i, len, bits);
        }
        if byte == 0x00 || byte == 0xff {
            bits = byte;
            len = 1;
        } else {
            len = 0;
        }
    }
    if len > 0 {
        enc.update(input.len(), len, bits);
    }
    enc.finish()
}

fn trim_trailing_zeros(bitfield: &[u8]) -> &[u8] {
    let end = bitfield
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    &bitfield[..end]
}

struct Encoder<'a> {
    input: &'a [u8],
    /// Start of the bytes not yet written (the pending literal).
    input_offset: usize,
    out: Vec<u8>,
}

impl Encoder<'_> {
    /// A run of `len` bytes equal to `bit` ended just before `i`: write it as a run
    /// token (after the pending literal before it) iff that is strictly shorter than
    /// keeping everything since `input_offset` as one literal.
    fn update(&mut self, i: usize, len: usize, bit: u8) {
        let head_len = i - len - self.input_offset;
        let head_cost = if head_len > 0 {
            varint::encoded_len(2 * head_len as u64) + head_len
        } else {
            0
        };
        let token = 4 * len as u64 + if bit != 0 { 2 } else { 0 } + 1;
        let enc_cost = head_cost + varint::encoded_len(token);
        let pending = i - self.input_offset;
        let base_cost = varint::encoded_len(2 * pending as u64) + pending;
        if enc_cost >= base_cost {
            return;
        }
        if head_len > 0 {
            self.literal(i - len);
        }
        varint::encode(token, &mut self.out);
        self.input_offset = i;
    }

    fn literal(&mut self, end: usize) {
        let head = &self.input[self.input_offset..end];
        varint::encode(2 * head.len() as u64, &mut self.out);
        self.out.extend_from_slice(head);
        self.input_offset = end;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.input_offset < self.input.len() {
            self.literal(self.input.len());
        }
        self.out
    }
}

enum Token {
    Run { len: u64, fill: u8 },
    Literal { start: usize, len: usize },
}

/// Walk the tokens of `encoded`, checking structure; calls `f` for each.
fn for_each_token(
    encoded: &[u8],
    mut f: impl FnMut(Token) -> Result<(), RleError>,
) -> Result<(), RleError> {
    let mut pos = 0;
    while pos < encoded.len() {
        let (n, used) = varint::decode(&encoded[pos..]).map_err(|e| match e {
            varint::VarintError::Truncated => RleError::Truncated { offset: pos },
            varint::VarintError::Overflow => RleError::Overflow { offset: pos },
        })?;
        let token_at = pos;
        pos += used;
        if n & 1 == 1 {
            let fill = if n & 2 != 0 { 0xff } else { 0x00 };
            f(Token::Run { len: n >> 2, fill })?;
        } else {
            let len = usize::try_from(n >> 1)
                .ok()
                .filter(|&len| len <= encoded.len() - pos)
                .ok_or(RleError::LiteralPastEnd { offset: token_at })?;
            f(Token::Literal { start: pos, len })?;
            pos += len;
        }
    }
    Ok(())
}

/// Decode `encoded` to exactly the bytes it describes (no padding). Errors if the
/// result would exceed `max_len` bytes, before allocating it.
pub fn decode(encoded: &[u8], max_len: usize) -> Result<Vec<u8>, RleError> {
    decode_aligned(encoded, 1, max_len)
}

/// Decode and pad with zero bytes to a multiple of `align` (hypercore uses 4), as
/// the reference's `align(n)` decoders do. `max_len` bounds the padded length.
pub fn decode_aligned(encoded: &[u8], align: usize, max_len: usize) -> Result<Vec<u8>, RleError> {
    let too_large = RleError::TooLarge { max: max_len };
    // First pass: the size, checked against the bound before any allocation.
    let mut total: u64 = 0;
    for_each_token(encoded, |t| {
        let len = match t {
            Token::Run { len, .. } => len,
            Token::Literal { len, .. } => len as u64,
        };
        total = total
            .checked_add(len)
            .filter(|&t| t <= max_len as u64)
            .ok_or(too_large.clone())?;
        Ok(())
    })?;
    // Within max_len, so it fits in usize.
    let total = total as usize;
    let align = align.max(1);
    let padded = total
        .div_ceil(align)
        .checked_mul(align)
        .filter(|&p| p <= max_len)
        .ok_or(too_large)?;
    let mut out = Vec::with_capacity(padded);
    for_each_token(encoded, |t| {
        match t {
            // Bounded by max_len in the first pass.
            Token::Run { len, fill } => out.resize(out.len() + len as usize, fill),
            Token::Literal { start, len } => out.extend_from_slice(&encoded[start..start + len]),
        }
        Ok(())
    })?;
    out.resize(padded, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{core_vectors, unhex};
    use proptest::prelude::*;

    #[test]
    fn reference_vectors() {
        let v = core_vectors();
        let list = v["bitfieldRle"].as_array().expect("list");
        assert!(list.len() >= 5);
        for case in list {
            let input = unhex(&case["input"]);
            let encoded = unhex(&case["encoded"]);
            let aligned = unhex(&case["decodedAlign4"]);
            assert_eq!(encode(&input), encoded, "encode {}", case["input"]);
            assert_eq!(decode_aligned(&encoded, 4, 1 << 20).expect("ok"), aligned);
            let exact = decode(&encoded, 1 << 20).expect("ok");
            assert_eq!(exact, trim_trailing_zeros(&input));
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encode(&[]), Vec::<u8>::new());
        assert_eq!(encode(&[0, 0, 0]), Vec::<u8>::new());
        // The spec's Have example: one byte 0xfe is a 1-byte literal.
        assert_eq!(encode(&[0xfe]), [0x02, 0xfe]);
        // 16 bytes of 0xff: run token 4*16+2+1 = 67 = 0x43.
        assert_eq!(encode(&[0xff; 16]), [0x43]);
        // A short run is not worth splitting out of a literal.
        assert_eq!(encode(&[0x12, 0xff, 0x34]), [0x06, 0x12, 0xff, 0x34]);
    }

    /// Outputs of the reference's `encode` for inputs chosen to hit its cost rule
    /// from both sides (runs kept inside literals, single-byte runs split out).
    #[test]
    fn reference_encoder_choices() {
        let cat = |parts: &[(u8, usize)]| -> Vec<u8> {
            parts
                .iter()
                .flat_map(|&(b, n)| std::iter::repeat_n(b, n))
                .collect()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (hex::decode("0000ff12").unwrap(), "09070212"),
            (hex::decode("ffffff000000001234").unwrap(), "0f11041234"),
            (hex::decode("1200000000ff").unwrap(), "02121107"),
            (cat(&[(0, 200), (1, 1)]), "a1060201"),
            (cat(&[(0xff, 40), (0, 3), (0xff, 40)]), "a3010da301"),
            (hex::decode("ab0000ab000000ab").unwrap(), "02ab0902ab0d02ab"),
            (hex::decode("ffffff12ffffff").unwrap(), "0f02120f"),
            (cat(&[(0, 64), (0xff, 64), (0x7f, 1)]), "81028302027f"),
            (
                hex::decode("ff00ff00ff00ff00ff").unwrap(),
                "070507050705070507",
            ),
            (cat(&[(0xff, 8200)]), "a38002"),
        ];
        for (input, expected) in cases {
            let enc = encode(&input);
            assert_eq!(hex::encode(&enc), expected, "{}", hex::encode(&input));
            assert_eq!(decode(&enc, input.len()).unwrap(), input);
        }
    }

    #[test]
    fn bounds_and_errors() {
        // 0xff run of 2^40 bytes from a handful of input bytes.
        let mut bomb = Vec::new();
        varint::encode((1u64 << 42) | 3, &mut bomb);
        assert_eq!(
            decode(&bomb, 1 << 20),
            Err(RleError::TooLarge { max: 1 << 20 })
        );
        // Many runs summing past the bound.
        let many = [0x43u8; 100]; // 100 × 16 bytes
        assert!(decode(&many, 1599).is_err());
        assert_eq!(decode(&many, 1600).expect("fits").len(), 1600);
        // Padding counts against the bound.
        assert!(decode_aligned(&[0x02, 0xfe], 4, 3).is_err());
        assert_eq!(
            decode_aligned(&[0x02, 0xfe], 4, 4).expect("ok"),
            [0xfe, 0, 0, 0]
        );
        assert_eq!(
            decode(&[0x04, 0xaa], 10),
            Err(RleError::LiteralPastEnd { offset: 0 })
        );
        assert_eq!(
            decode(&[0x02, 0xaa, 0x80], 10),
            Err(RleError::Truncated { offset: 2 })
        );
        assert!(matches!(
            decode(&[0xff; 12], 10),
            Err(RleError::Overflow { .. })
        ));
        let huge_literal = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(decode(&huge_literal, usize::MAX).is_err());
        assert_eq!(decode(&[], 0).expect("empty"), Vec::<u8>::new());
    }

    fn bitfield_strategy() -> impl Strategy<Value = Vec<u8>> {
        // Bitfields are mostly runs: mix runs of 00/ff with random literals.
        proptest::collection::vec(
            prop_oneof![
                (1usize..300).prop_map(|n| vec![0x00; n]),
                (1usize..300).prop_map(|n| vec![0xff; n]),
                proptest::collection::vec(any::<u8>(), 1..20),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn roundtrip(bits in bitfield_strategy()) {
            let enc = encode(&bits);
            let dec = decode(&enc, bits.len()).expect("decodes within its own size");
            prop_assert_eq!(dec.as_slice(), trim_trailing_zeros(&bits));
            // Never longer than one literal of the whole (trimmed) input.
            let t = trim_trailing_zeros(&bits).len();
            let literal = if t == 0 { 0 } else { varint::encoded_len(2 * t as u64) + t };
            prop_assert!(enc.len() <= literal);
            let aligned = decode_aligned(&enc, 4, bits.len() + 3).expect("aligned");
            prop_assert_eq!(aligned.len() % 4, 0);
            prop_assert_eq!(&aligned[..dec.len()], dec.as_slice());
            prop_assert!(aligned[dec.len()..].iter().all(|&b| b == 0));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..5000) {
            if let Ok(out) = decode(&bytes, max) {
                prop_assert!(out.len() <= max);
            }
        }
    }
}
