//! One side of a replication benchmark, as its own process so its CPU time is its own
//! (scripts/bench-replicate.sh runs it against itself and against tests/js/bench-peer.js).
//!
//! ```text
//! bench_replicate serve --dir D --create N --size S [--batch B] --listen PORT
//!     Creates a feed of N blocks of S bytes (tests/js/blocks.js contents) on disk in D,
//!     listens on 127.0.0.1:PORT and prints {key, port, length, byteLength}. Runs until
//!     killed.
//! bench_replicate clone --key HEX --connect 127.0.0.1:P --dir D --length N (--all | --block I)
//!     Dials the seeder and downloads everything (--all) or one block (--block). Prints
//!     {elapsedMs, cpuMs, bytes, held}: elapsed from before the dial to the last block
//!     stored, and this process's CPU time over the same window.
//! ```
//!
//! Loopback only. Build with `cargo build --release -p hyperdrive --example bench_replicate`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperdrive::core::{Feed, KeyPair};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSet, ReplicateOptions,
};
use hyperdrive::protocol::net::{connect_with_retry, Listener};
use hyperdrive::protocol::replicate::SharedFeed;

const T: Duration = Duration::from_secs(300);

fn die(msg: &str) -> ! {
    eprintln!("bench_replicate: {msg}");
    std::process::exit(1)
}

fn parse(args: &[String]) -> HashMap<String, String> {
    let mut o = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let Some(k) = args[i].strip_prefix("--") else {
            die(&format!("unexpected argument {}", args[i]))
        };
        match args.get(i + 1) {
            Some(v) if !v.starts_with("--") => {
                o.insert(k.to_string(), v.clone());
                i += 2;
            }
            _ => {
                o.insert(k.to_string(), String::new());
                i += 1;
            }
        }
    }
    o
}

fn get<'a>(o: &'a HashMap<String, String>, k: &str) -> &'a str {
    o.get(k)
        .map(String::as_str)
        .unwrap_or_else(|| die(&format!("need --{k}")))
}

fn num(o: &HashMap<String, String>, k: &str) -> u64 {
    get(o, k)
        .parse()
        .unwrap_or_else(|_| die(&format!("--{k} must be a number")))
}

/// tests/js/blocks.js `blockContent(i, size)` without a seed.
fn block_content(i: u64, size: usize) -> Vec<u8> {
    let base = (i * 31) % 256;
    (0..size as u64)
        .map(|j| ((base + j * 7) % 256) as u8)
        .collect()
}

/// This process's user + system CPU time (from /proc/self/stat, in clock ticks of
/// 10 ms, the Linux default USER_HZ).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) * 10
}

fn loopback(addr: &str) -> SocketAddr {
    let a: SocketAddr = addr
        .parse()
        .unwrap_or_else(|_| die("--connect must be IP:PORT"));
    if !a.ip().is_loopback() {
        die("refusing a non-loopback address");
    }
    a
}

async fn serve(o: HashMap<String, String>) {
    let n = num(&o, "create");
    let size = num(&o, "size") as usize;
    let batch = o.get("batch").and_then(|b| b.parse().ok()).unwrap_or(64u64);
    let mut feed = Feed::create(get(&o, "dir")).unwrap_or_else(|e| die(&e.to_string()));
    let mut i = 0;
    while i < n {
        let blocks: Vec<Vec<u8>> = (i..n.min(i + batch))
            .map(|k| block_content(k, size))
            .collect();
        feed.append_batch(&blocks)
            .unwrap_or_else(|e| die(&e.to_string()));
        i += blocks.len() as u64;
    }
    feed.sync().unwrap_or_else(|e| die(&e.to_string()));
    let (key, len, bytes) = (feed.key(), feed.len(), feed.byte_len());
    let port = num(&o, "listen") as u16;
    let listener = Listener::bind(
        SocketAddr::from(([127, 0, 0, 1], port)),
        FeedSet::new(vec![SharedFeed::new(feed)]),
        ReplicateOptions::default(),
    )
    .await
    .unwrap_or_else(|e| die(&e.to_string()));
    println!(
        "{{\"key\":\"{}\",\"port\":{},\"length\":{len},\"byteLength\":{bytes}}}",
        hex::encode(key),
        listener.local_addr.port()
    );
    std::future::pending::<()>().await;
}

