//! Hyperdrive interop with the Node reference through a corestore folder on disk:
//! the reference builds a drive (nested dirs, 0 B/1 B/64 KiB±1/3 MiB files, unicode and
//! space names, symlinks, xattrs, a mounted second drive, overwrites and deletes over
//! several versions) and Rust answers every stat/lstat/readdir/read/readlink/checkout
//! question the same way; then Rust builds the same drive and the reference reads it.

mod common;

use std::sync::Arc;

use common::*;
use hyperdrive::drive::{DirProvider, Drive, DriveError, DriveOptions, Stat, WriteOptions};
use hyperdrive::store::Corestore;
use serde_json::{json, Map, Value};
use sha2::Digest;

const MASTER: [u8; 32] = [7; 32];
const BIG: usize = 3 * 1_048_576 + 123;

const STAT_PATHS: &[&str] = &[
    "/",
    "/empty",
    "/one",
    "/docs",
    "/docs/a-65535.bin",
    "/docs/b-65537.bin",
    "/big.bin",
    "/ünï cödé",
    "/ünï cödé/file with space.txt",
    "/deep/a",
    "/deep/a/b/c/d.txt",
    "/link-one",
    "/link-docs",
    "/link-dangling",
    "/over.txt",
    "/gone.txt",
    "/mnt",
    "/mnt/inner.txt",
    "/mnt/through.txt",
    "/mnt/sub",
    "/nothing",
];
const IMPLICIT: &[&str] = &["/ünï cödé", "/deep/a"];
const DIRS: &[&str] = &[
    "/",
    "/docs",
    "/ünï cödé",
    "/deep/a/b",
    "/mnt",
    "/link-docs",
    "/mnt/sub",
];
const FILES: &[&str] = &[
    "/empty",
    "/one",
    "/docs/a-65535.bin",
    "/docs/b-65537.bin",
    "/big.bin",
    "/ünï cödé/file with space.txt",
    "/deep/a/b/c/d.txt",
    "/link-one",
    "/over.txt",
    "/mnt/inner.txt",
    "/mnt/through.txt",
];
const RANGES: &[(&str, u64, u64)] = &[
    ("/big.bin", 0, 5),
    ("/big.bin", 524_280, 20),
    ("/big.bin", 1_048_570, 100_000),
    ("/big.bin", BIG as u64 - 10, 10),
    ("/docs/b-65537.bin", 65_530, 7),
    ("/over.txt", 3, 4),
];
const LINKS: &[&str] = &["/link-one", "/link-docs", "/link-dangling"];

fn pattern(len: usize, mul: usize, add: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * mul + add) & 0xff) as u8).collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn times() -> WriteOptions {
    WriteOptions {
        mtime: Some(1_577_836_800_000),
        ctime: Some(1_577_836_801_000),
        ..Default::default()
    }
}

fn stat_json(st: &Stat) -> Value {
    let mut meta = Map::new();
    for (k, v) in &st.metadata {
        meta.insert(
            k.clone(),
            v.as_ref().map(hex::encode).map_or(Value::Null, Value::from),
        );
    }
    json!({
        "mode": st.mode, "uid": st.uid, "gid": st.gid, "size": st.size, "blocks": st.blocks,
        "offset": st.offset, "byteOffset": st.byte_offset, "mtime": st.mtime, "ctime": st.ctime,
        "linkname": st.linkname, "mount": st.mount.as_ref().map(|m| hex::encode(&m.key)),
        "metadata": meta,
    })
}

fn err_code(e: &DriveError) -> &'static str {
    match e {
        DriveError::NotFound { .. } => "ENOENT",
        DriveError::Exists { .. } => "EEXIST",
        DriveError::NotEmpty { .. } => "ENOTEMPTY",
        _ => "EOTHER",
    }
}

