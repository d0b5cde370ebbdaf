//! Drives found and replicated through the Hyperswarm DHT, end to end, on loopback:
//! `hypermount` and the Node reference (`swarm-peer.js`) as seeders and readers, with a
//! Node bootstrap node and with a Rust one (`hypermount dht bootstrap`).
//!
//! Every process gets an explicit 127.0.0.1 bootstrap and is killed by pid when the test
//! ends (guards); every mountpoint is lazily unmounted on drop. The reference's hyperswarm
//! only runs through swarm-peer.js, which stubs mDNS and refuses non-loopback traffic.
//! Each test makes fresh drives (fresh topics), so stale DHT records never mix in.

#[path = "cli_common/mod.rs"]
mod cli_common;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli_common::*;
use common::{spawn_node, swarm_peer, NodeProcess};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// A DHT bootstrap node on 127.0.0.1, Node's or ours; killed by pid on drop.
enum Boot {
    Node(#[allow(dead_code)] NodeProcess),
    Rust(#[allow(dead_code)] Bg),
}

impl Boot {
    fn node() -> (Boot, String) {
        let mut p = spawn_node(&swarm_peer(), &["bootstrap", "0", "--quiet"]);
        let line = p.next_line(T);
        let port = line
            .strip_prefix("ready ")
            .expect("ready PORT")
            .trim()
            .to_string();
        (Boot::Node(p), format!("127.0.0.1:{port}"))
    }

    fn rust(dir: &Path, join: Option<&str>) -> (Boot, String) {
        let mut args = vec!["dht", "bootstrap", "--listen", "127.0.0.1:0"];
        if let Some(j) = join {
            args.extend(["--bootstrap", j]);
        }
        let mut b = Bg::spawn(dir, &args);
        let line = b.line_starting("ready ", T);
        let port = line.trim_start_matches("ready ").trim().to_string();
        (Boot::Rust(b), format!("127.0.0.1:{port}"))
    }

    fn kind(&self) -> &'static str {
        match self {
            Boot::Node(_) => "node",
            Boot::Rust(_) => "rust",
        }
    }
}

/// A folder of plain files and folders (no symlinks: the Node clone skips them).
fn plain_tree(root: &Path) -> PathBuf {
    let src = root.join("plain");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello over the DHT\n").unwrap();
    std::fs::write(src.join("zero.bin"), b"").unwrap();
    std::fs::write(src.join("a/b/deep.txt"), "deep ünïcode\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(src.join("a/big.bin"), big).unwrap();
    src
}

fn create(storage: &Path, src: &Path) -> String {
    let key = last_line(&ok(storage, &["create", "--import", src.to_str().unwrap()]));
    assert_eq!(key.len(), 64, "{key}");
    key
}

/// `hypermount seed` on the DHT; returns once it serves.
fn seed(storage: &Path, boot: &str) -> Bg {
    let mut s = Bg::spawn(storage, &dht_args(boot, &["seed"]));
    s.line_starting("seeding hyper://", T);
    s
}

fn node_clone(boot: &str, key: &str, out: &Path) -> Value {
    let o = common::run_node(
        &swarm_peer(),
        &[
            "clone",
            "--bootstrap",
            boot,
            "--key",
            key,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "45",
            "--quiet",
        ],
        T,
    );
    assert!(
        o.status.success(),
        "node clone failed: {}\n{}",
        o.stdout,
        o.stderr
    );
    o.json()
}

fn rust_seed_node_clone(boot: Boot, addr: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = plain_tree(tmp.path());
    let st = tmp.path().join("seeder");
    let key = create(&st, &src);
    let _seed = seed(&st, addr);
    let out = tmp.path().join("out");
    let v = node_clone(addr, &key, &out);
    assert_eq!(v["key"].as_str(), Some(key.as_str()));
    // Node races TCP and (after a holepunch) uTP; on loopback TCP nearly always wins.
    let kind = v["connection"]["type"].as_str();
    assert!(matches!(kind, Some("tcp") | Some("utp")), "{v}");
    assert_same_tree(&src, &out);
    drop(boot);
}

#[test]
fn rust_seeds_node_clones_through_a_node_bootstrap() {
    let (b, addr) = Boot::node();
    rust_seed_node_clone(b, &addr);
}

#[test]
fn rust_seeds_node_clones_through_a_rust_bootstrap() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, addr) = Boot::rust(tmp.path(), None);
    rust_seed_node_clone(b, &addr);
}

