//! The Rust side of `scripts/bench-core.sh`: the same cases as `tests/js/core-bench.js`,
//! on disk in a temporary folder (deleted at the end), printed as one JSON line.
//!
//! ```text
//! cargo run --release -p hyperdrive --example bench_core -- [--mib 256] [--small 100000]
//!     [--single 20000] [--no-replicate]
//! ```
//!
//!   append-64k     --mib MiB as 64 KiB blocks, appended in batches of 16
//!   append-1k      --small 1 KiB blocks, appended in batches of 64
//!   append-single  --single 1 KiB blocks, one `append` each
//!   read-64k       every block of the append-64k feed, in order (`Feed::get`)
//!   read-1k        every block of the append-1k feed, in order
//!   replicate-64k  a fresh read-only feed on disk takes the whole append-64k feed block
//!                  by block: the writer answers each request with `Feed::proof` (against
//!                  the reader's digest, one `RemoteTree` for the "connection") and
//!                  `Feed::get`, the reader checks and stores it with `verify_and_put`
//!
//! Block j of a case holds u32be(j) followed by a fixed pseudo-random pattern. Appends
//! are timed including the filling of the batch buffers, as the Node side does.

use std::time::Instant;

use hyperdrive::core::{crypto, Feed, KeyPair, RemoteTree};

