//! Sparse access over a real replication connection (Rust to Rust, in-memory duplex):
//! a small read deep inside a big remote file, and a stat in a big remote drive, must
//! fetch only what they need — a few content blocks, O(log n) metadata blocks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyperdrive::drive::{Drive, DriveOptions, WriteOptions};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::protocol::replicate::SharedFeed;
use hyperdrive::store::Corestore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(20);

fn held(feed: &SharedFeed) -> u64 {
    let st = feed.lock();
    st.feed.bitfield().count_data(0, st.feed.len())
}

struct Link {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), hyperdrive::protocol::driver::DriverError>>>,
    /// The reader side's counters.
    stats: Arc<ConnectionStats>,
}

impl Link {
    async fn close(self) {
        self.shutdown.send(true).unwrap();
        for t in self.tasks {
            t.await.unwrap().unwrap();
        }
    }
}

/// Connects `writer` and `reader` over an in-memory duplex.
fn connect(writer: &Corestore, reader: &Corestore) -> Link {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (shutdown, stop) = shutdown_channel();
    let wsrc: Arc<dyn FeedSource> = Arc::new(writer.clone());
    let rsrc: Arc<dyn FeedSource> = Arc::new(reader.clone());
    let stats = Arc::new(ConnectionStats::default());
    let t1 = tokio::spawn(replicate(
        a,
        true,
        wsrc,
        ReplicateOptions::default(),
        Arc::new(ConnectionStats::default()),
        stop.clone(),
    ));
    let t2 = tokio::spawn(replicate(
        b,
        false,
        rsrc,
        ReplicateOptions::default(),
        stats.clone(),
        stop,
    ));
    Link {
        shutdown,
        tasks: vec![t1, t2],
        stats,
    }
}

async fn open_remote(reader: &Corestore, w: &Drive) -> Drive {
    let opts = DriveOptions {
        timeout: T,
        ..Default::default()
    };
    let r = Drive::open(Arc::new(reader.clone()), &w.key(), opts)
        .await
        .unwrap();
    assert_eq!(
        r.metadata_feed().wait_for_length(w.version(), T).await,
        w.version()
    );
    r.checkout(w.version())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_read_deep_in_a_big_remote_file_fetches_a_few_blocks() {
    const MIB: usize = 1 << 20;
    const CHUNK: usize = 64 * 1024;
    let writer = Corestore::in_memory([1; 32]);
    let reader = Corestore::in_memory([2; 32]);
    let w = Drive::named(Arc::new(writer.clone()), "default", DriveOptions::default())
        .await
        .unwrap();
    w.write_file("/small.txt", b"before", WriteOptions::default())
        .await
        .unwrap();
    let byte = |i: usize| ((i / 7) ^ (i >> 16)) as u8;
    let mut fw = w
        .create_writer("/big.bin", WriteOptions::default())
        .await
        .unwrap();
    let mut chunk = vec![0u8; CHUNK];
    for c in 0..(50 * MIB / CHUNK) {
        for (j, b) in chunk.iter_mut().enumerate() {
            *b = byte(c * CHUNK + j);
        }
        fw.write(&chunk).await.unwrap();
    }
    fw.finish().await.unwrap();
    let content_len = w.content_feed().len();
    assert!(content_len > 800, "{content_len} content blocks");

    let link = connect(&writer, &reader);
    let r = open_remote(&reader, &w).await;
    let bytes_before = link.stats.bytes_in.load(Ordering::Relaxed);
    // Not block aligned: 4 KiB straddling nothing in particular, 25 MiB + 1000 in.
    let at = 25 * MIB + 1000;
    let got = r.read("/big.bin", at as u64, 4096).await.unwrap();
    let want: Vec<u8> = (at..at + 4096).map(byte).collect();
    assert_eq!(got, want);
    let held_blocks = held(r.content_feed());
    let received = link.stats.bytes_in.load(Ordering::Relaxed) - bytes_before;
    println!("4 KiB read: {held_blocks} content blocks, {received} bytes received");
    assert!(
        held_blocks <= 3,
        "{held_blocks} of {content_len} content blocks fetched for a 4 KiB read"
    );
    // One 64 KiB block with its proof, a few metadata blocks, protocol overhead.
    assert!(
        received <= 4 * CHUNK,
        "{received} bytes received for a 4 KiB read"
    );
    link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_stat_in_a_big_drive_touches_log_n_metadata_blocks() {
    const N: u64 = 10_000;
    let writer = Corestore::in_memory([3; 32]);
    let reader = Corestore::in_memory([4; 32]);
    let w = Drive::named(Arc::new(writer.clone()), "default", DriveOptions::default())
        .await
        .unwrap();
    for i in 0..N {
        w.write_file(
            &format!("/d{}/f{}", i / 100, i % 100),
            format!("file {i}").as_bytes(),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    let link = connect(&writer, &reader);
    let r = open_remote(&reader, &w).await;
    let meta = r.metadata_feed().clone();
    let opened = held(&meta);
    let st = r.stat("/d42/f17").await.unwrap();
    assert_eq!(st.size, "file 4217".len() as u64);
    let after = held(&meta);
    println!("metadata blocks held: {opened} after open, {after} after one stat");
    // log4(10_000) ≈ 6.6: a trie lookup walks about that many nodes; the drive does at
    // most a few lookups per stat (the entry, the mount check).
    let log4 = (N as f64).log(4.0).ceil() as u64;
    let bound = 3 * log4 + 4;
    assert!(
        after <= bound,
        "{after} metadata blocks held after one stat ({opened} after open), bound {bound}, of {}",
        meta.len()
    );
    // A second stat in another directory stays within the same order.
    r.stat("/d7/f99").await.unwrap();
    let second = held(&meta) - after;
    assert!(
        second <= 2 * log4 + 2,
        "{second} more blocks for a second stat"
    );
    // A listing of a 100-entry directory fetches its entries and the path to them, no
    // more (its prefetching must not turn into read-ahead of the feed).
    let before = held(&meta);
    let names = r.readdir("/d55", false).await.unwrap();
    assert_eq!(names.len(), 100);
    let listed = held(&meta) - before;
    println!("metadata blocks fetched by a remote readdir of 100 entries: {listed}");
    assert!(
        listed <= 100 + 2 * log4 + 4,
        "{listed} blocks fetched to list 100 entries"
    );
    // And the content feed is untouched by stats and listings.
    assert_eq!(held(r.content_feed()), 0);
    link.close().await;
}
