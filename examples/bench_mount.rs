//! The Rust side of `scripts/bench-mount.sh`: makes, seeds and mounts drives so the
//! script can time shell tools on the mountpoints. Independent of the CLI on purpose
//! (it only uses the library crates), so the benchmark does not move when the CLI does.
//!
//! ```text
//! bench_mount create --storage S --import DIR        prints: <key hex> <version>
//! bench_mount seed   --storage S --key K --listen 127.0.0.1:0
//!                                                    prints: <port>, serves until SIGTERM
//! bench_mount mount  --storage S --key K [--connect HOST:PORT] [--min-version N]
//!                    [--checkout V] [--prefetch BLOCKS] [--eager-metadata 1]
//!                    --at MOUNTPOINT
//!                                                    prints: mounted, serves until SIGTERM
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyperdrive::drive::{Drive, DriveOptions, WriteOptions, MAX_BLOCK_SIZE};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::store::Corestore;
use hypermount_mount::{mount_drive, serve_until_signal, DriveMountOptions, StopSignals};

/// Flags after the subcommand, as `--name value` pairs.
struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    fn parse(rest: &[String]) -> Result<Args> {
        let mut pairs = Vec::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                bail!("unexpected argument {flag}");
            };
            let Some(value) = it.next() else {
                bail!("--{name} needs a value");
            };
            pairs.push((name.to_string(), value.clone()));
        }
        Ok(Args { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn req(&self, name: &str) -> Result<&str> {
        self.get(name).with_context(|| format!("missing --{name}"))
    }

    fn key(&self) -> Result<[u8; 32]> {
        let bytes = hex::decode(self.req("key")?).context("--key is not hex")?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("--key must be 32 bytes"))
    }
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        bail!("usage: bench_mount create|seed|mount --flags (see the source)");
    };
    let args = Args::parse(rest)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cmd.as_str() {
        "create" => rt.block_on(create(&args)),
        "seed" => rt.block_on(seed(&args)),
        "mount" => mount(&args, &rt),
        other => bail!("unknown subcommand {other}"),
    }
}

fn print_line(s: impl std::fmt::Display) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{s}")?;
    o.flush()?;
    Ok(())
}

async fn create(args: &Args) -> Result<()> {
    let storage = PathBuf::from(args.req("storage")?);
    let src = PathBuf::from(args.req("import")?);
    if !src.is_dir() {
        bail!("{} is not a folder", src.display());
    }
    let store = Corestore::open(&storage)?;
    let drive = Drive::named(Arc::new(store), "default", DriveOptions::default()).await?;
    import(&drive, &src).await?;
    for f in [drive.metadata_feed(), drive.content_feed()] {
        f.lock().feed.sync().context("syncing a feed")?;
    }
    print_line(format!("{} {}", hex::encode(drive.key()), drive.version()))
}

/// Copies `src` into the drive, directories before their contents, names sorted.
async fn import(drive: &Drive, src: &Path) -> Result<()> {
    let mut stack = vec![(src.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                bail!("{}: name is not UTF-8", e.path().display());
            };
            let p = format!("{rel}/{name}");
            let ft = e.file_type()?;
            if ft.is_dir() {
                drive.mkdir(&p, WriteOptions::default()).await?;
                stack.push((e.path(), p));
            } else if ft.is_file() {
                write_file(drive, &p, &e.path()).await?;
            }
        }
    }
    Ok(())
}

/// Streams one file in drive-sized blocks.
async fn write_file(drive: &Drive, p: &str, file: &Path) -> Result<()> {
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut w = drive.create_writer(p, WriteOptions::default()).await?;
    let mut buf = vec![0u8; MAX_BLOCK_SIZE];
    let mut first = true;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 && !first {
            break;
        }
        first = false;
        w.write(&buf[..filled]).await?;
        if filled < buf.len() {
            break;
        }
    }
    w.finish().await?;
    Ok(())
}

async fn seed(args: &Args) -> Result<()> {
    let storage = PathBuf::from(args.req("storage")?);
    let key = args.key()?;
    let listen: SocketAddr = args.get("listen").unwrap_or("127.0.0.1:0").parse()?;
    let store = Corestore::open(&storage)?;
    // Opened so both feeds are loaded and announced to every peer.
    let drive = Drive::open(Arc::new(store.clone()), &key, DriveOptions::default()).await?;
    let listener = hyperdrive::protocol::net::Listener::bind(
        listen,
        Arc::new(store) as Arc<dyn FeedSource>,
        ReplicateOptions::default(),
    )
    .await?;
    print_line(listener.local_addr.port())?;
    until_signal().await?;
    listener.close();
    drop(drive);
    Ok(())
}

async fn until_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn mount(args: &Args, rt: &tokio::runtime::Runtime) -> Result<()> {
    let storage = PathBuf::from(args.req("storage")?);
    let key = args.key()?;
    let at = PathBuf::from(args.req("at")?);
    let min_version: u64 = args.get("min-version").unwrap_or("0").parse()?;
    let checkout: Option<u64> = args.get("checkout").map(str::parse).transpose()?;
    let store = Corestore::open(&storage)?;

    let stop = match args.get("connect") {
        Some(addr) => {
            let addr: SocketAddr = addr.parse()?;
            let socket = rt.block_on(hyperdrive::protocol::net::connect_with_retry(
                addr,
                Duration::from_secs(30),
            ))?;
            let src: Arc<dyn FeedSource> = Arc::new(store.clone());
            let (stop, stop_rx) = shutdown_channel();
            let conn = rt.spawn(async move {
                if let Err(e) = replicate(
                    socket,
                    true,
                    src,
                    ReplicateOptions::default(),
                    Arc::new(ConnectionStats::default()),
                    stop_rx,
                )
                .await
                {
                    eprintln!("replication ended: {e}");
                }
            });
            Some((stop, conn))
        }
        None => None,
    };
    let drive = rt.block_on(Drive::open(Arc::new(store), &key, DriveOptions::default()))?;
    if min_version > 0 {
        let got = rt.block_on(
            drive
                .metadata_feed()
                .wait_for_length(min_version, Duration::from_secs(60)),
        );
        if got < min_version {
            bail!("metadata reached length {got}, wanted {min_version}");
        }
    }
    if args.get("eager-metadata") == Some("1") {
        // Select the whole metadata feed (live) for download in the background, so
        // directory walks do not wait one round trip per trie node. (The drive adapter
        // now does the same for every remote drive; this stays as a cross-check.)
        drive.metadata_feed().download(0, None);
    }
    let mut opts = DriveMountOptions {
        read_only: true,
        version: checkout,
        ..DriveMountOptions::default()
    };
    if let Some(n) = args.get("prefetch") {
        opts.backend.prefetch_blocks = n.parse()?;
    }
    // Catch SIGTERM before mounting: the script may stop us right after "mounted".
    let signals = {
        let _in_runtime = rt.enter();
        StopSignals::register()?
    };
    let mounted = mount_drive(drive, &at, &opts, rt.handle())?;
    print_line("mounted")?;
    rt.block_on(serve_until_signal(mounted, signals))?;
    if let Some((stop, conn)) = stop {
        let _ = stop.send(true);
        let _ = rt.block_on(tokio::time::timeout(Duration::from_secs(5), conn));
    }
    print_line("unmounted")
}
