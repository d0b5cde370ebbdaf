//! `hypermount demo`: the whole path on one machine, no network but loopback.
//!
//! A private Hyperswarm DHT is started on 127.0.0.1 (one bootstrap node). A drive is
//! created from a small generated sample folder in one storage and announced on that DHT;
//! a reader in a second storage that knows only the public key looks it up, connects,
//! and mounts it, and real `ls -l` and a read through the mount show it working while
//! only the blocks that were read move. Where FUSE cannot mount (no /dev/fuse, not
//! root) the same listing and file are shown through the drive API. Everything is
//! unmounted and removed at the end, on errors too (the mount and the temporary folder
//! are guards), unless `--storage` names a folder to keep the storages in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use hyperdrive::drive::{Drive, DriveOptions};
use hyperdrive::protocol::driver::FeedSource;
use hyperdrive::store::Corestore;
use hypermount_mount::{mount_drive, DriveMountOptions, Mounted};

use crate::commands::{flush, long_line, open_drive, Env, GlobalOpts, Opened};
use crate::keyarg::DriveRef;
use crate::network::{JoinOptions, NetConfig, Network, SwarmNetwork};
use crate::sync;

/// The text file the demo reads through the mount.
const SHOWN_FILE: &str = "hello.txt";
/// Size of the sample's large file: several 64 KiB content blocks, of which the demo
/// reads none.
const BIG_FILE: usize = 2 * 1024 * 1024;

/// Writes the sample folder: a few text files, a subfolder and a 2 MiB file.
fn make_sample(dir: &Path) -> Result<()> {
    let w = |rel: &str, data: &[u8]| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&p, data).with_context(|| format!("writing {}", p.display()))
    };
    w(
        SHOWN_FILE,
        b"Hello from a hyperdrive!\nThis file came over loopback, block by block, as it was read.\n",
    )?;
    w(
        "README.md",
        b"# hypermount demo\n\nA sample folder turned into a Dat2 hyperdrive.\n",
    )?;
    w(
        "notes/todo.txt",
        b"- seed the drive\n- mount it elsewhere\n- read only what is needed\n",
    )?;
    w("notes/ideas.txt", b"sparse replication is lazy loading\n")?;
    // Deterministic bytes that do not repeat.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut big = Vec::with_capacity(BIG_FILE + 8);
    while big.len() < BIG_FILE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    big.truncate(BIG_FILE);
    w("big.bin", &big)
}

pub async fn run(storage: Option<PathBuf>) -> Result<()> {
    // Declared first so it is dropped (removed) last, after the mount guard.
    let tmp;
    let keep = storage.is_some();
    let root = match storage {
        Some(dir) => dir,
        None => {
            tmp = tempfile::tempdir().context("creating a temporary folder")?;
            tmp.path().to_path_buf()
        }
    };
    let sample = root.join("sample");
    let seed_dir = root.join("seeder");
    let reader_dir = root.join("reader");
    let mnt = root.join("mnt");
    for p in [&sample, &seed_dir, &reader_dir, &mnt] {
        if p.exists() {
            bail!(
                "{} already holds a demo ({} exists); name an empty folder with --storage",
                root.display(),
                p.display()
            );
        }
    }
    make_sample(&sample)?;
    println!("1. a sample folder {}", sample.display());

    // The writer: a drive in its own storage, seeded on loopback.
    let store = Corestore::open(&seed_dir)
        .with_context(|| format!("opening storage {}", seed_dir.display()))?;
    let drive = Drive::named(
        Arc::new(store.clone()),
        "hypermount-demo",
        DriveOptions::default(),
    )
    .await
    .context("creating the demo drive")?;
    let imported = sync::import_dir(&drive, &sample).await?;
    flush(&drive)?;
    let key = drive.key();
    println!(
        "   imported into drive hyper://{} (version {}): {imported}",
        hex::encode(key),
        drive.version()
    );
    // A private DHT: one bootstrap node on loopback, nothing leaves the machine.
    let boot =
        hyperdrive::swarm::bootstrap::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), Vec::new())
            .await
            .context("starting a DHT bootstrap node on 127.0.0.1")?;
    let bootstrap = vec![boot.local_addr().to_string()];
    let seeder = SwarmNetwork::new(NetConfig {
        bootstrap: Some(bootstrap.clone()),
        connect: Vec::new(),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        announce_local_address: false,
        mdns: false,
        transports: Default::default(),
    });
    let source: Arc<dyn FeedSource> = Arc::new(store.clone());
    let seeding = seeder
        .join(
            source,
            &[drive.discovery_key()],
            JoinOptions {
                announce: true,
                lookup: false,
            },
        )
        .await?;
    if let Some(e) = &seeding.dht_error {
        let e = e.clone();
        seeding.close().await;
        bail!("announcing the drive on the demo's DHT failed: {e}");
    }
    let Some(addr) = seeding.listening else {
        seeding.close().await;
        bail!("the seeder is not listening");
    };
    println!(
        "2. seeding it on {addr} from {}, announced on a private DHT (bootstrap node {})",
        seed_dir.display(),
        boot.local_addr()
    );

    // The reader: another storage that knows only the key and the DHT bootstrap node.
    let reader_env = Env::new(GlobalOpts {
        storage: Some(reader_dir.clone()),
        bootstrap,
        connect: Vec::new(),
        listen: None,
        no_dht: false,
        announce_local: false,
        mdns: false,
        transports: Default::default(),
        quiet: true,
    })?;
    let r = DriveRef {
        key,
        version: None,
        path: "/".into(),
    };
    let o = match open_drive(&reader_env, &r, false).await {
        Ok(o) => o,
        Err(e) => {
            seeding.close().await;
            return Err(e.context("the reader could not open the drive"));
        }
    };
    println!(
        "3. a reader in {} looked the key up on the DHT, connected to {} peer(s) and found version {}",
        reader_dir.display(),
        o.session.peers(),
        o.live.version()
    );

    let shown = show(&o, &mnt).await;
    let was_mounted = matches!(shown, Ok(true));
    report(&o);
    let _ = flush(&o.live);
    o.session.close().await;
    seeding.close().await;
    drop(o.store);
    drop(store);
    shown?;
    let _ = std::fs::remove_dir(&mnt);
    let unmounted = if was_mounted { "unmounted, " } else { "" };
    if keep {
        println!(
            "5. done: {unmounted}connections closed; storages kept in {}",
            root.display()
        );
    } else {
        println!("5. done: {unmounted}connections closed, temporary folders removed");
    }
    Ok(())
}

