//! One side of the drive benchmark, as its own process (scripts/bench-drive.sh runs it
//! next to tests/js/bench-drive.js, the same workload on the Node reference).
//!
//! ```text
//! bench_drive serve --dir D --files N --dirs M --size S --big B --listen PORT
//!     In a corestore folder D: writes N files of S bytes into M directories
//!     (/dJ/fK) one `write_file` at a time, then the same files into a second drive with
//!     one `write_files` call, readdirs every directory, stats every file, writes then reads one file
//!     of B bytes, prints {key, port, version, writeMs, writeBatchMs, readdirMs, statMs, bigWriteMs,
//!     bigReadMs} and serves the corestore on 127.0.0.1:PORT until killed.
//! bench_drive clone --key HEX --connect 127.0.0.1:P --files N --dirs M --size S
//!     A fresh in-memory replica: opens the drive, readdirs /d0 (time and metadata
//!     blocks fetched), then reads all N files. Prints {openMs, readdirMs,
//!     readdirBlocks, readdirEntries, readAllMs, readAllBytes, metadataHeld,
//!     metadataLength, contentHeld, contentLength}.
//! ```
//!
//! Loopback only. Build with `cargo build --release -p hyperdrive --example bench_drive`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperdrive::drive::{Drive, DriveOptions, WriteOptions};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::protocol::net::{connect_with_retry, Listener};
use hyperdrive::protocol::replicate::SharedFeed;
use hyperdrive::store::Corestore;

const T: Duration = Duration::from_secs(120);

fn die(msg: &str) -> ! {
    eprintln!("bench_drive: {msg}");
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

/// File `i`'s path and contents (tests/js/bench-drive.js uses the same).
fn file_path(i: u64, per_dir: u64) -> String {
    format!("/d{}/f{}", i / per_dir, i % per_dir)
}

fn file_content(i: u64, size: usize) -> Vec<u8> {
    (0..size as u64)
        .map(|j| ((i * 31 + j * 7) % 251) as u8)
        .collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn held(feed: &SharedFeed) -> u64 {
    let st = feed.lock();
    st.feed.bitfield().count_data(0, st.feed.len())
}

fn or_die<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| die(&e.to_string()))
}

async fn serve(o: HashMap<String, String>) {
    let files = num(&o, "files");
    let dirs = num(&o, "dirs").max(1);
    let per_dir = files.div_ceil(dirs).max(1);
    let size = num(&o, "size") as usize;
    let big = num(&o, "big") as usize;
    let store = or_die(Corestore::open(get(&o, "dir")));
    let d = or_die(Drive::named(Arc::new(store.clone()), "default", DriveOptions::default()).await);

    let contents: Vec<Vec<u8>> = (0..files).map(|i| file_content(i, size)).collect();
    let t = Instant::now();
    for (i, c) in contents.iter().enumerate() {
        or_die(
            d.write_file(&file_path(i as u64, per_dir), c, WriteOptions::default())
                .await,
        );
    }
    let write_ms = ms(t);

    // The same files into a second drive with one `write_files` call (no Node
    // counterpart: the reference writes one file at a time).
    let batch_drive = or_die(d.sibling("batch").await);
    let paths: Vec<String> = (0..files).map(|i| file_path(i, per_dir)).collect();
    let refs: Vec<(&str, &[u8])> = paths
        .iter()
        .zip(&contents)
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let t = Instant::now();
    or_die(
        batch_drive
            .write_files(&refs, WriteOptions::default())
            .await,
    );
    let write_batch_ms = ms(t);
    if batch_drive.version() != d.version() {
        die("the batched drive has another version");
    }

    let t = Instant::now();
    let mut entries = 0;
    for j in 0..files.div_ceil(per_dir) {
        entries += or_die(d.readdir(&format!("/d{j}"), false).await).len();
    }
    let readdir_ms = ms(t);
    if entries as u64 != files {
        die(&format!("readdir saw {entries} of {files} files"));
    }

    let t = Instant::now();
    for i in 0..files {
        let st = or_die(d.stat(&file_path(i, per_dir)).await);
        if st.size != size as u64 {
            die("stat: wrong size");
        }
    }
    let stat_ms = ms(t);

    let data = file_content(7, big);
    let t = Instant::now();
    or_die(
        d.write_file("/big.bin", &data, WriteOptions::default())
            .await,
    );
    let big_write_ms = ms(t);
    let t = Instant::now();
    let back = or_die(d.read_file("/big.bin").await);
    let big_read_ms = ms(t);
    if back != data {
        die("big file read back differs");
    }
    drop((back, data, contents));

    let port = num(&o, "listen") as u16;
    let source: Arc<dyn FeedSource> = Arc::new(store.clone());
    let listener = or_die(
        Listener::bind(
            SocketAddr::from(([127, 0, 0, 1], port)),
            source,
            ReplicateOptions::default(),
        )
        .await,
    );
    println!(
        "{{\"key\":\"{}\",\"port\":{},\"version\":{},\"writeMs\":{write_ms:.3},\"writeBatchMs\":{write_batch_ms:.3},\"readdirMs\":{readdir_ms:.3},\"statMs\":{stat_ms:.3},\"bigWriteMs\":{big_write_ms:.3},\"bigReadMs\":{big_read_ms:.3}}}",
        hex::encode(d.key()),
        listener.local_addr.port(),
        d.version()
    );
    std::future::pending::<()>().await;
}

