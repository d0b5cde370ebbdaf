//! The hypercore-protocol 8 Noise handshake (spec/protocol.md §1–§2) as a sans-IO state
//! machine: wire bytes in (any chunking), wire bytes out, and once the three
//! `Noise_XX_25519_ChaChaPoly_BLAKE2b` messages are through, the split keys, nonces and
//! remote static key that the transport cipher (`cipher.rs`) and channel capabilities
//! (`capability.rs`) need.
//!
//! It never touches a socket and never interprets bytes after the last handshake
//! message: those are handed back as overflow because they are already XSalsa20
//! ciphertext. Standard Noise via `snow` reproduces the reference byte for byte.

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::{Builder, HandshakeState};

use super::capability;
use super::cipher::Transport;
use super::ProtocolError;

/// The Noise protocol name used by hypercore-protocol 8.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2b";

/// Length of the per-stream nonce carried in the handshake payload (XSalsa20 nonce).
pub const NONCE_LEN: usize = 24;

/// Largest handshake message we accept (Noise's own message limit). Real messages are
/// at most 123 bytes; the bound keeps a hostile length prefix from making us buffer
/// without end.
pub const MAX_HANDSHAKE_MESSAGE_LEN: usize = 65535;

/// Encoded payload length: `0a 18 ‖ nonce`.
const PAYLOAD_LEN: usize = 2 + NONCE_LEN;

/// Space for one outgoing Noise message: 32 (e) + 48 (s) + 26 (payload) + 16 (tag) = 122
/// at most for XX with our payload.
const MAX_OUTGOING_MESSAGE_LEN: usize = 256;

/// An X25519 static key pair for the Noise handshake (hypercore's `noiseKeyPair`).
#[derive(Clone)]
pub struct StaticKeypair {
    /// The public key the peer sees as our remote static key.
    pub public: [u8; 32],
    secret: [u8; 32],
}

impl StaticKeypair {
    /// `Protocol.keyPair(seed)` (libsodium `crypto_kx_seed_keypair`):
    /// secret = BLAKE2b-256(seed), public = X25519 base point multiplication.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_secret(crate::core::crypto::hash(&[seed]))
    }

    /// The key pair for a 32-byte X25519 secret (clamped on use, as libsodium does).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            public: x25519_public(&secret),
            secret,
        }
    }

    /// A fresh random key pair (what Node does when no key pair is given).
    pub fn generate() -> Self {
        Self::from_secret(rand::random())
    }

    /// The 32-byte secret scalar.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

/// X25519 base point multiplication through snow's own resolver, so the key we derive is
/// by construction the one snow will use in the handshake.
fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow's default resolver always provides Curve25519");
    dh.set(secret);
    let mut public = [0u8; 32];
    public.copy_from_slice(dh.pubkey());
    public
}

/// 24 random bytes for a new stream's handshake payload.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

/// What a completed handshake yields. The split keys are secrets; `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeResult {
    /// Whether we were the initiator.
    pub initiator: bool,
    /// Our transmit key (initiator: Noise k1, responder: k2).
    pub split_tx: [u8; 32],
    /// Our receive key (initiator: k2, responder: k1).
    pub split_rx: [u8; 32],
    /// The nonce we sent in our payload (keys our send direction).
    pub local_nonce: [u8; NONCE_LEN],
    /// The nonce from the peer's last non-empty payload (keys our receive direction).
    pub remote_nonce: [u8; NONCE_LEN],
    /// The peer's X25519 static key. Nothing binds it to feed keys; it only identifies
    /// the peer's stream key pair.
    pub remote_static_key: [u8; 32],
    /// The Noise handshake hash (exposed by the reference, unused by the protocol).
    pub handshake_hash: [u8; 64],
}

impl HandshakeResult {
    /// The XSalsa20 transport for this session.
    pub fn transport(&self) -> Transport {
        Transport::new(self)
    }

    /// The capability we send in `Open` for feed `key`.
    pub fn capability(&self, key: &[u8; 32]) -> [u8; 32] {
        capability::capability(&self.split_tx, &self.split_rx, key)
    }

    /// The capability the peer must send in its `Open` for feed `key`.
    pub fn remote_capability(&self, key: &[u8; 32]) -> [u8; 32] {
        capability::remote_capability(&self.split_tx, &self.split_rx, key)
    }