/// The same answers `drive-common.js` `describe` gives.
async fn describe(d: &Drive, versions: &[u64]) -> Value {
    let mut out = json!({"stat": {}, "lstat": {}, "readdir": {}, "read": {}, "ranges": [],
        "readlink": {}, "checkouts": []});
    for p in STAT_PATHS {
        for kind in ["stat", "lstat"] {
            let r = if kind == "stat" {
                d.stat(p).await
            } else {
                d.lstat(p).await
            };
            out[kind][*p] = match r {
                Err(e) => json!({"error": err_code(&e)}),
                Ok(st) if IMPLICIT.contains(p) => json!({"mode": st.mode}),
                Ok(st) => stat_json(&st),
            };
        }
    }
    for p in DIRS {
        let names: Vec<String> = d
            .readdir(p, false)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        out["readdir"][*p] = json!(names);
    }
    for p in FILES {
        let b = d.read_file(p).await.unwrap();
        out["read"][*p] = json!({"length": b.len(), "sha256": sha(&b)});
    }
    for (p, start, len) in RANGES {
        let b = d.read(p, *start, *len).await.unwrap();
        let h = if b.len() <= 64 {
            hex::encode(&b)
        } else {
            sha(&b)
        };
        out["ranges"]
            .as_array_mut()
            .unwrap()
            .push(json!({"path": p, "start": start, "length": len, "hex": h}));
    }
    for p in LINKS {
        out["readlink"][*p] = json!(d.readlink(p).await.unwrap());
    }
    for v in versions {
        let co = d.checkout(*v);
        let names: Vec<String> = co
            .readdir("/", false)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        let over = co.read_file("/over.txt").await.ok().map(hex::encode);
        out["checkouts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"version": v, "readdirRoot": names, "overTxt": over}));
    }
    out
}

/// The root's times are "now" on both sides; everything else must agree exactly.
fn mask_root(v: &mut Value) {
    for kind in ["stat", "lstat"] {
        for f in ["mtime", "ctime"] {
            v[kind]["/"][f] = Value::Null;
        }
        // The reference decodes an absent metadata map as null for the synthetic root.
        v[kind]["/"]["metadata"] = json!({});
    }
}

fn assert_same(rust: &Value, node: &Value) {
    let (mut r, mut n) = (rust.clone(), node.clone());
    mask_root(&mut r);
    mask_root(&mut n);
    for key in [
        "stat",
        "lstat",
        "readdir",
        "read",
        "ranges",
        "readlink",
        "checkouts",
    ] {
        if let (Some(ro), Some(no)) = (r[key].as_object(), n[key].as_object()) {
            for (k, nv) in no {
                assert_eq!(ro.get(k), Some(nv), "{key} {k}");
            }
        }
        assert_eq!(r[key], n[key], "{key}");
    }
}

async fn build(d: &Drive, s: &Drive) {
    let w = times;
    d.mkdir("/docs", w()).await.unwrap();
    d.write_file("/empty", b"", w()).await.unwrap();
    d.write_file("/one", b"x", w()).await.unwrap();
    d.write_file("/docs/a-65535.bin", &pattern(65535, 31, 7), w())
        .await
        .unwrap();
    let b = WriteOptions {
        mode: 0o600,
        uid: 1000,
        gid: 100,
        ..w()
    };
    d.write_file("/docs/b-65537.bin", &pattern(65537, 17, 3), b)
        .await
        .unwrap();
    d.write_file("/big.bin", &pattern(BIG, 13, 1), w())
        .await
        .unwrap();
    d.write_file("/ünï cödé/file with space.txt", b"unicode", w())
        .await
        .unwrap();
    d.write_file("/deep/a/b/c/d.txt", b"deep", w())
        .await
        .unwrap();
    d.symlink("one", "/link-one").await.unwrap();
    d.symlink("/docs", "/link-docs").await.unwrap();
    d.symlink("/missing", "/link-dangling").await.unwrap();
    d.set_xattr("/one", "user.k", b"v").await.unwrap();
    d.write_file("/over.txt", b"v1", w()).await.unwrap();
    d.write_file("/over.txt", b"version two", w())
        .await
        .unwrap();
    d.write_file("/gone.txt", b"bye", w()).await.unwrap();
    d.unlink("/gone.txt").await.unwrap();
    s.write_file("/inner.txt", b"inside", w()).await.unwrap();
    s.mkdir("/sub", w()).await.unwrap();
    s.write_file("/sub/s.txt", b"s", w()).await.unwrap();
    d.mount("/mnt", &s.key(), None, WriteOptions::default())
        .await
        .unwrap();
    d.write_file("/mnt/through.txt", b"through", w())
        .await
        .unwrap();
}

fn key32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_reads_a_drive_the_reference_built() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir_s = dir.to_str().unwrap().to_string();
    let node = tokio::task::spawn_blocking(move || {
        run_node_json(
            &js_script("drive-build.js"),
            &[dir_s, hex::encode(MASTER)],
            DEFAULT_TIMEOUT,
        )
    })
    .await
    .unwrap();

    let provider = Arc::new(DirProvider::read_only(Corestore::with_master_key(
        &dir, MASTER,
    )));
    let d = Drive::open(provider, &key32(&node["key"]), DriveOptions::default())
        .await
        .unwrap();
    assert!(!d.writable());
    assert_eq!(d.version(), node["version"].as_u64().unwrap());
    assert_eq!(
        hex::encode(d.content_feed().key()),
        node["contentKey"].as_str().unwrap()
    );
    let versions: Vec<u64> = node["checkoutVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let ours = describe(&d, &versions).await;
    assert_same(&ours, &node["expect"]);
    // Read-only: writes are refused, nothing was written to the folder.
    assert!(matches!(
        d.write_file("/x", b"", WriteOptions::default()).await,
        Err(DriveError::ReadOnly { .. })
    ));
    let secret_files = walk(&dir)
        .into_iter()
        .filter(|p| p.ends_with("secret_key"))
        .count();
    assert_eq!(secret_files, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_reads_a_drive_rust_built() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let expected_keys = {
        let provider = Arc::new(Corestore::with_master_key(&dir, MASTER));
        let d = Drive::named(provider, "default", DriveOptions::default())
            .await
            .unwrap();
        let s = d.sibling("second").await.unwrap();
        build(&d, &s).await;
        let versions = [2, 14, d.version()];
        let ours = describe(&d, &versions).await;
        (d.key(), d.content_feed().key(), s.key(), d.version(), ours)
        // Drives (and their open files) are dropped here, before Node opens the folder.
    };
    let (key, content, second, version, ours) = expected_keys;
    assert_eq!(version, 19);

    let args = vec![
        dir.to_str().unwrap().to_string(),
        hex::encode(MASTER),
        hex::encode(key),
        format!("2,14,{version}"),
    ];
    let node = tokio::task::spawn_blocking(move || {
        run_node_json(&js_script("drive-read.js"), &args, DEFAULT_TIMEOUT)
    })
    .await
    .unwrap();
    assert_eq!(node["version"].as_u64().unwrap(), version);
    assert_eq!(node["contentKey"].as_str().unwrap(), hex::encode(content));
    assert_eq!(
        ours["stat"]["/mnt"]["mount"].as_str().unwrap(),
        hex::encode(second)
    );
    assert_same(&ours, &node["expect"]);

    // Reopened from the folder (after Node closed it), the drive is writable again.
    let provider = Arc::new(Corestore::with_master_key(&dir, MASTER));
    let d = Drive::open(provider, &key, DriveOptions::default())
        .await
        .unwrap();
    assert!(d.writable());
    d.write_file("/after.txt", b"later", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(d.read_file("/mnt/inner.txt").await.unwrap(), b"inside");
}

/// Stretch: the reference serves its drive over TCP; Rust replicates it sparsely into an
/// in-memory corestore, learning the content key from the header and opening the
/// mounted drive's feeds on demand, and every answer agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_reads_a_drive_the_reference_serves_over_tcp() {
    use hyperdrive::protocol::driver::{
        replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
    };
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut seed = spawn_node(
        &js_script("drive-serve.js"),
        &[dir.to_str().unwrap().to_string(), hex::encode(MASTER)],
    );
    let info = seed.next_json(Duration::from_secs(120));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], json_u64(&info, "port") as u16));
    let socket = hyperdrive::protocol::net::connect_with_retry(addr, Duration::from_secs(30))
        .await
        .expect("node listens");
    let reader = Corestore::in_memory([8; 32]);
    let src: Arc<dyn FeedSource> = Arc::new(reader.clone());
    let (stop_tx, stop) = shutdown_channel();
    let conn = tokio::spawn(replicate(
        socket,
        true,
        src,
        ReplicateOptions::default(),
        Arc::new(ConnectionStats::default()),
        stop,
    ));
    let opts = DriveOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let d = Drive::open(Arc::new(reader.clone()), &key32(&info["key"]), opts)
        .await
        .unwrap();
    let version = info["version"].as_u64().unwrap();
    assert_eq!(
        d.metadata_feed()
            .wait_for_length(version, Duration::from_secs(20))
            .await,
        version
    );
    let versions: Vec<u64> = info["checkoutVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let ours = describe(&d.checkout(version), &versions).await;
    assert_same(&ours, &info["expect"]);
    let _ = stop_tx.send(true);
    let _ = conn.await;
    seed.terminate(Duration::from_secs(5));
}

