//! Rust-only DHT tests on loopback: a 20-node network, a dead bootstrap, and the sans-IO
//! node's retry timing and input hardening (bad tokens, oversized packets, floods).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use hyperdrive::swarm::driver::{Dht, DriverError};
use hyperdrive::swarm::node::{DhtError, DhtNode, Event, NodeConfig};
use hyperdrive::swarm::wire::{encode_peer, Holepunch, Message, MessageType, PeersInput};

fn lo(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new([127, 0, 0, 1].into(), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_find_an_announcement_within_3s() {
    let boot = hyperdrive::swarm::bootstrap::spawn(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        Vec::new(),
    )
    .await
    .unwrap();
    let mut nodes = Vec::new();
    for i in 0..20u8 {
        // Prefer distinct 127.0.0.x addresses; fall back to 127.0.0.1 if they do not bind.
        let addr: SocketAddr = format!("127.0.0.{}:0", i + 2).parse().unwrap();
        let config = NodeConfig {
            bootstrap: vec![boot.local_addr()],
            ..NodeConfig::default()
        };
        let dht = match Dht::bind(addr, config.clone()).await {
            Ok(d) => d,
            Err(_) => Dht::bind("127.0.0.1:0".parse().unwrap(), config)
                .await
                .unwrap(),
        };
        nodes.push(dht);
    }
    for n in &nodes {
        tokio::time::timeout(Duration::from_secs(10), n.ready())
            .await
            .unwrap()
            .unwrap();
    }
    // The network knows itself: the bootstrap's table holds all 20.
    assert_eq!(boot.info().await.unwrap().routing_table_len, 20);

    let topic = [0x5a; 32];
    let started = Instant::now();
    nodes[3].announce(topic, 7777, None).await.unwrap();
    let found = nodes[17].lookup(topic, None).await.unwrap();
    let elapsed = started.elapsed();
    let want = SocketAddrV4::new(*nodes[3].local_addr().ip(), 7777);
    assert!(found.iter().any(|f| f.peers.contains(&want)), "{found:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The records went to several of the closest nodes, not only the bootstrap.
    let mut holders = 0;
    for n in nodes.iter().chain(std::iter::once(&boot)) {
        holders += n.info().await.unwrap().records;
    }
    assert!(holders >= 2, "stored on {holders} nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_bootstrap_is_a_clear_error() {
    // A port that nobody listens on.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(dead_addr) = dead.local_addr().unwrap() else {
        unreachable!()
    };
    drop(dead);
    let config = NodeConfig {
        bootstrap: vec![dead_addr],
        ephemeral: true,
        ..NodeConfig::default()
    };
    let dht = Dht::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(15), dht.lookup([1; 32], None))
        .await
        .expect("lookup hung");
    match res {
        Err(DriverError::Dht(DhtError::NoNodesResponded)) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let ping = tokio::time::timeout(Duration::from_secs(15), dht.ping(dead_addr))
        .await
        .expect("ping hung");
    assert!(
        matches!(ping, Err(DriverError::Dht(DhtError::Timeout(a))) if a == dead_addr),
        "{ping:?}"
    );
    // The node is still ready (the bootstrap walk ended), just alone.
    dht.ready().await.unwrap();
}

fn drain(node: &mut DhtNode) -> Vec<(SocketAddrV4, Vec<u8>)> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

#[test]
fn requests_retry_twice_then_time_out() {
    let t0 = Instant::now();
    let mut node = DhtNode::new(NodeConfig::default(), t0);
    let ping = node.ping(lo(9));
    let first = drain(&mut node);
    assert_eq!(first.len(), 1);
    let mut sends = vec![Duration::ZERO];
    let mut done = None;
    for step in 1..=12u32 {
        let now = t0 + Duration::from_millis(750) * step;
        node.handle_timeout(now);
        for (to, bytes) in drain(&mut node) {
            assert_eq!(to, lo(9));
            assert_eq!(
                bytes, first[0].1,
                "a retry resends the same bytes (same rid)"
            );
            sends.push(now - t0);
        }
        while let Some(ev) = node.poll_event() {
            if let Event::Pong { ping: p, result } = ev {
                assert_eq!(p, ping);
                assert_eq!(result, Err(DhtError::Timeout(lo(9))));
                done.get_or_insert(now - t0);
            }
        }
    }
    assert_eq!(
        sends,
        vec![
            Duration::ZERO,
            Duration::from_millis(2250),
            Duration::from_millis(4500)
        ]
    );
    assert_eq!(done, Some(Duration::from_millis(7500)));
}

fn request(
    kind: MessageType,
    rid: u64,
    command: &str,
    target: Option<[u8; 32]>,
    value: Option<Vec<u8>>,
) -> Message {
    let mut m = Message::new(kind, rid);
    m.command = Some(command.into());
    m.target = target.map(|t| t.to_vec());
    m.value = value;
    m
}

#[test]
fn update_needs_a_valid_token_and_garbage_is_dropped() {
    let t0 = Instant::now();
    let mut server = DhtNode::new(NodeConfig::default(), t0);
    let client = lo(4000);
    let topic = [3u8; 32];
    let ann = PeersInput {
        port: Some(0),
        ..Default::default()
    }
    .encode();

    // QUERY gets a token.
    server.handle_datagram(
        client,
        &request(
            MessageType::Query,
            1,
            "peers",
            Some(topic),
            Some(ann.clone()),
        )
        .encode(),
        t0,
    );
    let out = drain(&mut server);
    assert_eq!(out.len(), 1);
    let resp = Message::decode(&out[0].1).unwrap();
    assert_eq!(resp.kind, MessageType::Response);
    assert_eq!(resp.rid, 1);
    assert_eq!(resp.to.as_deref(), Some(&encode_peer(client)[..]));
    assert_eq!(
        resp.value.as_deref(),
        Some(&[][..]),
        "nothing stored yet: zero-length value"
    );
    let tok = resp.roundtrip_token.unwrap();

    // UPDATE with a wrong token: silently dropped.
    let mut bad = request(
        MessageType::Update,
        2,
        "peers",
        Some(topic),
        Some(ann.clone()),
    );
    bad.roundtrip_token = Some(vec![0; 32]);
    server.handle_datagram(client, &bad.encode(), t0);
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.record_count(), 0);

    // The same token from another IP is wrong too (tokens cover the IP).
    let mut other = request(
        MessageType::Update,
        3,
        "peers",
        Some(topic),
        Some(ann.clone()),
    );
    other.roundtrip_token = Some(tok.clone());
    server.handle_datagram(
        SocketAddrV4::new([127, 0, 0, 2].into(), 4000),
        &other.encode(),
        t0,
    );
    assert!(drain(&mut server).is_empty());

    // The right token (from any port of the same IP) stores the record.
    let mut good = request(MessageType::Update, 4, "peers", Some(topic), Some(ann));
    good.roundtrip_token = Some(tok);
    server.handle_datagram(lo(4001), &good.encode(), t0);
    assert_eq!(drain(&mut server).len(), 1);
    assert_eq!(server.record_count(), 1);

    // Oversized, truncated, zero-port and bad-id packets get no reply.
    let mut big = request(MessageType::Query, 5, "_ping", None, Some(vec![0; 5000])).encode();
    server.handle_datagram(client, &big, t0);
    big.truncate(20);
    server.handle_datagram(client, &big, t0);
    server.handle_datagram(
        lo(0),
        &request(MessageType::Query, 6, "_ping", None, None).encode(),
        t0,
    );
    let mut bad_id = request(MessageType::Query, 7, "_ping", None, None);
    bad_id.id = Some(vec![1; 31]);
    server.handle_datagram(client, &bad_id.encode(), t0);
    // Unknown command: an error reply without a token. Missing target: no reply.
    server.handle_datagram(
        client,
        &request(MessageType::Query, 8, "nope", None, None).encode(),
        t0,
    );
    server.handle_datagram(
        client,
        &request(MessageType::Query, 9, "nope", Some(topic), None).encode(),
        t0,
    );
    let out = drain(&mut server);
    assert_eq!(out.len(), 1);
    let err = Message::decode(&out[0].1).unwrap();
    assert_eq!(
        (err.rid, err.error.as_deref(), err.roundtrip_token),
        (9, Some("Unsupported command"), None)
    );
    // A `_ping` naming another id: no reply (Q8).
    server.handle_datagram(
        client,
        &request(MessageType::Query, 10, "_ping", None, Some(vec![9; 32])).encode(),
        t0,
    );
    assert!(drain(&mut server).is_empty());
}

#[test]
fn a_flood_of_announcers_stays_bounded() {
    let t0 = Instant::now();
    let config = NodeConfig {
        max_records: 100,
        ..NodeConfig::default()
    };
    let mut server = DhtNode::new(config, t0);
    let ann = PeersInput {
        port: Some(0),
        ..Default::default()
    }
    .encode();
    for i in 0..2000u16 {
        let from = SocketAddrV4::new([127, 0, (i >> 8) as u8, i as u8].into(), 1000 + i);
        let mut id = [0u8; 32];
        id[..2].copy_from_slice(&i.to_be_bytes());
        id[2] = 0xee;
        // QUERY (for the token), then UPDATE, from a fresh persistent node each time.
        let mut q = request(
            MessageType::Query,
            u64::from(i),
            "peers",
            Some([1; 32]),
            Some(ann.clone()),
        );
        q.id = Some(id.to_vec());
        server.handle_datagram(from, &q.encode(), t0);
        let tok = Message::decode(&drain(&mut server)[0].1)
            .unwrap()
            .roundtrip_token;
        let mut u = request(
            MessageType::Update,
            u64::from(i),
            "peers",
            Some([1; 32]),
            Some(ann.clone()),
        );
        u.roundtrip_token = tok;
        server.handle_datagram(from, &u.encode(), t0);
        drain(&mut server);
    }
    assert!(
        server.record_count() <= 2 * 101,
        "{}",
        server.record_count()
    );
    assert!(server.routing_table().len() <= 20 * 256);
}

/// Deliver every queued datagram between in-memory nodes until the network is quiet.
fn pump(nodes: &mut [(SocketAddrV4, DhtNode)], now: Instant) {
    pump_filtered(nodes, now, |_, _| true)
}

#[test]
fn in_memory_walk_ephemeral_and_persistent() {
    let t0 = Instant::now();
    let boot_addr = lo(1);
    let mut net = vec![(boot_addr, DhtNode::new(NodeConfig::default(), t0))];
    for p in 2..8u16 {
        let cfg = NodeConfig {
            bootstrap: vec![boot_addr],
            ..NodeConfig::default()
        };
        net.push((lo(p), DhtNode::new(cfg, t0)));
        pump(&mut net, t0);
    }
    let eph_cfg = NodeConfig {
        bootstrap: vec![boot_addr],
        ephemeral: true,
        ..NodeConfig::default()
    };
    net.push((lo(100), DhtNode::new(eph_cfg, t0)));
    pump(&mut net, t0);
    for (_, n) in &net {
        assert!(n.is_bootstrapped());
    }
    // Six persistent nodes joined the bootstrap's table; the ephemeral one did not.
    assert_eq!(net[0].1.routing_table().len(), 6);
    assert!(net[0].1.routing_table().iter().all(|c| c.addr != lo(100)));
    // The ephemeral client learned the persistent nodes and our own address.
    assert!(net[7].1.routing_table().len() >= 6);
    assert_eq!(net[7].1.remote_address(), Some(lo(100)));

    // Announce from the ephemeral node (port 0 = its UDP port), look up from another.
    let topic = [0x42; 32];
    let q = net[7].1.announce(topic, 0, None).unwrap();
    pump(&mut net, t0);
    let mut done = None;
    while let Some(ev) = net[7].1.poll_event() {
        if let Event::QueryDone { query, result } = ev {
            assert_eq!(query, q);
            done = Some(result.unwrap());
        }
    }
    let stats = done.expect("announce finished");
    assert_eq!(
        stats.updates, 7,
        "all 7 persistent token holders were updated"
    );
    let total: usize = net.iter().map(|(_, n)| n.record_count()).sum();
    assert_eq!(total, 7);

    let q = net[3].1.lookup(topic, None).unwrap();
    pump(&mut net, t0);
    let mut found = Vec::new();
    while let Some(ev) = net[3].1.poll_event() {
        if let Event::Reply { query, reply } = ev {
            assert_eq!(query, q);
            let out = hyperdrive::swarm::wire::PeersOutput::decode(&reply.value.unwrap()).unwrap();
            if let Some(p) = out.peers {
                found.extend(hyperdrive::swarm::wire::decode_peer_list(&p).unwrap());
            }
        }
    }
    assert!(found.contains(&lo(100)), "{found:?}");

    // Every datagram the ephemeral node sends omits its id.
    net[7].1.ping(boot_addr);
    let (_, bytes) = net[7].1.poll_transmit().unwrap();
    assert_eq!(Message::decode(&bytes).unwrap().id, None);
    net[1].1.ping(boot_addr);
    let (_, bytes) = net[1].1.poll_transmit().unwrap();
    assert_eq!(
        Message::decode(&bytes).unwrap().id.as_deref(),
        Some(&net[1].1.id()[..])
    );
}

/// Like [`pump`], but `pass(from, to)` decides which datagrams arrive (a NAT's filter).
fn pump_filtered(
    nodes: &mut [(SocketAddrV4, DhtNode)],
    now: Instant,
    mut pass: impl FnMut(SocketAddrV4, SocketAddrV4) -> bool,
) {
    for _ in 0..1000 {
        let mut moved = false;
        for i in 0..nodes.len() {
            let from = nodes[i].0;
            while let Some((to, bytes)) = nodes[i].1.poll_transmit() {
                moved = true;
                if !pass(from, to) {
                    continue;
                }
                if let Some(j) = nodes.iter().position(|(a, _)| *a == to) {
                    nodes[j].1.handle_datagram(from, &bytes, now);
                }
            }
        }
        if !moved {
            return;
        }
    }
    panic!("network never went quiet");
}

#[test]
fn holepunch_through_a_referrer_opens_both_nats() {
    let t0 = Instant::now();
    let (a, r, b) = (lo(1), lo(2), lo(3));
    let mut net = vec![
        (a, DhtNode::new(NodeConfig::default(), t0)),
        (r, DhtNode::new(NodeConfig::default(), t0)),
        (b, DhtNode::new(NodeConfig::default(), t0)),
    ];
    // Each of A and B sits behind a NAT that lets in only datagrams from addresses it
    // has sent to (the referrer is such an address for both).
    let mut opened: Vec<(SocketAddrV4, SocketAddrV4)> = vec![(a, r), (b, r)];
    let ping = net[0].1.holepunch(b, r);
    let sent: Vec<(SocketAddrV4, Vec<u8>)> = drain(&mut net[0].1);
    assert_eq!(
        sent.len(),
        2,
        "one datagram to the peer, one to the referrer"
    );
    assert_eq!(sent[0].0, b);
    assert_eq!(sent[1].0, r);
    let direct = Message::decode(&sent[0].1).unwrap();
    let relayed = Message::decode(&sent[1].1).unwrap();
    assert_eq!(direct.command.as_deref(), Some("_holepunch"));
    assert_eq!(direct.value, None, "the direct punch carries nothing");
    assert_eq!(direct.rid, relayed.rid, "both carry the same rid");
    let hp = Holepunch::decode(relayed.value.as_deref().unwrap()).unwrap();
    assert_eq!(hp.to.as_deref(), Some(&encode_peer(b)[..]));
    // A's direct punch hits B's closed NAT (and opens A's toward B); the referrer gets
    // its copy.
    opened.push((a, b));
    net[1].1.handle_datagram(a, &sent[1].1, t0);
    let mut dropped = 0;
    pump_filtered(&mut net, t0, |from, to| {
        let pass = to == r || opened.contains(&(to, from));
        if !pass {
            dropped += 1;
        }
        opened.push((from, to));
        pass
    });
    assert_eq!(
        dropped, 0,
        "B's answer passes A's NAT, opened by the direct punch"
    );
    let mut result = None;
    while let Some(ev) = net[0].1.poll_event() {
        if let Event::Pong { ping: p, result: r } = ev {
            assert_eq!(p, ping);
            result = Some(r);
        }
    }
    assert_eq!(result, Some(Ok(a)), "B answered A directly");
}

#[test]
fn holepunch_through_a_dead_referrer_times_out_punching_on_every_try() {
    let t0 = Instant::now();
    let mut node = DhtNode::new(NodeConfig::default(), t0);
    let ping = node.holepunch(lo(9), lo(8));
    let mut to_referrer = drain(&mut node)
        .iter()
        .filter(|(to, _)| *to == lo(8))
        .count();
    let mut done = None;
    for step in 1..=12u32 {
        let now = t0 + Duration::from_millis(750) * step;
        node.handle_timeout(now);
        to_referrer += drain(&mut node)
            .iter()
            .filter(|(to, _)| *to == lo(8))
            .count();
        while let Some(ev) = node.poll_event() {
            if let Event::Pong { ping: p, result } = ev {
                assert_eq!(p, ping);
                assert_eq!(result, Err(DhtError::Timeout(lo(9))));
                done.get_or_insert(now - t0);
            }
        }
    }
    assert_eq!(to_referrer, 3);
    assert_eq!(done, Some(Duration::from_millis(7500)));
}