/// `swarm-peer.js seed` of `src` on the DHT; returns the process and the drive key.
fn node_seed(boot: &str, store: &Path, src: &Path) -> (NodeProcess, String) {
    let mut node = spawn_node(
        &swarm_peer(),
        &[
            "seed",
            "--bootstrap",
            boot,
            "--storage",
            store.to_str().unwrap(),
            "--import",
            src.to_str().unwrap(),
            "--quiet",
        ],
    );
    let info = node.next_json(T);
    assert_eq!(info["announced"], Value::Bool(true), "{info}");
    let key = info["key"].as_str().unwrap().to_string();
    (node, key)
}

/// Node seeds; `hypermount mount` finds it on the DHT and the mount equals the source.
fn node_seed_rust_mount(boot: Boot, addr: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = plain_tree(tmp.path());
    let (mut node, key) = node_seed(addr, &tmp.path().join("node-store"), &src);
    let st = tmp.path().join("reader");
    let mnt = MountDir::new(tmp.path(), "mnt");
    let started = Instant::now();
    let mut m = mount_fg(&st, &dht_args(addr, &[&key, mnt.s()]));
    assert_same_tree(&src, mnt.path());
    let found_in = started.elapsed();
    assert_eq!(m.stop(), Some(0), "SIGTERM unmounts cleanly");
    assert!(!mnt.mounted());
    eprintln!(
        "{}: node seed found, mounted and diffed in {found_in:?}",
        boot.kind()
    );
    // What the reader now holds stays readable with the DHT off.
    assert_eq!(
        ok(&st, &["cat", &format!("{key}/hello.txt")]),
        "hello over the DHT\n"
    );
    node.terminate(Duration::from_secs(5));
    drop(boot);
}

#[test]
fn node_seeds_rust_mounts_through_a_node_bootstrap() {
    let (b, addr) = Boot::node();
    node_seed_rust_mount(b, &addr);
}

#[test]
fn node_seeds_rust_mounts_through_a_rust_bootstrap() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, addr) = Boot::rust(tmp.path(), None);
    node_seed_rust_mount(b, &addr);
}

/// Rust to Rust through two Rust bootstrap nodes that know each other: export, `info`
/// with peers and the DHT's view of us (two nodes agree on our address: holepunchable).
#[test]
fn rust_to_rust_through_rust_bootstraps() {
    let tmp = tempfile::tempdir().unwrap();
    let (_b1, a1) = Boot::rust(tmp.path(), None);
    let (_b2, a2) = Boot::rust(tmp.path(), Some(&a1));
    let boots = format!("{a1},{a2}");
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("seeder");
    let key = create(&st, &src);
    let mut seeder = seed(&st, &boots);

    let reader = tmp.path().join("reader");
    let out = tmp.path().join("out");
    let said = ok(
        &reader,
        &dht_args(&boots, &["export", &key, out.to_str().unwrap()]),
    );
    assert!(said.contains("exported"), "{said}");
    assert_same_tree(&src, &out);

    let info: Value =
        serde_json::from_str(&ok(&reader, &dht_args(&boots, &["info", &key, "--json"]))).unwrap();
    assert_eq!(info["writable"], Value::Bool(false));
    assert!(info["peers"].as_u64().unwrap() >= 1, "{info}");
    let dht = &info["dht"];
    assert!(dht["nodes"].as_u64().unwrap() >= 1, "{info}");
    assert_eq!(dht["holepunchable"], Value::Bool(true), "{info}");
    // Our public address needs 3 routing-table nodes to agree (spec 1.9): unknown here.
    assert!(dht.get("publicAddress").is_some(), "{info}");
    // The text form says the same.
    let text = ok(&reader, &dht_args(&boots, &["info", &key]));
    assert!(text.contains("holepunchable: yes"), "{text}");
    // An own drive is read without the DHT (nothing to fetch).
    assert_eq!(seeder.stop(), Some(0));
    let own = ok(&st, &dht_args(&boots, &["info", &key]));
    assert!(own.contains("not used"), "{own}");
}

