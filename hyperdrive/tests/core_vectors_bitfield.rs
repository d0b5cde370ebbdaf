//! The bitfield, tree-index and proof planning against vectors made by the Node reference
//! (`core.json`: `flatTree`, `disk.files`, `proofs.scenarios`).
//!
//! The vector file is read from `$HYPERMOUNT_VECTORS/core.json`, default
//! `/work/shared/vectors/core.json`; a missing file fails the tests.

use hyperdrive::core::bitfield::{Bitfield, PAGE_SIZE};
use hyperdrive::core::flat_tree;
use hyperdrive::core::proof::{plan, RemoteTree};
use serde_json::Value;

fn vectors() -> Value {
    let dir =
        std::env::var("HYPERMOUNT_VECTORS").unwrap_or_else(|_| "/work/shared/vectors".to_owned());
    let path = format!("{dir}/core.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).expect("core.json is JSON")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn list(v: &Value) -> Vec<u64> {
    v.as_array().expect("array").iter().map(u).collect()
}

fn file(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(v["disk"]["files"][name]["hex"].as_str().expect("hex")).expect("valid hex")
}

fn tree_bits(bf: &Bitfield, upto: u64) -> Vec<u64> {
    (0..upto).filter(|&n| bf.get_tree(n)).collect()
}

/// The writer's bitfield after `len` single appends: data bits and the tree nodes a
/// writer stores (the leaf plus the parents the tree-index derives).
fn writer(len: u64) -> Bitfield {
    let mut bf = Bitfield::new();
    for b in 0..len {
        bf.set_tree(2 * b, true);
        bf.set_data(b, true);
    }
    bf
}

#[test]
fn flat_tree_matches_vectors() {
    let v = vectors();
    let nodes = v["flatTree"]["nodes"].as_array().expect("nodes");
    assert!(nodes.len() >= 17);
    for n in nodes {
        let i = u(&n["index"]);
        assert_eq!(u64::from(flat_tree::depth(i)), u(&n["depth"]), "depth {i}");
        assert_eq!(flat_tree::offset(i), u(&n["offset"]), "offset {i}");
        assert_eq!(flat_tree::parent(i), u(&n["parent"]), "parent {i}");
        assert_eq!(flat_tree::sibling(i), u(&n["sibling"]), "sibling {i}");
        let children = match &n["children"] {
            Value::Null => None,
            c => {
                let c = list(c);
                Some((c[0], c[1]))
            }
        };
        assert_eq!(flat_tree::children(i), children, "children {i}");
        assert_eq!(flat_tree::left_span(i), u(&n["leftSpan"]), "leftSpan {i}");
        assert_eq!(
            flat_tree::right_span(i),
            u(&n["rightSpan"]),
            "rightSpan {i}"
        );
        assert_eq!(flat_tree::count(i), u(&n["count"]), "count {i}");
    }
    let roots = v["flatTree"]["fullRoots"].as_array().expect("fullRoots");
    assert!(roots.len() >= 11);
    for r in roots {
        let len = u(&r["length"]);
        assert_eq!(u(&r["treeIndex"]), 2 * len);
        assert_eq!(
            flat_tree::full_roots(2 * len),
            list(&r["roots"]),
            "length {len}"
        );
    }
}

#[test]
fn bitfield_file_is_byte_exact() {
    let v = vectors();
    let want = file(&v, "bitfield");
    let tree = file(&v, "tree");
    assert_eq!(want.len(), 32 + PAGE_SIZE);

    // The nodes the 7-block feed holds, from its `tree` file (non-zero 40-byte records).
    let held: Vec<u64> = tree[32..]
        .chunks(40)
        .enumerate()
        .filter(|(_, rec)| rec.iter().any(|&b| b != 0))
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(held, vec![0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12]);

    let mut bf = Bitfield::new();
    for b in 0..7 {
        assert!(bf.set_data(b, true));
    }
    for &n in &held {
        bf.set_tree(n, true);
    }
    assert_eq!(tree_bits(&bf, 64), held);
    assert_eq!(bf.page_count(), 1);
    assert_eq!(bf.take_dirty(), vec![0]);
    assert_eq!(bf.page(0).as_slice(), &want[32..]);

    // The same through appends, and read back from the file.
    let appended = writer(7);
    assert_eq!(appended.page(0).as_slice(), &want[32..]);
    let back = Bitfield::from_bytes(&want[32..]);
    assert_eq!(back.page(0), bf.page(0));
    assert_eq!(back.blocks(), 7);
    assert_eq!(back.count_data(0, 100), 7);
    assert_eq!(back.verified_by(0), 14);
    let reopened = u(&v["disk"]["reopened"]["length"]);
    assert_eq!(back.blocks(), reopened);
}

#[test]
fn proof_scenarios() {
    let v = vectors();
    let scenarios = v["proofs"]["scenarios"].as_array().expect("scenarios");
    assert!(scenarios.len() >= 6);
    for s in scenarios {
        let name = s["name"].as_str().expect("name");
        let before = list(&s["readerTreeNodesBefore"]);
        let mut reader = Bitfield::new();
        for &n in &before {
            reader.set_tree(n, true);
        }
        assert_eq!(tree_bits(&reader, 64), before, "{name}: reader bits");

        let req = &s["request"];
        let index = u(&req["index"]);
        let hash = req["hash"].as_bool().expect("hash");
        let digest = u(&req["nodes"]);
        assert_eq!(reader.digest(index), digest, "{name}: digest");

        let writer = writer(u(&s["writerLength"]));
        let mut remote = RemoteTree::default();
        let p = plan(&writer, index, digest, hash, &mut remote).expect("writer holds the block");
        let sent: Vec<u64> = s["data"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| u(&n["index"]))
            .collect();
        assert_eq!(p.nodes, sent, "{name}: nodes");
        let vb = u(&s["verifiedBy"]);
        assert_eq!(p.verified_by, (vb != 0).then_some(vb), "{name}: verifiedBy");
        assert_eq!(
            p.verified_by.is_some(),
            !s["data"]["signature"].is_null(),
            "{name}: signature presence"
        );
        if let Some(vb) = p.verified_by {
            assert_eq!(vb / 2, u(&s["signedLength"]), "{name}: signed length");
        }

        // The reader stores the leaf and every node sent; its tree bits then match Node's.
        reader.set_tree(2 * index, true);
        for &n in &sent {
            reader.set_tree(n, true);
        }
        assert_eq!(
            tree_bits(&reader, 64),
            list(&s["readerTreeNodesAfter"]),
            "{name}: reader bits after"
        );
        assert_eq!(
            reader.blocks(),
            u(&s["readerLengthAfter"]),
            "{name}: length after"
        );
    }
}

#[test]
fn plan_refuses_missing_blocks_and_remembers_the_peer() {
    let w = writer(7);
    let mut remote = RemoteTree::default();
    assert_eq!(plan(&w, 7, 0, false, &mut remote), None);
    assert_eq!(plan(&w, u64::MAX, 0, false, &mut remote), None);

    // A reader holding block 0 claims nodes 3 and 9 when asking for block 4 (digest 5)...
    let p = plan(&w, 4, 5, false, &mut remote).expect("held");
    assert_eq!((p.nodes, p.verified_by), (vec![10], None));
    // ...so on the same connection block 5 needs only its sibling, no signature,
    let p = plan(&w, 5, 0, false, &mut remote).expect("held");
    assert_eq!((p.nodes, p.verified_by), (vec![8], None));
    // while a fresh peer needs the other roots and the signature of length 7.
    let p = plan(&w, 5, 0, false, &mut RemoteTree::default()).expect("held");
    assert_eq!((p.nodes, p.verified_by), (vec![8, 3, 12], Some(14)));
    // Digest 1 with hash: only the leaf hash.
    let p = plan(&w, 2, 1, true, &mut RemoteTree::default()).expect("held");
    assert_eq!((p.nodes, p.verified_by), (vec![4], None));
}

#[test]
fn plan_survives_any_digest() {
    let w = writer(1000);
    for digest in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 53) - 1, 2, 3, 6] {
        for index in [0u64, 1, 511, 999] {
            let mut remote = RemoteTree::default();
            let p = plan(&w, index, digest, false, &mut remote).expect("held");
            for n in p.nodes {
                assert!(w.get_tree(n), "plan sends node {n} it does not hold");
            }
        }
    }
}

