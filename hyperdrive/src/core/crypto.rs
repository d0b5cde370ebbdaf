//! Hashes, keys and signatures exactly as hypercore-crypto@2.3.2 computes them.
//!
//! BLAKE2b-256 everywhere (libsodium `crypto_generichash`): leaves, parents and the
//! tree hash carry one type byte so that no preimage of one kind is a preimage of
//! another. Ed25519 signs the 40-byte `signable(L)`.
//!
//! The unkeyed hashes use `blake2b_simd` (runtime-detected AVX2/SSE4.1): appends and
//! verification hash every byte of every block, so BLAKE2b speed is feed speed, and
//! [`leaf_hashes`] hashes up to four leaves at once in the SIMD lanes. The keyed hash
//! stays on RustCrypto's `blake2`, whose key handling we have checked against libsodium.

use blake2::digest::consts::U32;
use blake2::digest::{FixedOutput, Mac};
use blake2::Blake2bMac;
use ed25519_dalek::{Signer, Verifier};

use super::error::CoreError;

pub type PublicKey = ed25519_dalek::VerifyingKey;
pub type SecretKey = ed25519_dalek::SigningKey;
pub type Signature = [u8; 64];
pub type Hash = [u8; 32];

const LEAF_TYPE: u8 = 0;
const PARENT_TYPE: u8 = 1;
const ROOT_TYPE: u8 = 2;

/// BLAKE2b-256 with no key, salt or personalisation (libsodium's default).
fn params() -> blake2b_simd::Params {
    let mut p = blake2b_simd::Params::new();
    p.hash_length(32);
    p
}

fn blake2b256() -> blake2b_simd::State {
    params().to_state()
}

fn to_hash(h: &blake2b_simd::Hash) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(h.as_bytes());
    out
}

/// The 9 bytes a leaf hash starts with: the type and the block length.
fn leaf_prefix(len: usize) -> [u8; 9] {
    let mut p = [0u8; 9];
    p[0] = LEAF_TYPE;
    p[1..].copy_from_slice(&(len as u64).to_be_bytes());
    p
}

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
    let mut h = blake2b256();
    h.update(&leaf_prefix(data.len()));
    h.update(data);
    to_hash(&h.finalize())
}

/// Blocks up to this size are hashed from a scratch copy that has the 9-byte prefix in
/// front, so that all of their compressions run in the SIMD lanes (the copy costs far
/// less than hashing the first and last block of each leaf one at a time). Larger blocks
/// are hashed in place.
const SCRATCH_LEAF_MAX: usize = 8 * 1024;

/// [`leaf_hash`] of every block, several at a time in the SIMD lanes (the hashes of a
/// batch are independent, so a batch hashes about as fast as the machine's vector units
/// allow rather than one block after another). `scratch` is reused between calls.
pub fn leaf_hashes<B: AsRef<[u8]>>(blocks: &[B], scratch: &mut Vec<u8>, out: &mut Vec<Hash>) {
    out.clear();
    if blocks.len() < 2 {
        out.extend(blocks.iter().map(|b| leaf_hash(b.as_ref())));
        return;
    }
    let params = params();
    if blocks.iter().all(|b| b.as_ref().len() <= SCRATCH_LEAF_MAX) {
        scratch.clear();
        for b in blocks {
            let b = b.as_ref();
            scratch.extend_from_slice(&leaf_prefix(b.len()));
            scratch.extend_from_slice(b);
        }
        let mut jobs = Vec::with_capacity(blocks.len());
        let mut rest = scratch.as_slice();
        for b in blocks {
            let (input, tail) = rest.split_at(9 + b.as_ref().len());
            jobs.push(blake2b_simd::many::HashManyJob::new(&params, input));
            rest = tail;
        }
        blake2b_simd::many::hash_many(jobs.iter_mut());
        out.extend(jobs.iter().map(|j| to_hash(&j.to_hash())));
        return;
    }
    let mut states: Vec<blake2b_simd::State> = blocks
        .iter()
        .map(|b| {
            let mut st = params.to_state();
            st.update(&leaf_prefix(b.as_ref().len()));
            st
        })
        .collect();
    blake2b_simd::many::update_many(states.iter_mut().zip(blocks.iter().map(|b| b.as_ref())));
    out.extend(states.iter().map(|st| to_hash(&st.finalize())));
}

/// The 73 hashed bytes of a parent: type, summed size, left hash, right hash.
fn parent_input(l: &Node, r: &Node) -> [u8; 73] {
    let mut buf = [0u8; 73];
    buf[0] = PARENT_TYPE;
    buf[1..9].copy_from_slice(&(l.size.wrapping_add(r.size)).to_be_bytes());
    buf[9..41].copy_from_slice(&l.hash);
    buf[41..].copy_from_slice(&r.hash);
    buf
}

