//! Replication interop with the Node reference (hypercore 9.12 / hypercore-protocol 8)
//! over loopback TCP, in both directions: sparse and full downloads, live appends,
//! several feeds on one connection, wrong keys and peers that vanish.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hyperdrive::core::{Feed, KeyPair};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSet, ReplicateOptions,
};
use hyperdrive::protocol::net::{connect_with_retry, Listener};
use hyperdrive::protocol::replicate::{FetchError, SharedFeed};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn key_of(v: &Value) -> [u8; 32] {
    hex::decode(json_str(v, "key")).unwrap().try_into().unwrap()
}

fn port_of(v: &Value) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], json_u64(v, "port") as u16))
}

/// A read-only feed for `key`, stored on disk under `dir`.
fn reader_at(dir: &Path, key: &[u8; 32]) -> Arc<SharedFeed> {
    let kp = KeyPair::from_public(key).unwrap();
    SharedFeed::new(Feed::open_with_keypair(dir, kp).unwrap())
}

/// Dial a Node peer and replicate `feeds` with it in the background.
async fn dial(
    addr: SocketAddr,
    feeds: Vec<Arc<SharedFeed>>,
) -> (Arc<ConnectionStats>, tokio::sync::watch::Sender<bool>) {
    let socket = connect_with_retry(addr, T)
        .await
        .expect("node peer listens");
    let stats = Arc::new(ConnectionStats::default());
    let (stop_tx, stop) = shutdown_channel();
    let s = stats.clone();
    tokio::spawn(async move {
        let _ = replicate(
            socket,
            true,
            FeedSet::new(feeds),
            ReplicateOptions::default(),
            s,
            stop,
        )
        .await;
    });
    (stats, stop_tx)
}

fn held(f: &SharedFeed) -> u64 {
    let st = f.lock();
    st.feed.bitfield().count_data(0, st.feed.len())
}