/// Golden interop: the same operation sequences run on the reference's lib/bitfield.js
/// and tree-index.js (from `$HYPERMOUNT_NODE_REF`, default `/work/ref/node_modules`)
/// must give the same page bytes (all three regions, several pages), dirty pages,
/// `blocks`, `digest`, `verifiedBy` and `proof` results.
mod node_reference {
    use super::*;
    use serde_json::json;
    use std::io::Write;
    use std::process::{Command, Stdio};

    const SCRIPT: &str = r#"
const Bitfield = require('hypercore/lib/bitfield')
const TreeIndex = require('hypercore/lib/tree-index')
const out = []
for (const sc of JSON.parse(require('fs').readFileSync(0, 'utf8'))) {
  const bf = Bitfield(3584, sc.load ? sc.load.map(h => Buffer.from(h, 'hex')) : undefined)
  const tree = TreeIndex(bf.tree)
  for (const [k, i, v] of sc.ops) {
    if (k === 'd') bf.set(i, v)
    else if (k === 't') tree.set(i)
    else bf.tree.set(i, false)
  }
  const pages = []
  for (let i = 0; i < bf.pages.length; i++) {
    const p = bf.pages.get(i, true)
    pages.push(Buffer.from(p ? p.buffer : Buffer.alloc(3584)).toString('hex'))
  }
  const dirty = []
  let p
  while ((p = bf.pages.lastUpdate()) !== null) dirty.push(p.offset / 3584)
  dirty.sort((a, b) => a - b)
  out.push({
    pages,
    dirty,
    blocks: tree.blocks(),
    digests: sc.digest.map(i => tree.digest(2 * i)),
    vb: sc.vb.map(n => tree.verifiedBy(n)),
    proofs: sc.proofs.map(([i, d, h]) => {
      const r = tree.proof(2 * i, { digest: d, hash: h })
      return r && [r.nodes, r.verifiedBy]
    })
  })
}
process.stdout.write(JSON.stringify(out))
"#;