/// The parents of sibling pairs `(left, right)`, hashed together in the SIMD lanes.
/// Each pair's sizes must not overflow when summed.
pub fn parents_of(pairs: &[(Node, Node)], out: &mut Vec<Node>) {
    out.clear();
    if pairs.len() < 2 {
        out.extend(pairs.iter().map(|(l, r)| Node::parent_of(l, r)));
        return;
    }
    let params = params();
    let inputs: Vec<[u8; 73]> = pairs.iter().map(|(l, r)| parent_input(l, r)).collect();
    let mut jobs: Vec<_> = inputs
        .iter()
        .map(|i| blake2b_simd::many::HashManyJob::new(&params, i))
        .collect();
    blake2b_simd::many::hash_many(jobs.iter_mut());
    out.extend(pairs.iter().zip(&jobs).map(|((l, r), j)| Node {
        index: super::flat_tree::parent(l.index),
        hash: to_hash(&j.to_hash()),
        size: l.size + r.size,
    }));
}

/// `H(0x01 ‖ u64be(a.size + b.size) ‖ a.hash ‖ b.hash)`, `a` being the lower index.
pub fn parent_hash(a: &Node, b: &Node) -> Hash {
    let (l, r) = if a.index <= b.index { (a, b) } else { (b, a) };
    to_hash(&params().hash(&parent_input(l, r)))
}

/// `H(0x02 ‖ (hash ‖ u64be(index) ‖ u64be(size))*)` over the roots, left to right.
pub fn tree_hash(roots: &[Node]) -> Hash {
    let mut h = blake2b256();
    h.update(&[ROOT_TYPE]);
    for r in roots {
        let mut rec = [0u8; 48];
        rec[..32].copy_from_slice(&r.hash);
        rec[32..40].copy_from_slice(&r.index.to_be_bytes());
        rec[40..].copy_from_slice(&r.size.to_be_bytes());
        h.update(&rec);
    }
    to_hash(&h.finalize())
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
    let mut h = blake2b256();
    for p in parts {
        h.update(p);
    }
    to_hash(&h.finalize())
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

    /// The RustCrypto BLAKE2b-256 we used before, as the oracle for `blake2b_simd`.
    fn reference(parts: &[&[u8]]) -> Hash {
        use blake2::digest::Update;
        let mut h = blake2::Blake2b::<U32>::default();
        for p in parts {
            Update::update(&mut h, p);
        }
        h.finalize_fixed().into()
    }

    #[test]
    fn simd_hashes_match_reference() {
        // Lengths around the 128-byte block edges, where buffering differs.
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        let lens = [
            0usize, 1, 8, 118, 119, 120, 127, 128, 129, 247, 248, 1024, 65536, 70_000,
        ];
        let blocks: Vec<&[u8]> = lens.iter().map(|&n| &data[..n]).collect();
        let mut many = Vec::new();
        let mut scratch = Vec::new();
        leaf_hashes(&blocks, &mut scratch, &mut many);
        for (b, h) in blocks.iter().zip(&many) {
            let want = reference(&[&[0], &(b.len() as u64).to_be_bytes(), b]);
            assert_eq!(leaf_hash(b), want, "leaf of {} bytes", b.len());
            assert_eq!(*h, want, "batched leaf of {} bytes", b.len());
        }
        leaf_hashes(&blocks[..1], &mut scratch, &mut many);
        assert_eq!(many, vec![leaf_hash(blocks[0])]);
        // Only small blocks: the scratch path.
        leaf_hashes(&blocks[..11], &mut scratch, &mut many);
        for (b, h) in blocks.iter().zip(&many) {
            assert_eq!(*h, leaf_hash(b), "scratch leaf of {} bytes", b.len());
        }
        let pairs: Vec<(Node, Node)> = (0..7u64)
            .map(|k| {
                let l = Node::new(4 * k, [k as u8; 32], k);
                let r = Node::new(4 * k + 2, [!(k as u8); 32], 1000 + k);
                (l, r)
            })
            .collect();
        let mut parents = Vec::new();
        for n in [1, 2, 7] {
            parents_of(&pairs[..n], &mut parents);
            assert_eq!(parents.len(), n);
            for ((l, r), p) in pairs.iter().zip(&parents) {
                assert_eq!(*p, Node::parent_of(l, r));
            }
        }
        let a = Node::new(2, [3u8; 32], 5);
        let b = Node::new(0, [4u8; 32], 6);
        let want = reference(&[&[1], &11u64.to_be_bytes(), &b.hash, &a.hash]);
        assert_eq!(parent_hash(&a, &b), want);
        let roots = [Node::new(3, [9u8; 32], 4), Node::new(9, [8u8; 32], 2)];
        let mut parts: Vec<Vec<u8>> = vec![vec![2]];
        for r in &roots {
            parts.push(r.hash.to_vec());
            parts.push(r.index.to_be_bytes().to_vec());
            parts.push(r.size.to_be_bytes().to_vec());
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        assert_eq!(tree_hash(&roots), reference(&refs));
        assert_eq!(hash(&[b"ab", b"c"]), reference(&[b"abc"]));
    }

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
