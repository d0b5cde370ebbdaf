//! Framing (simple-message-channels): `varint(L) ‖ varint(channel << 4 | type) ‖ body`,
//! where `L` counts the header varint and the body, and `L = 0` is a keep-alive.
//!
//! This module owns only the byte layout: it never touches a socket, never decrypts,
//! and never interprets channel numbers. The decoder is sans-IO: push plaintext
//! bytes in any chunking, pull whole frames. It holds at most one maximal frame
//! ([`FrameDecoder::capacity`]), so a remote cannot make it grow without bound, and
//! it hands out each body as a [`Bytes`] view of its buffer (no copy).

use bytes::{Buf, Bytes, BytesMut};

use super::messages::Message;
use super::varint::{self, VarintError, MAX_VARINT_LEN};
use super::ProtocolError;

/// Largest body (after the header varint) the reference accepts: 8 MiB.
pub const MAX_BODY_LEN: usize = 8 * 1024 * 1024;

/// One complete frame, header split into its parts, body not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub channel: u64,
    /// 0..=15; see [`Message::decode`] for what each means.
    pub type_id: u8,
    pub body: Bytes,
}

impl Frame {
    /// Decode the body; `Ok(None)` for the ignored types 11..14.
    pub fn message(&self) -> Result<Option<Message>, ProtocolError> {
        Message::decode_bytes(self.type_id, self.body.clone())
    }
}

/// What the decoder yields: a frame, or a keep-alive (which only proves liveness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    KeepAlive,
    Frame(Frame),
}