/// Stretch, reverse: Rust builds and serves the drive over TCP; the reference clones it
/// sparsely and every answer agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_reads_a_drive_rust_serves_over_tcp() {
    use hyperdrive::protocol::driver::{FeedSource, ReplicateOptions};
    use hyperdrive::protocol::net::Listener;

    let tmp = tempfile::tempdir().unwrap();
    let store = Corestore::with_master_key(tmp.path().join("rust"), MASTER);
    let d = Drive::named(Arc::new(store.clone()), "default", DriveOptions::default())
        .await
        .unwrap();
    let s = d.sibling("second").await.unwrap();
    build(&d, &s).await;
    let versions = [2, 14, d.version()];
    let ours = describe(&d, &versions).await;

    let src: Arc<dyn FeedSource> = Arc::new(store.clone());
    let listener = Listener::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        src,
        ReplicateOptions::default(),
    )
    .await
    .unwrap();
    let args = vec![
        tmp.path().join("node").to_str().unwrap().to_string(),
        hex::encode(d.key()),
        listener.local_addr.port().to_string(),
        format!("2,14,{}", d.version()),
    ];
    let node = tokio::task::spawn_blocking(move || {
        run_node_json(&js_script("drive-clone.js"), &args, DEFAULT_TIMEOUT)
    })
    .await
    .unwrap();
    assert_eq!(node["version"].as_u64().unwrap(), d.version());
    assert_eq!(
        node["contentKey"].as_str().unwrap(),
        hex::encode(d.content_feed().key())
    );
    assert_same(&ours, &node["expect"]);
    listener.close();
}

