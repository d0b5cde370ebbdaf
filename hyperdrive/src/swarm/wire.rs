//! dht-rpc 4 and @hyperswarm/dht 4 datagram formats (spec swarm.md 1.1, 2.1).
//!
//! Hand-written proto2 encoders rather than `prost` derives because the reference emits
//! `Message` fields in declaration order (11, 1, 2, 10, 3, …), not tag order, and datagrams
//! must match it byte for byte. Decoders accept any field order and skip unknown fields.
//! This module owns bytes only: no sockets, no clocks.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Largest datagram we parse; anything bigger is dropped before decoding. The reference's
/// own messages stay far below this (20 node entries = 760 bytes plus a bounded value).
pub const MAX_PACKET: usize = 4096;

/// Errors from decoding a datagram or a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Ran out of bytes inside a field.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("bad varint at byte {0}")]
    BadVarint(usize),
    /// A known field arrived with the wrong wire type, or an unsupported wire type.
    #[error("field {field} has wire type {wire_type}")]
    WireType { field: u64, wire_type: u8 },
    /// `type` or `rid` absent.
    #[error("required field {0} missing")]
    Missing(&'static str),
    /// `type` not in 1..=3.
    #[error("unknown message type {0}")]
    BadType(u64),
    /// A string field is not UTF-8.
    #[error("field {0} is not UTF-8")]
    Utf8(u64),
    /// The datagram exceeds [`MAX_PACKET`].
    #[error("packet of {0} bytes is too large")]
    TooLarge(usize),
}

/// dht-rpc message type (`TYPE` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// A request answered with data (lookups, pings, find_node).
    Query = 1,
    /// A write request; must carry a valid round-trip token.
    Update = 2,
    /// The answer to a query or update, matched by `rid`.
    Response = 3,
}

impl MessageType {
    fn from_u64(v: u64) -> Result<Self, WireError> {
        match v {
            1 => Ok(Self::Query),
            2 => Ok(Self::Update),
            3 => Ok(Self::Response),
            other => Err(WireError::BadType(other)),
        }
    }
}

/// One dht-rpc datagram. `None` = field absent; `Some(empty)` is emitted (spec Q12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub version: Option<u64>,
    pub kind: MessageType,
    pub rid: u64,
    pub to: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
    pub target: Option<Vec<u8>>,
    pub closer_nodes: Option<Vec<u8>>,
    pub roundtrip_token: Option<Vec<u8>>,
    pub command: Option<String>,
    pub error: Option<String>,
    pub value: Option<Vec<u8>>,
}

impl Message {
    /// A message with only the required fields and `version: 1`, as every send sets it.
    pub fn new(kind: MessageType, rid: u64) -> Self {
        Message {
            version: Some(1),
            kind,
            rid,
            to: None,
            id: None,
            target: None,
            closer_nodes: None,
            roundtrip_token: None,
            command: None,
            error: None,
            value: None,
        }
    }

