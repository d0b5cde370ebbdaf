//! Key derivation as corestore 5 does it (derive-key 1.x): every named core's key pair
//! comes from the store's master key and the core's name, so only the name needs to be
//! stored and no secret key ever touches the disk.

use crate::core::crypto::{keyed_hash, KeyPair};

/// The derive-key namespace corestore 5 uses for all its cores.
pub const NAMESPACE: &str = "corestore";

/// Name of a store's default core (`store.default()`), which is also a Hyperdrive's
/// metadata core.
pub const DEFAULT_NAME: &str = "default";

/// What nested `store.namespace(a).namespace(b)` names are joined with.
pub const NAMESPACE_SEPARATOR: &str = ":";

/// Suffix of a Hyperdrive content core's name after the metadata key in hex.
pub const CONTENT_SUFFIX: &str = "-content";

/// The bytes hashed before the name: `ascii(decimal byte length of ns) ‖ "\n" ‖ ns`
/// (derive-key's domain separation; `"9\ncorestore"` for corestore).
pub fn derive_key_prefix(namespace: &str) -> Vec<u8> {
    let mut out = namespace.len().to_string().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(namespace.as_bytes());
    out
}

/// `seed = BLAKE2b-256(key = master_key, prefix("corestore") ‖ name)`.
pub fn derive_seed(master_key: &[u8; 32], name: &[u8]) -> [u8; 32] {
    keyed_hash(master_key, &[&derive_key_prefix(NAMESPACE), name])
}

/// The Ed25519 key pair of the core called `name` (libsodium seed key pair of
/// [`derive_seed`]).
pub fn derive_keypair(master_key: &[u8; 32], name: &[u8]) -> KeyPair {
    KeyPair::from_seed(&derive_seed(master_key, name))
}

/// The name of the content core of the Hyperdrive whose metadata key is `metadata_key`:
/// `hex(metadata_key) ‖ "-content"` (hyperdrive 10 asks its corestore for that name).
pub fn content_name(metadata_key: &[u8; 32]) -> String {
    let mut s = hex::encode(metadata_key);
    s.push_str(CONTENT_SUFFIX);
    s
}

/// The default-core name of `store.namespace(parts[0]).namespace(parts[1])…`: the parts
/// joined with `":"`; the root store (no parts) uses `"default"`.
pub fn namespace_name(parts: &[&str]) -> String {
    if parts.is_empty() {
        DEFAULT_NAME.to_owned()
    } else {
        parts.join(NAMESPACE_SEPARATOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_counts_bytes() {
        assert_eq!(derive_key_prefix("corestore"), b"9\ncorestore");
        assert_eq!(derive_key_prefix("0123456789"), b"10\n0123456789");
    }

    #[test]
    fn names_derive_distinct_keys() {
        let mk = [7u8; 32];
        let a = derive_keypair(&mk, b"a").public_bytes();
        let b = derive_keypair(&mk, b"b").public_bytes();
        let a2 = derive_keypair(&[8u8; 32], b"a").public_bytes();
        assert_ne!(a, b);
        assert_ne!(a, a2);
        assert_eq!(a, derive_keypair(&mk, b"a").public_bytes());
    }

    #[test]
    fn namespace_names() {
        assert_eq!(namespace_name(&[]), "default");
        assert_eq!(namespace_name(&["x"]), "x");
        assert_eq!(namespace_name(&["x", "y"]), "x:y");
    }
}
