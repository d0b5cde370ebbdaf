//! Replication between two feeds over an in-memory duplex pipe, through the real
//! driver and protocol: sparse reads, full download, live appends, wrong keys and
//! peers that go away.

use std::sync::Arc;
use std::time::Duration;

use hyperdrive::core::{Feed, KeyPair};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSet, ReplicateOptions,
};
use hyperdrive::protocol::replicate::{FetchError, SharedFeed};

fn block(i: u64) -> Vec<u8> {
    (0..1024u64)
        .map(|j| ((i * 31 + j * 7) % 256) as u8)
        .collect()
}

fn writer(n: u64) -> (KeyPair, Arc<SharedFeed>) {
    let kp = KeyPair::generate();
    let mut f = Feed::in_memory(kp.clone());
    let blocks: Vec<Vec<u8>> = (0..n).map(block).collect();
    for chunk in blocks.chunks(10) {
        f.append_batch(chunk).unwrap();
    }
    (kp, SharedFeed::new(f))
}

fn reader(kp: &KeyPair) -> Arc<SharedFeed> {
    let ro = KeyPair::from_public(&kp.public_bytes()).unwrap();
    SharedFeed::new(Feed::in_memory(ro))
}

struct Link {
    stats: [Arc<ConnectionStats>; 2],
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), hyperdrive::protocol::driver::DriverError>>>,
}

fn connect(a: Vec<Arc<SharedFeed>>, b: Vec<Arc<SharedFeed>>, opts: ReplicateOptions) -> Link {
    let (x, y) = tokio::io::duplex(1 << 20);
    let (shutdown, stop) = shutdown_channel();
    let stats = [
        Arc::new(ConnectionStats::default()),
        Arc::new(ConnectionStats::default()),
    ];
    let t1 = tokio::spawn(replicate(
        x,
        true,
        FeedSet::new(a),
        opts.clone(),
        stats[0].clone(),
        stop.clone(),
    ));
    let t2 = tokio::spawn(replicate(
        y,
        false,
        FeedSet::new(b),
        opts,
        stats[1].clone(),
        stop,
    ));
    Link {
        stats,
        shutdown,
        tasks: vec![t1, t2],
    }
}