async fn node_json(script: &'static str, args: Vec<String>, timeout: Duration) -> Value {
    tokio::task::spawn_blocking(move || run_node_json(&js_script(script), &args, timeout))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_writer_rust_reader_sparse_then_full() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let mut seed = spawn_node(
        &js_script("core-peer.js"),
        &[
            "serve",
            "--dir",
            node_dir.to_str().unwrap(),
            "--create",
            "10000",
            "--batch",
            "64",
            "--size",
            "1024",
            "--listen",
            "0",
        ],
    );
    let info = seed.next_json(Duration::from_secs(120));
    let key = key_of(&info);
    assert_eq!(json_u64(&info, "length"), 10000);

    let r = reader_at(&tmp.path().join("rust"), &key);
    let (stats, _stop) = dial(port_of(&info), vec![r.clone()]).await;
    for i in [5u64, 4999, 9999] {
        assert_eq!(
            r.get(i, T).await.unwrap(),
            block_content(i, Some(1024), &[]),
            "block {i}"
        );
    }
    assert_eq!(r.len(), 10000);
    assert_eq!(held(&r), 3, "a sparse read moves only the blocks asked for");
    assert_eq!(stats.blocks_in.load(Ordering::Relaxed), 3);
    let bytes_in = stats.bytes_in.load(Ordering::Relaxed);
    assert!(
        bytes_in < 16 * 1024,
        "only blocks, proofs and control traffic moved: {bytes_in} B"
    );

    let id = r.download(0, Some(10000));
    assert!(r.downloaded(id, T).await, "full download completes");
    {
        let mut st = r.lock();
        for i in 0..10000 {
            assert_eq!(
                st.feed.get(i).unwrap(),
                block_content(i, Some(1024), &[]),
                "block {i}"
            );
        }
        st.feed.sync().unwrap();
    }
    drop(r);
    seed.terminate(Duration::from_secs(5));
    // Node opens the directory Rust replicated into and verifies it.
    let read = node_json(
        "core-read.js",
        vec![tmp.path().join("rust").to_str().unwrap().into()],
        T,
    )
    .await;
    assert_eq!(json_u64(&read, "length"), 10000);
    let expected: Vec<Vec<u8>> = (0..10000)
        .map(|i| block_content(i, Some(1024), &[]))
        .collect();
    assert_eq!(
        json_str(&read, "digest"),
        blocks_digest(expected.iter().map(|b| b.as_slice()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_writer_node_reader_full() {
    let tmp = tempfile::tempdir().unwrap();
    let mut feed = Feed::create(tmp.path().join("rust")).unwrap();
    let blocks: Vec<Vec<u8>> = (0..2000).map(|i| block_content(i, None, &[])).collect();
    for chunk in blocks.chunks(7) {
        feed.append_batch(chunk).unwrap();
    }
    feed.append(b"single").unwrap();
    let key = hex::encode(feed.key());
    let w = SharedFeed::new(feed);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        FeedSet::new(vec![w.clone()]),
        ReplicateOptions::default(),
    )
    .await
    .unwrap();
    let out = node_json(
        "core-peer.js",
        vec![
            "clone".into(),
            "--key".into(),
            key,
            "--connect".into(),
            listener.local_addr.to_string(),
            "--all".into(),
            "--timeout".into(),
            "60".into(),
        ],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(json_u64(&out, "length"), 2001);
    let got = out["blocks"].as_array().unwrap();
    assert_eq!(got.len(), 2001);
    for (i, b) in got.iter().enumerate() {
        let want = if i == 2000 {
            b"single".to_vec()
        } else {
            blocks[i].clone()
        };
        assert_eq!(json_str(b, "sha256"), sha256_hex(&want), "block {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_node_appends_reach_rust_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seed = spawn_node(
        &js_script("core-peer.js"),
        &[
            "serve",
            "--dir",
            tmp.path().join("node").to_str().unwrap(),
            "--create",
            "5",
            "--size",
            "100",
            "--listen",
            "0",
            "--append-every",
            "700",
            "--append-count",
            "3",
        ],
    );
    let info = seed.next_json(T);
    let r = reader_at(&tmp.path().join("rust"), &key_of(&info));
    r.set_track_length(true);
    let _conn = dial(port_of(&info), vec![r.clone()]).await;
    assert_eq!(r.wait_for_length(5, T).await, 5);
    for _ in 0..3 {
        let line = tokio::task::block_in_place(|| seed.next_json(T));
        let n = json_u64(&line, "appended");
        let t = Instant::now();
        assert_eq!(r.wait_for_length(n, Duration::from_secs(1)).await, n);
        let i = n - 1;
        assert_eq!(
            r.get(i, Duration::from_secs(1)).await.unwrap(),
            block_content(i, Some(100), &[])
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_rust_appends_reach_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mut feed = Feed::create(tmp.path().join("rust")).unwrap();
    feed.append_batch(&[b"one".to_vec(), b"two".to_vec()])
        .unwrap();
    let key = hex::encode(feed.key());
    let w = SharedFeed::new(feed);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        FeedSet::new(vec![w.clone()]),
        ReplicateOptions::default(),
    )
    .await
    .unwrap();
    let args = vec![
        "clone".to_string(),
        "--key".into(),
        key,
        "--connect".into(),
        listener.local_addr.to_string(),
        "--wait-length".into(),
        "4".into(),
        "--blocks".into(),
        "-1,-2".into(),
        "--timeout".into(),
        "20".into(),
    ];
    let node = tokio::spawn(node_json("core-peer.js", args, T));
    // Wait until Node is connected and caught up, then append live.
    let deadline = Instant::now() + T;
    while listener.stats.blocks_out.load(Ordering::Relaxed) == 0
        && listener.stats.bytes_in.load(Ordering::Relaxed) < 200
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    w.append(b"three").unwrap();
    w.append(b"four").unwrap();
    let out = node.await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "live append seen in {:?}",
        t.elapsed()
    );
    assert_eq!(json_u64(&out, "length"), 4);
    let got = out["blocks"].as_array().unwrap();
    assert_eq!(json_str(&got[0], "sha256"), sha256_hex(b"four"));
    assert_eq!(json_str(&got[1], "sha256"), sha256_hex(b"three"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_feeds_on_one_connection_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    // Rust -> Node: Node's corestore asks for both feeds on one stream.
    let mut a = Feed::create(tmp.path().join("a")).unwrap();
    let mut b = Feed::create(tmp.path().join("b")).unwrap();
    a.append_batch(&[b"meta-0".to_vec(), b"meta-1".to_vec()])
        .unwrap();
    b.append_batch(&[
        b"content-0".to_vec(),
        b"content-1".to_vec(),
        b"content-2".to_vec(),
    ])
    .unwrap();
    let keys = format!("{},{}", hex::encode(a.key()), hex::encode(b.key()));
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        FeedSet::new(vec![SharedFeed::new(a), SharedFeed::new(b)]),
        ReplicateOptions::default(),
    )
    .await
    .unwrap();
    let out = node_json(
        "core-peer.js",
        vec![
            "clone".into(),
            "--key".into(),
            keys,
            "--connect".into(),
            listener.local_addr.to_string(),
            "--all".into(),
            "--timeout".into(),
            "20".into(),
        ],
        T,
    )
    .await;
    let feeds = out["feeds"].as_array().unwrap();
    assert_eq!(json_u64(&feeds[0], "length"), 2);
    assert_eq!(json_u64(&feeds[1], "length"), 3);
    assert_eq!(
        json_str(&feeds[1]["blocks"][2], "sha256"),
        sha256_hex(b"content-2")
    );

    // Node -> Rust: a Node hyperdrive seed (metadata + content feeds, one stream).
    let fixtures = tmp.path().join("fixtures");
    std::fs::create_dir_all(fixtures.join("sub")).unwrap();
    std::fs::write(fixtures.join("hello.txt"), b"hello from node\n").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(fixtures.join("sub/big.bin"), &big).unwrap();
    let mut seed = spawn_node(
        &swarm_peer(),
        &[
            "seed",
            "--no-dht",
            "--listen",
            "0",
            "--storage",
            tmp.path().join("node-store").to_str().unwrap(),
            "--import",
            fixtures.to_str().unwrap(),
            "--quiet",
        ],
    );
    let info = seed.next_json(T);
    let meta_key = key_of(&info);
    let content_key: [u8; 32] = hex::decode(json_str(&info, "contentKey"))
        .unwrap()
        .try_into()
        .unwrap();
    let meta = reader_at(&tmp.path().join("m"), &meta_key);
    let content = reader_at(&tmp.path().join("c"), &content_key);
    meta.set_track_length(true);
    content.set_track_length(true);
    let _conn = dial(port_of(&info), vec![meta.clone(), content.clone()]).await;
    let version = json_u64(&info, "version");
    assert_eq!(meta.wait_for_length(version, T).await, version);
    let deadline = Instant::now() + T;
    while content.byte_len() < json_u64(&info, "bytes") && Instant::now() < deadline {
        content
            .wait_for_length(content.len() + 1, Duration::from_millis(200))
            .await;
    }
    let len = content.len();
    let id = content.download(0, Some(len));
    assert!(content.downloaded(id, T).await);
    let mut all = Vec::new();
    {
        let mut st = content.lock();
        for i in 0..len {
            all.extend(st.feed.get(i).unwrap());
        }
    }
    assert_eq!(all.len() as u64, json_u64(&info, "bytes"));
    let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"hello from node\n"));
    assert!(has(&big), "the big file's bytes are in the content feed");
    let id = meta.download(0, Some(version));
    assert!(meta.downloaded(id, T).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_learn_nothing_either_way() {
    let tmp = tempfile::tempdir().unwrap();
    // Rust reader with a key Node does not have.
    let mut seed = spawn_node(
        &js_script("core-peer.js"),
        &[
            "serve",
            "--dir",
            tmp.path().join("node").to_str().unwrap(),
            "--create",
            "3",
            "--listen",
            "0",
        ],
    );
    let info = seed.next_json(T);
    // A valid key of some other feed (flipping a bit may not give a curve point).
    let wrong = KeyPair::generate().public_bytes();
    assert_ne!(wrong, key_of(&info));
    let r = reader_at(&tmp.path().join("rust"), &wrong);
    let (stats, _stop) = dial(port_of(&info), vec![r.clone()]).await;
    let err = r.get(0, Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }));
    assert_eq!(r.len(), 0);
    assert_eq!(stats.blocks_in.load(Ordering::Relaxed), 0);

    // Node reader with a key Rust does not have: it times out with nothing.
    let mut feed = Feed::create(tmp.path().join("w")).unwrap();
    feed.append(b"secret").unwrap();
    let key = hex::encode(feed.key());
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        FeedSet::new(vec![SharedFeed::new(feed)]),
        ReplicateOptions::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_node(
            &js_script("core-peer.js"),
            &[
                "clone",
                "--key",
                &key,
                "--wrong-key",
                "--connect",
                &addr,
                "--blocks",
                "0",
                "--timeout",
                "3",
            ],
            T,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "Node times out: {}", out.stderr);
    assert_eq!(listener.stats.blocks_out.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_peer_that_dies_mid_transfer_does_not_hang_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seed = spawn_node(
        &js_script("core-peer.js"),
        &[
            "serve",
            "--dir",
            tmp.path().join("node").to_str().unwrap(),
            "--create",
            "4000",
            "--batch",
            "16",
            "--size",
            "65536",
            "--listen",
            "0",
        ],
    );
    let info = seed.next_json(Duration::from_secs(120));
    let r = reader_at(&tmp.path().join("rust"), &key_of(&info));
    let mut opts = ReplicateOptions::default();
    opts.protocol.timeout = Duration::from_secs(3);
    let socket = connect_with_retry(port_of(&info), T).await.unwrap();
    let (_stop_tx, stop) = shutdown_channel();
    let conn = tokio::spawn(replicate(
        socket,
        true,
        FeedSet::new(vec![r.clone()]),
        opts,
        Default::default(),
        stop,
    ));
    let id = r.download(0, Some(4000));
    // Kill the seeder once some data has arrived.
    let deadline = Instant::now() + T;
    while held(&r) < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seed.terminate(Duration::from_secs(1));
    let t = Instant::now();
    assert!(!r.downloaded(id, Duration::from_secs(2)).await);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the connection task ends after the peer dies");
    assert!(t.elapsed() < Duration::from_secs(10));
    let missing = (0..4000).find(|&i| !r.has(i)).unwrap();
    let err = r
        .get(missing, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }));
    // What did arrive is intact.
    let mut st = r.lock();
    let held_now: Vec<u64> = (0..4000).filter(|&i| st.feed.has(i)).collect();
    for i in held_now {
        assert_eq!(st.feed.get(i).unwrap(), block_content(i, Some(65536), &[]));
    }
}
