//! A drive read over a replication connection (Rust to Rust, in memory): the reader knows
//! only the drive key; the content key comes from the header, the mounted drive's feeds
//! are opened on demand over the same connection, and reads fetch just what they need.

use std::sync::Arc;
use std::time::Duration;

use hyperdrive::drive::{Drive, DriveError, DriveOptions, WriteOptions};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::store::Corestore;

const T: Duration = Duration::from_secs(10);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + 1) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_remote_drive_reads_through_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Corestore::open(tmp.path().join("w")).unwrap();
    let reader = Corestore::in_memory([2; 32]);
    let wopts = DriveOptions::default();
    let d = Drive::named(Arc::new(writer.clone()), "default", wopts)
        .await
        .unwrap();
    let s = d.sibling("second").await.unwrap();
    let big = pattern(1_500_000);
    d.write_file("/big.bin", &big, WriteOptions::default())
        .await
        .unwrap();
    for i in 0..30 {
        d.write_file(
            &format!("/many/f{i}"),
            format!("file {i}").as_bytes(),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    s.write_file("/inner.txt", b"inside", WriteOptions::default())
        .await
        .unwrap();
    d.mount("/mnt", &s.key(), None, WriteOptions::default())
        .await
        .unwrap();
    d.symlink("/mnt/inner.txt", "/link").await.unwrap();

    let (a, b) = tokio::io::duplex(1 << 20);
    let (shutdown, stop) = shutdown_channel();
    let wsrc: Arc<dyn FeedSource> = Arc::new(writer.clone());
    let rsrc: Arc<dyn FeedSource> = Arc::new(reader.clone());
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
        Arc::new(ConnectionStats::default()),
        stop,
    ));

    let ropts = DriveOptions {
        timeout: T,
        ..Default::default()
    };
    let r = Drive::open(Arc::new(reader.clone()), &d.key(), ropts)
        .await
        .unwrap();
    assert!(!r.writable());
    assert_eq!(r.content_feed().key(), d.content_feed().key());
    assert_eq!(
        r.metadata_feed().wait_for_length(d.version(), T).await,
        d.version()
    );
    let r = r.checkout(d.version());

    assert_eq!(r.read_file("/many/f7").await.unwrap(), b"file 7");
    assert_eq!(
        r.read("/big.bin", 1_048_570, 20).await.unwrap(),
        &big[1_048_570..1_048_590]
    );
    assert_eq!(r.read_file("/link").await.unwrap(), b"inside");
    let names: Vec<String> = r
        .readdir("/", false)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["big.bin", "link", "many", "mnt"]);
    // Sparse: the content blocks of the other files were not all fetched.
    let held = {
        let st = r.content_feed().lock();
        st.feed.bitfield().count_data(0, st.feed.len())
    };
    assert!(held < d.content_feed().len(), "{held} content blocks held");
    assert!(matches!(
        r.write_file("/x", b"", WriteOptions::default()).await,
        Err(DriveError::ReadOnly { .. })
    ));

    shutdown.send(true).unwrap();
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();
}
