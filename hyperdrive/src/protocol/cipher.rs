//! Transport encryption after the handshake (spec/protocol.md §3): each direction is
//! XOR-ed with one XSalsa20 keystream (libsodium `crypto_stream_xsalsa20`) that continues
//! across writes. There is no MAC; integrity comes only from the frame parser rejecting
//! garbage. This module owns the keystream positions and nothing else: it never frames,
//! buffers or copies data, callers encrypt and decrypt their own buffers in place.

use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::XSalsa20;

use super::handshake::HandshakeResult;

/// One direction's keystream. Bytes may be fed in any chunking: XOR-ing `a` then `b`
/// equals XOR-ing `a ‖ b` in one call.
pub struct XorStream {
    cipher: XSalsa20,
}

impl XorStream {
    /// A keystream starting at byte 0 for `key` and the 24-byte `nonce`.
    pub fn new(key: &[u8; 32], nonce: &[u8; 24]) -> Self {
        Self {
            cipher: XSalsa20::new(key.into(), nonce.into()),
        }
    }

    /// XORs `data` in place with the next `data.len()` keystream bytes.
    ///
    /// The keystream is 2^70 bytes long; a connection cannot come near that, so the
    /// cipher's exhaustion panic is unreachable in practice.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.cipher.apply_keystream(data);
    }
}

impl std::fmt::Debug for XorStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XorStream { .. }")
    }
}

/// Both directions of one connection's transport cipher.
///
/// | direction | key | nonce |
/// |---|---|---|
/// | send | own `split_tx` | own payload nonce |
/// | receive | own `split_rx` | remote payload nonce |
#[derive(Debug)]
pub struct Transport {
    tx: XorStream,
    rx: XorStream,
}

impl Transport {
    /// The transport for a completed handshake.
    pub fn new(result: &HandshakeResult) -> Self {
        Self::from_keys(
            &result.split_tx,
            &result.split_rx,
            &result.local_nonce,
            &result.remote_nonce,
        )
    }

    /// The transport from raw split keys and nonces (see the table above).
    pub fn from_keys(
        split_tx: &[u8; 32],
        split_rx: &[u8; 32],
        local_nonce: &[u8; 24],
        remote_nonce: &[u8; 24],
    ) -> Self {
        Self {
            tx: XorStream::new(split_tx, local_nonce),
            rx: XorStream::new(split_rx, remote_nonce),
        }
    }

    /// Encrypts outgoing bytes in place (must be called in send order).
    pub fn encrypt(&mut self, data: &mut [u8]) {
        self.tx.apply(data);
    }

    /// Decrypts incoming bytes in place (must be called in receive order).
    pub fn decrypt(&mut self, data: &mut [u8]) {
        self.rx.apply(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::test_vectors::{core_json, hex32, hex_str, nonce24};
    use proptest::prelude::*;

    #[test]
    fn keystream_vector() {
        let v = &core_json()["xsalsa20"];
        let key = hex32(&v["key"]);
        let nonce = nonce24(&v["nonce"]);
        let expected = hex_str(&v["keystream130"]);
        assert_eq!(expected.len(), 130);
        let mut buf = vec![0u8; 130];
        XorStream::new(&key, &nonce).apply(&mut buf);
        assert_eq!(buf, expected);
    }

    #[test]
    fn chunked_vector_continues_keystream() {
        let v = &core_json()["xsalsa20"];
        let mut stream = XorStream::new(&hex32(&v["key"]), &nonce24(&v["nonce"]));
        let chunks = v["chunked"]["chunks"].as_array().expect("chunks");
        let mut all = Vec::new();
        for c in chunks {
            let expected = hex_str(c);
            let mut buf = vec![0u8; expected.len()];
            stream.apply(&mut buf);
            assert_eq!(buf, expected);
            all.extend_from_slice(&buf);
        }
        assert_eq!(all[..130], hex_str(&v["keystream130"])[..]);
    }

    proptest! {
        #[test]
        fn any_chunking_equals_one_call(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let key = [7u8; 32];
            let nonce = [9u8; 24];
            let mut whole = data.clone();
            XorStream::new(&key, &nonce).apply(&mut whole);

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut pieces = data.clone();
            let mut stream = XorStream::new(&key, &nonce);
            let mut start = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                stream.apply(&mut pieces[start..c]);
                start = c;
            }
            prop_assert_eq!(&pieces, &whole);

            // Decrypting with a peer transport (keys and nonces swapped) restores the input.
            let mut a = Transport::from_keys(&[1; 32], &[2; 32], &[3; 24], &[4; 24]);
            let mut b = Transport::from_keys(&[2; 32], &[1; 32], &[4; 24], &[3; 24]);
            let mut buf = data.clone();
            a.encrypt(&mut buf);
            b.decrypt(&mut buf);
            prop_assert_eq!(&buf, &data);
        }
    }
}
