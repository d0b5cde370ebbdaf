//! Hyperswarm DHT interop with the Node reference on loopback: wire vectors made by the
//! reference's own encoders, a Rust node against `swarm-peer.js bootstrap`, and the Rust
//! bootstrap node used by `swarm-peer.js ping/announce/lookup`. Every Node process gets an
//! explicit 127.0.0.1 bootstrap and is killed by pid (NodeProcess/ChildGuard drop).

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::*;
use hyperdrive::swarm::driver::Dht;
use hyperdrive::swarm::node::{token, NodeConfig};
use hyperdrive::swarm::wire::{Holepunch, Message, MessageType, PeersInput, PeersOutput};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fresh_topic(tag: &str) -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Sha256::digest(format!("{tag}-{nanos}-{}", std::process::id())).into()
}

fn hex_field(f: &Value, name: &str) -> Option<Vec<u8>> {
    f.get(name)
        .map(|v| hex::decode(v.as_str().unwrap()).unwrap())
}

#[test]
fn wire_vectors_match_the_reference() {
    let v = run_node_json(
        &js_script("dht-vectors.js"),
        &[] as &[&str],
        DEFAULT_TIMEOUT,
    );
    let cases = v["messages"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let f = &case["fields"];
        let kind = match f["type"].as_u64().unwrap() {
            1 => MessageType::Query,
            2 => MessageType::Update,
            _ => MessageType::Response,
        };
        let mut m = Message::new(kind, f["rid"].as_u64().unwrap());
        m.version = f.get("version").and_then(Value::as_u64);
        m.to = hex_field(f, "to");
        m.id = hex_field(f, "id");
        m.target = hex_field(f, "target");
        m.closer_nodes = hex_field(f, "closerNodes");
        m.roundtrip_token = hex_field(f, "roundtripToken");
        m.command = f.get("command").map(|c| c.as_str().unwrap().to_owned());
        m.error = f.get("error").map(|c| c.as_str().unwrap().to_owned());
        m.value = hex_field(f, "value");
        let want = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(m.encode()), hex::encode(&want), "case {f}");
        assert_eq!(Message::decode(&want).unwrap(), m);
    }
    for case in v["holepunch"].as_array().unwrap() {
        let f = &case["fields"];
        let h = Holepunch {
            from: hex_field(f, "from"),
            to: hex_field(f, "to"),
        };
        let want = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        assert_eq!(h.encode(), want, "holepunch {f}");
        assert_eq!(Holepunch::decode(&want).unwrap(), h);
    }
    for case in v["peersInput"].as_array().unwrap() {
        let f = &case["fields"];
        let p = PeersInput {
            port: f.get("port").map(|p| p.as_u64().unwrap() as u32),
            local_address: hex_field(f, "localAddress"),
            unannounce: f.get("unannounce").map(|u| u.as_bool().unwrap()),
        };
        let want = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        assert_eq!(p.encode(), want, "peersInput {f}");
        assert_eq!(PeersInput::decode(&want).unwrap(), p);
    }
    for case in v["peersOutput"].as_array().unwrap() {
        let f = &case["fields"];
        let p = PeersOutput {
            peers: hex_field(f, "peers"),
            local_peers: hex_field(f, "localPeers"),
        };
        let want = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        assert_eq!(p.encode(), want, "peersOutput {f}");
        assert_eq!(PeersOutput::decode(&want).unwrap(), p);
    }
    let t = &v["token"];
    let secret: [u8; 32] = hex::decode(t["secret"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    // The port must not matter (spec 1.4).
    for port in [1u16, 4242] {
        let addr = SocketAddrV4::new([127, 0, 0, 1].into(), port);
        assert_eq!(
            hex::encode(token(&secret, addr)),
            t["hex"].as_str().unwrap()
        );
    }
}

/// `swarm-peer.js bootstrap 0`, returning the process and its port.
fn node_bootstrap() -> (NodeProcess, u16) {
    let mut p = spawn_node(&swarm_peer(), &["bootstrap", "0", "--quiet"]);
    let line = p.next_line(Duration::from_secs(30));
    let port = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected bootstrap output {line:?}"));
    (p, port)
}

async fn rust_node(bootstrap: u16) -> Dht {
    let config = NodeConfig {
        bootstrap: vec![SocketAddrV4::new([127, 0, 0, 1].into(), bootstrap)],
        ..NodeConfig::default()
    };
    let dht = Dht::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), dht.ready())
        .await
        .unwrap()
        .unwrap();
    dht
}