/// Sans-IO frame decoder with a bounded buffer.
///
/// Use: `push` bytes (it takes as many as fit), then call `next_frame` until it
/// returns `Ok(None)`, then push the rest. [`FrameDecoder::push_all`] does that loop.
/// After an error the stream is dead (as in the reference) and every later call
/// errors too.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_body: usize,
    failed: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the reference's 8 MiB body limit.
    pub fn new() -> Self {
        Self::with_max_body(MAX_BODY_LEN)
    }

    /// A decoder with a different body limit (tests, or a stricter peer policy).
    pub fn with_max_body(max_body: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_body,
            failed: false,
        }
    }

    /// The most bytes the decoder ever buffers: the wire size of a frame with the
    /// largest allowed body and the longest header varint. Because any acceptable
    /// frame fits, a full buffer always holds a complete frame (or an error), so
    /// `push` followed by draining `next_frame` always makes progress.
    pub fn capacity(&self) -> usize {
        let max_l = self.max_body.saturating_add(MAX_VARINT_LEN);
        varint::encoded_len(max_l as u64).saturating_add(max_l)
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append as many bytes of `data` as fit under [`capacity`](Self::capacity) and
    /// return how many were taken. Take frames out with `next_frame` before pushing
    /// the rest.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let room = self.capacity().saturating_sub(self.buf.len());
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// Push all of `data`, handing every event to `on_event` as soon as it is
    /// complete. Stops at the first error (from the decoder or from `on_event`).
    pub fn push_all<E: From<ProtocolError>>(
        &mut self,
        mut data: &[u8],
        mut on_event: impl FnMut(FrameEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let n = self.push(data);
            data = &data[n..];
            while let Some(ev) = self.next_frame()? {
                on_event(ev)?;
            }
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<FrameEvent>, ProtocolError> {
        if self.failed {
            return Err(ProtocolError::Malformed {
                what: "frame",
                reason: "the stream already failed".into(),
            });
        }
        let res = self.parse();
        if res.is_err() {
            self.failed = true;
            self.buf = BytesMut::new();
        }
        res
    }

    fn parse(&mut self) -> Result<Option<FrameEvent>, ProtocolError> {
        let (len, len_bytes) = match varint::decode(&self.buf) {
            Ok(v) => v,
            Err(VarintError::Truncated) => return Ok(None),
            Err(VarintError::Overflow) => return Err(bad("frame length varint is too long")),
        };
        if len == 0 {
            self.buf.advance(len_bytes);
            return Ok(Some(FrameEvent::KeepAlive));
        }
        // Even the longest header leaves a body over the limit: refuse before
        // waiting for (or buffering) any of it.
        if len > (self.max_body as u64).saturating_add(MAX_VARINT_LEN as u64) {
            return Err(ProtocolError::FrameTooLarge { size: len });
        }
        // `len` fits in usize now (it is at most max_body + 10).
        let len = len as usize;
        let in_frame = &self.buf[len_bytes..self.buf.len().min(len_bytes + len)];
        let (header, header_bytes) = match varint::decode(in_frame) {
            Ok(v) => v,
            Err(VarintError::Truncated) if in_frame.len() < len => return Ok(None),
            Err(_) => return Err(bad("frame length is shorter than its header")),
        };
        let body_len = len - header_bytes;
        if body_len > self.max_body {
            return Err(ProtocolError::FrameTooLarge {
                size: body_len as u64,
            });
        }
        let total = len_bytes + len;
        if self.buf.len() < total {
            // Make room for the whole frame once, instead of growing in steps.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(len_bytes + header_bytes);
        let body = self.buf.split_to(body_len).freeze();
        Ok(Some(FrameEvent::Frame(Frame {
            channel: header >> 4,
            type_id: (header & 0x0f) as u8,
            body,
        })))
    }
}

fn bad(reason: &str) -> ProtocolError {
    ProtocolError::Malformed {
        what: "frame",
        reason: reason.to_string(),
    }
}

/// The header varint value, or an error if `channel` does not leave room for the
/// four type bits or the type does not fit them.
fn header(channel: u64, type_id: u8) -> Result<u64, ProtocolError> {
    if channel > u64::MAX >> 4 || type_id > 0x0f {
        return Err(ProtocolError::Malformed {
            what: "frame header",
            reason: format!("channel {channel} / type {type_id} does not fit"),
        });
    }
    Ok(channel << 4 | u64::from(type_id))
}

/// Append the frame for `msg` on `channel` to `out`, writing the body straight into
/// `out` (no scratch buffer). Errors if the body exceeds 8 MiB (the remote would
/// destroy the stream) or the channel is too large for the header.
pub fn encode_frame(channel: u64, msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let body_len = msg.encoded_len();
    let header = write_prefix(channel, msg.type_id(), body_len, out)?;
    let start = out.len();
    msg.encode_body(out);
    debug_assert_eq!(out.len() - start, body_len, "header {header}");
    Ok(())
}

/// Append a frame with an already-encoded body (any type 0..=15).
pub fn encode_raw_frame(
    channel: u64,
    type_id: u8,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    write_prefix(channel, type_id, body.len(), out)?;
    out.extend_from_slice(body);
    Ok(())
}

/// The wire size of `encode_frame(channel, msg, _)`.
pub fn encoded_frame_len(channel: u64, msg: &Message) -> Result<usize, ProtocolError> {
    let h = header(channel, msg.type_id())?;
    let l = varint::encoded_len(h) + msg.encoded_len();
    Ok(varint::encoded_len(l as u64) + l)
}

/// Append a keep-alive (`L = 0`, the single byte `00`).
pub fn encode_keep_alive(out: &mut Vec<u8>) {
    out.push(0);
}

fn write_prefix(
    channel: u64,
    type_id: u8,
    body_len: usize,
    out: &mut Vec<u8>,
) -> Result<u64, ProtocolError> {
    let header = header(channel, type_id)?;
    if body_len > MAX_BODY_LEN {
        return Err(ProtocolError::FrameTooLarge {
            size: body_len as u64,
        });
    }
    let len = varint::encoded_len(header) + body_len;
    out.reserve(varint::encoded_len(len as u64) + len);
    varint::encode(len as u64, out);
    varint::encode(header, out);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::tests::arb_message;
    use crate::protocol::messages::{core_vectors, unhex, Want};
    use proptest::prelude::*;

    /// Decode everything in `chunks` (fed in that chunking); panics on errors.
    fn decode_chunks(chunks: &[&[u8]]) -> Vec<FrameEvent> {
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            dec.push_all(chunk, |ev| {
                out.push(ev);
                Ok::<_, ProtocolError>(())
            })
            .expect("decodes");
        }
        assert_eq!(dec.buffered(), 0, "no bytes left over");
        out
    }

    fn frames_of(bytes: &[u8]) -> Vec<FrameEvent> {
        decode_chunks(&[bytes])
    }

    #[test]
    fn message_vectors_frame_byte_for_byte() {
        let v = core_vectors();
        let mut checked = 0;
        for entry in v["messages"]["list"].as_array().expect("list") {
            let body = unhex(&entry["body"]);
            let type_id = entry["type"].as_u64().expect("type") as u8;
            let msg = Message::decode(type_id, &body)
                .expect("decodes")
                .expect("not ignored");
            for (key, channel) in [
                ("frameChannel0", 0u64),
                ("frameChannel1", 1),
                ("frameChannel8", 8),
            ] {
                let Some(hex) = entry.get(key) else { continue };
                let wire = unhex(hex);
                let mut out = Vec::new();
                encode_frame(channel, &msg, &mut out).expect("encodes");
                assert_eq!(out, wire, "{key} of {}", entry["name"]);
                assert_eq!(encoded_frame_len(channel, &msg).expect("len"), wire.len());
                let mut raw = Vec::new();
                encode_raw_frame(channel, type_id, &body, &mut raw).expect("encodes");
                assert_eq!(raw, wire);
                let evs = frames_of(&wire);
                assert_eq!(
                    evs,
                    vec![FrameEvent::Frame(Frame {
                        channel,
                        type_id,
                        body: Bytes::from(body.clone()),
                    })]
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 34, "17 messages on two channels each");
    }

    #[test]
    fn keep_alive_vector() {
        let v = core_vectors();
        let wire = unhex(&v["messages"]["keepAlive"]);
        let mut out = Vec::new();
        encode_keep_alive(&mut out);
        assert_eq!(out, wire);
        assert_eq!(frames_of(&wire), vec![FrameEvent::KeepAlive]);
    }

    fn session_frames() -> Vec<(u64, u8, Vec<u8>)> {
        let v = core_vectors();
        v["session"]["plaintextFrames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| {
                (
                    f["channel"].as_u64().expect("channel"),
                    f["type"].as_u64().expect("type") as u8,
                    unhex(&f["frame"]),
                )
            })
            .collect()
    }

    #[test]
    fn session_plaintext_frames_decode_and_reencode() {
        let frames = session_frames();
        assert!(frames.len() > 5);
        for (channel, type_id, wire) in &frames {
            let evs = frames_of(wire);
            let [FrameEvent::Frame(f)] = evs.as_slice() else {
                panic!("one frame expected in {}", hex::encode(wire));
            };
            assert_eq!((f.channel, f.type_id), (*channel, *type_id));
            let msg = f.message().expect("decodes").expect("not ignored");
            let mut out = Vec::new();
            encode_frame(*channel, &msg, &mut out).expect("encodes");
            assert_eq!(&out, wire, "re-encoding {msg:?}");
        }
    }

    #[test]
    fn every_split_point_decodes_identically() {
        let mut stream = Vec::new();
        for (_, _, wire) in session_frames() {
            stream.extend_from_slice(&wire);
            encode_keep_alive(&mut stream);
        }
        let whole = frames_of(&stream);
        assert_eq!(whole.len(), 2 * session_frames().len());
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_chunks(&[a, b]), whole, "split at {cut}");
        }
        for cut1 in (0..=stream.len()).step_by(7) {
            for cut2 in cut1..=stream.len() {
                let parts = [&stream[..cut1], &stream[cut1..cut2], &stream[cut2..]];
                assert_eq!(decode_chunks(&parts), whole, "split at {cut1},{cut2}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes), whole, "byte by byte");
    }

    #[test]
    fn malformed_frames_are_errors() {
        let err = |bytes: &[u8]| {
            let mut dec = FrameDecoder::new();
            dec.push(bytes);
            let r = dec.next_frame();
            // The error sticks.
            if r.is_err() {
                assert!(dec.next_frame().is_err());
            }
            r
        };
        // L = 1 but the header varint needs 2 bytes.
        assert!(err(&[0x01, 0x80, 0x01]).is_err());
        // L over 8 MiB + the longest header: refused from the prefix alone.
        let mut big = Vec::new();
        varint::encode((MAX_BODY_LEN + 11) as u64, &mut big);
        assert!(matches!(
            err(&big),
            Err(ProtocolError::FrameTooLarge { size }) if size == MAX_BODY_LEN as u64 + 11
        ));
        // Body of exactly 8 MiB with a 2-byte header: L = 8 MiB + 2 is fine.
        let mut ok = Vec::new();
        varint::encode((MAX_BODY_LEN + 2) as u64, &mut ok);
        ok.extend_from_slice(&[0x80, 0x01]);
        assert!(matches!(err(&ok), Ok(None)));
        // ... and with a 1-byte header the same L means 8 MiB + 1 of body.
        let mut over = Vec::new();
        varint::encode((MAX_BODY_LEN + 2) as u64, &mut over);
        over.push(0x11);
        assert!(matches!(
            err(&over),
            Err(ProtocolError::FrameTooLarge { size }) if size == MAX_BODY_LEN as u64 + 1
        ));
        // Length varint longer than 10 bytes.
        assert!(err(&[0xff; 11]).is_err());
        // Header varint overflowing 64 bits inside a long enough frame.
        let mut hdr = vec![0x0c];
        hdr.extend_from_slice(&[0xff; 11]);
        assert!(err(&hdr).is_err());
        // Incomplete input is not an error.
        assert!(matches!(err(&[0x05, 0x15, 0x08]), Ok(None)));
        assert!(matches!(err(&[0x80]), Ok(None)));
        assert!(matches!(err(&[]), Ok(None)));
    }

    #[test]
    fn max_size_frame_passes_and_buffering_is_bounded() {
        let body = vec![0xabu8; MAX_BODY_LEN];
        let mut wire = Vec::new();
        encode_raw_frame(3, 15, &body, &mut wire).expect("encodes");
        encode_keep_alive(&mut wire);
        let mut dec = FrameDecoder::new();
        assert!(wire.len() - 1 <= dec.capacity());
        let mut rest = wire.as_slice();
        let mut events = Vec::new();
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(65536)];
            let n = dec.push(chunk);
            assert!(dec.buffered() <= dec.capacity());
            rest = &rest[n..];
            while let Some(ev) = dec.next_frame().expect("decodes") {
                events.push(ev);
            }
        }
        assert_eq!(events.len(), 2);
        let FrameEvent::Frame(f) = &events[0] else {
            panic!("frame expected")
        };
        assert_eq!((f.channel, f.type_id, f.body.len()), (3, 15, MAX_BODY_LEN));
        assert!(f.body.iter().all(|&b| b == 0xab));
        assert_eq!(events[1], FrameEvent::KeepAlive);

        // push refuses bytes past the capacity until frames are taken out.
        let mut dec = FrameDecoder::with_max_body(16);
        let many = vec![0u8; 1000];
        let n = dec.push(&many);
        assert_eq!(n, dec.capacity());
        assert_eq!(dec.push(&many), 0);
        assert_eq!(dec.next_frame().expect("ok"), Some(FrameEvent::KeepAlive));
        assert_eq!(dec.push(&many), 1);

        let too_big = vec![0u8; MAX_BODY_LEN + 1];
        let mut out = Vec::new();
        assert!(encode_raw_frame(1, 9, &too_big, &mut out).is_err());
        assert!(encode_raw_frame(1, 16, &[], &mut out).is_err());
        let want = Message::Want(Want {
            start: 0,
            length: None,
        });
        assert!(encode_frame(u64::MAX, &want, &mut out).is_err());
        encode_frame(u64::MAX >> 4, &want, &mut out).expect("largest channel");
        let evs = frames_of(&out);
        let [FrameEvent::Frame(f)] = evs.as_slice() else {
            panic!("one frame")
        };
        assert_eq!(f.channel, u64::MAX >> 4);
    }

    proptest! {
        #[test]
        fn message_sequences_survive_any_chunking(
            msgs in proptest::collection::vec((0u64..300, arb_message()), 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut wire = Vec::new();
            for (ch, m) in &msgs {
                encode_frame(*ch, m, &mut wire).expect("encodes");
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut prev = 0;
            for c in cuts {
                parts.push(&wire[prev..c]);
                prev = c;
            }
            parts.push(&wire[prev..]);
            let evs = decode_chunks(&parts);
            prop_assert_eq!(evs.len(), msgs.len());
            for (ev, (ch, m)) in evs.iter().zip(&msgs) {
                let FrameEvent::Frame(f) = ev else { panic!("frame expected") };
                prop_assert_eq!(f.channel, *ch);
                prop_assert_eq!(f.message().expect("decodes"), Some(m.clone()));
            }
        }

        #[test]
        fn decoder_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            chunk in 1usize..40,
            max_body in 0usize..64,
        ) {
            let mut dec = FrameDecoder::with_max_body(max_body);
            let mut events = Vec::new();
            for piece in bytes.chunks(chunk) {
                let r = dec.push_all(piece, |ev| {
                    events.push(ev);
                    Ok::<_, ProtocolError>(())
                });
                prop_assert!(dec.buffered() <= dec.capacity());
                if r.is_err() {
                    break;
                }
            }
            for ev in events {
                if let FrameEvent::Frame(f) = ev {
                    prop_assert!(f.body.len() <= max_body);
                    let _ = f.message();
                }
            }
        }
    }
}
