//! Corestore folders shared with the Node reference (corestore@5.8.2): a store Node wrote
//! opens in Rust by name, by key and by discovery key, with the same keys, lengths and
//! blocks, writable through the `name` files; a store Rust wrote opens in Node the same
//! way, and each side can append to what the other created. Neither side leaves a
//! `secret_key` file behind.

mod common;

use std::path::Path;

use common::*;
use hyperdrive::core::discovery_key;
use hyperdrive::store::Corestore;
use serde_json::Value;

fn store_js(args: &[&str]) -> Value {
    run_node_json(&js_script("store.js"), args, DEFAULT_TIMEOUT)
}

fn key_of(core: &Value) -> [u8; 32] {
    hex::decode(json_str(core, "key"))
        .unwrap()
        .try_into()
        .expect("32-byte key")
}

fn blocks_of(core: &Value) -> Vec<String> {
    core["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b.as_str().expect("utf8 block").to_owned())
        .collect()
}

fn all_files(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            all_files(&e.path(), out);
        } else {
            out.push(e.file_name().into_string().unwrap());
        }
    }
}

fn assert_no_secret_key(dir: &Path) {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    assert!(files.iter().any(|f| f == "name"), "{files:?}");
    assert!(!files.iter().any(|f| f == "secret_key"), "{files:?}");
}

fn rust_blocks(feed: &hyperdrive::protocol::replicate::SharedFeed) -> Vec<String> {
    let mut st = feed.lock();
    (0..st.feed.len())
        .map(|i| String::from_utf8(st.feed.get(i).unwrap()).unwrap())
        .collect()
}

#[test]
fn node_store_opens_in_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir_s = dir.to_str().unwrap();
    let node = store_js(&["write", dir_s]);
    let (dkey, xkey) = (key_of(&node["default"]), key_of(&node["x"]));

    {
        let store = Corestore::open(&dir).unwrap();
        let def = store.default_feed().unwrap();
        assert_eq!(def.key(), dkey);
        assert_eq!(def.len(), 3);
        assert!(def.lock().feed.writable());
        assert_eq!(rust_blocks(&def), blocks_of(&node["default"]));
        let x = store.get_by_name("x").unwrap();
        assert_eq!(x.key(), xkey);
        assert_eq!(rust_blocks(&x), ["x-0", "x-1"]);
    }
    {
        // A fresh store: by key, the secret is re-derived from the name file.
        let store = Corestore::open(&dir).unwrap();
        let x = store.get_by_key(&xkey).unwrap();
        assert!(x.lock().feed.writable());
        assert_eq!(rust_blocks(&x), ["x-0", "x-1"]);
        let def = store
            .get_by_discovery_key(&discovery_key(&dkey))
            .unwrap()
            .expect("held on disk");
        assert_eq!(def.key(), dkey);
        assert!(def.lock().feed.writable());
        assert_eq!(rust_blocks(&def), blocks_of(&node["default"]));
        x.append(b"x-rust").unwrap();
    }
    assert_no_secret_key(&dir);

    // Node reads what Rust appended, and still has the core writable.
    let back = store_js(&["read", dir_s]);
    assert_eq!(blocks_of(&back["x"]), ["x-0", "x-1", "x-rust"]);
    assert_eq!(back["x"]["writable"], Value::Bool(true));
    assert_eq!(key_of(&back["x"]), xkey);
    assert_eq!(blocks_of(&back["default"]), blocks_of(&node["default"]));
}

#[test]
fn rust_store_opens_in_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir_s = dir.to_str().unwrap();
    let (dkey, xkey) = {
        let store = Corestore::open(&dir).unwrap();
        let def = store.default_feed().unwrap();
        def.append_batch(&[b"default-0".to_vec(), b"default-1".to_vec()])
            .unwrap();
        def.append(b"default-2").unwrap();
        let x = store.get_by_name("x").unwrap();
        x.append_batch(&[b"x-0".to_vec(), b"x-1".to_vec()]).unwrap();
        (def.key(), x.key())
    };
    assert_no_secret_key(&dir);

    let node = store_js(&["read", dir_s, "--append"]);
    assert_eq!(key_of(&node["default"]), dkey);
    assert_eq!(json_u64(&node["default"], "length"), 3);
    assert_eq!(node["default"]["writable"], Value::Bool(true));
    assert_eq!(
        blocks_of(&node["default"]),
        ["default-0", "default-1", "default-2"]
    );
    assert_eq!(key_of(&node["x"]), xkey);
    assert_eq!(node["x"]["writable"], Value::Bool(true));
    assert_eq!(blocks_of(&node["x"]), ["x-0", "x-1", "x-node"]);
    assert_eq!(key_of(&node["xByKey"]), xkey);
    assert_no_secret_key(&dir);

    // Node signed its append with the key it re-derived; Rust verifies it on open.
    let store = Corestore::open(&dir).unwrap();
    let x = store.get_by_key(&xkey).unwrap();
    assert!(x.lock().feed.writable());
    assert_eq!(rust_blocks(&x), ["x-0", "x-1", "x-node"]);
}
