//! Append throughput of `Feed` on disk: `cargo run --release --example feed_bench`.

use std::time::Instant;

use hyperdrive::core::Feed;

fn run(label: &str, block: usize, batch: usize, total_blocks: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut feed = if std::env::var_os("BENCH_MEMORY").is_some() {
        Feed::in_memory(hyperdrive::core::KeyPair::generate())
    } else {
        Feed::create(dir.path()).expect("create")
    };
    let data = vec![0x5au8; block];
    let blocks: Vec<&[u8]> = vec![&data; batch];
    let t = Instant::now();
    for _ in 0..total_blocks / batch {
        feed.append_batch(&blocks).expect("append");
    }
    let s = t.elapsed().as_secs_f64();
    let n = (total_blocks / batch * batch) as f64;
    println!(
        "{label}: {:.0} blocks/s, {:.1} MiB/s",
        n / s,
        n * block as f64 / s / 1048576.0
    );
    let t = Instant::now();
    for i in 0..feed.len() {
        std::hint::black_box(feed.get(i).expect("get"));
    }
    println!(
        "  sequential get: {:.0} blocks/s",
        n / t.elapsed().as_secs_f64()
    );
}

/// What the machine gives us right now, to read the feed numbers against.
fn baseline() {
    let data = vec![0x5au8; 65536];
    let t = Instant::now();
    for _ in 0..2048 {
        std::hint::black_box(hyperdrive::core::crypto::leaf_hash(&data));
    }
    let s = t.elapsed().as_secs_f64();
    println!("baseline: BLAKE2b {:.1} MiB/s", 128.0 / s);
    let kp = hyperdrive::core::KeyPair::generate();
    let t = Instant::now();
    for i in 0..5000u32 {
        std::hint::black_box(kp.sign(&i.to_be_bytes()).expect("sign"));
    }
    println!(
        "baseline: Ed25519 {:.0} signatures/s",
        5000.0 / t.elapsed().as_secs_f64()
    );
}

fn main() {
    baseline();
    run("64 KiB x16", 65536, 16, 16 * 1024);
    run("1 KiB x64", 1024, 64, 64 * 8192);
    run("1 KiB x1", 1024, 1, 100_000);
}