struct Case {
    name: &'static str,
    blocks: u64,
    bytes: u64,
    seconds: f64,
    /// Time this thread spent on a CPU during the case (the process has no other
    /// threads), to read the numbers against when other processes share the cores.
    cpu_seconds: Option<f64>,
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`, Linux).
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Wall and CPU time of `f`.
fn timed<T>(
    f: impl FnOnce() -> Result<T, Box<dyn std::error::Error>>,
) -> Result<(T, f64, Option<f64>), Box<dyn std::error::Error>> {
    let cpu = cpu_ns();
    let start = Instant::now();
    let v = f()?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu
        .zip(cpu_ns())
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e9);
    Ok((v, seconds, cpu_seconds))
}

impl Case {
    fn json(&self) -> String {
        let (mib, bps) = if self.seconds > 0.0 {
            (
                format!("{:.2}", self.bytes as f64 / 1048576.0 / self.seconds),
                format!("{:.0}", self.blocks as f64 / self.seconds),
            )
        } else {
            ("null".into(), "null".into())
        };
        let cpu = self
            .cpu_seconds
            .map_or("null".into(), |c| format!("{c:.4}"));
        format!(
            "{{\"name\":\"{}\",\"blocks\":{},\"bytes\":{},\"seconds\":{:.4},\"cpuSeconds\":{cpu},\"mibPerSec\":{mib},\"blocksPerSec\":{bps}}}",
            self.name, self.blocks, self.bytes, self.seconds
        )
    }
}

/// 64 pseudo-random bytes repeated: the body every block shares.
fn template() -> Vec<u8> {
    let a = crypto::hash(&[b"hypermount bench"]);
    let b = crypto::hash(&[&a]);
    [a, b].concat()
}

fn fill(block: &mut [u8], template: &[u8]) {
    for (chunk, t) in block
        .chunks_mut(template.len())
        .zip(std::iter::repeat(template))
    {
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
}

fn append_case(
    name: &'static str,
    feed: &mut Feed,
    count: u64,
    size: usize,
    batch: usize,
) -> Result<Case, Box<dyn std::error::Error>> {
    let t = template();
    let mut bufs: Vec<Vec<u8>> = (0..batch)
        .map(|_| {
            let mut b = vec![0u8; size];
            fill(&mut b, &t);
            b
        })
        .collect();
    let ((), seconds, cpu_seconds) = timed(|| {
        let mut j = 0u64;
        while j < count {
            let n = (batch as u64).min(count - j) as usize;
            for (k, b) in bufs[..n].iter_mut().enumerate() {
                if size >= 4 {
                    b[..4].copy_from_slice(&((j + k as u64) as u32).to_be_bytes());
                }
            }
            if batch == 1 {
                feed.append(&bufs[0])?;
            } else {
                feed.append_batch(&bufs[..n])?;
            }
            j += n as u64;
        }
        Ok(())
    })?;
    Ok(Case {
        name,
        blocks: count,
        bytes: count * size as u64,
        seconds,
        cpu_seconds,
    })
}

fn read_case(name: &'static str, feed: &mut Feed) -> Result<Case, Box<dyn std::error::Error>> {
    let (bytes, seconds, cpu_seconds) = timed(|| {
        let mut bytes = 0u64;
        for i in 0..feed.len() {
            bytes += std::hint::black_box(feed.get(i)?).len() as u64;
        }
        Ok(bytes)
    })?;
    Ok(Case {
        name,
        blocks: feed.len(),
        bytes,
        seconds,
        cpu_seconds,
    })
}

fn replicate_case(
    name: &'static str,
    writer: &mut Feed,
    dir: &std::path::Path,
) -> Result<Case, Box<dyn std::error::Error>> {
    let mut reader = Feed::open_with_keypair(dir, KeyPair::from_public(&writer.key())?)?;
    let mut remote = RemoteTree::default();
    let ((), seconds, cpu_seconds) = timed(|| {
        for i in 0..writer.len() {
            let digest = reader.digest(i);
            let proof = writer
                .proof(i, digest, false, &mut remote)?
                .ok_or("writer lacks a block it appended")?;
            let value = writer.get(i)?;
            reader.verify_and_put(Some(&value), &proof)?;
        }
        Ok(())
    })?;
    if reader.len() != writer.len() || reader.byte_len() != writer.byte_len() {
        return Err(format!(
            "reader ended at {} blocks / {} bytes, writer has {} / {}",
            reader.len(),
            reader.byte_len(),
            writer.len(),
            writer.byte_len()
        )
        .into());
    }
    Ok(Case {
        name,
        blocks: reader.len(),
        bytes: reader.byte_len(),
        seconds,
        cpu_seconds,
    })
}

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a non-negative integer")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for a in &args {
        if a.starts_with("--")
            && !["--mib", "--small", "--single", "--no-replicate"].contains(&a.as_str())
        {
            return Err(format!(
                "unknown option {a}; usage: bench_core [--mib N] [--small N] [--single N] [--no-replicate]"
            )
            .into());
        }
    }
    let mib = arg(&args, "--mib", 256)?;
    let small = arg(&args, "--small", 100_000)?;
    let single = arg(&args, "--single", 20_000)?;
    let replicate = !args.iter().any(|a| a == "--no-replicate");

    let tmp = tempfile::Builder::new()
        .prefix("hypermount-bench-")
        .tempdir()?;
    let mut cases = Vec::new();
    let mut big = Feed::create(tmp.path().join("big"))?;
    cases.push(append_case("append-64k", &mut big, mib * 16, 65536, 16)?);
    let mut small_feed = Feed::create(tmp.path().join("small"))?;
    cases.push(append_case("append-1k", &mut small_feed, small, 1024, 64)?);
    let mut single_feed = Feed::create(tmp.path().join("single"))?;
    cases.push(append_case(
        "append-single",
        &mut single_feed,
        single,
        1024,
        1,
    )?);
    cases.push(read_case("read-64k", &mut big)?);
    cases.push(read_case("read-1k", &mut small_feed)?);
    if replicate {
        cases.push(replicate_case(
            "replicate-64k",
            &mut big,
            &tmp.path().join("clone"),
        )?);
    }
    drop((big, small_feed, single_feed));
    tmp.close()?;
    let body: Vec<String> = cases.iter().map(Case::json).collect();
    println!(
        "{{\"rust\":\"{}\",\"cases\":[{}]}}",
        env!("CARGO_PKG_VERSION"),
        body.join(",")
    );
    Ok(())
}
