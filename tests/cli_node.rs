//! The command line against the Node reference over loopback TCP: a drive seeded by
//! `swarm-peer.js seed` exported by `hypermount export`, and `hypermount seed` cloned
//! by `swarm-peer.js clone` (sha256 of every file compared).

#[path = "cli_common/mod.rs"]
mod cli_common;
mod common;

use std::path::Path;
use std::time::Duration;

use cli_common::*;
use common::{json_str, json_u64, run_node_json, sha256_hex, spawn_node, swarm_peer};

/// A folder the reference imports completely (it skips symlinks).
fn node_tree(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("top.txt"), b"from node\n").unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    let big: Vec<u8> = (0..2_100_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(src.join("a/b/big.bin"), big).unwrap();
    std::fs::write(src.join("a/note.md"), b"note\n").unwrap();
    src
}

#[test]
fn node_seeded_drive_exports_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let src = node_tree(tmp.path());
    let nstore = tmp.path().join("node-store");
    let mut seed = spawn_node(
        &swarm_peer(),
        &[
            "seed",
            "--no-dht",
            "--listen",
            "0",
            "--storage",
            nstore.to_str().unwrap(),
            "--import",
            src.to_str().unwrap(),
        ],
    );
    let info = seed.next_json(Duration::from_secs(60));
    let key = json_str(&info, "key").to_string();
    let port = json_u64(&info, "port");
    let addr = format!("127.0.0.1:{port}");

    let ours = tmp.path().join("ours");
    let dest = tmp.path().join("dest");
    let out = ok(
        &ours,
        &["--connect", &addr, "export", &key, dest.to_str().unwrap()],
    );
    assert!(out.contains("exported 4 files"), "{out}");
    assert_same_tree(&src, &dest);

    let ls = ok(&ours, &["--connect", &addr, "ls", &format!("{key}/a")]);
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["b", "note.md"]);
    seed.terminate(Duration::from_secs(5));
}

#[test]
fn node_clones_what_hypermount_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("store");
    let key = last_line(&ok(&st, &["create", "--import", src.to_str().unwrap()]));
    let mut seeder = Bg::spawn(&st, &["seed", "--listen", "127.0.0.1:0"]);
    let addr = seeder.listening();

    let out = tmp.path().join("node-out");
    let res = run_node_json(
        &swarm_peer(),
        &[
            "clone",
            "--no-dht",
            "--connect",
            &addr,
            "--key",
            &key,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "60",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(json_str(&res, "key"), key);
    let entries = res["entries"].as_array().expect("entries");
    // The reference follows the symlink (stat), so it lists it as a file too.
    let mut paths: Vec<&str> = entries.iter().map(|e| json_str(e, "path")).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/docs/deep/big.bin",
            "/docs/readme.md",
            "/hello.txt",
            "/link",
            "/zero.bin"
        ]
    );
    for e in entries {
        let p = json_str(e, "path");
        let want = std::fs::read(src.join(p.trim_start_matches('/'))).unwrap();
        assert_eq!(json_str(e, "sha256"), sha256_hex(&want), "{p}");
        assert_eq!(json_u64(e, "size"), want.len() as u64, "{p}");
    }
    assert_eq!(seeder.stop(), Some(0));
}