    /// Encode in the reference's field order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        if let Some(v) = self.version {
            put_varint_field(&mut out, 11, v);
        }
        put_varint_field(&mut out, 1, self.kind as u64);
        put_varint_field(&mut out, 2, self.rid);
        put_bytes_field(&mut out, 10, self.to.as_deref());
        put_bytes_field(&mut out, 3, self.id.as_deref());
        put_bytes_field(&mut out, 4, self.target.as_deref());
        put_bytes_field(&mut out, 5, self.closer_nodes.as_deref());
        put_bytes_field(&mut out, 6, self.roundtrip_token.as_deref());
        put_bytes_field(&mut out, 7, self.command.as_deref().map(str::as_bytes));
        put_bytes_field(&mut out, 8, self.error.as_deref().map(str::as_bytes));
        put_bytes_field(&mut out, 9, self.value.as_deref());
        out
    }

    /// Decode a datagram. Later occurrences of a field replace earlier ones, as in protobuf.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() > MAX_PACKET {
            return Err(WireError::TooLarge(buf.len()));
        }
        let mut m = Message::new(MessageType::Query, 0);
        m.version = None;
        let mut kind = None;
        let mut rid = None;
        let mut r = Reader { buf, pos: 0 };
        while !r.done() {
            let (field, wt) = r.key()?;
            match (field, wt) {
                (11, 0) => m.version = Some(r.varint()?),
                (1, 0) => kind = Some(MessageType::from_u64(r.varint()?)?),
                (2, 0) => rid = Some(r.varint()?),
                (10, 2) => m.to = Some(r.bytes()?.to_vec()),
                (3, 2) => m.id = Some(r.bytes()?.to_vec()),
                (4, 2) => m.target = Some(r.bytes()?.to_vec()),
                (5, 2) => m.closer_nodes = Some(r.bytes()?.to_vec()),
                (6, 2) => m.roundtrip_token = Some(r.bytes()?.to_vec()),
                (7, 2) => m.command = Some(r.string(7)?),
                (8, 2) => m.error = Some(r.string(8)?),
                (9, 2) => m.value = Some(r.bytes()?.to_vec()),
                (1 | 2 | 11, _) | (3..=10, _) => {
                    return Err(WireError::WireType {
                        field,
                        wire_type: wt,
                    })
                }
                _ => r.skip(field, wt)?,
            }
        }
        m.kind = kind.ok_or(WireError::Missing("type"))?;
        m.rid = rid.ok_or(WireError::Missing("rid"))?;
        Ok(m)
    }
}

/// `Holepunch` payload of `_holepunch` (fields 2 and 3, no field 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holepunch {
    pub from: Option<Vec<u8>>,
    pub to: Option<Vec<u8>>,
}

impl Holepunch {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes_field(&mut out, 2, self.from.as_deref());
        put_bytes_field(&mut out, 3, self.to.as_deref());
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut h = Holepunch::default();
        let mut r = Reader { buf, pos: 0 };
        while !r.done() {
            let (field, wt) = r.key()?;
            match (field, wt) {
                (2, 2) => h.from = Some(r.bytes()?.to_vec()),
                (3, 2) => h.to = Some(r.bytes()?.to_vec()),
                (2 | 3, _) => {
                    return Err(WireError::WireType {
                        field,
                        wire_type: wt,
                    })
                }
                _ => r.skip(field, wt)?,
            }
        }
        Ok(h)
    }
}

/// `PeersInput` of the `peers` command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeersInput {
    pub port: Option<u32>,
    pub local_address: Option<Vec<u8>>,
    pub unannounce: Option<bool>,
}

impl PeersInput {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(p) = self.port {
            put_varint_field(&mut out, 1, u64::from(p));
        }
        put_bytes_field(&mut out, 2, self.local_address.as_deref());
        if let Some(u) = self.unannounce {
            put_varint_field(&mut out, 3, u64::from(u));
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut p = PeersInput::default();
        let mut r = Reader { buf, pos: 0 };
        while !r.done() {
            let (field, wt) = r.key()?;
            match (field, wt) {
                // uint32 keeps the low 32 bits of the varint, as protobuf does.
                (1, 0) => p.port = Some(r.varint()? as u32),
                (2, 2) => p.local_address = Some(r.bytes()?.to_vec()),
                (3, 0) => p.unannounce = Some(r.varint()? != 0),
                (1..=3, _) => {
                    return Err(WireError::WireType {
                        field,
                        wire_type: wt,
                    })
                }
                _ => r.skip(field, wt)?,
            }
        }
        Ok(p)
    }
}

/// `PeersOutput` of the `peers` command: raw 6-byte and 4-byte lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeersOutput {
    pub peers: Option<Vec<u8>>,
    pub local_peers: Option<Vec<u8>>,
}

impl PeersOutput {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes_field(&mut out, 1, self.peers.as_deref());
        put_bytes_field(&mut out, 2, self.local_peers.as_deref());
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut p = PeersOutput::default();
        let mut r = Reader { buf, pos: 0 };
        while !r.done() {
            let (field, wt) = r.key()?;
            match (field, wt) {
                (1, 2) => p.peers = Some(r.bytes()?.to_vec()),
                (2, 2) => p.local_peers = Some(r.bytes()?.to_vec()),
                (1 | 2, _) => {
                    return Err(WireError::WireType {
                        field,
                        wire_type: wt,
                    })
                }
                _ => r.skip(field, wt)?,
            }
        }
        Ok(p)
    }
}