async fn clone(o: HashMap<String, String>) {
    let key: [u8; 32] = hex::decode(get(&o, "key"))
        .ok()
        .and_then(|k| k.try_into().ok())
        .unwrap_or_else(|| die("--key must be 64 hex digits"));
    let addr = loopback(get(&o, "connect"));
    let length = num(&o, "length");
    let kp = KeyPair::from_public(&key).unwrap_or_else(|e| die(&e.to_string()));
    let feed = Feed::open_with_keypair(get(&o, "dir"), kp).unwrap_or_else(|e| die(&e.to_string()));
    let shared = SharedFeed::new(feed);

    let cpu0 = cpu_ms();
    let t0 = Instant::now();
    let socket = connect_with_retry(addr, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
    let stats = Arc::new(ConnectionStats::default());
    let (_stop_tx, stop) = shutdown_channel();
    {
        let (shared, stats) = (shared.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = replicate(
                socket,
                true,
                FeedSet::new(vec![shared]),
                ReplicateOptions::default(),
                stats,
                stop,
            )
            .await
            {
                eprintln!("bench_replicate: connection: {e}");
            }
        });
    }
    let bytes = if o.contains_key("all") {
        let id = shared.download(0, Some(length));
        if !shared.downloaded(id, T).await {
            die("download did not complete");
        }
        shared.byte_len()
    } else {
        let i = num(&o, "block");
        let v = shared
            .get(i, T)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        v.len() as u64
    };
    let elapsed = t0.elapsed();
    let cpu = cpu_ms() - cpu0;
    let held = {
        let st = shared.lock();
        st.feed.bitfield().count_data(0, st.feed.len())
    };
    println!(
        "{{\"elapsedMs\":{:.3},\"cpuMs\":{cpu},\"bytes\":{bytes},\"held\":{held},\"length\":{},\"bytesIn\":{}}}",
        elapsed.as_secs_f64() * 1000.0,
        shared.len(),
        stats.bytes_in.load(Ordering::Relaxed)
    );
    std::process::exit(0);
}

/// XSalsa20 throughput: ours (protocol::cipher) against the `salsa20` crate.
/// `cipher ours` or `cipher crate` runs only one (for `perf stat`).
fn cipher(only: Option<&str>) {
    use salsa20::cipher::{KeyIvInit, StreamCipher};
    let mut buf = vec![0u8; 1 << 20];
    if only == Some("crate") {
        let mut theirs = salsa20::XSalsa20::new(&[1; 32].into(), &[2; 24].into());
        for _ in 0..256 {
            theirs.apply_keystream(&mut buf);
        }
        std::hint::black_box(&buf);
        return;
    }
    let mut ours = hyperdrive::protocol::cipher::XorStream::new(&[1; 32], &[2; 24]);
    let t = Instant::now();
    for _ in 0..256 {
        ours.apply(&mut buf);
    }
    println!(
        "protocol::cipher XorStream: {:.0} MiB/s",
        256.0 / t.elapsed().as_secs_f64()
    );
    if only.is_some() {
        return;
    }
    let mut theirs = salsa20::XSalsa20::new(&[1; 32].into(), &[2; 24].into());
    let t = Instant::now();
    for _ in 0..256 {
        theirs.apply_keystream(&mut buf);
    }
    println!(
        "salsa20 crate XSalsa20:    {:.0} MiB/s",
        256.0 / t.elapsed().as_secs_f64()
    );
    std::hint::black_box(&buf);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        die("usage: bench_replicate serve|clone ...")
    };
    if cmd == "cipher" {
        return cipher(args.get(1).map(String::as_str));
    }
    let o = parse(&args[1..]);
    // BENCH_THREADS=1: a current-thread runtime (default: 2 workers, the machine's cores).
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = builder
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&e.to_string()));
    match cmd.as_str() {
        "serve" => rt.block_on(serve(o)),
        "clone" => rt.block_on(clone(o)),
        _ => die("usage: bench_replicate serve|clone ..."),
    }
}
