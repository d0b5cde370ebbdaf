//! Keys, components and the hash that orders them (hypertrie §3–§4): one leading `/`
//! dropped, components split on `/`, and SipHash-2-4 (16 zero key bytes) per component.
//! The hash function is pluggable because tests (and the reference's `opts.hash`) use
//! weak hashes to force collisions.

use std::sync::Arc;

use siphasher::sip::SipHasher24;

/// A custom node hash: receives the normalised key, returns the hash bytes (4 path
/// digits per byte). The default is [`default_hash`].
pub type HashFn = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

/// Drops exactly one leading `/` (nothing else is normalised).
pub fn normalize_key(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

/// Splits a normalised key into components: a leading and then a trailing empty
/// component are dropped, interior empty components are kept.
pub fn split_key(key: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = key.split('/').collect();
    if parts.first() == Some(&"") {
        parts.remove(0);
    }
    if parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

/// SipHash-2-4 of `data` under the all-zero key, as the 8 output bytes (little-endian,
/// as the SipHash paper and the reference produce them).
pub fn siphash24(data: &[u8]) -> [u8; 8] {
    SipHasher24::new_with_keys(0, 0).hash(data).to_le_bytes()
}

/// Hypertrie's default node hash: the concatenated SipHash of every component.
pub fn default_hash(key: &str) -> Vec<u8> {
    let parts = split_key(key);
    let mut out = Vec::with_capacity(parts.len() * 8);
    for part in parts {
        out.extend_from_slice(&siphash24(part.as_bytes()));
    }
    out
}

/// Digit `i` of a path, given the hidden bit and the node hash (see §4): digit 0 is
/// the hidden bit, then 4 two-bit digits per hash byte (least-significant pair first),
/// then the end marker 4.
pub fn path_digit(hidden: bool, hash: &[u8], i: usize) -> u8 {
    if i == 0 {
        return u8::from(hidden);
    }
    let k = i - 1;
    match hash.get(k >> 2) {
        Some(b) => (b >> (2 * (k & 3))) & 3,
        None => 4,
    }
}

/// Whether digit position `i` is the last digit of a component (where 64-bit
/// collisions must be checked against the component strings).
pub fn is_terminator(i: usize) -> bool {
    i > 0 && i.is_multiple_of(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_paper_vector() {
        // SipHash paper, appendix A: key 00..0f, message 00..0e.
        let key: Vec<u8> = (0u8..16).collect();
        let k0 = u64::from_le_bytes(key[..8].try_into().unwrap());
        let k1 = u64::from_le_bytes(key[8..].try_into().unwrap());
        let msg: Vec<u8> = (0u8..15).collect();
        let out = SipHasher24::new_with_keys(k0, k1).hash(&msg).to_le_bytes();
        assert_eq!(hex::encode(out), "e545be4961ca29a1");
    }

    #[test]
    fn keys_and_components() {
        assert_eq!(normalize_key("/a/"), "a/");
        assert_eq!(normalize_key("//a"), "/a");
        assert_eq!(split_key("a//b"), vec!["a", "", "b"]);
        assert_eq!(split_key("a/"), vec!["a"]);
        assert!(split_key("").is_empty());
        assert!(split_key(normalize_key("/")).is_empty());
        assert_eq!(hex::encode(default_hash("a")), "49a293cd6008c296");
    }
}