    /// Constant-time check of the peer's `Open.capability` for feed `key`.
    pub fn verify_remote_capability(&self, key: &[u8; 32], received: Option<&[u8]>) -> bool {
        capability::verify_remote_capability(&self.split_tx, &self.split_rx, key, received)
    }
}

impl std::fmt::Debug for HandshakeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeResult")
            .field("initiator", &self.initiator)
            .field("local_nonce", &hex::encode(self.local_nonce))
            .field("remote_nonce", &hex::encode(self.remote_nonce))
            .field("remote_static_key", &hex::encode(self.remote_static_key))
            .field("handshake_hash", &hex::encode(self.handshake_hash))
            .finish_non_exhaustive()
    }
}

/// Returned by [`Handshake::push`] when the handshake completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeComplete {
    pub result: HandshakeResult,
    /// Bytes that followed the last handshake message in the pushed data. They are
    /// transport ciphertext and must be decrypted before any later bytes.
    pub overflow: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Done,
    Failed,
}

/// The handshake state machine for one stream.
///
/// Usage: create it, send [`take_outgoing`](Self::take_outgoing) bytes, feed every
/// received byte to [`push`](Self::push), and after each `push` send `take_outgoing`
/// again. The initiator's first message is queued at construction; once `push` returns
/// the result, the initiator still has its third message queued, which must go out
/// before any transport bytes.
pub struct Handshake {
    noise: Box<HandshakeState>,
    initiator: bool,
    local_public: [u8; 32],
    local_nonce: [u8; NONCE_LEN],
    payload: [u8; PAYLOAD_LEN],
    outgoing: Vec<u8>,
    /// Received bytes not yet consumed: at most one incomplete message (its varint
    /// prefix plus fewer than `MAX_HANDSHAKE_MESSAGE_LEN` bytes) between calls.
    incoming: Vec<u8>,
    /// Node keeps the last non-empty payload and parses it only at the end.
    remote_payload: Option<Vec<u8>>,
    phase: Phase,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.initiator)
            .field("phase", &self.phase)
            .field("outgoing", &self.outgoing.len())
            .field("incoming", &self.incoming.len())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// A handshake with our static key pair and the 24-byte nonce for our send direction.
    /// The initiator's first message is ready in `take_outgoing` right away.
    pub fn new(
        initiator: bool,
        keypair: &StaticKeypair,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Self, ProtocolError> {
        Self::build(initiator, keypair, nonce, None)
    }

    /// Like [`new`](Self::new) with a fixed ephemeral secret, to reproduce recorded
    /// sessions. Never use a fixed ephemeral key outside tests.
    #[cfg(test)]
    pub fn with_fixed_ephemeral(
        initiator: bool,
        keypair: &StaticKeypair,
        nonce: [u8; NONCE_LEN],
        ephemeral_secret: &[u8; 32],
    ) -> Result<Self, ProtocolError> {
        Self::build(initiator, keypair, nonce, Some(ephemeral_secret))
    }

    fn build(
        initiator: bool,
        keypair: &StaticKeypair,
        nonce: [u8; NONCE_LEN],
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<Self, ProtocolError> {
        let params = NOISE_PARAMS
            .parse()
            .map_err(|e| handshake_error(format!("noise parameters: {e}")))?;
        let mut builder = Builder::new(params)
            .local_private_key(&keypair.secret)
            .map_err(|e| handshake_error(format!("static key: {e}")))?;
        if let Some(e) = ephemeral {
            builder = builder.fixed_ephemeral_key_for_testing_only(e);
        }
        let noise = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(|e| handshake_error(format!("cannot start noise: {e}")))?;

        let mut hs = Self {
            noise: Box::new(noise),
            initiator,
            local_public: keypair.public,
            local_nonce: nonce,
            payload: encode_payload(&nonce),
            outgoing: Vec::new(),
            incoming: Vec::new(),
            remote_payload: None,
            phase: Phase::Running,
        };
        if hs.noise.is_my_turn() {
            hs.write_message()?;
        }
        Ok(hs)
    }

    /// Whether we are the initiator.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Our static public key.
    pub fn local_public_key(&self) -> &[u8; 32] {
        &self.local_public
    }

    /// The nonce we send in our payload.
    pub fn local_nonce(&self) -> &[u8; NONCE_LEN] {
        &self.local_nonce
    }

    /// Whether the handshake has completed successfully.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether bytes are waiting to be sent.
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Takes the bytes to send (already `varint(len) ‖ message` framed), possibly empty.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// Feeds received bytes, in any chunking. Returns `Ok(None)` while more bytes are
    /// needed and the result plus overflow once the last message has been processed.
    /// Any error is final: the stream must be destroyed, and later calls fail too.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<HandshakeComplete>, ProtocolError> {
        match self.phase {
            Phase::Running => {}
            Phase::Done => {
                return Err(handshake_error(
                    "bytes pushed after the handshake completed".into(),
                ))
            }
            Phase::Failed => return Err(handshake_error("handshake already failed".into())),
        }
        match self.advance(data) {
            Ok(done) => Ok(done),
            Err(e) => {
                self.phase = Phase::Failed;
                self.incoming = Vec::new();
                self.outgoing = Vec::new();
                Err(e)
            }
        }
    }

    fn advance(&mut self, data: &[u8]) -> Result<Option<HandshakeComplete>, ProtocolError> {
        self.incoming.extend_from_slice(data);
        let mut pos = 0;
        while !self.noise.is_handshake_finished() {
            let Some((len, prefix)) = parse_length(&self.incoming[pos..])? else {
                break;
            };
            if len == 0 {
                // Node's reader re-parses a length whenever it holds zero, so a zero
                // prefix is skipped rather than treated as an empty message.
                pos += prefix;
                continue;
            }
            let start = pos + prefix;
            let Some(message) = self.incoming.get(start..start + len) else {
                break;
            };
            let message = message.to_vec();
            pos = start + len;
            self.read_message(&message)?;
            if !self.noise.is_handshake_finished() && self.noise.is_my_turn() {
                self.write_message()?;
            }
        }
        self.incoming.drain(..pos);
        if !self.noise.is_handshake_finished() {
            return Ok(None);
        }
        let result = self.finish()?;
        self.phase = Phase::Done;
        Ok(Some(HandshakeComplete {
            result,
            overflow: std::mem::take(&mut self.incoming),
        }))
    }

    fn read_message(&mut self, message: &[u8]) -> Result<(), ProtocolError> {
        let mut payload = vec![0u8; message.len()];
        let n = self
            .noise
            .read_message(message, &mut payload)
            .map_err(|e| handshake_error(format!("invalid handshake message: {e}")))?;
        if n > 0 {
            payload.truncate(n);
            self.remote_payload = Some(payload);
        }
        Ok(())
    }

    fn write_message(&mut self) -> Result<(), ProtocolError> {
        let mut buf = [0u8; MAX_OUTGOING_MESSAGE_LEN];
        let n = self
            .noise
            .write_message(&self.payload, &mut buf)
            .map_err(|e| handshake_error(format!("cannot write handshake message: {e}")))?;
        write_varint(&mut self.outgoing, n as u64);
        self.outgoing.extend_from_slice(&buf[..n]);
        // Once the final message is written the handshake is over on our side; the
        // queued bytes still have to be sent first.
        Ok(())
    }

    fn finish(&mut self) -> Result<HandshakeResult, ProtocolError> {
        let payload = self
            .remote_payload
            .as_deref()
            .ok_or_else(|| handshake_error("remote did not include a handshake payload".into()))?;
        let remote_nonce = decode_payload(payload).map_err(|reason| {
            handshake_error(format!("could not parse remote payload: {reason}"))
        })?;
        let remote_static_key: [u8; 32] = self
            .noise
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| handshake_error("no 32-byte remote static key".into()))?;
        let handshake_hash: [u8; 64] = self
            .noise
            .get_handshake_hash()
            .try_into()
            .map_err(|_| handshake_error("handshake hash is not 64 bytes".into()))?;
        let (k1, k2) = self.noise.dangerously_get_raw_split();
        let (split_tx, split_rx) = if self.initiator { (k1, k2) } else { (k2, k1) };
        Ok(HandshakeResult {
            initiator: self.initiator,
            split_tx,
            split_rx,
            local_nonce: self.local_nonce,
            remote_nonce,
            remote_static_key,
            handshake_hash,
        })
    }
}

