//! `Drive::write_files` writes the same feeds as `write_file` on each file in order
//! (block for block), with two signatures for the whole batch.

use std::sync::Arc;

use hyperdrive::drive::{Drive, DriveError, DriveOptions, MemoryProvider, WriteOptions};

fn opts() -> DriveOptions {
    DriveOptions {
        clock: Some(Arc::new(|| 1_600_000_000_000)),
        ..Default::default()
    }
}

async fn drive() -> Drive {
    Drive::named(Arc::new(MemoryProvider::new([9; 32])), "default", opts())
        .await
        .unwrap()
}

fn blocks(d: &Drive, content: bool) -> Vec<Vec<u8>> {
    let feed = if content {
        d.content_feed()
    } else {
        d.metadata_feed()
    };
    let mut st = feed.lock();
    (0..st.feed.len())
        .map(|i| st.feed.get(i).unwrap())
        .collect()
}

fn signatures(d: &Drive) -> usize {
    let mut st = d.content_feed().lock();
    let len = st.feed.len();
    // Distinct signed lengths covering the content feed.
    let mut slots: Vec<u64> = (0..len)
        .filter_map(|i| st.feed.signature(i).unwrap().map(|(slot, _)| slot))
        .collect();
    slots.dedup();
    slots.len()
}

#[tokio::test]
async fn batch_writes_the_same_blocks_as_one_by_one() {
    let big = vec![7u8; 600 * 1024];
    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| {
            (
                format!("/d{}/f{i}", i % 5),
                format!("file {i}").into_bytes(),
            )
        })
        .chain([
            ("/empty".to_string(), Vec::new()),
            ("/big".to_string(), big.clone()),
            ("/d1/f1".to_string(), b"overwritten".to_vec()),
        ])
        .collect();
    let one = drive().await;
    for (p, data) in &files {
        one.write_file(p, data, WriteOptions::default())
            .await
            .unwrap();
    }
    let batch = drive().await;
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    batch
        .write_files(&refs, WriteOptions::default())
        .await
        .unwrap();

    assert_eq!(blocks(&one, false), blocks(&batch, false), "metadata feeds");
    assert_eq!(blocks(&one, true), blocks(&batch, true), "content feeds");
    assert_eq!(batch.read_file("/d1/f1").await.unwrap(), b"overwritten");
    assert_eq!(batch.read_file("/big").await.unwrap(), big);
    assert_eq!(batch.stat("/empty").await.unwrap().size, 0);
    assert_eq!(batch.readdir("/d3", false).await.unwrap().len(), 10);
    assert!(signatures(&one) > 50);
    assert_eq!(signatures(&batch), 1, "one content append for the batch");
}

#[tokio::test]
async fn batch_refuses_a_directory_and_writes_nothing() {
    let d = drive().await;
    d.write_file("/dir/inner", b"x", WriteOptions::default())
        .await
        .unwrap();
    let (meta, content) = (d.metadata_feed().len(), d.content_feed().len());
    let r = d
        .write_files(
            &[("/a", b"1".as_slice()), ("/dir", b"2".as_slice())],
            WriteOptions::default(),
        )
        .await;
    assert!(matches!(r, Err(DriveError::IsADirectory { .. })), "{r:?}");
    assert_eq!(d.metadata_feed().len(), meta);
    assert_eq!(d.content_feed().len(), content);
}

#[tokio::test]
async fn batch_writes_through_mounts() {
    let d = drive().await;
    let s = d.sibling("second").await.unwrap();
    d.mount("/mnt", &s.key(), None, WriteOptions::default())
        .await
        .unwrap();
    d.write_files(
        &[("/top", b"t".as_slice()), ("/mnt/in", b"i".as_slice())],
        WriteOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(d.read_file("/top").await.unwrap(), b"t");
    assert_eq!(d.read_file("/mnt/in").await.unwrap(), b"i");
    assert_eq!(s.read_file("/in").await.unwrap(), b"i");
    assert!(!s.exists("/top").await.unwrap());
}
