//! LAN discovery by multicast DNS (`--mdns`), as @hyperswarm/discovery 2 does it.
//!
//! - The packets, byte for byte against the reference's dns-packet (no sockets).
//! - End to end on a real multicast socket, inside a private network namespace
//!   (`unshare --net`) that holds nothing but its own loopback interface, so no packet
//!   can leave it: two `hypermount` processes find each other with the DHT off; the
//!   reference's multicast-dns finds a `hypermount` seed; and `hypermount` finds a drive
//!   a multicast-dns peer answers for. Everything runs in one process group, killed
//!   when the test ends.

#[path = "cli_common/mod.rs"]
mod cli_common;
mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_common::*;
use common::{js_script, node_path, run_node_json, DEFAULT_TIMEOUT};
use hyperdrive::swarm::mdns::{domain, Handled, LocalPeer, MdnsState};
use serde_json::Value;

#[test]
fn mdns_packets_match_the_reference() {
    let topic = [0x5au8; 32];
    let random = [0xc3u8; 32];
    let mut id = b"id=".to_vec();
    id.extend_from_slice(&random);
    let v = run_node_json(
        &js_script("mdns-vectors.js"),
        &[
            hex::encode(topic),
            hex::encode(&id),
            "4321".to_string(),
            "10.1.2.3".to_string(),
        ],
        DEFAULT_TIMEOUT,
    );
    let field = |f: &str| hex::decode(v[f].as_str().unwrap()).unwrap();
    assert_eq!(v["name"].as_str().unwrap(), domain(&topic));

    let now = std::time::Instant::now();
    let mut seeder = MdnsState::new();
    let sent = seeder.join(topic, Some(4321), false, random, now);
    assert_eq!(sent.len(), 1, "one answer at announce");
    assert_eq!(hex::encode(&sent[0]), hex::encode(field("announce")));

    let mut reader = MdnsState::new();
    let sent = reader.join(topic, None, true, [7; 32], now);
    assert_eq!(hex::encode(&sent[0]), hex::encode(field("query")));

    let querier = "10.1.2.3:5353".parse().unwrap();
    let h = seeder.handle(&field("query"), querier);
    assert_eq!(
        hex::encode(h.reply.unwrap()),
        hex::encode(field("reply")),
        "the answer to a question, with the referrer A record"
    );

    // The reference's packets read back: the announcer is the packet's source.
    let from = "10.9.9.9:5353".parse().unwrap();
    for packet in ["announce", "reply"] {
        assert_eq!(
            reader.handle(&field(packet), from),
            Handled {
                reply: None,
                peers: vec![LocalPeer {
                    topic,
                    addr: "10.9.9.9:4321".parse().unwrap()
                }]
            },
            "{packet}"
        );
    }
    // The seeder knows its own id in the reference's encoding.
    assert_eq!(seeder.handle(&field("reply"), from), Handled::default());
}

/// A process group in a private network namespace; SIGKILLed as a group on drop.
struct Namespace {
    child: std::process::Child,
}

impl Namespace {
    fn run(script: &str) -> Namespace {
        let child = Command::new("unshare")
            .args(["--net", "--", "bash", "-c", script])
            .env("NODE_PATH", node_path())
            .env("HYPERMOUNT_NO_DHT", "1")
            .env_remove("HYPERMOUNT_BOOTSTRAP")
            .env_remove("HYPERMOUNT_STORAGE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn unshare (util-linux)");
        Namespace { child }
    }

    /// Waits (bounded) and returns (success, stdout, stderr).
    fn finish(mut self, timeout: Duration) -> (bool, String, String) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        let mut err = String::new();
        use std::io::Read;
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        let ok = matches!(self.child.try_wait(), Ok(Some(s)) if s.success());
        (ok, out, err)
    }

    fn kill(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.kill();
    }
}

fn sh(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn peers_find_each_other_by_mdns_in_a_private_network() {
    assert!(
        is_root(),
        "this test needs root (unshare --net for a private network namespace)"
    );
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let src = sample_tree(t.path());
    let key = last_line(&ok(&a, &["create", "--import", src.to_str().unwrap()]));
    let info: Value = serde_json::from_str(&ok(&a, &["info", &key, "--json"])).unwrap();
    let dk = hex::decode(info["discoveryKey"].as_str().unwrap()).unwrap();
    let name = domain(&dk.try_into().unwrap());
    let (dest1, dest2) = (t.path().join("out1"), t.path().join("out2"));

    // 1. hypermount seed → hypermount export, both --mdns --no-dht.
    // 2. The reference's multicast-dns looks up the drive and finds the seed's port.
    // 3. A seed without mDNS, announced by a multicast-dns peer for it; hypermount finds
    //    it through that peer's answer.
    let script = format!(
        r#"set -eu
ip link set lo up
BIN={bin}; T={tmp}
wait_line() {{ for _ in $(seq 300); do grep -q "$1" "$2" && return 0; sleep 0.1; done; echo "no '$1' in $2" >&2; cat "$2" >&2; return 1; }}
"$BIN" --storage {a} --mdns seed {key} > "$T/seed1.out" 2> "$T/seed1.err" &
SEED1=$!
wait_line '^seeding' "$T/seed1.out"
PORT1=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$T/seed1.out")
echo "seed1 port $PORT1"
timeout 60 "$BIN" --storage {b} --mdns export {key} {dest1} > "$T/export1.out" 2> "$T/export1.err" || {{ cat "$T/export1.err" >&2; exit 1; }}
echo "export1 done"
LOOKUP=$(timeout 60 node {peer} lookup {name})
echo "lookup $LOOKUP"
kill $SEED1; wait $SEED1 || true
"$BIN" --storage {a} --listen 127.0.0.1:0 seed {key} > "$T/seed2.out" 2> "$T/seed2.err" &
wait_line '^seeding' "$T/seed2.out"
PORT2=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$T/seed2.out")
echo "seed2 port $PORT2"
node {peer} announce {name} "$PORT2" > "$T/announce.out" 2> "$T/announce.err" &
wait_line '^ready' "$T/announce.out"
timeout 60 "$BIN" --storage {c} --mdns export {key} {dest2} > "$T/export2.out" 2> "$T/export2.err" || {{ cat "$T/export2.err" >&2; exit 1; }}
echo "export2 done"
"#,
        bin = sh(Path::new(BIN)),
        tmp = sh(t.path()),
        a = sh(&a),
        b = sh(&b),
        c = sh(&c),
        key = key,
        dest1 = sh(&dest1),
        dest2 = sh(&dest2),
        peer = sh(&js_script("mdns-peer.js")),
        name = name,
    );
    let (ok, out, err) = Namespace::run(&script).finish(Duration::from_secs(240));
    assert!(
        ok,
        "namespace script failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        out.contains("export1 done") && out.contains("export2 done"),
        "{out}"
    );
    assert_same_tree(&src, &dest1);
    assert_same_tree(&src, &dest2);

    let port1 = out
        .lines()
        .find_map(|l| l.strip_prefix("seed1 port "))
        .expect("seed1 port")
        .to_string();
    let lookup: Value = serde_json::from_str(
        out.lines()
            .find_map(|l| l.strip_prefix("lookup "))
            .expect("lookup line"),
    )
    .unwrap();
    assert_eq!(lookup["host"], "127.0.0.1", "{lookup}");
    assert_eq!(lookup["port"].as_u64().unwrap().to_string(), port1);
    let id = lookup["id"].as_str().expect("a TXT id");
    assert!(id.starts_with("69643d") && id.len() == 70, "{id}");
    assert_eq!(lookup["referrer"], "127.0.0.1");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