fn handshake_error(reason: String) -> ProtocolError {
    ProtocolError::Handshake(reason)
}

/// Parses a message length prefix (unsigned LEB128). `Ok(None)`: need more bytes.
/// Lengths above `MAX_HANDSHAKE_MESSAGE_LEN` are rejected as soon as they are known to
/// be too large, so a hostile prefix cannot make us wait for more data.
fn parse_length(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        // Tolerate over-long (non-minimal) encodings like Node's decoder, up to 10 bytes.
        if i >= 10 {
            return Err(handshake_error(
                "handshake length varint is too long".into(),
            ));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if value > MAX_HANDSHAKE_MESSAGE_LEN as u64 {
            return Err(handshake_error(format!(
                "handshake message of {value}+ bytes exceeds {MAX_HANDSHAKE_MESSAGE_LEN}"
            )));
        }
        if byte & 0x80 == 0 {
            return Ok(Some((value as usize, i + 1)));
        }
    }
    Ok(None)
}

fn write_varint(out: &mut Vec<u8>, value: u64) {
    crate::varint::encode(value, out);
}

/// `NoisePayload { nonce }` as protobuf: field 1, wire type 2, length 24.
fn encode_payload(nonce: &[u8; NONCE_LEN]) -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    out[0] = 0x0a;
    out[1] = NONCE_LEN as u8;
    out[2..].copy_from_slice(nonce);
    out
}