/// Mounts the reader's drive at `mnt` and shows it through the mount, or through the
/// drive API if it cannot be mounted. Returns whether it was mounted.
async fn show(o: &Opened, mnt: &Path) -> Result<bool> {
    std::fs::create_dir_all(mnt).with_context(|| format!("creating {}", mnt.display()))?;
    match try_mount(o, mnt) {
        Ok(mounted) => {
            println!("4. mounted at {} (read-only: not our drive)", mnt.display());
            let res = through_mount(mnt).await;
            // Unmounting waits for the FUSE thread: off the runtime's workers.
            let unmounted = tokio::task::spawn_blocking(move || mounted.unmount())
                .await
                .context("unmounting")?;
            res?;
            unmounted.context("unmounting the demo mount")?;
            println!("   unmounted {}", mnt.display());
            Ok(true)
        }
        Err(why) => {
            println!("4. cannot mount here ({why:#}); showing the same through the drive API");
            through_api(o).await?;
            Ok(false)
        }
    }
}

fn try_mount(o: &Opened, mnt: &Path) -> Result<Mounted> {
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is not available");
    }
    let handle = tokio::runtime::Handle::current();
    let drive = o.live.clone();
    tokio::task::block_in_place(|| mount_drive(drive, mnt, &DriveMountOptions::default(), &handle))
        .context("mounting needs root (or CAP_SYS_ADMIN) and FUSE")
}

async fn through_mount(mnt: &Path) -> Result<()> {
    for dir in [mnt.to_path_buf(), mnt.join("notes")] {
        println!("   $ ls -l {}", dir.display());
        let out = tokio::process::Command::new("ls")
            .arg("-l")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running ls")?;
        if !out.status.success() {
            bail!(
                "ls -l {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
    }
    let file = mnt.join(SHOWN_FILE);
    println!("   $ cat {}", file.display());
    let text = tokio::fs::read_to_string(&file)
        .await
        .with_context(|| format!("reading {} through the mount", file.display()))?;
    print!("{}", indent(&text));
    Ok(())
}

async fn through_api(o: &Opened) -> Result<()> {
    for dir in ["/", "/notes"] {
        println!("   listing {dir}:");
        let entries = o
            .live
            .readdir(dir, true)
            .await
            .with_context(|| format!("listing {dir}"))?;
        for e in entries {
            match &e.stat {
                Some(st) => println!("   {}", long_line(&e.name, st)),
                None => println!("   {}", e.name),
            }
        }
    }
    println!("   /{SHOWN_FILE}:");
    let h = o.live.open_file(&format!("/{SHOWN_FILE}")).await?;
    let data = h.read(0, h.stat.size).await?;
    print!("{}", indent(&String::from_utf8_lossy(&data)));
    Ok(())
}

/// What came over the wire: only the blocks that were read.
fn report(o: &Opened) {
    let content = o.live.content_feed();
    let (held, total) = {
        let st = content.lock();
        let len = st.feed.len();
        (st.feed.bitfield().count_data(0, len), len)
    };
    println!(
        "   fetched: the reader holds {held} of {total} content blocks; {} bytes received{}",
        o.session.stats.bytes_in.load(Ordering::Relaxed),
        if held < total {
            " (blocks nobody read stayed with the seeder)"
        } else {
            ""
        }
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}
