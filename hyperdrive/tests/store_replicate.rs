//! Replication through two corestores on one connection (protocol.md §10): the reader
//! knows only the drive's default key; a core the writer opens later is refused at first
//! (the reader does not hold it), then asked for by key on the reader's side and
//! delivered over the same connection. The default core carries a hypertrie read
//! sparsely through `trie::feed_store::FeedStore`.

use std::sync::Arc;
use std::time::Duration;

use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::store::Corestore;
use hyperdrive::trie::feed_store::FeedStore;
use hyperdrive::trie::{Trie, TrieOptions};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn one_connection_carries_cores_opened_later() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Corestore::open(tmp.path().join("w")).unwrap();
    let reader = Corestore::open(tmp.path().join("r")).unwrap();

    let default = writer.default_feed().unwrap();
    let wtrie = Trie::open(FeedStore::new(default.clone()), TrieOptions::default())
        .await
        .unwrap();
    for i in 0..20 {
        wtrie
            .put(&format!("dir/file-{i}"), format!("value {i}").as_bytes())
            .await
            .unwrap();
    }
    let default_len = default.len();

    // The reader opens only the default key (read-only: it has no name for it).
    let rdefault = reader.get_by_key(&default.key()).unwrap();
    assert!(!rdefault.lock().feed.writable());

    let (a, b) = tokio::io::duplex(1 << 20);
    let (shutdown, stop) = shutdown_channel();
    let wsrc: Arc<dyn FeedSource> = Arc::new(writer.clone());
    let rsrc: Arc<dyn FeedSource> = Arc::new(reader.clone());
    let stats = [
        Arc::new(ConnectionStats::default()),
        Arc::new(ConnectionStats::default()),
    ];
    let t1 = tokio::spawn(replicate(
        a,
        true,
        wsrc,
        ReplicateOptions::default(),
        stats[0].clone(),
        stop.clone(),
    ));
    let t2 = tokio::spawn(replicate(
        b,
        false,
        rsrc,
        ReplicateOptions::default(),
        stats[1].clone(),
        stop,
    ));

    // Sparse trie read on the reader.
    rdefault.set_track_length(true);
    assert_eq!(rdefault.wait_for_length(default_len, T).await, default_len);
    let rtrie = Trie::open(
        FeedStore::with_timeout(rdefault.clone(), T),
        TrieOptions::default(),
    )
    .await
    .unwrap();
    let node = rtrie
        .get("dir/file-7")
        .await
        .unwrap()
        .expect("key replicated");
    assert_eq!(node.value.as_deref(), Some(&b"value 7"[..]));
    let held = {
        let st = rdefault.lock();
        st.feed.bitfield().count_data(0, default_len)
    };
    assert!(held < default_len, "sparse: {held} of {default_len} blocks");

    // The writer opens a second core while the connection runs.
    let x = writer.get_by_name("x").unwrap();
    x.append_batch(&[b"first".to_vec(), b"second".to_vec()])
        .unwrap();
    // The reader does not hold it, so it refuses the writer's Open and creates nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reader
        .get_by_discovery_key(&x.discovery_key())
        .unwrap()
        .is_none());

    // Asked for by key on the reader: opened on the same connection and downloaded.
    let rx = reader.get_by_key(&x.key()).unwrap();
    assert_eq!(rx.get(1, T).await.unwrap(), b"second");
    assert_eq!(rx.get(0, T).await.unwrap(), b"first");
    assert!(!rx.lock().feed.writable());

    // Live: a later append arrives too.
    x.append(b"third").unwrap();
    rx.set_track_length(true);
    assert_eq!(rx.wait_for_length(3, T).await, 3);
    assert_eq!(rx.get(2, T).await.unwrap(), b"third");

    assert!(
        !t1.is_finished() && !t2.is_finished(),
        "still one connection"
    );
    shutdown.send(true).unwrap();
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();

    // After the connection, the reader's copy reopens from its own disk.
    let xkey = x.key();
    drop((rx, rdefault, rtrie));
    reader.close_idle();
    let rx = reader.get_by_key(&xkey).unwrap();
    assert_eq!(rx.len(), 3);
    assert_eq!(rx.lock().feed.get(2).unwrap(), b"third");
}
