//! `Feed` against the Node reference vectors (core.json: keys, merkle, seek,
//! proofs.scenarios, disk), a model test, corruption handling, proof forgery and a
//! SIGKILL crash test.

use std::path::Path;

use hyperdrive::core::crypto::{self, KeyPair, Node};
use hyperdrive::core::proof::{Proof, RemoteTree};
use hyperdrive::core::{CoreError, Feed};
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/core.json");
    let path = if path.exists() {
        path
    } else {
        "/work/shared/vectors/core.json".into()
    };
    serde_json::from_slice(&std::fs::read(path).expect("core.json")).expect("json")
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn seed_keypair(v: &Value) -> KeyPair {
    let seed: [u8; 32] = hx(&v["keys"]["seed"]).try_into().unwrap();
    KeyPair::from_seed(&seed)
}

fn blocks(v: &Value) -> Vec<Vec<u8>> {
    v["merkle"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| hx(&b["hex"]))
        .collect()
}

fn file_hex(dir: &Path, name: &str) -> String {
    hex::encode(std::fs::read(dir.join(name)).unwrap_or_default())
}

fn node_json(n: &Value) -> Node {
    Node::new(
        n["index"].as_u64().unwrap(),
        hx(&n["hash"]).try_into().unwrap(),
        n["size"].as_u64().unwrap(),
    )
}

#[test]
fn keys_match_vectors() {
    let v = vectors();
    let kp = seed_keypair(&v);
    let feed = Feed::in_memory(kp.clone());
    assert_eq!(
        hex::encode(feed.key()),
        v["keys"]["publicKey"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(feed.discovery_key()),
        v["keys"]["discoveryKey"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(kp.libsodium_secret().unwrap()),
        v["keys"]["secretKey"].as_str().unwrap()
    );
}

#[test]
fn disk_files_are_byte_identical_and_reopen() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut feed = Feed::open_with_keypair(dir.path(), seed_keypair(&v)).unwrap();
        assert!(!dir.path().join("data").exists(), "data appears lazily");
        for b in blocks(&v) {
            feed.append(&b).unwrap();
        }
    }
    for (name, f) in v["disk"]["files"].as_object().unwrap() {
        assert_eq!(
            file_hex(dir.path(), name),
            f["hex"].as_str().unwrap(),
            "file {name}"
        );
    }
    let mut feed = Feed::open(dir.path()).unwrap();
    let r = &v["disk"]["reopened"];
    assert_eq!(feed.len(), r["length"].as_u64().unwrap());
    assert_eq!(feed.byte_len(), r["byteLength"].as_u64().unwrap());
    assert_eq!(feed.writable(), r["writable"].as_bool().unwrap());
    assert_eq!(hex::encode(feed.key()), r["key"].as_str().unwrap());
    for (i, b) in blocks(&v).iter().enumerate() {
        assert_eq!(&feed.get(i as u64).unwrap(), b);
    }
    // Reopening rewrote headers only: still byte-identical.
    drop(feed);
    for (name, f) in v["disk"]["files"].as_object().unwrap() {
        assert_eq!(file_hex(dir.path(), name), f["hex"].as_str().unwrap());
    }
}

#[test]
fn batched_appends_leave_signature_slots_zero() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let b = blocks(&v);
    {
        let mut feed = Feed::open_with_keypair(dir.path(), seed_keypair(&v)).unwrap();
        assert_eq!(feed.append_batch(&b[0..1]).unwrap(), 1);
        assert_eq!(feed.append_batch(&b[1..3]).unwrap(), 3);
        assert_eq!(feed.append_batch(&b[3..7]).unwrap(), 7);
    }
    let diff = v["disk"]["batchedDiff"].as_object().unwrap();
    for (name, f) in v["disk"]["files"].as_object().unwrap() {
        let want = diff.get(name).unwrap_or(f);
        assert_eq!(
            file_hex(dir.path(), name),
            want["hex"].as_str().unwrap(),
            "file {name}"
        );
    }
    let mut feed = Feed::open(dir.path()).unwrap();
    assert_eq!(feed.len(), 7);
    assert_eq!(feed.signature(1).unwrap().unwrap().0, 2);
    assert_eq!(feed.signature(3).unwrap().unwrap().0, 6);
}