/// The first seeder is killed (its DHT record stays behind); a mirror that announced
/// itself serves the next reader, which skips the dead address.
#[test]
fn a_vanished_seeder_is_replaced_by_a_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let (_b, boot) = Boot::rust(tmp.path(), None);
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("seeder");
    let key = create(&st, &src);
    let mut s = seed(&st, &boot);

    let mirror_st = tmp.path().join("mirror");
    let mut mirror = Bg::spawn(&mirror_st, &dht_args(&boot, &["mirror", &key]));
    mirror.line_starting("mirrored hyper://", T);

    // kill -9: no unannounce, so the DHT still lists the dead seeder.
    let pid = s.pid();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let _ = s.stop();

    let out = tmp.path().join("out");
    let started = Instant::now();
    ok(
        &tmp.path().join("reader"),
        &dht_args(&boot, &["export", &key, out.to_str().unwrap()]),
    );
    assert_same_tree(&src, &out);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// A bootstrap node nobody runs: a clear error in bounded time, not a hang; a seeder
/// keeps serving (and announcing in the background).
#[test]
fn a_dead_bootstrap_gives_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let boot = dead.local_addr().unwrap().to_string();
    drop(dead);
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("seeder");
    let key = create(&st, &src);
    let started = Instant::now();
    let err = fails(
        &tmp.path().join("r"),
        &dht_args(
            &boot,
            &["export", &key, tmp.path().join("o").to_str().unwrap()],
        ),
        &["no DHT node answered", &boot],
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}: {err}",
        started.elapsed()
    );

    let mut s = Bg::spawn(&st, &dht_args(&boot, &["seed"]));
    s.line_starting("seeding hyper://", T);
    assert_eq!(s.stop(), Some(0));
}

/// uTP with the reference's libutp, both ways. A `hypermount seed --transports utp` takes
/// no TCP: Node's TCP dial is refused, and it holepunches through the bootstrap node and
/// connects over uTP to the DHT's port. Then Node seeds and `hypermount export
/// --transports utp` reaches it over uTP only.
#[test]
fn utp_with_node_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let (_b, boot) = Boot::node();
    let src = plain_tree(tmp.path());
    let st = tmp.path().join("seeder");
    let key = create(&st, &src);
    let mut s = Bg::spawn(&st, &dht_args(&boot, &["--transports", "utp", "seed"]));
    s.line_starting("seeding hyper://", T);
    let out = tmp.path().join("node-out");
    let v = node_clone(&boot, &key, &out);
    assert_eq!(v["connection"]["type"].as_str(), Some("utp"), "{v}");
    assert_same_tree(&src, &out);
    assert_eq!(s.stop(), Some(0));

    let (mut node, nkey) = node_seed(&boot, &tmp.path().join("node-store"), &src);
    let out = tmp.path().join("rust-out");
    let said = ok(
        &tmp.path().join("reader"),
        &dht_args(
            &boot,
            &[
                "--transports",
                "utp",
                "export",
                &nkey,
                out.to_str().unwrap(),
            ],
        ),
    );
    assert!(said.contains("exported"), "{said}");
    assert_same_tree(&src, &out);
    node.terminate(Duration::from_secs(5));
}
