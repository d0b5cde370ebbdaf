//! Behaviour tests of the trie API (conditions, closest, hidden, checkouts) and the
//! property tests: decoders never panic on random bytes, and random put/delete/batch
//! sequences agree with a `BTreeMap` model for get and list.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::extension::ExtensionMessage;
use super::mount::{self, MountRecord};
use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

async fn new_trie() -> Trie<MemoryStore> {
    Trie::open(MemoryStore::new(), TrieOptions::default())
        .await
        .expect("open")
}

#[test]
fn empty_trie_and_header() {
    rt().block_on(async {
        let t = new_trie().await;
        assert_eq!(t.version(), 1);
        assert_eq!(t.get("a").await.unwrap(), None);
        assert!(t.list("", ListOptions::default()).await.unwrap().is_empty());
        assert_eq!(t.header().await.unwrap(), Header::new(None, None));
        let with_meta = Trie::open(
            MemoryStore::new(),
            TrieOptions {
                metadata: Some(vec![1, 2]),
                subtype: Some("hyperdrive".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(with_meta.metadata().await.unwrap(), Some(vec![1, 2]));
    });
}

#[test]
fn checkouts_are_read_only_and_see_old_versions() {
    rt().block_on(async {
        let t = new_trie().await;
        t.put("k", b"1").await.unwrap();
        t.put("k", b"2").await.unwrap();
        let old = t.checkout(2);
        assert_eq!(
            old.get("k").await.unwrap().unwrap().value.as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            t.get("k").await.unwrap().unwrap().value.as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            old.put("x", b"y").await.unwrap_err(),
            TrieError::NotWritable
        );
        assert_eq!(t.checkout(0).version(), 1);
        assert_eq!(t.checkout(0).get("k").await.unwrap(), None);
        assert_eq!(t.snapshot().version(), 3);
    });
}

#[test]
fn conditions_decide_and_see_the_right_node() {
    rt().block_on(async {
        let t = new_trie().await;
        t.put("a", b"1").await.unwrap();
        // ifNotExists-style condition: refuses because "a" exists.
        let refused = t
            .put_with(
                "a",
                Some(b"2".to_vec()),
                PutOptions {
                    condition: Some(Box::new(|old, _new| Ok(old.is_none()))),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(refused.is_none());
        assert_eq!(t.version(), 2);
        // Mount-point detection: a closest mount node above the new key is an error.
        t.batch(mount::mount_ops(
            "mnt",
            &MountRecord {
                key: vec![9; 32],
                local_path: "mnt".into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap();
        let err = t
            .put_with(
                "mnt/file",
                Some(vec![]),
                PutOptions {
                    closest: true,
                    condition: Some(Box::new(|closest, new| {
                        mount::put_refuses_mountpoint(closest, new).map(|_| true)
                    })),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err, TrieError::Condition("mountpoint".into()));
        let rec = t
            .get_with(
                &mount::mount_record_key("mnt"),
                GetOptions {
                    hidden: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(mount::is_mount_node(&rec));
        // Delete conditions.
        let kept = t
            .del_with(
                "a",
                DelOptions {
                    condition: Some(Box::new(|_| Ok(false))),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(kept.is_none());
        assert!(t.get("a").await.unwrap().is_some());
        t.batch(mount::unmount_ops("mnt")).await.unwrap();
        assert!(t.get("mnt").await.unwrap().is_none());
    });
}

#[test]
fn hidden_keys_live_apart() {
    rt().block_on(async {
        let t = new_trie().await;
        let hidden = PutOptions {
            hidden: true,
            ..Default::default()
        };
        t.put_with("s", Some(b"h".to_vec()), hidden).await.unwrap();
        t.put("s", b"v").await.unwrap();
        let h = GetOptions {
            hidden: true,
            ..Default::default()
        };
        assert_eq!(
            t.get_with("s", h).await.unwrap().unwrap().value.as_deref(),
            Some(&b"h"[..])
        );
        assert_eq!(
            t.get("s").await.unwrap().unwrap().value.as_deref(),
            Some(&b"v"[..])
        );
        let listed = t
            .list(
                "",
                ListOptions {
                    hidden: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].hidden());
    });
}

fn arb_key() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "dd", "ü"]), 1..4)
        .prop_map(|parts| parts.join("/"))
}

#[derive(Clone, Debug)]
enum Op {
    Put(String, u8, bool),
    Del(String, bool),
    Batch(Vec<(String, Option<u8>)>),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (arb_key(), any::<u8>(), prop::bool::weighted(0.2)).prop_map(|(k, v, h)| Op::Put(k, v, h)),
        2 => (arb_key(), prop::bool::weighted(0.2)).prop_map(|(k, h)| Op::Del(k, h)),
        1 => prop::collection::vec((arb_key(), prop::option::of(any::<u8>())), 1..4).prop_map(Op::Batch),
    ]
}

/// Every key the generator can produce (for exhaustive get checks).
fn universe() -> Vec<String> {
    let parts = ["a", "b", "c", "dd", "ü"];
    let mut out: Vec<String> = Vec::new();
    let mut level: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    for _ in 0..3 {
        out.extend(level.iter().cloned());
        level = level
            .iter()
            .flat_map(|k| parts.iter().map(move |p| format!("{k}/{p}")))
            .collect();
    }
    out
}

type Model = BTreeMap<String, Vec<u8>>;

async fn check_model(t: &Trie<MemoryStore>, visible: &Model, hidden: &Model) {
    for (model, h) in [(visible, false), (hidden, true)] {
        let opts = GetOptions {
            hidden: h,
            ..Default::default()
        };
        for k in universe() {
            let got = t.get_with(&k, opts).await.unwrap();
            let got = got.map(|n| (n.key.clone(), n.value.clone().unwrap_or_default()));
            assert_eq!(
                got,
                model.get(&k).map(|v| (k.clone(), v.clone())),
                "get {k} hidden={h}"
            );
        }
        let lopts = ListOptions {
            hidden: h,
            ..Default::default()
        };
        let mut listed: Vec<(String, Vec<u8>)> = t
            .list("", lopts.clone())
            .await
            .unwrap()
            .iter()
            .map(|n| (n.key.clone(), n.value.clone().unwrap_or_default()))
            .collect();
        listed.sort();
        let want: Vec<(String, Vec<u8>)> =
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(listed, want, "list hidden={h}");
        for prefix in ["a", "b/c", "ü"] {
            let mut listed: Vec<String> = t
                .list(prefix, lopts.clone())
                .await
                .unwrap()
                .iter()
                .map(|n| n.key.clone())
                .collect();
            listed.sort();
            let want: Vec<String> = model
                .keys()
                .filter(|k| *k == prefix || k.starts_with(&format!("{prefix}/")))
                .cloned()
                .collect();
            assert_eq!(listed, want, "list {prefix} hidden={h}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_ops_agree_with_a_btreemap(ops in prop::collection::vec(arb_op(), 1..24)) {
        rt().block_on(async {
            let t = new_trie().await;
            let mut visible = Model::new();
            let mut hidden = Model::new();
            for op in ops {
                match op {
                    Op::Put(k, v, h) => {
                        let opts = PutOptions { hidden: h, ..Default::default() };
                        t.put_with(&k, Some(vec![v]), opts).await.unwrap();
                        if h { &mut hidden } else { &mut visible }.insert(k, vec![v]);
                    }
                    Op::Del(k, h) => {
                        let opts = DelOptions { hidden: h, ..Default::default() };
                        t.del_with(&k, opts).await.unwrap();
                        if h { &mut hidden } else { &mut visible }.remove(&k);
                    }
                    Op::Batch(items) => {
                        let mut ops = Vec::new();
                        for (k, v) in items {
                            match v {
                                Some(v) => {
                                    visible.insert(k.clone(), vec![v]);
                                    ops.push(BatchOp::Put { key: k, value: Some(vec![v]), hidden: false, flags: 0 });
                                }
                                None => {
                                    visible.remove(&k);
                                    ops.push(BatchOp::Del { key: k, hidden: false });
                                }
                            }
                        }
                        t.batch(ops).await.unwrap();
                    }
                }
            }
            check_model(&t, &visible, &hidden).await;
            // A reader over the same blocks (no cache shared) agrees too.
            let copy = Trie::open(MemoryStore::from_blocks(t.store().blocks()), TrieOptions::default()).await.unwrap();
            check_model(&copy, &visible, &hidden).await;
        });
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let _ = Node::decode(&bytes, 1, None);
        let _ = TrieBuffer::decode(&bytes);
        let _ = Header::decode(&bytes);
        let _ = ExtensionMessage::decode(&bytes);
        let _ = MountRecord::decode(&bytes);
    }

    #[test]
    fn tries_over_random_blocks_never_panic(
        blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
        key in arb_key(),
        checkpoint in prop::collection::vec(any::<u8>(), 0..12),
    ) {
        rt().block_on(async {
            let t = Trie::open(MemoryStore::from_blocks(blocks), TrieOptions::default()).await.unwrap();
            let _ = t.get(&key).await;
            let _ = t.list("", ListOptions::default()).await;
            let _ = t.list("", ListOptions { checkpoint: Some(checkpoint.clone()), ..Default::default() }).await;
            let _ = t.diff_version(1, "", DiffOptions { checkpoint: Some(checkpoint), ..Default::default() }).collect().await;
            let _ = t.diff_version(2, "", DiffOptions::default()).collect().await;
            let _ = t.history(HistoryOptions::default()).collect().await;
            let _ = t.del(&key).await;
            let _ = t.put(&key, b"v").await;
        });
    }

    #[test]
    fn trie_buffer_roundtrips(buckets in prop::collection::btree_map(0usize..200, prop::collection::vec(0u64..1000, 1..12), 0..8)) {
        let mut t = TrieBuffer::new();
        for (i, mut b) in buckets {
            // Decoding trims trailing empty slots; keep the last slot set.
            if let Some(last) = b.last_mut() { *last = (*last).max(1); }
            t.set_bucket(i, b);
        }
        prop_assert_eq!(TrieBuffer::decode(&t.encode()).unwrap(), t);
    }
}

#[test]
fn arc_nodes_are_shared_through_the_cache() {
    rt().block_on(async {
        let t = new_trie().await;
        t.put("x", b"1").await.unwrap();
        let a = t.get_by_seq(1).await.unwrap().unwrap();
        let b = t.get_by_seq(1).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    });
}

/// A batch that deletes the last key then puts another points at the reset marker
/// (bytes checked against the reference); gets work, listing skips the marker where
/// the reference throws.
#[test]
fn batch_after_reset_in_same_batch() {
    rt().block_on(async {
        let t = new_trie().await;
        t.put("b", b"0").await.unwrap();
        t.batch(vec![
            BatchOp::Del {
                key: "b".into(),
                hidden: false,
            },
            BatchOp::Put {
                key: "a".into(),
                value: Some(b"0".to_vec()),
                hidden: false,
                flags: 0,
            },
        ])
        .await
        .unwrap();
        let blocks: Vec<String> = t.store().blocks().iter().map(hex::encode).collect();
        assert_eq!(blocks[2], "0a001a010020022800");
        assert_eq!(blocks[3], "0a01611201301a040201100220032800");
        assert_eq!(t.get("a").await.unwrap().unwrap().seq, 3);
        assert!(t.get("b").await.unwrap().is_none());
        let keys: Vec<String> = t
            .list("", ListOptions::default())
            .await
            .unwrap()
            .iter()
            .map(|n| n.key.clone())
            .collect();
        assert_eq!(keys, vec!["a".to_string()]);
    });
}