/// ipv4-peers: 4 octets then the port as u16 big-endian.
pub fn encode_peer(addr: SocketAddrV4) -> [u8; 6] {
    let mut out = [0u8; 6];
    out[..4].copy_from_slice(&addr.ip().octets());
    out[4..].copy_from_slice(&addr.port().to_be_bytes());
    out
}

/// Decode one 6-byte peer; `None` for a wrong length or port 0.
pub fn decode_peer(buf: &[u8]) -> Option<SocketAddrV4> {
    let b: &[u8; 6] = buf.try_into().ok()?;
    let port = u16::from_be_bytes([b[4], b[5]]);
    if port == 0 {
        return None;
    }
    Some(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port,
    ))
}

/// One routing entry on the wire: 32-byte id + 6-byte peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: [u8; 32],
    pub addr: SocketAddrV4,
}

/// Size of one [`NodeEntry`] on the wire.
pub const NODE_ENTRY_LEN: usize = 38;

/// Concatenate node entries (`closerNodes`).
pub fn encode_nodes(nodes: &[NodeEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * NODE_ENTRY_LEN);
    for n in nodes {
        out.extend_from_slice(&n.id);
        out.extend_from_slice(&encode_peer(n.addr));
    }
    out
}

/// Decode a node list as ipv4-peers does: a trailing partial entry is ignored, and a port 0
/// anywhere makes the whole list empty.
pub fn decode_nodes(buf: &[u8]) -> Vec<NodeEntry> {
    let mut out = Vec::with_capacity(buf.len() / NODE_ENTRY_LEN);
    for chunk in buf.chunks_exact(NODE_ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&chunk[..32]);
        match decode_peer(&chunk[32..]) {
            Some(addr) => out.push(NodeEntry { id, addr }),
            None => return Vec::new(),
        }
    }
    out
}

/// Decode a `peers` list of 6-byte entries as @hyperswarm/dht does: any 0.0.0.0, port 0 or
/// length not a multiple of 6 rejects the whole list.
pub fn decode_peer_list(buf: &[u8]) -> Option<Vec<SocketAddrV4>> {
    if !buf.len().is_multiple_of(6) {
        return None;
    }
    buf.chunks_exact(6)
        .map(|c| decode_peer(c).filter(|a| !a.ip().is_unspecified()))
        .collect()
}