/// Decodes `NoisePayload`: required bytes field 1 (last occurrence wins, as in
/// protobuf), which must be 24 bytes to key XSalsa20; unknown fields are skipped.
fn decode_payload(buf: &[u8]) -> Result<[u8; NONCE_LEN], String> {
    let mut pos = 0;
    let mut nonce: Option<&[u8]> = None;
    while pos < buf.len() {
        let key = read_u64_varint(buf, &mut pos)?;
        let field = key >> 3;
        let wire_type = key & 7;
        if field == 0 {
            return Err("field number 0".into());
        }
        match wire_type {
            0 => {
                if field == 1 {
                    return Err("field 1 is not length-delimited".into());
                }
                read_u64_varint(buf, &mut pos)?;
            }
            1 | 5 => {
                if field == 1 {
                    return Err("field 1 is not length-delimited".into());
                }
                let width = if wire_type == 1 { 8 } else { 4 };
                if buf.len() - pos < width {
                    return Err("truncated fixed-width field".into());
                }
                pos += width;
            }
            2 => {
                let len = read_u64_varint(buf, &mut pos)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.len() - pos)
                    .ok_or("truncated length-delimited field")?;
                if field == 1 {
                    nonce = Some(&buf[pos..pos + len]);
                }
                pos += len;
            }
            other => return Err(format!("unsupported wire type {other}")),
        }
    }
    let nonce = nonce.ok_or("missing required field nonce")?;
    nonce
        .try_into()
        .map_err(|_| format!("nonce is {} bytes, expected {NONCE_LEN}", nonce.len()))
}

fn read_u64_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let rest = buf.get(*pos..).unwrap_or_default();
    let (value, n) = crate::varint::decode(rest).map_err(|e| e.to_string())?;
    *pos += n;
    Ok(value)
}

/// Shared loaders for `core.json` (path from `HYPERMOUNT_VECTORS`, default
/// `../shared/vectors` beside the repository), used by this module's, `cipher.rs`'s and
/// `capability.rs`'s tests.
#[cfg(test)]
pub(crate) mod test_vectors {
    use serde_json::Value;
    use std::sync::OnceLock;