/// The `hypertrie` extension over TCP: the reference sparse-reads a directory and a
/// file of a 2,000-file drive Rust serves; its hypertrie asks with extension requests,
/// Rust answers with `cache` lists, and every answer is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_sparse_reads_use_the_hypertrie_extension() {
    use hyperdrive::protocol::driver::{FeedSource, ReplicateOptions};
    use hyperdrive::protocol::net::Listener;
    use hyperdrive::trie::extension::EXTENSION_NAME;

    let tmp = tempfile::tempdir().unwrap();
    let store = Corestore::with_master_key(tmp.path().join("rust"), MASTER);
    let d = Drive::named(Arc::new(store.clone()), "default", DriveOptions::default())
        .await
        .unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            (
                format!("/d{:02}/f{i:04}.txt", i % 50),
                format!("file number {i}\n").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    d.write_files(&refs, times()).await.unwrap();
    let mut expect_entries: Vec<String> = (0..2000)
        .filter(|i| i % 50 == 17)
        .map(|i| format!("f{i:04}.txt"))
        .collect();
    expect_entries.sort();
    let listed: Vec<String> = d
        .readdir("/d17", false)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed.len(), expect_entries.len());
    assert_eq!(d.metadata_feed().extension_counts(EXTENSION_NAME), (0, 0));

    let src: Arc<dyn FeedSource> = Arc::new(store.clone());
    let listener = Listener::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        src,
        ReplicateOptions::default(),
    )
    .await
    .unwrap();
    let args = vec![
        hex::encode(d.key()),
        listener.local_addr.port().to_string(),
        d.version().to_string(),
        "/d17".to_string(),
        "/d23/f1273.txt".to_string(),
    ];
    let node = tokio::task::spawn_blocking(move || {
        run_node_json(&js_script("drive-ext.js"), &args, DEFAULT_TIMEOUT)
    })
    .await
    .unwrap();
    let entries: Vec<String> = node["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(entries, expect_entries);
    assert_eq!(node["content"].as_str().unwrap(), "file number 1273\n");
    let (received, sent) = d.metadata_feed().extension_counts(EXTENSION_NAME);
    eprintln!("hypertrie extension: {received} requests received, {sent} cache replies sent; node: {node}");
    assert!(received > 0, "the reference sent no hypertrie requests");
    assert!(sent > 0, "no cache replies were sent");
    listener.close();
}