/// Decode `localPeers` (4 bytes each: last two octets, port u16 BE) with the requester's own
/// first two octets, as the reference client does. Any port 0 or bad length rejects the list.
pub fn decode_local_peers(prefix: [u8; 2], buf: &[u8]) -> Option<Vec<SocketAddrV4>> {
    if !buf.len().is_multiple_of(4) {
        return None;
    }
    buf.chunks_exact(4)
        .map(|c| {
            let port = u16::from_be_bytes([c[2], c[3]]);
            (port != 0)
                .then(|| SocketAddrV4::new(Ipv4Addr::new(prefix[0], prefix[1], c[0], c[1]), port))
        })
        .collect()
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    crate::varint::encode(v, out);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, v: Option<&[u8]>) {
    if let Some(v) = v {
        put_varint(out, (field << 3) | 2);
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let (v, n) = crate::varint::decode(rest).map_err(|e| match e {
            crate::varint::VarintError::Truncated => WireError::Truncated(self.buf.len()),
            crate::varint::VarintError::Overflow => WireError::BadVarint(start),
        })?;
        self.pos += n;
        Ok(v)
    }

    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(n).map_err(|_| WireError::Truncated(self.pos))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        self.take(n)
    }

    fn string(&mut self, field: u64) -> Result<String, WireError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::Utf8(field))
    }

    fn skip(&mut self, field: u64, wt: u8) -> Result<(), WireError> {
        match wt {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            _ => Err(WireError::WireType {
                field,
                wire_type: wt,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ping_request_matches_spec_example() {
        let mut m = Message::new(MessageType::Query, 2);
        m.command = Some("_ping".into());
        let want = [
            0x58, 0x01, 0x08, 0x01, 0x10, 0x02, 0x3a, 0x05, b'_', b'p', b'i', b'n', b'g',
        ];
        assert_eq!(m.encode(), want);
        assert_eq!(Message::decode(&want).unwrap(), m);
    }

    #[test]
    fn peers_input_examples() {
        assert_eq!(PeersInput::default().encode(), Vec::<u8>::new());
        let announce = PeersInput {
            port: Some(0),
            ..Default::default()
        };
        assert_eq!(announce.encode(), [0x08, 0x00]);
        let un = PeersInput {
            port: Some(0),
            unannounce: Some(true),
            ..Default::default()
        };
        assert_eq!(un.encode(), [0x08, 0x00, 0x18, 0x01]);
        assert_eq!(PeersInput::decode(&[0x08, 0x00, 0x18, 0x01]).unwrap(), un);
    }

    #[test]
    fn missing_required_fields_fail() {
        assert_eq!(
            Message::decode(&[0x58, 0x01, 0x10, 0x02]),
            Err(WireError::Missing("type"))
        );
        assert_eq!(
            Message::decode(&[0x08, 0x01]),
            Err(WireError::Missing("rid"))
        );
        assert_eq!(
            Message::decode(&[0x08, 0x04, 0x10, 0x01]),
            Err(WireError::BadType(4))
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_order_is_free() {
        // rid, unknown fixed32 field 15, type
        let buf = [0x10, 0x07, 0x7d, 1, 2, 3, 4, 0x08, 0x03];
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.kind, MessageType::Response);
        assert_eq!(m.rid, 7);
        assert_eq!(m.version, None);
    }

    #[test]
    fn node_lists() {
        let a = NodeEntry {
            id: [1; 32],
            addr: "127.0.0.1:5000".parse().unwrap(),
        };
        let b = NodeEntry {
            id: [2; 32],
            addr: "10.1.2.3:65535".parse().unwrap(),
        };
        let mut enc = encode_nodes(&[a, b]);
        assert_eq!(enc.len(), 76);
        assert_eq!(&enc[32..38], &[127, 0, 0, 1, 0x13, 0x88]);
        enc.extend_from_slice(&[9; 10]); // trailing partial entry ignored
        assert_eq!(decode_nodes(&enc), vec![a, b]);
        enc[36] = 0;
        enc[37] = 0; // port 0 invalidates the whole list
        assert!(decode_nodes(&enc).is_empty());
    }

    #[test]
    fn peer_lists() {
        assert_eq!(
            decode_peer_list(&[127, 0, 0, 1, 0, 80]).unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert!(decode_peer_list(&[0, 0, 0, 0, 0, 80]).is_none());
        assert!(decode_peer_list(&[127, 0, 0, 1, 0, 0]).is_none());
        assert!(decode_peer_list(&[127, 0, 0, 1, 0]).is_none());
        assert_eq!(
            decode_local_peers([192, 168], &[1, 2, 0x10, 0x00]).unwrap(),
            vec!["192.168.1.2:4096".parse().unwrap()]
        );
        assert!(decode_local_peers([192, 168], &[1, 2, 0, 0]).is_none());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&buf);
            let _ = Holepunch::decode(&buf);
            let _ = PeersInput::decode(&buf);
            let _ = PeersOutput::decode(&buf);
            let _ = decode_nodes(&buf);
            let _ = decode_peer_list(&buf);
            let _ = decode_local_peers([1, 2], &buf);
        }

        #[test]
        fn message_roundtrip(
            kind in 1u64..=3, rid in any::<u64>(), version in proptest::option::of(any::<u64>()),
            to in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
            command in proptest::option::of("[a-z_]{0,12}"),
            error in proptest::option::of("[ -~]{0,20}"),
        ) {
            let mut m = Message::new(MessageType::from_u64(kind).unwrap(), rid);
            m.version = version;
            m.to = to;
            m.id = id.clone();
            m.target = id;
            m.value = value.clone();
            m.closer_nodes = value;
            m.command = command;
            m.error = error;
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }
}
