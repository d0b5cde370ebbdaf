//! The swarm end to end on loopback, Rust only: a private DHT (a Rust bootstrap node on
//! 127.0.0.1), swarms that announce and look up topics, dial what they find, deduplicate
//! connections on their Noise keys and replicate feeds over them. Node interop is in the
//! workspace's `tests/swarm_drive.rs`.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use hyperdrive::core::{Feed, KeyPair};
use hyperdrive::protocol::driver::{FeedSet, ReplicateOptions};
use hyperdrive::protocol::replicate::SharedFeed;
use hyperdrive::swarm::bootstrap;
use hyperdrive::swarm::driver::Dht;
use hyperdrive::swarm::{
    DhtSettings, JoinOptions, Replicator, Swarm, SwarmConfig, SwarmError, TopicConfig, Transports,
};

const T: Duration = Duration::from_secs(20);

fn lo(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new([127, 0, 0, 1].into(), port)
}

async fn private_dht() -> Dht {
    bootstrap::spawn(lo(0).into(), Vec::new()).await.unwrap()
}

fn config(boot: &Dht) -> SwarmConfig {
    SwarmConfig {
        bind: Some(lo(0)),
        dht: Some(DhtSettings {
            bootstrap: vec![boot.local_addr()],
            ephemeral: Some(true),
        }),
        topics: TopicConfig {
            relookup_min: Duration::from_millis(200),
            relookup_max: Duration::from_secs(1),
            ..TopicConfig::default()
        },
        ..SwarmConfig::default()
    }
}

const ANNOUNCE: JoinOptions = JoinOptions {
    announce: true,
    lookup: false,
};
const LOOKUP: JoinOptions = JoinOptions {
    announce: false,
    lookup: true,
};
const BOTH: JoinOptions = JoinOptions {
    announce: true,
    lookup: true,
};

fn block(i: u64) -> Vec<u8> {
    (0..4096u64).map(|j| ((i * 131 + j) % 251) as u8).collect()
}

fn writer(n: u64) -> (KeyPair, Arc<SharedFeed>) {
    let kp = KeyPair::generate();
    let mut f = Feed::in_memory(kp.clone());
    let blocks: Vec<Vec<u8>> = (0..n).map(block).collect();
    f.append_batch(&blocks).unwrap();
    (kp, SharedFeed::new(f))
}

fn reader(kp: &KeyPair) -> Arc<SharedFeed> {
    SharedFeed::new(Feed::in_memory(
        KeyPair::from_public(&kp.public_bytes()).unwrap(),
    ))
}

