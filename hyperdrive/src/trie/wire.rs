//! Minimal protobuf (proto2) wire helpers shared by the trie's messages: varints,
//! tags and length-delimited fields. Hand-written so every byte is under our control
//! (field order, `flags` always emitted, empty bytes written as `12 00`).

use super::DecodeError;

/// Protobuf wire types that our messages use or must skip.
pub(crate) const WIRE_VARINT: u8 = 0;
pub(crate) const WIRE_I64: u8 = 1;
pub(crate) const WIRE_LEN: u8 = 2;
pub(crate) const WIRE_I32: u8 = 5;

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: u64) {
    crate::varint::encode(value, out);
}

/// Reads one unsigned LEB128 varint at `*pos`, advancing it. At most 10 bytes; the
/// tenth may only carry the top bit of a u64.
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let rest = buf.get(*pos..).unwrap_or_default();
    let (value, n) = crate::varint::decode(rest).map_err(|e| match e {
        crate::varint::VarintError::Truncated => DecodeError::Truncated,
        crate::varint::VarintError::Overflow => DecodeError::VarintOverflow,
    })?;
    *pos += n;
    Ok(value)
}

pub(crate) fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

pub(crate) fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_tag(out, field, WIRE_VARINT);
    put_varint(out, value);
}

/// One decoded field: its number and its payload.
pub(crate) enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width fields (never used by our schemas) are skipped.
    Fixed,
}

/// Iterates the fields of one message; unknown fields are returned too, so callers
/// skip them as protobuf requires.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    pub(crate) fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = get_varint(self.buf, &mut self.pos)?;
        let field = tag >> 3;
        if field == 0 {
            return Err(DecodeError::BadTag(tag));
        }
        let value = match (tag & 7) as u8 {
            WIRE_VARINT => Field::Varint(get_varint(self.buf, &mut self.pos)?),
            WIRE_LEN => {
                let len = get_varint(self.buf, &mut self.pos)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| self.pos.checked_add(l))
                    .filter(|&e| e <= self.buf.len())
                    .ok_or(DecodeError::Truncated)?;
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Field::Bytes(bytes)
            }
            WIRE_I64 => {
                self.skip(8)?;
                Field::Fixed
            }
            WIRE_I32 => {
                self.skip(4)?;
                Field::Fixed
            }
            _ => return Err(DecodeError::BadTag(tag)),
        };
        Ok(Some((field, value)))
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        Ok(())
    }
}

pub(crate) fn expect_varint(f: Field<'_>, name: &'static str) -> Result<u64, DecodeError> {
    match f {
        Field::Varint(v) => Ok(v),
        _ => Err(DecodeError::WireType(name)),
    }
}

pub(crate) fn expect_bytes<'a>(f: Field<'a>, name: &'static str) -> Result<&'a [u8], DecodeError> {
    match f {
        Field::Bytes(b) => Ok(b),
        _ => Err(DecodeError::WireType(name)),
    }
}

pub(crate) fn expect_string(f: Field<'_>, name: &'static str) -> Result<String, DecodeError> {
    let b = expect_bytes(f, name)?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_and_limits() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
        let mut pos = 0;
        assert_eq!(get_varint(&[0x80], &mut pos), Err(DecodeError::Truncated));
        let mut pos = 0;
        assert_eq!(
            get_varint(&[0xff; 11], &mut pos),
            Err(DecodeError::VarintOverflow)
        );
    }
}
