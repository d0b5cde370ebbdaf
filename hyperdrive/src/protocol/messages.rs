//! The hypercore-protocol 8 messages (simple-hypercore-protocol schema.proto) and
//! their protobuf encodings, with the reference's decoder defaults.
//!
//! The types below are the interface other modules build on. Encoding goes through
//! prost, which writes exactly what the Node generated code writes: fields in
//! field-number order, a required field always, an optional field iff it is `Some`
//! (so `Some(0)`/`Some(false)` are written explicitly), bools as one byte.
//!
//! Decoding goes through prost too, after a small field scan that enforces what
//! prost does not: a missing required field is a decode error (as in Node). Fields
//! keep the wire's presence (`Option`); the reference's decoder defaults are the
//! `*_or_default()` accessors. Beware prost's own generated accessors for optional
//! fields (`capability()`, `value()`, ...): they return an empty value for an absent
//! field, which is not the same as "absent" — match on the field instead.
//!
//! Known differences from Node on input Node never produces: a field whose wire type
//! does not match the schema, a truncated length-delimited field, field number 0 and
//! invalid UTF-8 in an extension name are decode errors here (Node reads on or
//! replaces), and a bool sent as a multi-byte varint is read as that varint.

use super::varint;
use super::ProtocolError;
use crate::core::crypto::{Hash, Node, Signature};
use crate::core::Proof;
use prost::Message as _;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Open {
    #[prost(bytes = "vec", required, tag = "1")]
    pub discovery_key: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub capability: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Options {
    #[prost(string, repeated, tag = "1")]
    pub extensions: Vec<String>,
    #[prost(bool, optional, tag = "2")]
    pub ack: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(bool, optional, tag = "1")]
    pub uploading: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub downloading: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Have {
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Absent means 1 (schema `[default = 1]`, so prost's `length()` returns 1 too).
    #[prost(uint64, optional, tag = "2", default = "1")]
    pub length: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub bitfield: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    pub ack: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Unhave {
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Absent means 1 (schema `[default = 1]`, so prost's `length()` returns 1 too).
    #[prost(uint64, optional, tag = "2", default = "1")]
    pub length: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Want {
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Absent means 0.
    #[prost(uint64, optional, tag = "2")]
    pub length: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Unwant {
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    #[prost(uint64, optional, tag = "2")]
    pub length: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub bytes: Option<u64>,
    #[prost(bool, optional, tag = "3")]
    pub hash: Option<bool>,
    #[prost(uint64, optional, tag = "4")]
    pub nodes: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Cancel {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub bytes: Option<u64>,
    #[prost(bool, optional, tag = "3")]
    pub hash: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DataNode {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(bytes = "vec", required, tag = "2")]
    pub hash: Vec<u8>,
    #[prost(uint64, required, tag = "3")]
    pub size: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Data {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub value: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub nodes: Vec<DataNode>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub signature: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Close {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub discovery_key: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NoisePayload {
    #[prost(bytes = "vec", required, tag = "1")]
    pub nonce: Vec<u8>,
}

/// Type 15: not protobuf, `varint(id) ‖ payload`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Extension {
    pub id: u64,
    pub payload: Vec<u8>,
}

/// One decoded message body of any type.
#[derive(Clone, PartialEq, Debug)]
pub enum Message {
    Open(Open),
    Options(Options),
    Status(Status),
    Have(Have),
    Unhave(Unhave),
    Want(Want),
    Unwant(Unwant),
    Request(Request),
    Cancel(Cancel),
    Data(Data),
    Close(Close),
    Extension(Extension),
}

/// Wire type numbers (spec §4/§5).
pub mod types {
    pub const OPEN: u8 = 0;
    pub const OPTIONS: u8 = 1;
    pub const STATUS: u8 = 2;
    pub const HAVE: u8 = 3;
    pub const UNHAVE: u8 = 4;
    pub const WANT: u8 = 5;
    pub const UNWANT: u8 = 6;
    pub const REQUEST: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const DATA: u8 = 9;
    pub const CLOSE: u8 = 10;
    pub const EXTENSION: u8 = 15;
}

impl Message {
    /// The wire type number (0..10, 15).
    pub fn type_id(&self) -> u8 {
        match self {
            Message::Open(_) => types::OPEN,
            Message::Options(_) => types::OPTIONS,
            Message::Status(_) => types::STATUS,
            Message::Have(_) => types::HAVE,
            Message::Unhave(_) => types::UNHAVE,
            Message::Want(_) => types::WANT,
            Message::Unwant(_) => types::UNWANT,
            Message::Request(_) => types::REQUEST,
            Message::Cancel(_) => types::CANCEL,
            Message::Data(_) => types::DATA,
            Message::Close(_) => types::CLOSE,
            Message::Extension(_) => types::EXTENSION,
        }
    }

    /// Length in bytes of the body `encode_body` writes. Cheap (no allocation), so
    /// framing can write the length prefix before the body without a scratch buffer.
    pub fn encoded_len(&self) -> usize {
        match self {
            Message::Open(m) => m.encoded_len(),
            Message::Options(m) => m.encoded_len(),
            Message::Status(m) => m.encoded_len(),
            Message::Have(m) => m.encoded_len(),
            Message::Unhave(m) => m.encoded_len(),
            Message::Want(m) => m.encoded_len(),
            Message::Unwant(m) => m.encoded_len(),
            Message::Request(m) => m.encoded_len(),
            Message::Cancel(m) => m.encoded_len(),
            Message::Data(m) => m.encoded_len(),
            Message::Close(m) => m.encoded_len(),
            Message::Extension(e) => varint::encoded_len(e.id) + e.payload.len(),
        }
    }

    /// Append the body (without frame length and header) to `out`.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        match self {
            Message::Open(m) => encode_into(m, out),
            Message::Options(m) => encode_into(m, out),
            Message::Status(m) => encode_into(m, out),
            Message::Have(m) => encode_into(m, out),
            Message::Unhave(m) => encode_into(m, out),
            Message::Want(m) => encode_into(m, out),
            Message::Unwant(m) => encode_into(m, out),
            Message::Request(m) => encode_into(m, out),
            Message::Cancel(m) => encode_into(m, out),
            Message::Data(m) => encode_into(m, out),
            Message::Close(m) => encode_into(m, out),
            Message::Extension(e) => {
                varint::encode(e.id, out);
                out.extend_from_slice(&e.payload);
            }
        }
    }

    /// The body as a new vector.
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_body(&mut out);
        out
    }

    /// Decode a body of wire type `type_id`. `Ok(None)` for the ignored types 11..14.
    /// [`Message::decode`] from a shared buffer: a Data value is copied out of it
    /// once, where decoding from a slice copies it twice (prost first copies a slice
    /// into a temporary buffer, then into the `Vec`). Same results otherwise.
    pub fn decode_bytes(type_id: u8, body: bytes::Bytes) -> Result<Option<Message>, ProtocolError> {
        if type_id != types::DATA {
            return Self::decode(type_id, &body);
        }
        check_data_required(&body)?;
        let data = Data::decode(body).map_err(|e| ProtocolError::Malformed {
            what: "Data",
            reason: e.to_string(),
        })?;
        Ok(Some(Message::Data(data)))
    }

    pub fn decode(type_id: u8, body: &[u8]) -> Result<Option<Message>, ProtocolError> {
        let msg = match type_id {
            types::OPEN => Message::Open(decode_checked(body, "Open", &[1])?),
            types::OPTIONS => Message::Options(decode_checked(body, "Options", &[])?),
            types::STATUS => Message::Status(decode_checked(body, "Status", &[])?),
            types::HAVE => Message::Have(decode_checked(body, "Have", &[1])?),
            types::UNHAVE => Message::Unhave(decode_checked(body, "Unhave", &[1])?),
            types::WANT => Message::Want(decode_checked(body, "Want", &[1])?),
            types::UNWANT => Message::Unwant(decode_checked(body, "Unwant", &[1])?),
            types::REQUEST => Message::Request(decode_checked(body, "Request", &[1])?),
            types::CANCEL => Message::Cancel(decode_checked(body, "Cancel", &[1])?),
            types::DATA => {
                check_data_required(body)?;
                Message::Data(prost_decode(body, "Data")?)
            }
            types::CLOSE => Message::Close(decode_checked(body, "Close", &[])?),
            11..=14 => return Ok(None),
            types::EXTENSION => Message::Extension(Extension::decode(body)?),
            other => {
                return Err(ProtocolError::Malformed {
                    what: "message",
                    reason: format!("type {other} does not fit in the 4-bit header field"),
                })
            }
        };
        Ok(Some(msg))
    }
}

impl Extension {
    /// `varint(id) ‖ payload`; the payload is whatever follows the id (may be empty).
    pub fn decode(body: &[u8]) -> Result<Extension, ProtocolError> {
        let (id, n) = varint::decode(body).map_err(|e| ProtocolError::Malformed {
            what: "Extension",
            reason: format!("id: {e}"),
        })?;
        Ok(Extension {
            id,
            payload: body[n..].to_vec(),
        })
    }
}

impl Options {
    /// Decoder default: false.
    pub fn ack_or_default(&self) -> bool {
        self.ack.unwrap_or(false)
    }
}

impl Status {
    /// Decoder default: false (Node sends both fields always).
    pub fn uploading_or_default(&self) -> bool {
        self.uploading.unwrap_or(false)
    }
    /// Decoder default: false.
    pub fn downloading_or_default(&self) -> bool {
        self.downloading.unwrap_or(false)
    }
}

impl Have {
    /// Decoder default: 1.
    pub fn length_or_default(&self) -> u64 {
        self.length.unwrap_or(1)
    }
    /// Decoder default: false.
    pub fn ack_or_default(&self) -> bool {
        self.ack.unwrap_or(false)
    }
}

impl Unhave {
    /// Decoder default: 1.
    pub fn length_or_default(&self) -> u64 {
        self.length.unwrap_or(1)
    }
}

impl Want {
    /// Decoder default: 0 (the reference then means "to the end / live").
    pub fn length_or_default(&self) -> u64 {
        self.length.unwrap_or(0)
    }
}

impl Unwant {
    /// Decoder default: 0.
    pub fn length_or_default(&self) -> u64 {
        self.length.unwrap_or(0)
    }
}

impl Request {
    /// Decoder default: 0.
    pub fn bytes_or_default(&self) -> u64 {
        self.bytes.unwrap_or(0)
    }
    /// Decoder default: false.
    pub fn hash_or_default(&self) -> bool {
        self.hash.unwrap_or(false)
    }
    /// Decoder default: 0 (no digest: the uploader sends a full proof).
    pub fn nodes_or_default(&self) -> u64 {
        self.nodes.unwrap_or(0)
    }
}

impl Cancel {
    /// Decoder default: 0.
    pub fn bytes_or_default(&self) -> u64 {
        self.bytes.unwrap_or(0)
    }
    /// Decoder default: false.
    pub fn hash_or_default(&self) -> bool {
        self.hash.unwrap_or(false)
    }
}

impl From<&Node> for DataNode {
    fn from(n: &Node) -> Self {
        DataNode {
            index: n.index,
            hash: n.hash.to_vec(),
            size: n.size,
        }
    }
}

impl DataNode {
    /// The core tree node, if the hash is exactly 32 bytes. The wire decoder keeps
    /// any length (as Node does); this is where a bad length becomes an error.
    pub fn to_node(&self) -> Result<Node, ProtocolError> {
        let hash: Hash = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| ProtocolError::Malformed {
                what: "Data node",
                reason: format!(
                    "hash of node {} is {} bytes, expected 32",
                    self.index,
                    self.hash.len()
                ),
            })?;
        Ok(Node::new(self.index, hash, self.size))
    }
}

impl Data {
    /// A Data message carrying `value` (None for a hash-only reply) and `proof`.
    pub fn from_proof(proof: &Proof, value: Option<Vec<u8>>) -> Data {
        Data {
            index: proof.index,
            value,
            nodes: proof.nodes.iter().map(DataNode::from).collect(),
            signature: proof.signature.map(|s| s.to_vec()),
        }
    }

    /// The proof nodes as core nodes; error if any hash is not 32 bytes.
    pub fn checked_nodes(&self) -> Result<Vec<Node>, ProtocolError> {
        self.nodes.iter().map(DataNode::to_node).collect()
    }

    /// The signature, if present; error if it is not 64 bytes.
    pub fn checked_signature(&self) -> Result<Option<Signature>, ProtocolError> {
        match &self.signature {
            None => Ok(None),
            Some(sig) => {
                let sig: Signature =
                    sig.as_slice()
                        .try_into()
                        .map_err(|_| ProtocolError::Malformed {
                            what: "Data",
                            reason: format!("signature is {} bytes, expected 64", sig.len()),
                        })?;
                Ok(Some(sig))
            }
        }
    }

    /// Index, nodes and signature as a core [`Proof`], with the length checks above.
    pub fn to_proof(&self) -> Result<Proof, ProtocolError> {
        Ok(Proof {
            index: self.index,
            nodes: self.checked_nodes()?,
            signature: self.checked_signature()?,
        })
    }
}

impl NoisePayload {
    /// The handshake payload bytes (`0a 18 ‖ nonce` for a 24-byte nonce).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        encode_into(self, &mut out);
        out
    }

    /// Decode a handshake payload; the nonce is required (its length is the
    /// handshake's business).
    pub fn from_bytes(bytes: &[u8]) -> Result<NoisePayload, ProtocolError> {
        decode_checked(bytes, "NoisePayload", &[1])
    }
}

/// prost writes into a `Vec` without ever failing (a `Vec` always has room), so the
/// `Result` carries no information here.
fn encode_into<M: prost::Message>(m: &M, out: &mut Vec<u8>) {
    let res = m.encode(out);
    debug_assert!(res.is_ok(), "encoding into a Vec cannot run out of space");
}

fn prost_decode<M: prost::Message + Default>(
    body: &[u8],
    what: &'static str,
) -> Result<M, ProtocolError> {
    M::decode(body).map_err(|e| ProtocolError::Malformed {
        what,
        reason: e.to_string(),
    })
}

fn decode_checked<M: prost::Message + Default>(
    body: &[u8],
    what: &'static str,
    required: &[u32],
) -> Result<M, ProtocolError> {
    check_required(body, what, required, |_, _| Ok(()))?;
    prost_decode(body, what)
}

/// Data needs the scan one level down as well: every Node has three required fields.
fn check_data_required(body: &[u8]) -> Result<(), ProtocolError> {
    check_required(body, "Data", &[1], |field, value| {
        if field == 3 {
            check_required(value, "Data node", &[1, 2, 3], |_, _| Ok(()))
        } else {
            Ok(())
        }
    })
}

/// Walk the top-level fields of a protobuf body, fail if a field in `required` (at
/// most 8 field numbers, all < 64) never appears, and hand every length-delimited
/// field to `nested` (for checking sub-messages).
fn check_required(
    body: &[u8],
    what: &'static str,
    required: &[u32],
    mut nested: impl FnMut(u64, &[u8]) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    let malformed = |reason: String| ProtocolError::Malformed { what, reason };
    let mut seen: u64 = 0;
    let mut pos = 0;
    while pos < body.len() {
        let (key, n) =
            varint::decode(&body[pos..]).map_err(|e| malformed(format!("field key: {e}")))?;
        pos += n;
        let field = key >> 3;
        if field < 64 {
            seen |= 1 << field;
        }
        let skip = match key & 7 {
            0 => {
                let (_, n) = varint::decode(&body[pos..])
                    .map_err(|e| malformed(format!("field {field}: {e}")))?;
                n
            }
            1 => 8,
            2 => {
                let (len, n) = varint::decode(&body[pos..])
                    .map_err(|e| malformed(format!("field {field} length: {e}")))?;
                pos += n;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| pos.checked_add(len))
                    .filter(|&end| end <= body.len())
                    .ok_or_else(|| malformed(format!("field {field} runs past the end")))?;
                nested(field, &body[pos..end])?;
                end - pos
            }
            5 => 4,
            wire => {
                // Groups (3, 4) are unsupported in the reference too; 6, 7 do not exist.
                return Err(malformed(format!(
                    "field {field} has unsupported wire type {wire}"
                )));
            }
        };
        if body.len() - pos < skip {
            return Err(malformed(format!("field {field} runs past the end")));
        }
        pos += skip;
    }
    for &field in required {
        if seen & (1 << field) == 0 {
            return Err(malformed(format!("required field {field} is missing")));
        }
    }
    Ok(())
}

/// Test helper shared by the protocol tests: `core.json` from the shared vectors
/// folder (beside the repository, or `HYPERMOUNT_SHARED`, or `/work/shared`).
#[cfg(test)]
pub(crate) fn core_vectors() -> serde_json::Value {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("HYPERMOUNT_SHARED") {
        candidates.push(std::path::PathBuf::from(dir));
    }
    candidates.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    candidates.push(std::path::PathBuf::from("/work/shared"));
    for dir in &candidates {
        let path = dir.join("vectors/core.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).expect("core.json is valid JSON");
        }
    }
    panic!("core.json not found in any of {candidates:?}");
}

#[cfg(test)]
pub(crate) fn unhex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn opt_u64(f: &Value, k: &str) -> Option<u64> {
        f.get(k).map(|v| v.as_u64().expect("u64"))
    }
    fn opt_bool(f: &Value, k: &str) -> Option<bool> {
        f.get(k).map(|v| v.as_bool().expect("bool"))
    }
    fn opt_bytes(f: &Value, k: &str) -> Option<Vec<u8>> {
        f.get(k).filter(|v| !v.is_null()).map(unhex)
    }
    fn req_u64(f: &Value, k: &str) -> u64 {
        opt_u64(f, k).expect("required u64")
    }

    /// The message the vector's `fields` describe, with presence as given.
    fn from_fields(name: &str, f: &Value) -> Message {
        match name {
            "Open" => Message::Open(Open {
                discovery_key: opt_bytes(f, "discoveryKey").expect("dk"),
                capability: opt_bytes(f, "capability"),
            }),
            "Options" => Message::Options(Options {
                extensions: f
                    .get("extensions")
                    .map(|v| {
                        v.as_array()
                            .expect("array")
                            .iter()
                            .map(|s| s.as_str().expect("str").to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
                ack: opt_bool(f, "ack"),
            }),
            "Status" => Message::Status(Status {
                uploading: opt_bool(f, "uploading"),
                downloading: opt_bool(f, "downloading"),
            }),
            "Have" => Message::Have(Have {
                start: req_u64(f, "start"),
                length: opt_u64(f, "length"),
                bitfield: opt_bytes(f, "bitfield"),
                ack: opt_bool(f, "ack"),
            }),
            "Unhave" => Message::Unhave(Unhave {
                start: req_u64(f, "start"),
                length: opt_u64(f, "length"),
            }),
            "Want" => Message::Want(Want {
                start: req_u64(f, "start"),
                length: opt_u64(f, "length"),
            }),
            "Unwant" => Message::Unwant(Unwant {
                start: req_u64(f, "start"),
                length: opt_u64(f, "length"),
            }),
            "Request" => Message::Request(Request {
                index: req_u64(f, "index"),
                bytes: opt_u64(f, "bytes"),
                hash: opt_bool(f, "hash"),
                nodes: opt_u64(f, "nodes"),
            }),
            "Cancel" => Message::Cancel(Cancel {
                index: req_u64(f, "index"),
                bytes: opt_u64(f, "bytes"),
                hash: opt_bool(f, "hash"),
            }),
            "Data" => Message::Data(Data {
                index: req_u64(f, "index"),
                value: opt_bytes(f, "value"),
                nodes: f
                    .get("nodes")
                    .map(|v| {
                        v.as_array()
                            .expect("array")
                            .iter()
                            .map(|n| DataNode {
                                index: req_u64(n, "index"),
                                hash: unhex(&n["hash"]),
                                size: req_u64(n, "size"),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                signature: opt_bytes(f, "signature"),
            }),
            "Close" => Message::Close(Close {
                discovery_key: opt_bytes(f, "discoveryKey"),
            }),
            "Extension" => Message::Extension(Extension {
                id: req_u64(f, "id"),
                payload: unhex(&f["message"]),
            }),
            other => panic!("unknown message name {other}"),
        }
    }

    fn hex_or_null(b: &Option<Vec<u8>>) -> Value {
        match b {
            Some(b) => Value::String(hex::encode(b)),
            None => Value::Null,
        }
    }

    /// The decoded form with the reference decoder's defaults, as JSON.
    fn with_defaults(m: &Message) -> Value {
        use serde_json::json;
        match m {
            Message::Open(m) => json!({
                "discoveryKey": hex::encode(&m.discovery_key),
                "capability": hex_or_null(&m.capability),
            }),
            Message::Options(m) => json!({"extensions": m.extensions, "ack": m.ack_or_default()}),
            Message::Status(m) => json!({
                "uploading": m.uploading_or_default(),
                "downloading": m.downloading_or_default(),
            }),
            Message::Have(m) => json!({
                "start": m.start,
                "length": m.length_or_default(),
                "bitfield": hex_or_null(&m.bitfield),
                "ack": m.ack_or_default(),
            }),
            Message::Unhave(m) => json!({"start": m.start, "length": m.length_or_default()}),
            Message::Want(m) => json!({"start": m.start, "length": m.length_or_default()}),
            Message::Unwant(m) => json!({"start": m.start, "length": m.length_or_default()}),
            Message::Request(m) => json!({
                "index": m.index,
                "bytes": m.bytes_or_default(),
                "hash": m.hash_or_default(),
                "nodes": m.nodes_or_default(),
            }),
            Message::Cancel(m) => json!({
                "index": m.index,
                "bytes": m.bytes_or_default(),
                "hash": m.hash_or_default(),
            }),
            Message::Data(m) => json!({
                "index": m.index,
                "value": hex_or_null(&m.value),
                "nodes": m.nodes.iter().map(|n| json!({
                    "index": n.index, "hash": hex::encode(&n.hash), "size": n.size,
                })).collect::<Vec<_>>(),
                "signature": hex_or_null(&m.signature),
            }),
            Message::Close(m) => json!({"discoveryKey": hex_or_null(&m.discovery_key)}),
            Message::Extension(_) => Value::Null,
        }
    }

    #[test]
    fn vectors_encode_and_decode_byte_for_byte() {
        let v = core_vectors();
        let list = v["messages"]["list"].as_array().expect("list");
        assert!(list.len() >= 12);
        let mut seen_types = std::collections::BTreeSet::new();
        for entry in list {
            let name = entry["name"].as_str().expect("name");
            let msg = from_fields(name, &entry["fields"]);
            let body = unhex(&entry["body"]);
            assert_eq!(msg.type_id() as u64, entry["type"].as_u64().expect("type"));
            seen_types.insert(msg.type_id());
            assert_eq!(msg.to_body(), body, "encode {name} {}", entry["fields"]);
            assert_eq!(msg.encoded_len(), body.len());
            let decoded = Message::decode(msg.type_id(), &body)
                .expect("decodes")
                .expect("not ignored");
            assert_eq!(decoded, msg, "decode {name}");
            if let Some(expected) = entry.get("decoded") {
                assert_eq!(&with_defaults(&decoded), expected, "defaults of {name}");
            }
        }
        assert_eq!(seen_types.len(), 12, "every message type has a vector");
    }

    #[test]
    fn noise_payload_vector() {
        let v = core_vectors();
        let np = &v["messages"]["noisePayload"];
        let nonce = unhex(&np["fields"]["nonce"]);
        let body = unhex(&np["body"]);
        let p = NoisePayload { nonce };
        assert_eq!(p.to_bytes(), body);
        assert_eq!(NoisePayload::from_bytes(&body).expect("decodes"), p);
        assert!(NoisePayload::from_bytes(&[]).is_err(), "nonce is required");
        assert!(NoisePayload::from_bytes(&[0x12, 0x00]).is_err());
    }

    #[test]
    fn missing_required_fields_are_errors() {
        // type, body without the required field (other fields present).
        let cases: &[(u8, &[u8])] = &[
            (types::OPEN, &[0x12, 0x01, 0xaa]),
            (types::HAVE, &[0x10, 0x01]),
            (types::HAVE, &[]),
            (types::UNHAVE, &[0x10, 0x01]),
            (types::WANT, &[]),
            (types::UNWANT, &[0x10, 0x05]),
            (types::REQUEST, &[0x10, 0x00, 0x18, 0x00, 0x20, 0x00]),
            (types::CANCEL, &[0x18, 0x01]),
            (types::DATA, &[0x12, 0x01, 0x61]),
            // Data whose node lacks its hash / size / index.
            (
                types::DATA,
                &[0x08, 0x00, 0x1a, 0x04, 0x08, 0x02, 0x18, 0x02],
            ),
            (
                types::DATA,
                &[0x08, 0x00, 0x1a, 0x05, 0x08, 0x02, 0x12, 0x01, 0xaa],
            ),
            (
                types::DATA,
                &[0x08, 0x00, 0x1a, 0x05, 0x12, 0x01, 0xaa, 0x18, 0x02],
            ),
        ];
        for (t, body) in cases {
            assert!(
                matches!(
                    Message::decode(*t, body),
                    Err(ProtocolError::Malformed { .. })
                ),
                "type {t} body {}",
                hex::encode(body)
            );
        }
        // Types with no required field decode from an empty body.
        for t in [types::OPTIONS, types::STATUS, types::CLOSE] {
            assert!(Message::decode(t, &[]).expect("ok").is_some());
        }
        // A complete node passes.
        let ok = [
            0x08, 0x00, 0x1a, 0x07, 0x08, 0x02, 0x12, 0x01, 0xaa, 0x18, 0x02,
        ];
        assert!(Message::decode(types::DATA, &ok).is_ok());
    }

    #[test]
    fn decoder_details() {
        // Unknown fields (varint, fixed64, bytes, fixed32) are skipped.
        let body = [
            0x08, 0x07, 0x78, 0x05, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x82, 0x01, 0x02, 0xaa,
            0xbb, 0x85, 0x01, 1, 2, 3, 4,
        ];
        assert_eq!(
            Message::decode(types::WANT, &body).expect("ok"),
            Some(Message::Want(Want {
                start: 7,
                length: None
            }))
        );
        // Any nonzero bool byte is true.
        let m = Message::decode(types::STATUS, &[0x08, 0x02, 0x10, 0x7f]).expect("ok");
        assert_eq!(
            m,
            Some(Message::Status(Status {
                uploading: Some(true),
                downloading: Some(true)
            }))
        );
        // Ignored types.
        for t in 11..=14 {
            assert_eq!(Message::decode(t, &[0xff, 0xff]).expect("ignored"), None);
        }
        assert!(Message::decode(16, &[]).is_err());
        // Groups, truncated fields and bad varints are errors.
        assert!(Message::decode(types::WANT, &[0x08, 0x00, 0x13]).is_err());
        assert!(Message::decode(types::WANT, &[0x08, 0x00, 0x1a, 0x05, 0x00]).is_err());
        assert!(Message::decode(types::WANT, &[0x08, 0x80]).is_err());
        assert!(Message::decode(types::WANT, &[0x08, 0x00, 0x79, 0x00]).is_err());
        // Extension: empty payload is fine, a missing id is not.
        assert_eq!(
            Message::decode(types::EXTENSION, &[0x05]).expect("ok"),
            Some(Message::Extension(Extension {
                id: 5,
                payload: vec![]
            }))
        );
        assert!(Message::decode(types::EXTENSION, &[]).is_err());
        assert!(Message::decode(types::EXTENSION, &[0x80]).is_err());
    }

    #[test]
    fn explicit_zero_and_false_are_written() {
        let m = Message::Request(Request {
            index: 0,
            bytes: Some(0),
            hash: Some(false),
            nodes: Some(0),
        });
        assert_eq!(
            m.to_body(),
            [0x08, 0x00, 0x10, 0x00, 0x18, 0x00, 0x20, 0x00]
        );
        let m = Message::Request(Request {
            index: 0,
            bytes: None,
            hash: None,
            nodes: None,
        });
        assert_eq!(m.to_body(), [0x08, 0x00]);
    }

    #[test]
    fn data_checked_helpers() {
        let good = Data {
            index: 3,
            value: Some(b"x".to_vec()),
            nodes: vec![DataNode {
                index: 6,
                hash: vec![7; 32],
                size: 1,
            }],
            signature: Some(vec![9; 64]),
        };
        let proof = good.to_proof().expect("valid");
        assert_eq!(proof.index, 3);
        assert_eq!(proof.nodes, vec![Node::new(6, [7; 32], 1)]);
        assert_eq!(proof.signature, Some([9; 64]));
        assert_eq!(Data::from_proof(&proof, Some(b"x".to_vec())), good);

        let mut bad_hash = good.clone();
        bad_hash.nodes[0].hash = vec![7; 31];
        assert!(bad_hash.checked_nodes().is_err());
        let mut bad_sig = good.clone();
        bad_sig.signature = Some(vec![9; 63]);
        assert!(bad_sig.checked_signature().is_err());
        let mut no_sig = good;
        no_sig.signature = None;
        assert_eq!(no_sig.checked_signature().expect("ok"), None);
    }

    #[test]
    fn prost_accessors_agree_with_schema_defaults() {
        let h = Have {
            start: 0,
            length: None,
            bitfield: None,
            ack: None,
        };
        assert_eq!(h.length(), 1);
        assert_eq!(h.length_or_default(), 1);
        let u = Unhave {
            start: 0,
            length: None,
        };
        assert_eq!(u.length(), 1);
    }

    fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..80)
    }

    pub(crate) fn arb_message() -> impl Strategy<Value = Message> {
        let node = (any::<u64>(), bytes_strategy(), any::<u64>())
            .prop_map(|(index, hash, size)| DataNode { index, hash, size });
        prop_oneof![
            (bytes_strategy(), proptest::option::of(bytes_strategy())).prop_map(|(d, c)| {
                Message::Open(Open {
                    discovery_key: d,
                    capability: c,
                })
            }),
            (
                proptest::collection::vec("[a-z\\-é]{0,12}", 0..5),
                proptest::option::of(any::<bool>())
            )
                .prop_map(|(extensions, ack)| Message::Options(Options { extensions, ack })),
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<bool>())
            )
                .prop_map(|(uploading, downloading)| Message::Status(Status {
                    uploading,
                    downloading
                })),
            (
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                proptest::option::of(bytes_strategy()),
                proptest::option::of(any::<bool>())
            )
                .prop_map(|(start, length, bitfield, ack)| Message::Have(Have {
                    start,
                    length,
                    bitfield,
                    ack
                })),
            (any::<u64>(), proptest::option::of(any::<u64>()))
                .prop_map(|(start, length)| Message::Unhave(Unhave { start, length })),
            (any::<u64>(), proptest::option::of(any::<u64>()))
                .prop_map(|(start, length)| Message::Want(Want { start, length })),
            (any::<u64>(), proptest::option::of(any::<u64>()))
                .prop_map(|(start, length)| Message::Unwant(Unwant { start, length })),
            (
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(index, bytes, hash, nodes)| Message::Request(Request {
                    index,
                    bytes,
                    hash,
                    nodes
                })),
            (
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<bool>())
            )
                .prop_map(|(index, bytes, hash)| Message::Cancel(Cancel {
                    index,
                    bytes,
                    hash
                })),
            (
                any::<u64>(),
                proptest::option::of(bytes_strategy()),
                proptest::collection::vec(node, 0..4),
                proptest::option::of(bytes_strategy())
            )
                .prop_map(|(index, value, nodes, signature)| Message::Data(Data {
                    index,
                    value,
                    nodes,
                    signature
                })),
            proptest::option::of(bytes_strategy())
                .prop_map(|discovery_key| Message::Close(Close { discovery_key })),
            (any::<u64>(), bytes_strategy())
                .prop_map(|(id, payload)| Message::Extension(Extension { id, payload })),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip_every_type(msg in arb_message()) {
            let body = msg.to_body();
            prop_assert_eq!(body.len(), msg.encoded_len());
            let back = Message::decode(msg.type_id(), &body);
            prop_assert!(back.is_ok(), "{:?}", back);
            prop_assert_eq!(back.ok().flatten(), Some(msg.clone()));
            let shared = Message::decode_bytes(msg.type_id(), bytes::Bytes::from(body));
            prop_assert_eq!(shared.ok().flatten(), Some(msg));
        }

        #[test]
        fn decode_never_panics(t in 0u8..=20, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let a = Message::decode(t, &body);
            let b = Message::decode_bytes(t, bytes::Bytes::from(body));
            prop_assert_eq!(a.is_ok(), b.is_ok());
            prop_assert_eq!(a.ok(), b.ok());
        }

        #[test]
        fn decode_never_panics_on_mutated_bodies(
            msg in arb_message(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut body = msg.to_body();
            if !body.is_empty() {
                for (i, b) in flips {
                    let i = i.index(body.len());
                    body[i] ^= b;
                }
                body.truncate(cut.index(body.len() + 1));
            }
            let _ = Message::decode(msg.type_id(), &body);
        }
    }
}