#[test]
fn merkle_nodes_roots_and_signatures() {
    let v = vectors();
    let mut feed = Feed::in_memory(seed_keypair(&v));
    let lengths = v["merkle"]["lengths"].as_array().unwrap();
    for (i, b) in blocks(&v).iter().enumerate() {
        feed.append(b).unwrap();
        let l = &lengths[i];
        let len = l["length"].as_u64().unwrap();
        assert_eq!(feed.len(), len);
        assert_eq!(feed.byte_len(), l["byteLength"].as_u64().unwrap());
        let roots: Vec<Node> = l["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(node_json)
            .collect();
        assert_eq!(feed.roots(), &roots[..]);
        assert_eq!(
            hex::encode(crypto::signable(feed.roots(), len)),
            l["signable"].as_str().unwrap()
        );
        let (slot, sig) = feed.signature(len - 1).unwrap().unwrap();
        assert_eq!(slot, len - 1);
        assert_eq!(hex::encode(sig), l["signature"].as_str().unwrap());
    }
    for n in v["merkle"]["nodes"].as_array().unwrap() {
        let want = node_json(n);
        assert_eq!(feed.node(want.index).unwrap(), Some(want));
    }
    assert_eq!(feed.node(7).unwrap(), None);
}

#[test]
fn seek_vectors() {
    let v = vectors();
    let mut feed = Feed::in_memory(seed_keypair(&v));
    feed.append_batch(&blocks(&v)).unwrap();
    assert_eq!(feed.byte_len(), v["seek"]["byteLength"].as_u64().unwrap());
    for r in v["seek"]["results"].as_array().unwrap() {
        let got = feed.seek(r["bytes"].as_u64().unwrap()).unwrap();
        assert_eq!(
            got,
            (r["index"].as_u64().unwrap(), r["offset"].as_u64().unwrap()),
            "{r}"
        );
    }
    assert!(matches!(
        feed.seek(29),
        Err(CoreError::OutOfBounds { offset: 29, .. })
    ));
}

fn writer_of(v: &Value, len: usize) -> Feed {
    let mut feed = Feed::in_memory(seed_keypair(v));
    let mut b = blocks(v);
    b.push(b"hhhhhhhh".to_vec());
    feed.append_batch(&b[..len]).unwrap();
    feed
}

fn tree_bits(feed: &Feed) -> Vec<u64> {
    (0..64).filter(|&n| feed.bitfield().get_tree(n)).collect()
}

#[test]
fn proof_scenarios() {
    let v = vectors();
    let public = KeyPair::from_public(&seed_keypair(&v).public_bytes()).unwrap();
    let mut done: Vec<Feed> = Vec::new();
    let mut reader;
    for s in v["proofs"]["scenarios"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let before: Vec<u64> = s["readerTreeNodesBefore"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        // Each scenario continues from the reader state an earlier one left.
        reader = if before.is_empty() {
            Feed::in_memory(public.clone())
        } else {
            let at = done
                .iter()
                .position(|r| tree_bits(r) == before)
                .expect("an earlier scenario left this reader state");
            done.remove(at)
        };
        assert_eq!(tree_bits(&reader), before, "{name}: reader state");
        let req = &s["request"];
        let index = req["index"].as_u64().unwrap();
        let hash = req["hash"].as_bool().unwrap();
        let digest = req["nodes"].as_u64().unwrap();
        assert_eq!(reader.digest(index), digest, "{name}: digest");

        let mut writer = writer_of(&v, s["writerLength"].as_u64().unwrap() as usize);
        let proof = writer
            .proof(index, digest, hash, &mut RemoteTree::default())
            .unwrap()
            .expect("writer holds the block");
        let data = &s["data"];
        let want_nodes: Vec<Node> = data["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(node_json)
            .collect();
        assert_eq!(proof.nodes, want_nodes, "{name}: proof nodes");
        let want_sig = data["signature"].as_str().map(|h| hex::decode(h).unwrap());
        assert_eq!(
            proof.signature.map(|s| s.to_vec()),
            want_sig,
            "{name}: signature"
        );
        let value = data["value"].as_str().map(|h| hex::decode(h).unwrap());
        if let Some(val) = &value {
            assert_eq!(&writer.get(index).unwrap(), val);
        }

        let res = reader.verify_and_put(value.as_deref(), &proof);
        assert_eq!(
            res.is_ok(),
            s["readerVerified"].as_bool().unwrap(),
            "{name}: {res:?}"
        );
        assert_eq!(
            reader.len(),
            s["readerLengthAfter"].as_u64().unwrap(),
            "{name}"
        );
        let after: Vec<u64> = s["readerTreeNodesAfter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(tree_bits(&reader), after, "{name}: tree bits after");
        if let Some(val) = value {
            assert!(reader.has(index));
            assert_eq!(reader.get(index).unwrap(), val, "{name}: stored block");
        }
        done.push(reader);
    }
}

/// A reader on disk plus a snapshot of its files, to prove a rejection wrote nothing.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    [
        "key",
        "secret_key",
        "data",
        "tree",
        "signatures",
        "bitfield",
    ]
    .iter()
    .map(|n| {
        (
            n.to_string(),
            std::fs::read(dir.join(n)).unwrap_or_default(),
        )
    })
    .collect()
}

fn full_proof(writer: &mut Feed, index: u64) -> Proof {
    writer
        .proof(index, 0, false, &mut RemoteTree::default())
        .unwrap()
        .unwrap()
}

#[test]
fn forged_proofs_are_rejected_and_write_nothing() {
    let v = vectors();
    let mut writer = writer_of(&v, 7);
    let dir = tempfile::tempdir().unwrap();
    let public = KeyPair::from_public(&writer.key()).unwrap();
    let mut reader = Feed::open_with_keypair(dir.path(), public).unwrap();
    let block0 = writer.get(0).unwrap();
    let good = full_proof(&mut writer, 0);
    let snap = snapshot(dir.path());

    // Forged signature.
    let mut p = good.clone();
    p.signature.as_mut().unwrap()[5] ^= 1;
    assert!(matches!(
        reader.verify_and_put(Some(&block0), &p),
        Err(CoreError::BadSignature { length: 7 })
    ));
    // Missing signature.
    let mut p = good.clone();
    p.signature = None;
    assert!(matches!(
        reader.verify_and_put(Some(&block0), &p),
        Err(CoreError::BadSignature { .. })
    ));
    // Wrong proof node hash.
    let mut p = good.clone();
    p.nodes[1].hash[0] ^= 1;
    assert!(reader.verify_and_put(Some(&block0), &p).is_err());
    // Wrong size on a node.
    let mut p = good.clone();
    p.nodes[0].size += 1;
    assert!(reader.verify_and_put(Some(&block0), &p).is_err());
    // Wrong data.
    assert!(reader.verify_and_put(Some(b"b"), &good).is_err());
    // A proof that stops below the roots (would leave the block unverified).
    let mut p = good.clone();
    p.nodes.remove(0);
    assert!(matches!(
        reader.verify_and_put(Some(b"forged"), &p),
        Err(CoreError::BadProof { .. } | CoreError::MissingRoots { .. })
    ));
    // Missing roots.
    let mut p = good.clone();
    p.nodes.truncate(2);
    assert!(reader.verify_and_put(Some(&block0), &p).is_err());
    // Hash reply whose first node is not the block's.
    let mut p = good.clone();
    p.nodes[0].index = 4;
    assert!(matches!(
        reader.verify_and_put(None, &p),
        Err(CoreError::BadProof { .. })
    ));
    assert_eq!(reader.len(), 0);
    assert!(!reader.has(0));
    assert_eq!(
        snapshot(dir.path()),
        snap,
        "a rejected proof wrote something"
    );

    // The genuine proof is accepted and persisted.
    let out = reader.verify_and_put(Some(&block0), &good).unwrap();
    assert_eq!(out.new_length, Some(7));
    assert!(out.stored);
    drop(reader);
    let mut reader = Feed::open(dir.path()).unwrap();
    assert_eq!(reader.len(), 7);
    assert!(!reader.writable());
    assert_eq!(reader.get(0).unwrap(), block0);
    assert!(matches!(
        reader.get(1),
        Err(CoreError::BlockMissing { index: 1 })
    ));
    // A proof for an already verified block against a wrong trusted node fails too.
    let mut p = full_proof(&mut writer, 4);
    let block4 = writer.get(4).unwrap();
    p.nodes[0].hash[3] ^= 0x40;
    let snap = snapshot(dir.path());
    assert!(reader.verify_and_put(Some(&block4), &p).is_err());
    assert_eq!(snapshot(dir.path()), snap);
}

#[test]
fn reader_replicates_everything_and_node_layout_matches() {
    let v = vectors();
    let mut writer = writer_of(&v, 8);
    let public = KeyPair::from_public(&writer.key()).unwrap();
    let mut reader = Feed::in_memory(public);
    for i in [5u64, 0, 7, 2, 1, 3, 6, 4] {
        let digest = reader.digest(i);
        let p = writer
            .proof(i, digest, false, &mut RemoteTree::default())
            .unwrap()
            .unwrap();
        let b = writer.get(i).unwrap();
        reader.verify_and_put(Some(&b), &p).unwrap();
    }
    assert_eq!(reader.len(), 8);
    assert_eq!(reader.byte_len(), writer.byte_len());
    for i in 0..8 {
        assert_eq!(reader.get(i).unwrap(), writer.get(i).unwrap());
        assert_eq!(reader.node(2 * i).unwrap(), writer.node(2 * i).unwrap());
    }
    assert_eq!(reader.roots(), writer.roots());
    assert_eq!(reader.seek(20).unwrap(), writer.seek(20).unwrap());
    // The reader can serve others.
    let mut third = Feed::in_memory(KeyPair::from_public(&writer.key()).unwrap());
    let p = reader
        .proof(3, 0, false, &mut RemoteTree::default())
        .unwrap()
        .unwrap();
    third
        .verify_and_put(Some(&reader.get(3).unwrap()), &p)
        .unwrap();
    assert_eq!(third.len(), 8);
}

#[test]
fn writable_rules_and_errors() {
    let v = vectors();
    let mut ro = Feed::in_memory(KeyPair::from_public(&seed_keypair(&v).public_bytes()).unwrap());
    assert!(!ro.writable());
    assert!(matches!(ro.append(b"x"), Err(CoreError::NotWritable)));
    assert!(matches!(
        ro.get(0),
        Err(CoreError::BlockMissing { index: 0 })
    ));
    assert_eq!(ro.seek(0).unwrap(), (0, 0));
    let mut w = Feed::in_memory(seed_keypair(&v));
    let big = vec![0u8; 8 * 1024 * 1024 + 1];
    assert!(matches!(
        w.append(&big),
        Err(CoreError::BlockTooLarge { index: 0, .. })
    ));
    assert_eq!(w.len(), 0);
    assert_eq!(w.append(b"").unwrap(), 1);
    assert_eq!(w.get(0).unwrap(), b"");
    assert_eq!(w.append_batch::<&[u8]>(&[]).unwrap(), 1);

    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Feed::open(dir.path()),
        Err(CoreError::NoFeed { .. })
    ));
    let f = Feed::create(dir.path()).unwrap();
    assert!(matches!(
        Feed::open(dir.path()),
        Err(CoreError::Locked { .. })
    ));
    drop(f);
    assert!(matches!(
        Feed::open_with_keypair(dir.path(), seed_keypair(&v)),
        Err(CoreError::KeyMismatch { .. })
    ));
    // Read-only open of a writable directory picks up the secret key.
    let f = Feed::open(dir.path()).unwrap();
    assert!(f.writable());
}

