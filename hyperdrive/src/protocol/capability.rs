//! Channel capabilities (spec/protocol.md §6): the 32-byte proof, sent in `Open`, that the
//! sender knows a feed's public key and not just its discovery key. It is bound to one
//! session because it is keyed with that session's Noise split keys.
//!
//! This module only computes and compares values; deciding what to do with a bad
//! capability (close the channel or destroy the stream) is the channel layer's job.

use crate::core::crypto::keyed_hash;

/// ASCII prefix of the capability preimage (20 bytes, no type byte).
pub const CAPABILITY_PREFIX: &[u8; 20] = b"hypercore capability";

/// Length of a capability in bytes.
pub const CAPABILITY_LEN: usize = 32;

/// The capability we send in `Open` for `key`:
/// `H_{split_rx}("hypercore capability" ‖ split_tx ‖ key)` with our own split keys.
pub fn capability(split_tx: &[u8; 32], split_rx: &[u8; 32], key: &[u8; 32]) -> [u8; 32] {
    keyed_hash(split_rx, &[CAPABILITY_PREFIX, split_tx, key])
}

/// The capability the peer must send us for `key`. The peer's split keys are ours
/// swapped, so this is `H_{split_tx}("hypercore capability" ‖ split_rx ‖ key)`.
pub fn remote_capability(split_tx: &[u8; 32], split_rx: &[u8; 32], key: &[u8; 32]) -> [u8; 32] {
    capability(split_rx, split_tx, key)
}

/// Whether `received` (the `capability` field of the peer's `Open`) is the value the
/// peer should have sent for `key`. A missing or wrongly sized field is simply `false`.
/// The comparison takes the same time wherever the first differing byte is, so a
/// remote cannot learn the expected value byte by byte.
pub fn verify_remote_capability(
    split_tx: &[u8; 32],
    split_rx: &[u8; 32],
    key: &[u8; 32],
    received: Option<&[u8]>,
) -> bool {
    let Some(received) = received else {
        return false;
    };
    let expected = remote_capability(split_tx, split_rx, key);
    constant_time_eq(&expected, received)
}

/// Compares two byte strings without an early exit on the first difference.
/// Lengths are public (always 32 here), so a length mismatch may return at once.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::test_vectors::{core_json, hex32};

    #[test]
    fn capability_vector() {
        let v = &core_json()["capability"];
        let tx = hex32(&v["splitTx"]);
        let rx = hex32(&v["splitRx"]);
        let key = hex32(&v["key"]);
        assert_eq!(capability(&tx, &rx, &key), hex32(&v["capability"]));
        assert_eq!(
            remote_capability(&tx, &rx, &key),
            hex32(&v["remoteCapability"])
        );
        // The peer (keys swapped) sends exactly what we expect.
        assert_eq!(
            capability(&rx, &tx, &key),
            hex32(&v["peerView"]["capability"])
        );
        let good = hex32(&v["remoteCapability"]);
        assert!(verify_remote_capability(&tx, &rx, &key, Some(&good)));
        // Our own capability is not a valid remote capability.
        let own = hex32(&v["capability"]);
        assert!(!verify_remote_capability(&tx, &rx, &key, Some(&own)));
        assert!(!verify_remote_capability(&tx, &rx, &key, None));
        assert!(!verify_remote_capability(&tx, &rx, &key, Some(&good[..31])));
        let mut flipped = good;
        flipped[31] ^= 1;
        assert!(!verify_remote_capability(&tx, &rx, &key, Some(&flipped)));
        let mut other_key = key;
        other_key[0] ^= 1;
        assert!(!verify_remote_capability(&tx, &rx, &other_key, Some(&good)));
    }

    #[test]
    fn session_open_capabilities() {
        let s = &core_json()["session"];
        let key = hex32(&s["feedKey"]);
        for (me, peer) in [("initiator", "responder"), ("responder", "initiator")] {
            let tx = hex32(&s[me]["splitTx"]);
            let rx = hex32(&s[me]["splitRx"]);
            assert_eq!(capability(&tx, &rx, &key), hex32(&s[me]["openCapability"]));
            let theirs = hex32(&s[peer]["openCapability"]);
            assert!(verify_remote_capability(&tx, &rx, &key, Some(&theirs)));
        }
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