fn held(f: &SharedFeed) -> u64 {
    let st = f.lock();
    st.feed.bitfield().count_data(0, st.feed.len().max(1))
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn sparse_read_moves_only_what_is_asked() {
    let (kp, w) = writer(1000);
    let r = reader(&kp);
    let link = connect(
        vec![w.clone()],
        vec![r.clone()],
        ReplicateOptions::default(),
    );
    assert_eq!(r.get(500, T).await.unwrap(), block(500));
    assert_eq!(r.len(), 1000, "the proof carried the signed length");
    assert_eq!(r.get(3, T).await.unwrap(), block(3));
    assert_eq!(r.get(999, T).await.unwrap(), block(999));
    assert_eq!(held(&r), 3, "only the three blocks read were fetched");
    let blocks_out = link.stats[0]
        .blocks_out
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(blocks_out, 3);
    let _ = link.shutdown.send(true);
}

#[tokio::test]
async fn full_download_then_live_appends() {
    let (kp, w) = writer(1000);
    let r = reader(&kp);
    let _link = connect(
        vec![w.clone()],
        vec![r.clone()],
        ReplicateOptions::default(),
    );
    let id = r.download(0, None);
    let _ = id;
    assert_eq!(r.wait_for_length(1000, T).await, 1000);
    let done = r.download(0, Some(1000));
    assert!(r.downloaded(done, T).await, "every block arrives");
    {
        let mut st = r.lock();
        for i in 0..1000 {
            assert_eq!(st.feed.get(i).unwrap(), block(i));
        }
    }
    // Live: a new append reaches the reader within a second.
    w.append(b"hello live").unwrap();
    assert_eq!(r.wait_for_length(1001, Duration::from_secs(1)).await, 1001);
    assert_eq!(
        r.get(1000, Duration::from_secs(1)).await.unwrap(),
        b"hello live"
    );
}

#[tokio::test]
async fn sparse_reader_tracks_new_lengths() {
    let (kp, w) = writer(10);
    let r = reader(&kp);
    r.set_track_length(true);
    let _link = connect(
        vec![w.clone()],
        vec![r.clone()],
        ReplicateOptions::default(),
    );
    assert_eq!(r.wait_for_length(10, T).await, 10);
    w.append_batch(&[b"a".to_vec(), b"b".to_vec()]).unwrap();
    assert_eq!(r.wait_for_length(12, Duration::from_secs(1)).await, 12);
    assert!(held(&r) <= 2, "only the newest blocks were fetched");
}

#[tokio::test]
async fn reader_with_the_wrong_key_learns_nothing() {
    let (_kp, w) = writer(10);
    let other = KeyPair::generate();
    let r = reader(&other);
    let _link = connect(
        vec![w.clone()],
        vec![r.clone()],
        ReplicateOptions::default(),
    );
    let err = r.get(0, Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert_eq!(r.len(), 0);
}

#[tokio::test]
async fn several_feeds_on_one_connection() {
    let (ka, wa) = writer(50);
    let (kb, wb) = writer(70);
    let ra = reader(&ka);
    let rb = reader(&kb);
    let _link = connect(
        vec![wa, wb],
        vec![ra.clone(), rb.clone()],
        ReplicateOptions::default(),
    );
    assert_eq!(ra.get(49, T).await.unwrap(), block(49));
    assert_eq!(rb.get(69, T).await.unwrap(), block(69));
}

#[tokio::test]
async fn a_feed_opened_later_joins_the_live_connection() {
    let (ka, wa) = writer(5);
    let (kb, wb) = writer(6);
    let ra = reader(&ka);
    let rb = reader(&kb);
    let set_w = FeedSet::new(vec![wa]);
    let set_r = FeedSet::new(vec![ra.clone()]);
    let (x, y) = tokio::io::duplex(1 << 20);
    let (_sd, stop) = shutdown_channel();
    let o = ReplicateOptions::default();
    tokio::spawn(replicate(
        x,
        true,
        set_w.clone(),
        o.clone(),
        Default::default(),
        stop.clone(),
    ));
    tokio::spawn(replicate(
        y,
        false,
        set_r.clone(),
        o,
        Default::default(),
        stop.clone(),
    ));
    assert_eq!(ra.get(4, T).await.unwrap(), block(4));
    set_w.add(wb);
    set_r.add(rb.clone());
    assert_eq!(rb.get(5, T).await.unwrap(), block(5));
}

#[tokio::test]
async fn a_peer_that_leaves_does_not_hang_the_reader() {
    let (kp, w) = writer(100);
    let r = reader(&kp);
    let link = connect(vec![w], vec![r.clone()], ReplicateOptions::default());
    assert_eq!(r.get(1, T).await.unwrap(), block(1));
    let _ = link.shutdown.send(true);
    for t in link.tasks {
        let _ = tokio::time::timeout(T, t)
            .await
            .expect("connection tasks end");
    }
    let err = r.get(50, Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }));
}

#[tokio::test]
async fn a_second_peer_serves_after_the_first_leaves() {
    let (kp, w) = writer(200);
    // A full mirror to act as the second seeder.
    let mirror = reader(&kp);
    let l1 = connect(
        vec![w.clone()],
        vec![mirror.clone()],
        ReplicateOptions::default(),
    );
    let id = mirror.download(0, Some(200));
    assert!(mirror.downloaded(id, T).await);
    let _ = l1.shutdown.send(true);

    let r = reader(&kp);
    let first = connect(
        vec![w.clone()],
        vec![r.clone()],
        ReplicateOptions::default(),
    );
    assert_eq!(r.get(0, T).await.unwrap(), block(0));
    let _ = first.shutdown.send(true);
    let _second = connect(vec![mirror], vec![r.clone()], ReplicateOptions::default());
    assert_eq!(r.get(150, T).await.unwrap(), block(150));
}