// ---------------------------------------------------------------- corruption

fn seven_block_dir(v: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = Feed::open_with_keypair(dir.path(), seed_keypair(v)).unwrap();
    for b in blocks(v) {
        feed.append(&b).unwrap();
    }
    dir
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Every block up to the length reads back as the vector's, and the stored signature
/// for the length verifies over the roots.
fn check_consistent(feed: &mut Feed, v: &Value) {
    let b = blocks(v);
    let len = feed.len();
    for i in 0..len {
        assert_eq!(feed.get(i).unwrap(), b[i as usize]);
    }
    if len > 0 {
        let (slot, sig) = feed.signature(len - 1).unwrap().unwrap();
        assert_eq!(slot, len - 1);
        let kp = KeyPair::from_public(&feed.key()).unwrap();
        assert!(crypto::verify_signable(
            &kp.public,
            &crypto::signable(feed.roots(), len),
            &sig
        ));
    }
}

#[test]
fn truncated_tree_trims_to_last_consistent_length() {
    let v = vectors();
    let dir = seven_block_dir(&v);
    truncate(&dir.path().join("tree"), 32 + 12 * 40 + 17); // node 12 (root at 7) torn
    let mut feed = Feed::open(dir.path()).unwrap();
    assert_eq!(feed.len(), 6);
    check_consistent(&mut feed, &v);
    // Appending again heals it.
    feed.append(&blocks(&v)[6]).unwrap();
    drop(feed);
    for (name, f) in v["disk"]["files"].as_object().unwrap() {
        assert_eq!(
            file_hex(dir.path(), name),
            f["hex"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn truncated_signatures_trims() {
    let v = vectors();
    let dir = seven_block_dir(&v);
    truncate(&dir.path().join("signatures"), 32 + 4 * 64 + 10);
    let mut feed = Feed::open(dir.path()).unwrap();
    assert_eq!(feed.len(), 4);
    check_consistent(&mut feed, &v);
    drop(feed);
    let mut feed = Feed::open(dir.path()).unwrap();
    assert_eq!(feed.len(), 4, "the trim is persistent");
    check_consistent(&mut feed, &v);
}

#[test]
fn truncated_bitfield() {
    let v = vectors();
    let dir = seven_block_dir(&v);
    let p = dir.path().join("bitfield");
    truncate(&p, 32 + 100);
    match Feed::open(dir.path()) {
        Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with("bitfield")),
        other => panic!("expected Corrupt(bitfield), got {other:?}"),
    }
    // Whole pages lost: a documented trim to length 0.
    truncate(&p, 32);
    let mut feed = Feed::open(dir.path()).unwrap();
    assert_eq!(feed.len(), 0);
    assert_eq!(feed.byte_len(), 0);
    assert_eq!(feed.signature(0).unwrap(), None);
    check_consistent(&mut feed, &v);
}

#[test]
fn flipped_header_bytes_name_the_file() {
    let v = vectors();
    for name in ["tree", "signatures", "bitfield"] {
        let dir = seven_block_dir(&v);
        let p = dir.path().join(name);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[5] ^= 0x01;
        std::fs::write(&p, &bytes).unwrap();
        match Feed::open(dir.path()) {
            Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with(name)),
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn wrong_key_files() {
    let v = vectors();
    let other = KeyPair::from_seed(&[2u8; 32]);
    // Key replaced, secret key still the old one.
    let dir = seven_block_dir(&v);
    std::fs::write(dir.path().join("key"), other.public_bytes()).unwrap();
    match Feed::open(dir.path()) {
        Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with("secret_key")),
        r => panic!("{r:?}"),
    }
    // Key replaced on a read-only copy: the signatures do not verify.
    std::fs::remove_file(dir.path().join("secret_key")).unwrap();
    match Feed::open(dir.path()) {
        Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with("key")),
        r => panic!("{r:?}"),
    }
    // Truncated key file.
    std::fs::write(dir.path().join("key"), [1u8; 31]).unwrap();
    match Feed::open(dir.path()) {
        Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with("key")),
        r => panic!("{r:?}"),
    }
    // Secret key of the wrong size.
    let dir = seven_block_dir(&v);
    std::fs::write(dir.path().join("secret_key"), [1u8; 10]).unwrap();
    match Feed::open(dir.path()) {
        Err(CoreError::Corrupt { path, .. }) => assert!(path.ends_with("secret_key")),
        r => panic!("{r:?}"),
    }
}

#[test]
fn flipped_tree_record_is_an_error_not_a_trim() {
    let v = vectors();
    let dir = seven_block_dir(&v);
    let p = dir.path().join("tree");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[32 + 3 * 40 + 4] ^= 0xff; // root 3 at length 7
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(
        Feed::open(dir.path()),
        Err(CoreError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------- model test

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Get(usize),
    Seek(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let block = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        3 => block.clone().prop_map(Op::Append),
        2 => proptest::collection::vec(block, 1..20).prop_map(Op::Batch),
        3 => any::<usize>().prop_map(Op::Get),
        2 => any::<u64>().prop_map(Op::Seek),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let kp = KeyPair::from_seed(&[9u8; 32]);
        let mut feed = Feed::open_with_keypair(dir.path(), kp).unwrap();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            match op {
                Op::Append(b) => {
                    model.push(b.clone());
                    prop_assert_eq!(feed.append(&b).unwrap(), model.len() as u64);
                }
                Op::Batch(bs) => {
                    model.extend(bs.iter().cloned());
                    prop_assert_eq!(feed.append_batch(&bs).unwrap(), model.len() as u64);
                }
                Op::Get(i) => {
                    if model.is_empty() {
                        prop_assert!(feed.get(0).is_err());
                    } else {
                        let i = i % model.len();
                        prop_assert_eq!(&feed.get(i as u64).unwrap(), &model[i]);
                    }
                }
                Op::Seek(b) => {
                    let total: u64 = model.iter().map(|b| b.len() as u64).sum();
                    let b = b % (total + 2);
                    let got = feed.seek(b);
                    if b > total {
                        prop_assert!(got.is_err());
                    } else if b == 0 {
                        prop_assert_eq!(got.unwrap(), (0, 0));
                    } else {
                        // First block whose range [start, start+len) contains b.
                        let mut start = 0u64;
                        let mut want = (model.len() as u64, 0);
                        for (i, blk) in model.iter().enumerate() {
                            if b < start + blk.len() as u64 {
                                want = (i as u64, b - start);
                                break;
                            }
                            start += blk.len() as u64;
                        }
                        prop_assert_eq!(got.unwrap(), want);
                    }
                }
                Op::Reopen => {
                    drop(feed);
                    feed = Feed::open(dir.path()).unwrap();
                }
            }
            prop_assert_eq!(feed.len(), model.len() as u64);
            let total: u64 = model.iter().map(|b| b.len() as u64).sum();
            prop_assert_eq!(feed.byte_len(), total);
        }
        // The whole history verifies from scratch.
        let mut roots: Vec<Node> = Vec::new();
        for (i, b) in model.iter().enumerate() {
            roots.push(Node::leaf(i as u64, b));
            while roots.len() >= 2 && hyperdrive::core::flat_tree::sibling(roots[roots.len() - 1].index) == roots[roots.len() - 2].index {
                let r = roots.pop().unwrap();
                let l = roots.pop().unwrap();
                roots.push(Node::parent_of(&l, &r));
            }
        }
        prop_assert_eq!(feed.roots(), &roots[..]);
    }

    #[test]
    fn garbage_proofs_never_panic(
        index in 0u64..20,
        nodes in proptest::collection::vec((0u64..48, any::<[u8; 32]>(), prop_oneof![0u64..100, Just(u64::MAX), any::<u64>()]), 0..8),
        sig in proptest::option::of(any::<[u8; 32]>()),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        prefix in 0usize..4,
    ) {
        let v = vectors();
        let mut writer = writer_of(&v, 8);
        let mut reader = Feed::in_memory(KeyPair::from_public(&writer.key()).unwrap());
        // Sometimes start from a reader that already holds a verified block.
        if prefix > 0 {
            let p = full_proof(&mut writer, prefix as u64);
            reader.verify_and_put(Some(&writer.get(prefix as u64).unwrap()), &p).unwrap();
        }
        let len = reader.len();
        let bits = tree_bits(&reader);
        // Mix real nodes in so the walk gets further than the first step.
        let mut proof_nodes: Vec<Node> = nodes.iter().map(|(i, h, s)| Node::new(*i, *h, *s)).collect();
        if index % 3 == 0 {
            if let Some(p) = writer.proof(index % 8, 0, false, &mut RemoteTree::default()).unwrap() {
                proof_nodes.splice(0..0, p.nodes);
            }
        }
        let signature = sig.map(|s| { let mut out = [0u8; 64]; out[..32].copy_from_slice(&s); out });
        let proof = Proof { index, nodes: proof_nodes, signature };
        let res = reader.verify_and_put(value.as_deref(), &proof);
        if res.is_ok() {
            // Only a genuine block can pass (e.g. random bytes equal to a held block).
            prop_assert!(value.is_some());
            prop_assert_eq!(value, writer.get(index).ok());
        } else {
            prop_assert_eq!(reader.len(), len);
            prop_assert_eq!(tree_bits(&reader), bits);
        }
    }
}

// ---------------------------------------------------------------- crash safety

const CRASH_ENV: &str = "HYPERDRIVE_CRASH_CHILD_DIR";

fn crash_block(i: u64) -> Vec<u8> {
    let len = (i * 7919 % 300) as usize;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

/// Child side of `sigkill_during_appends`: append forever until killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return;
    };
    let mut feed = Feed::open(&dir).expect("child open");
    let mut round = 0u64;
    loop {
        let start = feed.len();
        let n = 1 + (start + round) % 9;
        let batch: Vec<Vec<u8>> = (start..start + n).map(crash_block).collect();
        if n == 1 {
            feed.append(&batch[0]).expect("append");
        } else {
            feed.append_batch(&batch).expect("append");
        }
        round += 1;
    }
}

#[test]
fn sigkill_during_appends() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    drop(Feed::create(dir.path()).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last_len = 0;
    let mut iterations = 0;
    while iterations < 20 || (iterations < 40 && std::time::Instant::now() < deadline) {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(20..150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let mut feed = Feed::open(dir.path()).unwrap();
        let len = feed.len();
        assert!(len >= last_len, "length went back from {last_len} to {len}");
        let mut roots: Vec<Node> = Vec::new();
        for i in 0..len {
            let want = crash_block(i);
            assert_eq!(
                feed.get(i).unwrap(),
                want,
                "block {i} after kill {iterations}"
            );
            roots.push(Node::leaf(i, &want));
            while roots.len() >= 2
                && hyperdrive::core::flat_tree::sibling(roots[roots.len() - 1].index)
                    == roots[roots.len() - 2].index
            {
                let r = roots.pop().unwrap();
                let l = roots.pop().unwrap();
                roots.push(Node::parent_of(&l, &r));
            }
        }
        assert_eq!(feed.roots(), &roots[..]);
        if len > 0 {
            let (slot, sig) = feed.signature(len - 1).unwrap().unwrap();
            assert_eq!(slot, len - 1);
            let kp = KeyPair::from_public(&feed.key()).unwrap();
            assert!(crypto::verify_signable(
                &kp.public,
                &crypto::signable(&roots, len),
                &sig
            ));
        }
        last_len = len;
        iterations += 1;
    }
    assert!(last_len > 0, "the child never appended");
}