    /// Deterministic generator (the sequences must not depend on a crate's RNG).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % bound
        }
    }

    #[derive(Clone)]
    enum Op {
        Data(u64, bool),
        Tree(u64),
        TreeClear(u64),
    }

    struct Scenario {
        load: Option<Vec<u8>>,
        ops: Vec<Op>,
        digest: Vec<u64>,
        vb: Vec<u64>,
        proofs: Vec<(u64, u64, bool)>,
    }

    fn run(bf: &mut Bitfield, ops: &[Op]) {
        for op in ops {
            match *op {
                Op::Data(i, v) => {
                    bf.set_data(i, v);
                }
                Op::Tree(n) => {
                    bf.set_tree(n, true);
                }
                Op::TreeClear(n) => {
                    bf.set_tree(n, false);
                }
            }
        }
    }

    fn scenarios() -> Vec<Scenario> {
        let mut rng = Lcg(7);
        let mut out = Vec::new();
        let queries = |rng: &mut Lcg, blocks: u64| {
            let digest: Vec<u64> = (0..150).map(|_| rng.next(blocks)).collect();
            let vb: Vec<u64> = (0..150).map(|_| rng.next(2 * blocks)).collect();
            let proofs: Vec<(u64, u64, bool)> = (0..150)
                .map(|_| (rng.next(blocks), rng.next(1 << 12), rng.next(2) == 1))
                .collect();
            (digest, vb, proofs)
        };

        // A writer appending 20000 blocks (three pages).
        let mut ops = Vec::new();
        for b in 0..20000 {
            ops.push(Op::Tree(2 * b));
            ops.push(Op::Data(b, true));
        }
        let appended = ops.clone();
        let (digest, vb, proofs) = queries(&mut rng, 20000);
        out.push(Scenario {
            load: None,
            ops,
            digest,
            vb,
            proofs,
        });

        // Sparse readers: random data sets and clears, proof-shaped tree sets, clears.
        for round in 0..3 {
            let span = [3000, 40000, 70000][round];
            let mut ops = Vec::new();
            for _ in 0..4000 {
                match rng.next(10) {
                    0..=4 => {
                        let start = rng.next(span);
                        for b in start..(start + rng.next(40)).min(span) {
                            ops.push(Op::Data(b, true));
                        }
                    }
                    5 => ops.push(Op::Data(rng.next(span), false)),
                    6..=8 => {
                        let b = rng.next(span);
                        ops.push(Op::Tree(2 * b));
                        ops.push(Op::Tree(flat_tree::sibling(2 * b)));
                        ops.push(Op::Tree(flat_tree::sibling(flat_tree::parent(2 * b))));
                    }
                    _ => ops.push(Op::TreeClear(rng.next(2 * span))),
                }
            }
            let (digest, vb, proofs) = queries(&mut rng, span);
            out.push(Scenario {
                load: None,
                ops,
                digest,
                vb,
                proofs,
            });
        }

        // Small readers holding a few proof nodes: `digest` and `blocks` depend on the
        // tree region's byte length there (e.g. node 23 alone is not seen from block 0).
        for _ in 0..40 {
            let mut ops = vec![Op::Tree(23)];
            for _ in 0..rng.next(6) {
                ops.push(Op::Tree(rng.next(80)));
            }
            let digest: Vec<u64> = (0..48).collect();
            let vb: Vec<u64> = (0..96).collect();
            let proofs: Vec<(u64, u64, bool)> = (0..40)
                .map(|_| (rng.next(48), rng.next(64), rng.next(2) == 1))
                .collect();
            out.push(Scenario {
                load: None,
                ops,
                digest,
                vb,
                proofs,
            });
        }

        // Reopened from a file, then appending across a page boundary.
        let mut bf = Bitfield::new();
        run(&mut bf, &appended[..2 * 7000]);
        let file: Vec<u8> = (0..bf.page_count()).flat_map(|p| bf.page(p)).collect();
        let mut ops = Vec::new();
        for b in 7000..9500 {
            ops.push(Op::Tree(2 * b));
            ops.push(Op::Data(b, true));
        }
        ops.push(Op::Data(30000, true));
        let (digest, vb, proofs) = queries(&mut rng, 10000);
        out.push(Scenario {
            load: Some(file),
            ops,
            digest,
            vb,
            proofs,
        });
        out
    }

    fn to_json(s: &Scenario) -> Value {
        let ops: Vec<Value> = s
            .ops
            .iter()
            .map(|op| match *op {
                Op::Data(i, v) => json!(["d", i, v]),
                Op::Tree(n) => json!(["t", n, true]),
                Op::TreeClear(n) => json!(["c", n, false]),
            })
            .collect();
        json!({
            "load": s.load.as_ref().map(|f| f.chunks(PAGE_SIZE).map(hex::encode).collect::<Vec<_>>()),
            "ops": ops,
            "digest": s.digest,
            "vb": s.vb,
            "proofs": s.proofs.iter().map(|&(i, d, h)| json!([i, d, h])).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn node_reference_agrees() {
        let scenarios = scenarios();
        let input = Value::Array(scenarios.iter().map(to_json).collect()).to_string();
        let node_path = std::env::var("HYPERMOUNT_NODE_REF")
            .unwrap_or_else(|_| "/work/ref/node_modules".to_owned());
        let mut child = Command::new("node")
            .arg("-e")
            .arg(SCRIPT)
            .env("NODE_PATH", &node_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node is installed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write to node");
        let output = child.wait_with_output().expect("node runs");
        assert!(output.status.success(), "node failed");
        let results: Value = serde_json::from_slice(&output.stdout).expect("node output");

        for (k, (s, r)) in scenarios
            .iter()
            .zip(results.as_array().expect("array"))
            .enumerate()
        {
            let mut bf = match &s.load {
                Some(f) => Bitfield::from_bytes(f),
                None => Bitfield::new(),
            };
            run(&mut bf, &s.ops);
            let pages = r["pages"].as_array().expect("pages");
            assert_eq!(bf.page_count(), pages.len(), "scenario {k}: page count");
            for (p, want) in pages.iter().enumerate() {
                assert_eq!(
                    hex::encode(bf.page(p)),
                    want.as_str().expect("hex"),
                    "scenario {k}: page {p}"
                );
            }
            let dirty: Vec<usize> = list(&r["dirty"]).iter().map(|&p| p as usize).collect();
            assert_eq!(bf.take_dirty(), dirty, "scenario {k}: dirty pages");
            assert_eq!(bf.blocks(), u(&r["blocks"]), "scenario {k}: blocks");
            for (i, want) in s.digest.iter().zip(list(&r["digests"])) {
                assert_eq!(bf.digest(*i), want, "scenario {k}: digest of block {i}");
            }
            for (n, want) in s.vb.iter().zip(list(&r["vb"])) {
                assert_eq!(bf.verified_by(*n), want, "scenario {k}: verifiedBy({n})");
            }
            for (&(i, d, h), want) in s.proofs.iter().zip(r["proofs"].as_array().expect("p")) {
                let got = plan(&bf, i, d, h, &mut RemoteTree::default());
                let want = match want {
                    Value::Null => None,
                    w => Some((list(&w[0]), u(&w[1]))),
                };
                let got = got.map(|p| (p.nodes, p.verified_by.unwrap_or(0)));
                assert_eq!(got, want, "scenario {k}: proof({i}, digest {d}, hash {h})");
            }
        }
    }
}