async fn swarm_peer_run(args: Vec<String>) -> NodeOutput {
    tokio::task::spawn_blocking(move || run_node(&swarm_peer(), &args, Duration::from_secs(60)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_node_with_node_bootstrap() {
    let (_boot, port) = node_bootstrap();
    let boot = SocketAddrV4::new([127, 0, 0, 1].into(), port);
    let dht = rust_node(port).await;
    // Ping: the bootstrap reports our socket address.
    assert_eq!(dht.ping(boot).await.unwrap(), dht.local_addr());
    let info = dht.info().await.unwrap();
    assert!(info.bootstrapped);
    assert_eq!(
        info.routing_table_len, 1,
        "the persistent Node bootstrap joined our table"
    );

    // Rust announces, Node looks up.
    let topic = fresh_topic("rust-announce");
    dht.announce(topic, 0, None).await.unwrap();
    let out = swarm_peer_run(vec![
        "lookup".into(),
        "--bootstrap".into(),
        format!("127.0.0.1:{port}"),
        "--topic".into(),
        hex::encode(topic),
        "--once".into(),
        "--timeout".into(),
        "15".into(),
        "--quiet".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "lookup failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    let found = out.json();
    let peers: Vec<String> = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}:{}", p["host"].as_str().unwrap(), p["port"]))
        .collect();
    assert!(peers.contains(&dht.local_addr().to_string()), "{peers:?}");

    // Node announces, Rust looks up.
    let topic2 = fresh_topic("node-announce");
    let out = swarm_peer_run(vec![
        "announce".into(),
        "--bootstrap".into(),
        format!("127.0.0.1:{port}"),
        "--topic".into(),
        hex::encode(topic2),
        "--port".into(),
        "4242".into(),
        "--once".into(),
        "--quiet".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "announce failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    let found = dht.lookup(topic2, None).await.unwrap();
    let all: Vec<SocketAddrV4> = found.iter().flat_map(|f| f.peers.clone()).collect();
    assert!(
        all.contains(&"127.0.0.1:4242".parse().unwrap()),
        "{found:?}"
    );
    assert!(found.iter().all(|f| f.node == boot));

    // Unannounce removes our record.
    dht.unannounce(topic, 0, None).await.unwrap();
    let out = swarm_peer_run(vec![
        "lookup".into(),
        "--bootstrap".into(),
        format!("127.0.0.1:{port}"),
        "--topic".into(),
        hex::encode(topic),
        "--once".into(),
        "--timeout".into(),
        "10".into(),
        "--quiet".into(),
    ])
    .await;
    assert!(
        !out.status.success(),
        "still found after unannounce: {}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_uses_rust_bootstrap() {
    let boot = hyperdrive::swarm::bootstrap::spawn(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        Vec::new(),
    )
    .await
    .unwrap();
    let port = boot.local_addr().port();
    let b = format!("127.0.0.1:{port}");

    let out = swarm_peer_run(vec![
        "ping".into(),
        "--bootstrap".into(),
        b.clone(),
        "--quiet".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "ping failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    let pong = out.json();
    assert!(
        pong["pong"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{pong}"
    );

    let topic = fresh_topic("rust-bootstrap");
    let out = swarm_peer_run(vec![
        "announce".into(),
        "--bootstrap".into(),
        b.clone(),
        "--topic".into(),
        hex::encode(topic),
        "--port".into(),
        "5555".into(),
        "--once".into(),
        "--quiet".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "announce failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(boot.info().await.unwrap().records, 1);

    let out = swarm_peer_run(vec![
        "lookup".into(),
        "--bootstrap".into(),
        b.clone(),
        "--topic".into(),
        hex::encode(topic),
        "--once".into(),
        "--timeout".into(),
        "15".into(),
        "--quiet".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "lookup failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    let found = out.json();
    let ports: Vec<u64> = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, vec![5555]);

    // A Rust client finds it through the Rust bootstrap too.
    let dht = rust_node(port).await;
    let found = dht.lookup(topic, None).await.unwrap();
    assert!(
        found
            .iter()
            .any(|f| f.peers.contains(&"127.0.0.1:5555".parse().unwrap())),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_holepunches_a_node_peer_through_a_node_referrer() {
    // R relays; B is another Node DHT node that answers the relayed punch.
    let (_r, r_port) = node_bootstrap();
    let (_b, b_port) = node_bootstrap();
    let a = rust_node(r_port).await;
    let r = SocketAddrV4::new([127, 0, 0, 1].into(), r_port);
    let b = SocketAddrV4::new([127, 0, 0, 1].into(), b_port);
    let seen = tokio::time::timeout(Duration::from_secs(15), a.holepunch(b, r))
        .await
        .expect("holepunch bounded")
        .expect("B answered the punch relayed by R");
    assert_eq!(seen, a.local_addr(), "B reports our address as it saw it");
    // Through a referrer that isn't there, it times out (after its retries).
    let dead = SocketAddrV4::new([127, 0, 0, 1].into(), free_udp_port());
    let nobody = SocketAddrV4::new([127, 0, 0, 1].into(), free_udp_port());
    let err = a.holepunch(nobody, dead).await.unwrap_err();
    assert!(
        err.to_string().contains("timed out") || err.to_string().contains("imeout"),
        "{err}"
    );
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