/// A swarm replicating `feed`; returns the swarm and its replicator.
async fn peer(boot: &Dht, feed: Arc<SharedFeed>, cfg: Option<SwarmConfig>) -> (Swarm, Replicator) {
    let swarm = Swarm::bind(cfg.unwrap_or_else(|| config(boot)))
        .await
        .unwrap();
    let rep = Replicator::spawn(
        swarm.connections().unwrap(),
        FeedSet::new(vec![feed]),
        rand::random(),
        ReplicateOptions::default(),
    );
    (swarm, rep)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looking_up_swarm_finds_and_replicates_an_announced_feed() {
    let boot = private_dht().await;
    let (kp, w) = writer(50);
    let topic = w.discovery_key();
    let (seeder, seed_rep) = peer(&boot, w.clone(), None).await;
    let report = seeder.join(topic, ANNOUNCE).await.unwrap();
    assert_eq!(report.peers, 0, "nobody announced before: {report:?}");

    let r = reader(&kp);
    let (reading, read_rep) = peer(&boot, r.clone(), None).await;
    let report = reading.join(topic, LOOKUP).await.unwrap();
    assert_eq!(report.peers, 1, "the seeder's record: {report:?}");
    assert_eq!(r.get(42, T).await.unwrap(), block(42));
    assert_eq!(read_rep.peers(), 1);
    eventually("the seeder counts the reader", || seed_rep.peers() == 1).await;
    let st = reading.status().await;
    assert_eq!(st.connections, 1);
    assert_eq!(st.topics, 1);
    assert!(st.dht.unwrap().bootstrapped);

    // Leaving unannounces: a new lookup finds nobody.
    seeder.leave(&topic).await;
    let late = Swarm::bind(config(&boot)).await.unwrap();
    let rep = late.join(topic, LOOKUP).await.unwrap();
    assert_eq!(rep.peers, 0, "unannounced: {rep:?}");
    late.destroy().await;
    reading.destroy().await;
    seeder.destroy().await;
}

/// Two swarms that announce and look up the same topic dial each other at once; both
/// keep the same single connection and the feed still replicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_are_deduplicated() {
    let boot = private_dht().await;
    let (kp, w) = writer(20);
    let topic = w.discovery_key();
    let r = reader(&kp);
    let (a, rep_a) = peer(&boot, w.clone(), None).await;
    let (b, rep_b) = peer(&boot, r.clone(), None).await;
    // Both announce first, so that both lookups find the other.
    a.join(topic, ANNOUNCE).await.unwrap();
    b.join(topic, ANNOUNCE).await.unwrap();
    let (ra, rb) = tokio::join!(a.join(topic, BOTH), b.join(topic, BOTH));
    assert_eq!(ra.unwrap().peers, 1);
    assert_eq!(rb.unwrap().peers, 1);
    assert_eq!(r.get(19, T).await.unwrap(), block(19));
    // Duplicates close: one replicating connection on each side, nothing else left.
    eventually("one connection each", || {
        rep_a.peers() == 1 && rep_b.peers() == 1
    })
    .await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (sa, sb) = (a.status().await, b.status().await);
        if sa.connections == 1 && sb.connections == 1 {
            // Each side dialled the other and accepted the other's dial.
            assert_eq!((sa.connected_total, sb.connected_total), (2, 2));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "duplicates linger: {sa:?} {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.destroy().await;
    b.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_limit_bounds_connections() {
    let boot = private_dht().await;
    let (kp, w) = writer(5);
    let topic = w.discovery_key();
    let mut seeders = Vec::new();
    for _ in 0..4 {
        let s = peer(&boot, w.clone(), None).await;
        s.0.join(topic, ANNOUNCE).await.unwrap();
        seeders.push(s);
    }
    let mut cfg = config(&boot);
    cfg.max_peers = 2;
    let r = reader(&kp);
    let (reading, rep) = peer(&boot, r.clone(), Some(cfg)).await;
    let report = reading.join(topic, LOOKUP).await.unwrap();
    assert_eq!(report.peers, 4);
    assert_eq!(r.get(4, T).await.unwrap(), block(4));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = reading.status().await;
    assert!(st.connections <= 2, "{st:?}");
    assert!(rep.peers() <= 2);
    assert_eq!(st.known_peers, 4, "the others wait in the queue");
    reading.destroy().await;
    for (s, _) in seeders {
        s.destroy().await;
    }
}

/// A seeder that goes away is dropped; the reader goes on with the one that stays,
/// and a seeder that appears later is found by the quick re-lookup of a lonely reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_seeder_is_replaced() {
    let boot = private_dht().await;
    let (kp, w) = writer(400);
    let topic = w.discovery_key();
    let (s1, _r1) = peer(&boot, w.clone(), None).await;
    s1.join(topic, ANNOUNCE).await.unwrap();
    let r = reader(&kp);
    let (reading, rep) = peer(&boot, r.clone(), None).await;
    reading.join(topic, LOOKUP).await.unwrap();
    assert_eq!(r.get(0, T).await.unwrap(), block(0));
    // The first seeder disappears without unannouncing (its record stays in the DHT).
    drop(_r1);
    drop(s1);
    eventually("the dead seeder is dropped", || rep.peers() == 0).await;
    // A second seeder comes up later; the lonely reader finds it.
    let (s2, _r2) = peer(&boot, w.clone(), None).await;
    s2.join(topic, ANNOUNCE).await.unwrap();
    assert_eq!(r.get(399, T).await.unwrap(), block(399));
    assert_eq!(rep.peers(), 1);
    // The dead seeder's address is redialled (after the 1 s backoff) and fails.
    let deadline = tokio::time::Instant::now() + T;
    while reading.status().await.dial_failures == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no redial of the dead seeder"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reading.destroy().await;
    s2.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_peers_without_a_dht() {
    let (kp, w) = writer(10);
    let server = Swarm::bind(SwarmConfig {
        bind: Some(lo(0)),
        ..SwarmConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let _srep = Replicator::spawn(
        server.connections().unwrap(),
        FeedSet::new(vec![w.clone()]),
        rand::random(),
        ReplicateOptions::default(),
    );
    let r = reader(&kp);
    let client = Swarm::bind(SwarmConfig::default()).await.unwrap();
    assert!(client.local_addr().is_none(), "dial-only");
    assert!(matches!(
        client.join([0; 32], LOOKUP).await,
        Err(SwarmError::NoDht)
    ));
    let _crep = Replicator::spawn(
        client.connections().unwrap(),
        FeedSet::new(vec![r.clone()]),
        rand::random(),
        ReplicateOptions::default(),
    );
    client.add_peer(addr);
    assert_eq!(r.get(9, T).await.unwrap(), block(9));
    client.destroy().await;
    server.destroy().await;
}

/// A dead bootstrap: joining fails with the DHT's "No nodes responded" in bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_bootstrap_fails_clearly() {
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let swarm = Swarm::bind(SwarmConfig {
        bind: Some(lo(0)),
        dht: Some(DhtSettings {
            bootstrap: vec![lo(port)],
            ephemeral: Some(true),
        }),
        ..SwarmConfig::default()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), swarm.join([1; 32], LOOKUP))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.to_string().contains("No nodes responded"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(25));
    assert!(!swarm.holepunchable().await);
    swarm.destroy().await;
}

/// A seeder that takes no TCP (as one behind a NAT): the reader's TCP dial fails, and it
/// reaches the seeder over uTP after a holepunch through the bootstrap node that reported
/// it, on the port the DHT uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_after_a_holepunch_reaches_a_seeder_without_tcp() {
    let boot = private_dht().await;
    let (kp, w) = writer(300);
    let topic = w.discovery_key();
    let utp_only = SwarmConfig {
        transports: Transports {
            tcp: false,
            utp: true,
        },
        ..config(&boot)
    };
    let (seeder, seed_rep) = peer(&boot, w.clone(), Some(utp_only)).await;
    seeder.join(topic, ANNOUNCE).await.unwrap();
    let port = seeder.local_addr().unwrap().port();
    assert!(
        std::net::TcpStream::connect(lo(port)).is_err(),
        "no TCP listener"
    );

    let r = reader(&kp);
    let (reading, read_rep) = peer(&boot, r.clone(), None).await;
    reading.join(topic, LOOKUP).await.unwrap();
    for i in [0, 150, 299] {
        assert_eq!(r.get(i, T).await.unwrap(), block(i));
    }
    // The whole feed (1.2 MB) over uTP.
    for i in 0..300 {
        assert_eq!(r.get(i, T).await.unwrap(), block(i));
    }
    assert_eq!(read_rep.peers(), 1);
    let st = reading.status().await;
    assert_eq!((st.connections, st.utp_connections), (1, 1), "{st:?}");
    eventually("the seeder counts the reader", || seed_rep.peers() == 1).await;
    assert_eq!(seeder.status().await.utp_connections, 1);
    reading.destroy().await;
    seeder.destroy().await;
}
