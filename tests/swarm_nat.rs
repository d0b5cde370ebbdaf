//! Holepunching through NATs: two `hypermount` peers, each behind its own NAT
//! (Linux MASQUERADE with conntrack, which lets in only replies), and a DHT bootstrap
//! node on the "internet" between them. The reader's TCP dial to the seeder's public
//! address can't pass the seeder's NAT; a holepunch through the bootstrap node opens both
//! NATs, and uTP connects (spec 1.12, 4.2).
//!
//! The whole network is five network namespaces made for this test and deleted after
//! it (`ip netns`, veth pairs, a bridge, iptables inside the NAT namespaces); none is
//! linked to the host's network, so no packet can leave them. Every process runs inside
//! them and is killed, with the namespaces, when the test ends. Needs root, `ip` and
//! `iptables`.

#[path = "cli_common/mod.rs"]
mod cli_common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli_common::{assert_same_tree, last_line, ok, sample_tree, BIN};

/// The test's namespaces; on drop every process in them is killed and they are deleted.
struct Lab {
    names: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str, parts: &[&str]) -> Lab {
        let names: Vec<String> = parts
            .iter()
            .map(|p| format!("hm{}{tag}-{p}", std::process::id()))
            .collect();
        let lab = Lab {
            names,
            children: Vec::new(),
        };
        for n in &lab.names {
            sh(&["ip", "netns", "add", n]);
        }
        lab
    }

    fn ns(&self, part: &str) -> &str {
        self.names
            .iter()
            .find(|n| n.ends_with(&format!("-{part}")))
            .expect("namespace")
    }

    /// Runs `args` inside namespace `part` and checks it succeeded.
    fn run(&self, part: &str, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", self.ns(part)];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// A `hypermount` command inside namespace `part`.
    fn hypermount(&self, part: &str, storage: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(part), BIN, "--storage"])
            .arg(storage)
            .args(args)
            .env_remove("HYPERMOUNT_NO_DHT")
            .env_remove("HYPERMOUNT_BOOTSTRAP")
            .env_remove("HYPERMOUNT_STORAGE")
            .stdin(Stdio::null());
        c
    }

    fn spawn(&mut self, mut c: Command) {
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            // Anything still running in the namespace goes with it.
            if let Ok(o) = Command::new("ip").args(["netns", "pids", n]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (needs root with ip and iptables)"));
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs to completion, killed after `limit`.
fn bounded(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("wait")
}

/// pub: a bridge (10.99.0.0/24) with the bootstrap node on 10.99.0.1. natX: a router
/// with 10.99.0.X outside and 192.168.X.1 inside, masquerading, and letting in only
/// what conntrack knows as a reply. hostX: 192.168.X.2, routed through natX.
fn build(lab: &Lab) {
    lab.run("pub", &["ip", "link", "set", "lo", "up"]);
    lab.run("pub", &["ip", "link", "add", "br0", "type", "bridge"]);
    lab.run("pub", &["ip", "addr", "add", "10.99.0.1/24", "dev", "br0"]);
    lab.run("pub", &["ip", "link", "set", "br0", "up"]);
    for x in ["2", "3"] {
        let nat = lab.ns(&format!("nat{x}")).to_string();
        let host = lab.ns(&format!("host{x}")).to_string();
        let public = lab.ns("pub").to_string();
        // Outside link: natX <-> the bridge in pub.
        sh(&[
            "ip",
            "link",
            "add",
            "o",
            "netns",
            &nat,
            "type",
            "veth",
            "peer",
            "name",
            &format!("p{x}"),
            "netns",
            &public,
        ]);
        lab.run(
            "pub",
            &["ip", "link", "set", &format!("p{x}"), "master", "br0"],
        );
        lab.run("pub", &["ip", "link", "set", &format!("p{x}"), "up"]);
        // Inside link: natX <-> hostX.
        sh(&[
            "ip", "link", "add", "i", "netns", &nat, "type", "veth", "peer", "name", "e", "netns",
            &host,
        ]);
        let n = |a: &[&str]| lab.run(&format!("nat{x}"), a);
        n(&["ip", "link", "set", "lo", "up"]);
        n(&["ip", "addr", "add", &format!("10.99.0.{x}/24"), "dev", "o"]);
        n(&[
            "ip",
            "addr",
            "add",
            &format!("192.168.{x}.1/24"),
            "dev",
            "i",
        ]);
        n(&["ip", "link", "set", "o", "up"]);
        n(&["ip", "link", "set", "i", "up"]);
        n(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        n(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "o",
            "-j",
            "MASQUERADE",
        ]);
        n(&[
            "iptables",
            "-A",
            "FORWARD",
            "-i",
            "o",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
        n(&["iptables", "-A", "FORWARD", "-i", "o", "-j", "DROP"]);
        // As home routers do: unsolicited packets to the router itself are dropped
        // before conntrack records them (else Linux would give the peer's answer to a
        // punch another port, and the punch would miss).
        n(&[
            "iptables",
            "-A",
            "INPUT",
            "-i",
            "o",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        ]);
        let h = |a: &[&str]| lab.run(&format!("host{x}"), a);
        h(&["ip", "link", "set", "lo", "up"]);
        h(&[
            "ip",
            "addr",
            "add",
            &format!("192.168.{x}.2/24"),
            "dev",
            "e",
        ]);
        h(&["ip", "link", "set", "e", "up"]);
        h(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{x}.1"),
        ]);
    }
}

#[test]
fn peers_behind_two_nats_connect_by_holepunch_and_utp() {
    let t = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("n", &["pub", "nat2", "host2", "nat3", "host3"]);
    build(&lab);
    let boot = "10.99.0.1:49737";
    let c = lab.hypermount(
        "pub",
        &t.path().join("boot"),
        &["dht", "bootstrap", "--listen", boot],
    );
    lab.spawn(c);
    std::thread::sleep(Duration::from_millis(500));

    let src = sample_tree(t.path());
    let seeder = t.path().join("seeder");
    let key = last_line(&ok(&seeder, &["create", "--import", src.to_str().unwrap()]));
    let c = lab.hypermount("host2", &seeder, &["--bootstrap", boot, "seed"]);
    lab.spawn(c);

    // The reader, behind the other NAT. Its DHT lookup names the seeder by its NAT's
    // public address; a TCP dial there is refused; the holepunch and uTP get through.
    let out = t.path().join("out");
    let started = Instant::now();
    let mut done = None;
    while started.elapsed() < Duration::from_secs(90) {
        let o = bounded(
            lab.hypermount(
                "host3",
                &t.path().join("reader"),
                &["--bootstrap", boot, "export", &key, out.to_str().unwrap()],
            ),
            Duration::from_secs(60),
        );
        if o.status.success() {
            done = Some(o);
            break;
        }
        // The seeder may not have announced yet: try again.
        eprintln!(
            "export attempt failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let o = done.expect("the reader got the drive through both NATs");
    eprintln!(
        "exported through two NATs in {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&o.stdout)
    );
    assert_same_tree(&src, &out);

    // With uTP off, the same reader can't get through: TCP alone cannot cross the NAT.
    let o = bounded(
        lab.hypermount(
            "host3",
            &t.path().join("reader-tcp"),
            &[
                "--bootstrap",
                boot,
                "--transports",
                "tcp",
                "export",
                &key,
                t.path().join("out-tcp").to_str().unwrap(),
            ],
        ),
        Duration::from_secs(90),
    );
    assert!(!o.status.success(), "TCP alone must not cross the NAT");
}
