//! A plain hypercore 9 directory (`hypercore(DIR)` on random-access-file) shared by
//! Node and Rust: one side writes (single and batched appends), the other opens it,
//! verifies every block and signature, appends more, and the first reads it all back.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hyperdrive::core::crypto::{signable, verify_signable};
use hyperdrive::core::{flat_tree, Feed};

const T: Duration = Duration::from_secs(60);

fn append_node(dir: &Path, blocks: u64, batch: u64) -> serde_json::Value {
    run_node_json(
        &js_script("core-append.js"),
        &[
            dir.to_str().unwrap(),
            "--blocks",
            &blocks.to_string(),
            "--batch",
            &batch.to_string(),
            "--size",
            "var",
        ],
        T,
    )
}

fn read_node(dir: &Path) -> serde_json::Value {
    run_node_json(&js_script("core-read.js"), &[dir.to_str().unwrap()], T)
}

/// Every block equals the shared pattern and every stored signature verifies against
/// the roots of its length.
fn verify_in_rust(feed: &mut Feed, expected_len: u64) {
    assert_eq!(feed.len(), expected_len);
    for i in 0..feed.len() {
        assert_eq!(
            feed.get(i).unwrap(),
            block_content(i, None, &[]),
            "block {i}"
        );
    }
    let mut signed = 0;
    for len in 1..=feed.len() {
        let Some((slot, sig)) = feed.signature(len - 1).unwrap() else {
            continue;
        };
        if slot != len - 1 {
            continue;
        }
        let roots: Vec<_> = flat_tree::full_roots(2 * len)
            .into_iter()
            .map(|r| feed.node(r).unwrap().expect("root node stored"))
            .collect();
        let public = feed.keypair().public;
        assert!(
            verify_signable(&public, &signable(&roots, len), &sig),
            "signature for length {len}"
        );
        signed += 1;
    }
    assert!(signed > 0);
}

#[test]
fn node_writes_rust_verifies_and_appends_node_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feed");
    append_node(&dir, 10, 1); // single appends
    let out = append_node(&dir, 90, 7); // batched appends
    assert_eq!(json_u64(&out, "length"), 100);

    let mut feed = Feed::open(&dir).unwrap();
    assert!(feed.writable());
    verify_in_rust(&mut feed, 100);
    let more: Vec<Vec<u8>> = (100..150).map(|i| block_content(i, None, &[])).collect();
    for b in &more[..5] {
        feed.append(b).unwrap();
    }
    feed.append_batch(&more[5..]).unwrap();
    feed.sync().unwrap();
    drop(feed);

    let read = read_node(&dir);
    assert_eq!(json_u64(&read, "length"), 150);
    let all: Vec<Vec<u8>> = (0..150).map(|i| block_content(i, None, &[])).collect();
    assert_eq!(
        json_str(&read, "digest"),
        blocks_digest(all.iter().map(|b| b.as_slice()))
    );
}

#[test]
fn rust_writes_node_verifies_and_appends_rust_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feed");
    let mut feed = Feed::create(&dir).unwrap();
    let blocks: Vec<Vec<u8>> = (0..80).map(|i| block_content(i, None, &[])).collect();
    for b in &blocks[..10] {
        feed.append(b).unwrap();
    }
    for chunk in blocks[10..].chunks(9) {
        feed.append_batch(chunk).unwrap();
    }
    feed.sync().unwrap();
    drop(feed);

    let read = read_node(&dir);
    assert_eq!(json_u64(&read, "length"), 80);
    assert_eq!(
        json_str(&read, "digest"),
        blocks_digest(blocks.iter().map(|b| b.as_slice()))
    );
    // Node appends to the directory Rust wrote (its secret key file is ours).
    let out = append_node(&dir, 20, 3);
    assert_eq!(json_u64(&out, "length"), 100);

    let mut feed = Feed::open(&dir).unwrap();
    verify_in_rust(&mut feed, 100);
}
