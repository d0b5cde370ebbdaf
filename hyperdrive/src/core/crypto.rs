//! Hashes, keys and signatures exactly as hypercore-crypto@2.3.2 computes them.
//!
//! BLAKE2b-256 everywhere (libsodium `crypto_generichash`): leaves, parents and the
//! tree hash carry one type byte so that no preimage of one kind is a preimage of
//! another. Ed25519 signs the 40-byte `signable(L)`.

use blake2::digest::consts::U32;
use blake2::digest::{FixedOutput, Mac, Update};
use blake2::{Blake2b, Blake2bMac};
use ed25519_dalek::{Signer, Verifier};

use super::error::CoreError;

pub type PublicKey = ed25519_dalek::VerifyingKey;
pub type SecretKey = ed25519_dalek::SigningKey;
pub type Signature = [u8; 64];
pub type Hash = [u8; 32];

const LEAF_TYPE: u8 = 0;
const PARENT_TYPE: u8 = 1;
const ROOT_TYPE: u8 = 2;

type Blake2b256 = Blake2b<U32>;

/// One Merkle tree node: its flat-tree index, hash and the byte size it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    pub index: u64,
    pub hash: Hash,
    pub size: u64,
}

impl Node {
    pub fn new(index: u64, hash: Hash, size: u64) -> Self {
        Node { index, hash, size }
    }

    /// The leaf node for block `block` holding `data`.
    pub fn leaf(block: u64, data: &[u8]) -> Self {
        Node {
            index: 2 * block,
            hash: leaf_hash(data),
            size: data.len() as u64,
        }
    }

    /// The parent of two sibling nodes (in either order).
    pub fn parent_of(a: &Node, b: &Node) -> Self {
        let (l, r) = if a.index <= b.index { (a, b) } else { (b, a) };
        Node {
            index: super::flat_tree::parent(l.index),
            hash: parent_hash(l, r),
            size: l.size + r.size,
        }
    }
}

/// `H(0x00 ‖ u64be(len) ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Blake2b256::default();
    Update::update(&mut h, &[LEAF_TYPE]);
    Update::update(&mut h, &(data.len() as u64).to_be_bytes());
    Update::update(&mut h, data);
    h.finalize_fixed().into()
}

/// `H(0x01 ‖ u64be(a.size + b.size) ‖ a.hash ‖ b.hash)`, `a` being the lower index.
pub fn parent_hash(a: &Node, b: &Node) -> Hash {
    let (l, r) = if a.index <= b.index { (a, b) } else { (b, a) };
    let mut h = Blake2b256::default();
    Update::update(&mut h, &[PARENT_TYPE]);
    Update::update(&mut h, &(l.size + r.size).to_be_bytes());
    Update::update(&mut h, &l.hash);
    Update::update(&mut h, &r.hash);
    h.finalize_fixed().into()
}

/// `H(0x02 ‖ (hash ‖ u64be(index) ‖ u64be(size))*)` over the roots, left to right.
pub fn tree_hash(roots: &[Node]) -> Hash {
    let mut h = Blake2b256::default();
    Update::update(&mut h, &[ROOT_TYPE]);
    for r in roots {
        Update::update(&mut h, &r.hash);
        Update::update(&mut h, &r.index.to_be_bytes());
        Update::update(&mut h, &r.size.to_be_bytes());
    }
    h.finalize_fixed().into()
}

/// The 40 signed bytes for a feed of `length` blocks: `treeHash(roots) ‖ u64be(length)`.
pub fn signable(roots: &[Node], length: u64) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&tree_hash(roots));
    out[32..].copy_from_slice(&length.to_be_bytes());
    out
}

/// Keyed BLAKE2b-256 (libsodium `crypto_generichash` with a key).
pub fn keyed_hash(key: &[u8], parts: &[&[u8]]) -> Hash {
    let mut mac = <Blake2bMac<U32> as Mac>::new_from_slice(key)
        .expect("BLAKE2b accepts keys of 1..=64 bytes; callers pass 32");
    for p in parts {
        Mac::update(&mut mac, p);
    }
    mac.finalize_fixed().into()
}

/// Plain BLAKE2b-256 of the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> Hash {
    let mut h = Blake2b256::default();
    for p in parts {
        Update::update(&mut h, p);
    }
    h.finalize_fixed().into()
}

/// `H_publicKey("hypercore")`: what peers announce and send in `Open`.
pub fn discovery_key(public_key: &[u8; 32]) -> Hash {
    keyed_hash(public_key, &[b"hypercore"])
}

/// An Ed25519 key pair; the secret half is absent for read-only feeds.
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub public: PublicKey,
    pub secret: Option<SecretKey>,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        let secret = SecretKey::generate(&mut rand::rngs::OsRng);
        KeyPair {
            public: secret.verifying_key(),
            secret: Some(secret),
        }
    }

    /// The key pair libsodium's `crypto_sign_seed_keypair` makes from `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = SecretKey::from_bytes(seed);
        KeyPair {
            public: secret.verifying_key(),
            secret: Some(secret),
        }
    }

    /// A read-only key pair from a 32-byte public key.
    pub fn from_public(bytes: &[u8; 32]) -> Result<Self, CoreError> {
        let public = PublicKey::from_bytes(bytes)
            .map_err(|e| CoreError::InvalidKey(format!("{}: {e}", hex::encode(bytes))))?;
        Ok(KeyPair {
            public,
            secret: None,
        })
    }

    /// From the 64-byte libsodium secret key layout `seed ‖ public`. Fails if the
    /// public half does not belong to the seed.
    pub fn from_libsodium_secret(bytes: &[u8; 64]) -> Result<Self, CoreError> {
        let seed: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
        let kp = Self::from_seed(&seed);
        if kp.public.as_bytes() != &bytes[32..] {
            return Err(CoreError::InvalidKey(
                "secret key does not match its public key".into(),
            ));
        }
        Ok(kp)
    }

    /// The libsodium 64-byte secret key layout `seed ‖ public`, if writable.
    pub fn libsodium_secret(&self) -> Option<[u8; 64]> {
        self.secret.as_ref().map(|s| {
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(s.as_bytes());
            out[32..].copy_from_slice(self.public.as_bytes());
            out
        })
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    pub fn discovery_key(&self) -> Hash {
        discovery_key(self.public.as_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Result<Signature, CoreError> {
        let s = self.secret.as_ref().ok_or(CoreError::NotWritable)?;
        Ok(s.sign(message).to_bytes())
    }
}

/// Verify a signature over `signable(L)` the way hypercore's `verifyCompat` does:
/// the 40-byte form first, then the 32-byte tree hash alone (pre-v8 writers).
pub fn verify_signable(public: &PublicKey, signable: &[u8; 40], signature: &[u8; 64]) -> bool {
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    public.verify(signable, &sig).is_ok() || public.verify(&signable[..32], &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_plain_differ() {
        let k = [1u8; 32];
        assert_ne!(keyed_hash(&k, &[b"hypercore"]), hash(&[b"hypercore"]));
    }

    #[test]
    fn libsodium_layout_roundtrip() {
        let kp = KeyPair::from_seed(&[1u8; 32]);
        let sk = kp.libsodium_secret().unwrap();
        let back = KeyPair::from_libsodium_secret(&sk).unwrap();
        assert_eq!(back.public, kp.public);
        let mut bad = sk;
        bad[40] ^= 1;
        assert!(KeyPair::from_libsodium_secret(&bad).is_err());
    }
}
