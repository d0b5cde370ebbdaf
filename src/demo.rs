//! `hypermount demo`: everything on one machine, no network but loopback.
//!
//! A writer feed is created from a small generated sample in one storage and seeded on
//! 127.0.0.1; a reader in a second storage knows only the public key, reads three
//! blocks sparsely (only those blocks and their proofs move), then downloads the rest,
//! and every block is checked against what was written. Temporary storage is removed
//! at the end unless `--storage` names a folder to keep it in.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyperdrive::core::{Feed, KeyPair};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSet, ReplicateOptions,
};
use hyperdrive::protocol::net::{connect_with_retry, Listener};
use hyperdrive::protocol::replicate::SharedFeed;

const BLOCKS: u64 = 1000;
const T: Duration = Duration::from_secs(20);

/// Block `i` of the sample: a line of text, then filler up to 4 KiB.
fn sample_block(i: u64) -> Vec<u8> {
    let mut b = format!("block {i:04} of the hypermount demo feed\n").into_bytes();
    b.extend((0..4096 - b.len()).map(|j| b'a' + ((i as usize + j) % 26) as u8));
    b
}

pub async fn run(storage: Option<PathBuf>) -> Result<()> {
    let tmp;
    let root = match storage {
        Some(dir) => dir,
        None => {
            tmp = tempfile::tempdir().context("creating a temporary folder")?;
            tmp.path().to_path_buf()
        }
    };
    let seed_dir = root.join("seeder");
    let reader_dir = root.join("reader");
    if seed_dir.exists() || reader_dir.exists() {
        bail!(
            "{} already holds demo feeds; name an empty folder with --storage",
            root.display()
        );
    }

    println!("1. creating a feed in {}", seed_dir.display());
    let started = Instant::now();
    let mut feed = Feed::create(&seed_dir).context("creating the seeder's feed")?;
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(sample_block).collect();
    for batch in blocks.chunks(50) {
        feed.append_batch(batch).context("appending")?;
    }
    feed.sync().context("syncing the seeder's feed")?;
    let key = feed.key();
    println!(
        "   {} blocks, {} bytes, key {} ({} ms)",
        feed.len(),
        feed.byte_len(),
        hex::encode(key),
        started.elapsed().as_millis()
    );

    let writer = SharedFeed::new(feed);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().expect("a socket address"),
        FeedSet::new(vec![writer.clone()]),
        ReplicateOptions::default(),
    )
    .await
    .context("listening on 127.0.0.1")?;
    println!("2. seeding on {}", listener.local_addr);

    println!(
        "3. a reader in {} dials in knowing only the key",
        reader_dir.display()
    );
    let public = KeyPair::from_public(&key)?;
    let reader = SharedFeed::new(Feed::open_with_keypair(&reader_dir, public)?);
    let socket = connect_with_retry(listener.local_addr, T).await?;
    let stats = Arc::new(ConnectionStats::default());
    let (stop_tx, stop) = shutdown_channel();
    let conn = tokio::spawn(replicate(
        socket,
        true,
        FeedSet::new(vec![reader.clone()]),
        ReplicateOptions::default(),
        stats.clone(),
        stop,
    ));

    for i in [7u64, 500, BLOCKS - 1] {
        let t = Instant::now();
        let b = reader
            .get(i, T)
            .await
            .with_context(|| format!("reading block {i}"))?;
        if b != blocks[i as usize] {
            bail!("block {i} differs from what the seeder wrote");
        }
        let line = String::from_utf8_lossy(&b[..b.iter().position(|&c| c == b'\n').unwrap_or(0)])
            .into_owned();
        println!(
            "   read block {i:4} in {:5.1} ms: {line:?}",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let held = {
        let st = reader.lock();
        st.feed.bitfield().count_data(0, st.feed.len())
    };
    println!(
        "   sparse: the reader holds {held} of {} blocks; {} bytes came over the wire",
        reader.len(),
        stats.bytes_in.load(Ordering::Relaxed)
    );

    println!("4. downloading the rest");
    let t = Instant::now();
    let id = reader.download(0, Some(BLOCKS));
    if !reader.downloaded(id, T).await {
        bail!("the download did not complete within {} s", T.as_secs());
    }
    {
        let mut st = reader.lock();
        for (i, want) in blocks.iter().enumerate() {
            if &st.feed.get(i as u64)? != want {
                bail!("block {i} differs after the download");
            }
        }
        st.feed.sync()?;
    }
    println!(
        "   all {BLOCKS} blocks verified (hashes up to a signed root) in {} ms; {} bytes in",
        t.elapsed().as_millis(),
        stats.bytes_in.load(Ordering::Relaxed)
    );

    let _ = stop_tx.send(true);
    let _ = conn.await;
    listener.close();
    drop(reader);

    println!("5. reopening the reader's storage from disk");
    let mut reopened = Feed::open(&reader_dir).context("reopening the reader's feed")?;
    for (i, want) in blocks.iter().enumerate() {
        if &reopened.get(i as u64)? != want {
            bail!("block {i} differs after reopening");
        }
    }
    println!(
        "   {} blocks, {} bytes, writable: {}; done.",
        reopened.len(),
        reopened.byte_len(),
        reopened.writable()
    );
    Ok(())
}