/// A peer that announces every block but never answers a request.
async fn silent_seeder(io: tokio::io::DuplexStream, key: [u8; 32], length: u64) {
    use hyperdrive::protocol::handshake::StaticKeypair;
    use hyperdrive::protocol::messages::{Have, Message};
    use hyperdrive::protocol::stream::{Event, Protocol, ProtocolOptions};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut rd, mut wr) = tokio::io::split(io);
    let mut p = Protocol::new(
        false,
        &StaticKeypair::generate(),
        ProtocolOptions::default(),
        Instant::now(),
    )
    .unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let out = p.take_outgoing();
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return;
        }
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if p.receive(&mut buf[..n], Instant::now()).is_err() {
            return;
        }
        while let Some(ev) = p.poll_event() {
            match ev {
                Event::DiscoveryKey { .. } => {
                    p.open(key, Instant::now());
                }
                Event::Opened { channel, .. } => p.send(
                    channel,
                    Message::Have(Have {
                        start: 0,
                        length: Some(length),
                        bitfield: None,
                        ack: None,
                    }),
                    Instant::now(),
                ),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn a_stalled_peer_is_dropped_and_another_serves() {
    let (kp, w) = writer(20);
    let r = reader(&kp);
    let opts = ReplicateOptions {
        request_timeout: Duration::from_millis(400),
        ..ReplicateOptions::default()
    };
    // The silent peer is connected first, so it gets the request.
    let (x, y) = tokio::io::duplex(1 << 20);
    tokio::spawn(silent_seeder(y, kp.public_bytes(), 20));
    let (_stop_tx, stop) = shutdown_channel();
    let silent = tokio::spawn(replicate(
        x,
        true,
        FeedSet::new(vec![r.clone()]),
        opts.clone(),
        Default::default(),
        stop,
    ));
    let reading = {
        let r = r.clone();
        tokio::spawn(async move { r.get(7, T).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!r.has(7));
    let _good = connect(vec![w], vec![r.clone()], opts);
    let started = std::time::Instant::now();
    assert_eq!(reading.await.unwrap().unwrap(), block(7));
    assert!(started.elapsed() < Duration::from_secs(3));
    let ended = tokio::time::timeout(T, silent)
        .await
        .expect("the stalled connection ends");
    let err = ended.unwrap().unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}

/// The handshake gate sees both static keys, and nothing is opened before it answers.
#[tokio::test]
async fn the_handshake_gate_decides_before_any_feed_opens() {
    use hyperdrive::protocol::driver::{DriverError, HandshakeGate, HandshakeVerdict};
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<([u8; 32], [u8; 32])>>>;
    let gate = |verdict: HandshakeVerdict, seen: Seen| {
        HandshakeGate(Arc::new(move |local: &[u8; 32], remote: &[u8; 32]| {
            seen.lock().unwrap().push((*local, *remote));
            verdict
        }))
    };
    for verdict in [
        HandshakeVerdict::Replicate,
        HandshakeVerdict::Idle,
        HandshakeVerdict::Close,
    ] {
        let (kp, w) = writer(20);
        let r = reader(&kp);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (x, y) = tokio::io::duplex(1 << 20);
        let (shutdown, stop) = shutdown_channel();
        let seed_a = [1u8; 32];
        let seed_b = [2u8; 32];
        let a = tokio::spawn(replicate(
            x,
            true,
            FeedSet::new(vec![w.clone()]),
            ReplicateOptions {
                keypair: Some(seed_a),
                ..ReplicateOptions::default()
            },
            Arc::new(ConnectionStats::default()),
            stop.clone(),
        ));
        let b = tokio::spawn(replicate(
            y,
            false,
            FeedSet::new(vec![r.clone()]),
            ReplicateOptions {
                keypair: Some(seed_b),
                gate: Some(gate(verdict, seen.clone())),
                ..ReplicateOptions::default()
            },
            Arc::new(ConnectionStats::default()),
            stop,
        ));
        match verdict {
            HandshakeVerdict::Replicate => {
                assert_eq!(r.get(7, T).await.unwrap(), block(7));
            }
            HandshakeVerdict::Idle => {
                // The gated side opens nothing and refuses the writer's channel.
                assert!(r.get(7, Duration::from_millis(500)).await.is_err());
                assert!(!b.is_finished(), "an idle duplicate stays open");
            }
            HandshakeVerdict::Close => {
                let res = tokio::time::timeout(T, b).await.unwrap().unwrap();
                assert!(matches!(res, Err(DriverError::Deduplicated)), "{res:?}");
                // The other side sees the connection end.
                let _ = tokio::time::timeout(T, a).await.expect("remote ends too");
                assert_eq!(held(&r), 0, "nothing replicated on a closed duplicate");
                let seen = seen.lock().unwrap();
                assert_eq!(seen.len(), 1);
                use hyperdrive::protocol::handshake::StaticKeypair;
                assert_eq!(seen[0].0, StaticKeypair::from_seed(&seed_b).public);
                assert_eq!(seen[0].1, StaticKeypair::from_seed(&seed_a).public);
                continue;
            }
        }
        let _ = shutdown.send(true);
        let _ = a.await;
        let _ = b.await;
        assert_eq!(seen.lock().unwrap().len(), 1, "asked once per connection");
    }
}