async fn clone(o: HashMap<String, String>) {
    let key: [u8; 32] = hex::decode(get(&o, "key"))
        .ok()
        .and_then(|k| k.try_into().ok())
        .unwrap_or_else(|| die("--key must be 64 hex digits"));
    let addr: SocketAddr = get(&o, "connect")
        .parse()
        .unwrap_or_else(|_| die("--connect must be IP:PORT"));
    if !addr.ip().is_loopback() {
        die("refusing a non-loopback address");
    }
    let files = num(&o, "files");
    let dirs = num(&o, "dirs").max(1);
    let per_dir = files.div_ceil(dirs).max(1);
    let size = num(&o, "size") as usize;
    let version = num(&o, "version");

    let store = Corestore::in_memory(rand::random());
    let t = Instant::now();
    let socket = or_die(connect_with_retry(addr, Duration::from_secs(10)).await);
    let (_stop_tx, stop) = shutdown_channel();
    {
        let source: Arc<dyn FeedSource> = Arc::new(store.clone());
        tokio::spawn(async move {
            if let Err(e) = replicate(
                socket,
                true,
                source,
                ReplicateOptions::default(),
                Arc::new(ConnectionStats::default()),
                stop,
            )
            .await
            {
                eprintln!("bench_drive: connection: {e}");
            }
        });
    }
    let opts = DriveOptions {
        timeout: T,
        ..Default::default()
    };
    let d = or_die(Drive::open(Arc::new(store.clone()), &key, opts).await);
    if d.metadata_feed().wait_for_length(version, T).await < version {
        die("the metadata feed did not reach the served version");
    }
    let open_ms = ms(t);
    let meta = d.metadata_feed().clone();

    let before = held(&meta);
    let t = Instant::now();
    let list = or_die(d.readdir("/d0", false).await);
    let readdir_ms = ms(t);
    let readdir_blocks = held(&meta) - before;
    if list.len() as u64 != per_dir.min(files) {
        die(&format!("remote readdir listed {} entries", list.len()));
    }

    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 0..files {
        let b = or_die(d.read_file(&file_path(i, per_dir)).await);
        if b.len() != size || b != file_content(i, size) {
            die(&format!("file {i} differs"));
        }
        bytes += b.len() as u64;
    }
    let read_all_ms = ms(t);
    println!(
        "{{\"openMs\":{open_ms:.3},\"readdirMs\":{readdir_ms:.3},\"readdirBlocks\":{readdir_blocks},\"readdirEntries\":{},\"readAllMs\":{read_all_ms:.3},\"readAllBytes\":{bytes},\"metadataHeld\":{},\"metadataLength\":{},\"contentHeld\":{},\"contentLength\":{}}}",
        list.len(),
        held(&meta),
        meta.len(),
        held(d.content_feed()),
        d.content_feed().len()
    );
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        die("usage: bench_drive serve|clone ...")
    };
    let o = parse(&args[1..]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&e.to_string()));
    match mode.as_str() {
        "serve" => rt.block_on(serve(o)),
        "clone" => rt.block_on(clone(o)),
        _ => die("usage: bench_drive serve|clone ..."),
    }
}
