//! The hypercore-protocol 8 messages (simple-hypercore-protocol schema.proto) and
//! their protobuf encodings, with the reference's decoder defaults.
//!
//! CONTRACT STUB: the types below are the interface other modules build on; the
//! encode/decode bodies are filled in by the messages work.

use super::ProtocolError;

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
    /// Absent means 1.
    #[prost(uint64, optional, tag = "2")]
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
    /// Absent means 1.
    #[prost(uint64, optional, tag = "2")]
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

impl Message {
    /// The wire type number (0..10, 15).
    pub fn type_id(&self) -> u8 {
        todo!()
    }
    /// Append the body (without frame length and header) to `out`.
    pub fn encode_body(&self, _out: &mut Vec<u8>) {
        todo!()
    }
    /// Decode a body of wire type `type_id`. `Ok(None)` for the ignored types 11..14.
    pub fn decode(_type_id: u8, _body: &[u8]) -> Result<Option<Message>, ProtocolError> {
        todo!()
    }
}