    pub(crate) fn core_json() -> &'static Value {
        static CELL: OnceLock<Value> = OnceLock::new();
        CELL.get_or_init(|| {
            let dir = std::env::var("HYPERMOUNT_VECTORS").unwrap_or_else(|_| {
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").to_string()
            });
            let path = format!("{dir}/core.json");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
            serde_json::from_str(&text).expect("core.json is valid JSON")
        })
    }

    pub(crate) fn hex_str(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    pub(crate) fn hex32(v: &Value) -> [u8; 32] {
        hex_str(v).try_into().expect("32 bytes")
    }

    pub(crate) fn nonce24(v: &Value) -> [u8; 24] {
        hex_str(v).try_into().expect("24 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::test_vectors::{core_json, hex32, hex_str, nonce24};
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn session() -> &'static Value {
        &core_json()["session"]
    }

    fn machine(side: &str) -> Handshake {
        let s = &session()[side];
        let keypair = StaticKeypair::from_seed(&hex32(&s["static"]["seed"]));
        Handshake::with_fixed_ephemeral(
            side == "initiator",
            &keypair,
            nonce24(&s["streamNonce"]),
            &hex32(&s["ephemeral"]["secretKey"]),
        )
        .expect("handshake starts")
    }

    /// `wire[i].bytes` and who sent it.
    fn wire() -> Vec<(String, Vec<u8>)> {
        session()["wire"]
            .as_array()
            .expect("wire")
            .iter()
            .map(|w| {
                (
                    w["from"].as_str().expect("from").to_string(),
                    hex_str(&w["bytes"]),
                )
            })
            .collect()
    }

    /// Transport ciphertext (wire[3..]) sent by `side`, concatenated.
    fn transport_bytes(side: &str) -> Vec<u8> {
        wire()
            .into_iter()
            .skip(3)
            .filter(|(from, _)| from == side)
            .flat_map(|(_, b)| b)
            .collect()
    }

    /// Plaintext frames sent by `side`, concatenated in send order.
    fn plaintext(side: &str) -> Vec<u8> {
        session()["plaintextFrames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter(|f| f["from"] == side)
            .flat_map(|f| hex_str(&f["frame"]))
            .collect()
    }

    fn check_result(side: &str, r: &HandshakeResult) {
        let s = &session()[side];
        let peer = if side == "initiator" {
            "responder"
        } else {
            "initiator"
        };
        assert_eq!(r.initiator, side == "initiator");
        assert_eq!(r.split_tx, hex32(&s["splitTx"]), "{side} split tx");
        assert_eq!(r.split_rx, hex32(&s["splitRx"]), "{side} split rx");
        assert_eq!(r.handshake_hash[..], hex_str(&s["handshakeHash"])[..]);
        assert_eq!(r.remote_static_key, hex32(&s["remotePublicKey"]));
        assert_eq!(r.local_nonce, nonce24(&s["streamNonce"]));
        assert_eq!(r.remote_nonce, nonce24(&session()[peer]["streamNonce"]));
        let key = hex32(&session()["feedKey"]);
        assert_eq!(r.capability(&key), hex32(&s["openCapability"]));
        assert_eq!(
            r.remote_capability(&key),
            hex32(&session()[peer]["openCapability"])
        );
        let theirs = hex32(&session()[peer]["openCapability"]);
        assert!(r.verify_remote_capability(&key, Some(&theirs)));
    }

    #[test]
    fn keypairs_from_seed_match_vector() {
        for side in ["initiator", "responder"] {
            for kind in ["static", "ephemeral"] {
                let k = &session()[side][kind];
                let kp = StaticKeypair::from_seed(&hex32(&k["seed"]));
                assert_eq!(*kp.secret(), hex32(&k["secretKey"]), "{side} {kind}");
                assert_eq!(kp.public, hex32(&k["publicKey"]), "{side} {kind}");
            }
        }
    }

    #[test]
    fn payload_encoding_matches_vector() {
        let v = &core_json()["messages"]["noisePayload"];
        let nonce = nonce24(&v["fields"]["nonce"]);
        assert_eq!(encode_payload(&nonce)[..], hex_str(&v["body"])[..]);
        assert_eq!(decode_payload(&hex_str(&v["body"])), Ok(nonce));
    }

    #[test]
    fn payload_decoder_skips_unknown_fields_and_rejects_bad_nonces() {
        let nonce = [0x33u8; 24];
        // Unknown varint, fixed64, fixed32 and bytes fields around the nonce.
        let mut buf = vec![0x10, 0x96, 0x01, 0x19];
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&encode_payload(&[0x11; 24]));
        buf.push(0x25);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&encode_payload(&nonce)); // last occurrence wins
        buf.extend_from_slice(&[0x1a, 0x02, 0xaa, 0xbb]);
        assert_eq!(decode_payload(&buf), Ok(nonce));

        assert!(decode_payload(&[]).is_err(), "missing field");
        assert!(decode_payload(&[0x0a, 0x17]).is_err(), "truncated");
        let mut short = vec![0x0a, 23];
        short.extend_from_slice(&[0; 23]);
        assert!(decode_payload(&short).is_err(), "23-byte nonce");
        assert!(decode_payload(&[0x08, 0x01]).is_err(), "field 1 as varint");
        assert!(decode_payload(&[0x0b]).is_err(), "group wire type");
        assert!(decode_payload(&[0x02, 0x00]).is_err(), "field 0");
        assert!(decode_payload(&[0x10, 0xff]).is_err(), "truncated varint");
    }

    #[test]
    fn session_handshake_reproduces_wire() {
        let w = wire();
        let mut ini = machine("initiator");
        let mut res = machine("responder");
        assert!(!res.has_outgoing(), "responder waits");

        let m1 = ini.take_outgoing();
        assert_eq!(w[0].0, "initiator");
        assert_eq!(m1, w[0].1);
        assert_eq!(m1.len(), 59);
        assert!(res.push(&m1).expect("msg 1").is_none());

        let m2 = res.take_outgoing();
        assert_eq!(w[1].0, "responder");
        assert_eq!(m2, w[1].1);
        let done_i = ini.push(&m2).expect("msg 2").expect("initiator done");
        assert!(done_i.overflow.is_empty());
        assert!(ini.is_finished());

        let m3 = ini.take_outgoing();
        assert_eq!(w[2].0, "initiator");
        assert_eq!(m3, w[2].1);
        let done_r = res.push(&m3).expect("msg 3").expect("responder done");
        assert!(done_r.overflow.is_empty());
        assert!(!res.has_outgoing());

        check_result("initiator", &done_i.result);
        check_result("responder", &done_r.result);
        assert_eq!(
            done_i.result.remote_static_key,
            *res.local_public_key(),
            "static keys cross over"
        );

        // Nothing may be pushed once complete.
        assert!(res.push(&[0]).is_err());
    }

    #[test]
    fn session_transport_decrypts_wire() {
        let mut ini = machine("initiator");
        let mut res = machine("responder");
        let w = wire();
        // Responder gets message 3 and the initiator's first transport chunk in one read.
        assert!(res.push(&w[0].1).expect("msg 1").is_none());
        let ri = ini.push(&w[1].1).expect("msg 2").expect("done").result;
        let mut m3 = w[2].1.clone();
        assert_eq!(w[3].0, "initiator");
        m3.extend_from_slice(&w[3].1);
        let done = res.push(&m3).expect("msg 3").expect("done");
        assert_eq!(done.overflow, w[3].1, "overflow is the transport chunk");
        let rr = done.result;

        for (sender, sender_result, receiver_result) in
            [("initiator", &ri, &rr), ("responder", &rr, &ri)]
        {
            let expected_plain = plaintext(sender);
            assert!(!expected_plain.is_empty());
            // Decrypt chunk by chunk, as received.
            let mut rx = receiver_result.transport();
            let mut got = Vec::new();
            for (from, mut chunk) in w.iter().skip(3).cloned() {
                if from == sender {
                    rx.decrypt(&mut chunk);
                    got.extend_from_slice(&chunk);
                }
            }
            assert_eq!(got, expected_plain, "{sender} → peer plaintext");
            // Encrypting the plaintext reproduces the ciphertext exactly.
            let mut tx = sender_result.transport();
            let mut buf = expected_plain.clone();
            tx.encrypt(&mut buf);
            assert_eq!(buf, transport_bytes(sender), "{sender} ciphertext");
        }
    }

    /// Feeds `stream` (everything one side receives) to `m` in the given pieces and
    /// returns the completion plus all bytes after the handshake.
    fn feed_chunked(
        m: &mut Handshake,
        stream: &[u8],
        cuts: &[usize],
    ) -> (HandshakeComplete, Vec<u8>) {
        let mut done: Option<HandshakeComplete> = None;
        let mut after = Vec::new();
        let mut start = 0;
        for &c in cuts.iter().chain([stream.len()].iter()) {
            let piece = &stream[start..c.max(start)];
            start = c.max(start);
            if done.is_some() {
                after.extend_from_slice(piece);
            } else if let Some(d) = m.push(piece).expect("valid stream") {
                after.extend_from_slice(&d.overflow);
                done = Some(d);
            }
        }
        (done.expect("handshake completes"), after)
    }

    fn receive_streams() -> (Vec<u8>, Vec<u8>) {
        let w = wire();
        let mut to_responder = Vec::new();
        let mut to_initiator = Vec::new();
        for (from, b) in &w {
            if from == "initiator" {
                to_responder.extend_from_slice(b);
            } else {
                to_initiator.extend_from_slice(b);
            }
        }
        (to_responder, to_initiator)
    }

    #[test]
    fn handshake_over_one_byte_pushes() {
        let (to_responder, to_initiator) = receive_streams();
        let w = wire();
        for (side, stream, reply) in [
            ("responder", &to_responder, &w[1].1),
            ("initiator", &to_initiator, &w[2].1),
        ] {
            let mut m = machine(side);
            let first = m.take_outgoing();
            let cuts: Vec<usize> = (1..stream.len()).collect();
            let (done, after) = feed_chunked(&mut m, stream, &cuts);
            let mut sent = first;
            sent.extend(m.take_outgoing());
            if side == "responder" {
                assert_eq!(&sent, reply);
            } else {
                let mut expected = w[0].1.clone();
                expected.extend_from_slice(reply);
                assert_eq!(sent, expected);
            }
            check_result(side, &done.result);
            let peer = if side == "initiator" {
                "responder"
            } else {
                "initiator"
            };
            assert_eq!(after, transport_bytes(peer));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn handshake_over_any_chunking(
            cuts in proptest::collection::vec(0usize..1200, 0..12),
            initiator in any::<bool>(),
        ) {
            let (to_responder, to_initiator) = receive_streams();
            let (side, stream) = if initiator {
                ("initiator", to_initiator)
            } else {
                ("responder", to_responder)
            };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            let mut m = machine(side);
            let (done, after) = feed_chunked(&mut m, &stream, &cuts);
            check_result(side, &done.result);
            let peer = if initiator { "responder" } else { "initiator" };
            prop_assert_eq!(after, transport_bytes(peer));
        }

        #[test]
        fn garbage_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6),
            initiator in any::<bool>(),
        ) {
            let mut m = Handshake::new(initiator, &StaticKeypair::generate(), random_nonce())
                .expect("start");
            for c in &chunks {
                // Random bytes can never complete a handshake (it needs valid AEAD tags).
                match m.push(c) {
                    Ok(done) => prop_assert!(done.is_none()),
                    Err(ProtocolError::Handshake(_)) => {
                        prop_assert!(m.push(&[]).is_err(), "errors are final");
                        break;
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
            }
        }

        #[test]
        fn tampered_messages_fail(msg in 0usize..3, byte in any::<usize>(), bit in 0u8..8) {
            let w = wire();
            // Tamper with message body bytes (not the length prefix).
            let mut tampered = w[msg].1.clone();
            let i = 1 + byte % (tampered.len() - 1);
            tampered[i] ^= 1 << bit;
            let mut ini = machine("initiator");
            let mut res = machine("responder");
            ini.take_outgoing();
            let outcome = match msg {
                // Message 1 is plaintext: the change surfaces when message 3 no longer
                // decrypts under the altered handshake hash.
                0 => res.push(&tampered).and_then(|_| res.push(&w[2].1)),
                1 => ini.push(&tampered),
                _ => {
                    res.push(&w[0].1).expect("msg 1");
                    res.push(&tampered)
                }
            };
            prop_assert!(matches!(outcome, Err(ProtocolError::Handshake(_))), "{:?}", outcome);
        }
    }

    #[test]
    fn truncated_message_waits_then_completes() {
        let w = wire();
        let mut ini = machine("initiator");
        assert_eq!(ini.take_outgoing(), w[0].1);
        let m2 = &w[1].1;
        assert!(ini.push(&m2[..m2.len() - 1]).expect("partial").is_none());
        assert!(!ini.is_finished());
        assert!(
            !ini.has_outgoing(),
            "no message 3 before message 2 is complete"
        );
        assert!(ini.push(&m2[m2.len() - 1..]).expect("rest").is_some());
    }

    #[test]
    fn oversized_length_prefix_is_rejected() {
        let mut m = Handshake::new(false, &StaticKeypair::generate(), random_nonce()).unwrap();
        // 65536 = 80 80 04: rejected once the third byte shows the size.
        assert!(m.push(&[0x80, 0x80]).expect("undecided").is_none());
        let err = m.push(&[0x04]).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Handshake(ref r) if r.contains("exceeds")),
            "{err}"
        );
        let mut m = Handshake::new(false, &StaticKeypair::generate(), random_nonce()).unwrap();
        assert!(m.push(&[0xff; 11]).is_err(), "endless varint");
    }

    #[test]
    fn zero_length_prefix_is_skipped_like_node() {
        let w = wire();
        let mut res = machine("responder");
        let mut m1 = vec![0x00, 0x00];
        m1.extend_from_slice(&w[0].1);
        assert!(res.push(&m1).expect("msg 1").is_none());
        assert_eq!(res.take_outgoing(), w[1].1);
    }

    /// A raw snow initiator that sends `payload1`/`payload3` instead of our payload.
    fn raw_initiator_to_responder(
        payload1: &[u8],
        payload3: &[u8],
    ) -> Result<Option<HandshakeComplete>, ProtocolError> {
        let params = NOISE_PARAMS.parse().unwrap();
        let kp = StaticKeypair::generate();
        let mut raw = Builder::new(params)
            .local_private_key(kp.secret())
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut res = Handshake::new(false, &StaticKeypair::generate(), random_nonce()).unwrap();
        let mut buf = [0u8; 1024];
        let n = raw.write_message(payload1, &mut buf).unwrap();
        let mut framed = vec![n as u8];
        framed.extend_from_slice(&buf[..n]);
        assert!(res.push(&framed)?.is_none());
        let m2 = res.take_outgoing();
        assert_eq!(m2[0] as usize, m2.len() - 1);
        let mut p = [0u8; 1024];
        let pn = raw.read_message(&m2[1..], &mut p).unwrap();
        assert_eq!(pn, PAYLOAD_LEN, "responder sends its payload");
        let n = raw.write_message(payload3, &mut buf).unwrap();
        let mut framed = vec![n as u8];
        framed.extend_from_slice(&buf[..n]);
        res.push(&framed)
    }

    #[test]
    fn payload_rules() {
        let err = raw_initiator_to_responder(&[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("did not include a handshake payload"),
            "{err}"
        );

        let mut bad = vec![0x0a, 5];
        bad.extend_from_slice(&[1; 5]);
        let err = raw_initiator_to_responder(&bad, &bad).unwrap_err();
        assert!(
            err.to_string().contains("could not parse remote payload"),
            "{err}"
        );

        // Only the last non-empty payload counts: a good message-1 payload and an empty
        // message-3 payload is fine; a good payload after a bad one is fine too.
        let good = encode_payload(&[0x5a; 24]);
        let done = raw_initiator_to_responder(&good, &[]).unwrap().unwrap();
        assert_eq!(done.result.remote_nonce, [0x5a; 24]);
        let done = raw_initiator_to_responder(&bad, &good).unwrap().unwrap();
        assert_eq!(done.result.remote_nonce, [0x5a; 24]);

        // Unknown fields around the nonce are accepted.
        let mut extended = vec![0x10, 0x01];
        extended.extend_from_slice(&good);
        extended.extend_from_slice(&[0x1a, 0x01, 0xff]);
        let done = raw_initiator_to_responder(&extended, &extended)
            .unwrap()
            .unwrap();
        assert_eq!(done.result.remote_nonce, [0x5a; 24]);
    }

    #[test]
    fn random_keys_interoperate() {
        let mut a = Handshake::new(true, &StaticKeypair::generate(), random_nonce()).unwrap();
        let mut b = Handshake::new(false, &StaticKeypair::generate(), random_nonce()).unwrap();
        assert!(b.push(&a.take_outgoing()).unwrap().is_none());
        let da = a.push(&b.take_outgoing()).unwrap().unwrap().result;
        let db = b.push(&a.take_outgoing()).unwrap().unwrap().result;
        assert_eq!(da.split_tx, db.split_rx);
        assert_eq!(da.split_rx, db.split_tx);
        assert_eq!(da.local_nonce, db.remote_nonce);
        assert_eq!(da.remote_nonce, db.local_nonce);
        assert_eq!(da.remote_static_key, *b.local_public_key());
        assert_eq!(db.remote_static_key, *a.local_public_key());
        assert_eq!(da.handshake_hash, db.handshake_hash);
        let key = [9u8; 32];
        assert!(db.verify_remote_capability(&key, Some(&da.capability(&key))));
        let mut ta = da.transport();
        let mut tb = db.transport();
        let mut msg = b"hello over xsalsa20".to_vec();
        ta.encrypt(&mut msg);
        assert_ne!(&msg[..], b"hello over xsalsa20");
        tb.decrypt(&mut msg);
        assert_eq!(&msg[..], b"hello over xsalsa20");
    }
}
