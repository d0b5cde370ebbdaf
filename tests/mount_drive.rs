//! Real FUSE mounts of hyperdrives (needs root and /dev/fuse):
//!
//! - a drive the Node reference seeds from a generated folder, replicated to Rust over TCP
//!   and mounted read-only: `diff -r` against the folder, the usual tools, and a 4 KiB
//!   read in the middle of a 50 MiB file fetching only a few content blocks;
//! - a live Node drive gaining a file while mounted;
//! - a Rust drive mounted read-write, driven by shell tools, remounted, then cloned by
//!   the reference over TCP;
//! - a checkout mount, EROFS on read-only mounts, stale-mount recovery after `kill -9`
//!   of a process holding a mount, and a clean unmount on SIGTERM.
//!
//! Every mount is a guard that unmounts on drop, so a failing test leaves nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hyperdrive::drive::{Drive, DriveOptions, WriteOptions};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::store::Corestore;
use hypermount_mount::{is_mount_point, is_stale, mount_drive, DriveMountOptions, Mounted};
use serde_json::Value;
use sha2::Digest;

const MASTER: [u8; 32] = [0x4d; 32];
const BIG: usize = 50 * 1024 * 1024;
const MANY: usize = 3000;
/// Env var that turns `child_holds_a_mount` into the mount-holding child process.
const CHILD_ENV: &str = "HYPERMOUNT_TEST_CHILD_MOUNT";
const CHILD_MODE_ENV: &str = "HYPERMOUNT_TEST_CHILD_MODE";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `sh -c script` in `cwd`; panics with the output on failure, returns stdout.
fn sh(cwd: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{script}` failed in {}:\nstdout: {}\nstderr: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sh -c script`; returns (success, stderr).
fn sh_try(cwd: &Path, script: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("spawn sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")))
}

/// Deterministic bytes that do not compress into a repeating pattern.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The folder the reference imports: nested and empty dirs, 0 B / 1 B / 64 KiB±1 files,
/// a 50 MiB file, unicode and space names, 3,000 files in one directory.
fn make_fixture(src: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    };
    w("empty.bin", b"");
    w("one.bin", b"1");
    w("sizes/65535.bin", &noise(65_535, 1));
    w("sizes/65536.bin", &noise(65_536, 2));
    w("sizes/65537.bin", &noise(65_537, 3));
    w("big.bin", &noise(BIG, 4));
    w("deep/a/b/c/d.txt", b"deep file\n");
    w("ünï cödé/file with space.txt", b"unicode and spaces\n");
    w("ünï cödé/ëmoji 🎉.txt", b"party\n");
    std::fs::create_dir_all(src.join("empty dir")).expect("mkdir");
    for i in 0..MANY {
        w(
            &format!("many/file-{i:04}.txt"),
            format!("file {i}\n").as_bytes(),
        );
    }
}

/// Content blocks held locally.
fn held_blocks(d: &Drive) -> u64 {
    let st = d.content_feed().lock();
    st.feed.bitfield().count_data(0, st.feed.len())
}

/// A Rust replica of a drive a Node process serves on `port`, replicating until dropped.
struct Replica {
    drive: Drive,
    stop: tokio::sync::watch::Sender<bool>,
    conn: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn connect(port: u16, key: &[u8; 32], version: u64, store: Corestore) -> Replica {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let socket = hyperdrive::protocol::net::connect_with_retry(addr, Duration::from_secs(30))
            .await
            .expect("node listens");
        let src: Arc<dyn FeedSource> = Arc::new(store.clone());
        let (stop, stop_rx) = shutdown_channel();
        let conn = tokio::spawn(async move {
            let _ = replicate(
                socket,
                true,
                src,
                ReplicateOptions::default(),
                Arc::new(ConnectionStats::default()),
                stop_rx,
            )
            .await;
        });
        let opts = DriveOptions {
            timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let drive = Drive::open(Arc::new(store), key, opts)
            .await
            .expect("open replica");
        let got = drive
            .metadata_feed()
            .wait_for_length(version, Duration::from_secs(60))
            .await;
        assert!(got >= version, "metadata replicated to {got} of {version}");
        Replica { drive, stop, conn }
    }

    async fn close(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn).await;
    }
}

fn key32(v: &Value) -> [u8; 32] {
    let b = hex::decode(v.as_str().expect("hex key")).expect("hex");
    b.try_into().expect("32 bytes")
}

fn mount_opts(read_only: bool, version: Option<u64>) -> DriveMountOptions {
    DriveMountOptions {
        read_only,
        version,
        ..DriveMountOptions::default()
    }
}

fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).expect("mkdir");
    p.to_path_buf()
}

/// Unmounts and checks the mount point is gone.
fn finish(m: Mounted) {
    let p = m.mountpoint().to_path_buf();
    m.unmount().expect("unmount");
    assert!(
        !is_mount_point(&p).expect("mountinfo"),
        "{} still mounted",
        p.display()
    );
}

#[test]
fn node_seeded_drive_mounted_read_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = mkdir(&tmp.path().join("src"));
    make_fixture(&src);
    let mut seed = spawn_node(
        &swarm_peer(),
        &[
            "seed",
            "--no-dht",
            "--listen",
            "0",
            "--quiet",
            "--storage",
            tmp.path().join("node").to_str().expect("utf8"),
            "--import",
            src.to_str().expect("utf8"),
        ],
    );
    let info = seed.next_json(Duration::from_secs(300));
    let rt = runtime();
    let store = Corestore::with_master_key(tmp.path().join("rust"), [0x52; 32]);
    let replica = rt.block_on(Replica::connect(
        json_u64(&info, "port") as u16,
        &key32(&info["key"]),
        json_u64(&info, "version"),
        store,
    ));
    let drive = replica.drive.clone();
    let mnt = mkdir(&tmp.path().join("mnt"));
    let mounted =
        mount_drive(drive.clone(), &mnt, &mount_opts(true, None), rt.handle()).expect("mount");

    // A 4 KiB read in the middle of the big file fetches a few blocks, not the file.
    let before = held_blocks(&drive);
    let mid = (BIG / 2 / 4096) as u64;
    let out = sh(
        &mnt,
        &format!(
            "dd if=big.bin bs=4096 skip={mid} count=1 status=none | od -An -tx1 | tr -d ' \\n'"
        ),
    );
    let want = noise(BIG, 4);
    let start = mid as usize * 4096;
    assert_eq!(out, hex::encode(&want[start..start + 4096]));
    let fetched = held_blocks(&drive) - before;
    let total = drive.content_feed().len();
    eprintln!("middle read fetched {fetched} of {total} content blocks");
    assert!(fetched >= 1, "the read must have fetched something");
    assert!(
        fetched <= 24,
        "a 4 KiB read fetched {fetched} of {total} blocks"
    );

    // Sequential read of the big file (prefetch on), then the whole tree.
    assert_eq!(
        sh(&mnt, "md5sum < big.bin"),
        sh(&src, "md5sum < big.bin"),
        "md5sum of the big file"
    );
    sh(tmp.path(), "diff -r src mnt");
    sh(&mnt, "ls -lR > /dev/null");
    assert_eq!(
        sh(&mnt, "find . | LC_ALL=C sort"),
        sh(&src, "find . | LC_ALL=C sort")
    );
    assert_eq!(
        sh(&mnt, "grep -r 'file 1234$' . | cut -d: -f1"),
        "./many/file-1234.txt\n"
    );
    assert_eq!(
        sh(&mnt, "tar cf - . | tar tf - | LC_ALL=C sort"),
        sh(&src, "tar cf - . | tar tf - | LC_ALL=C sort")
    );
    sh(tmp.path(), "cp -r mnt copy && diff -r src copy");
    assert_eq!(
        sh(&mnt, "du -s --apparent-size -B1 big.bin | cut -f1"),
        format!("{BIG}\n")
    );
    sh(&mnt, "du -s . > /dev/null");
    assert_eq!(
        sh(&mnt, "stat -c '%s %F' big.bin"),
        format!("{BIG} regular file\n")
    );
    assert_eq!(
        sh(
            &mnt,
            "stat -c '%s %F' 'ünï cödé/file with space.txt' 'empty dir'"
        ),
        "19 regular file\n0 directory\n"
    );
    assert_eq!(
        sh(&mnt, "md5sum sizes/* one.bin empty.bin"),
        sh(&src, "md5sum sizes/* one.bin empty.bin")
    );
    assert_eq!(
        sh(&mnt, "tail -c 1000 big.bin | md5sum"),
        sh(&src, "tail -c 1000 big.bin | md5sum")
    );
    assert_eq!(sh(&mnt, "ls many | wc -l"), format!("{MANY}\n"));
    // statfs: after the full read everything is held.
    let df = sh(&mnt, "stat -f -c '%b %f %S' .");
    let parts: Vec<u64> = df
        .split_whitespace()
        .map(|s| s.parse().expect("number"))
        .collect();
    assert!(parts[0] * parts[2] >= BIG as u64, "df total {df}");
    assert_eq!(parts[1], 0, "a read-only drive has no free space");
    // Read-only: writes fail with EROFS.
    let (ok, err) = sh_try(&mnt, "touch new-file");
    assert!(!ok && err.contains("Read-only"), "{err}");

    finish(mounted);
    rt.block_on(replica.close());
    seed.terminate(Duration::from_secs(5));
}

#[test]
fn live_mount_shows_a_file_node_writes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut node = spawn_node(
        &js_script("mount-live.js"),
        &[
            tmp.path().join("node").to_str().expect("utf8").to_string(),
            hex::encode(MASTER),
        ],
    );
    let info = node.next_json(Duration::from_secs(120));
    let rt = runtime();
    let store = Corestore::in_memory([0x33; 32]);
    let replica = rt.block_on(Replica::connect(
        json_u64(&info, "port") as u16,
        &key32(&info["key"]),
        json_u64(&info, "version"),
        store,
    ));
    let mnt = mkdir(&tmp.path().join("mnt"));
    let mounted = mount_drive(
        replica.drive.clone(),
        &mnt,
        &mount_opts(true, None),
        rt.handle(),
    )
    .expect("mount");
    assert_eq!(sh(&mnt, "cat hello.txt"), "hello from node\n");
    assert_eq!(sh(&mnt, "ls"), "hello.txt\n");
    let (ok, _) = sh_try(&mnt, "test -e new-1.txt");
    assert!(!ok);

    let status = Command::new("kill")
        .args(["-USR2", &node.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let written = node.next_json(Duration::from_secs(30));
    assert_eq!(written["written"], "/new-1.txt");
    let t0 = Instant::now();
    let mut seen = None;
    while t0.elapsed() < Duration::from_secs(2) {
        if let Ok(s) = std::fs::read_to_string(mnt.join("new-1.txt")) {
            seen = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("new file visible after {:?}", t0.elapsed());
    assert_eq!(seen.as_deref(), Some("new 1\n"), "new file within 2 s");
    assert_eq!(sh(&mnt, "ls"), "hello.txt\nnew-1.txt\n");

    finish(mounted);
    rt.block_on(replica.close());
    node.terminate(Duration::from_secs(5));
}

/// The shell session run on the writable mount and, for the expected result, on a plain
/// folder.
const WRITE_SCRIPT: &str = r#"
set -e
mkdir -p a/b/c
cp -r "$SRC"/. copy
echo one > a/b/c/f.txt
mv copy/x.txt copy/y.txt
mv a moved
rm -r copy/sub
echo hi >> log.txt
echo there >> log.txt
printf 0123456789 > t.bin
truncate -s 4 t.bin
truncate -s 6 t.bin
ln -s y.txt copy/link
touch touched
touch log.txt
chmod 600 copy/y.txt
"#;

fn write_source(src: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    };
    w("x.txt", b"moved file\n");
    w("big.bin", &noise(1_300_000, 9));
    w("sub/gone.txt", b"removed\n");
    w("sub/deeper/gone2.txt", b"removed too\n");
    w("keep/k.txt", b"kept\n");
    w("empty.bin", b"");
}

/// Regular files (and links to them) under `root` as (relative path, sha256), sorted.
fn file_hashes(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).expect("readdir") {
            let e = e.expect("entry");
            let p = e.path();
            // Followed: the reference's clone reads a symlink to a file as that file.
            let ft = std::fs::metadata(&p).expect("stat").file_type();
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).expect("prefix");
                out.push((format!("/{}", rel.display()), sha_file(&p)));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn writable_drive_survives_remount_and_the_reference_clones_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = mkdir(&tmp.path().join("src"));
    write_source(&src);
    let expected = mkdir(&tmp.path().join("expected"));
    let script = format!("SRC='{}'\n{WRITE_SCRIPT}", src.display());
    sh(&expected, &script);
    let storage = tmp.path().join("store");
    let rt = runtime();
    let mnt = mkdir(&tmp.path().join("mnt"));

    let key = {
        let store = Corestore::with_master_key(&storage, MASTER);
        let drive = rt
            .block_on(Drive::named(
                Arc::new(store),
                "default",
                DriveOptions::default(),
            ))
            .expect("drive");
        let key = drive.key();
        let mounted =
            mount_drive(drive, &mnt, &mount_opts(false, None), rt.handle()).expect("mount");
        sh(&mnt, &script);
        if Command::new("setfattr").arg("--version").output().is_ok() {
            sh(&mnt, "setfattr -n user.color -v blue copy/y.txt");
            assert_eq!(
                sh(&mnt, "getfattr --only-values -n user.color copy/y.txt"),
                "blue"
            );
        } else {
            eprintln!("setfattr missing: xattr step skipped");
        }
        sh(tmp.path(), "diff -r expected mnt");
        assert_eq!(sh(&mnt, "readlink copy/link"), "y.txt\n");
        assert_eq!(sh(&mnt, "stat -c %a copy/y.txt"), "600\n");
        assert_eq!(sh(&mnt, "cat log.txt"), "hi\nthere\n");
        assert_eq!(
            sh(&mnt, "od -An -c t.bin | tr -s ' '"),
            " 0 1 2 3 \\0 \\0\n"
        );
        let (ok, _) = sh_try(&mnt, "test -e a || test -e copy/sub || test -e copy/x.txt");
        assert!(!ok, "moved and removed names are gone");
        finish(mounted);
        key
    };

    // Remount from the folder: same content.
    let store = Corestore::with_master_key(&storage, MASTER);
    let drive = rt
        .block_on(Drive::open(
            Arc::new(store.clone()),
            &key,
            DriveOptions::default(),
        ))
        .expect("reopen");
    assert!(drive.writable());
    let mounted =
        mount_drive(drive.clone(), &mnt, &mount_opts(false, None), rt.handle()).expect("remount");
    sh(tmp.path(), "diff -r expected mnt");
    if Command::new("getfattr").arg("--version").output().is_ok() {
        assert_eq!(
            sh(&mnt, "getfattr --only-values -n user.color copy/y.txt"),
            "blue"
        );
    }
    finish(mounted);

    // The reference clones it over TCP and gets the same tree and bytes.
    let listener = rt
        .block_on(hyperdrive::protocol::net::Listener::bind(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::new(store.clone()) as Arc<dyn FeedSource>,
            ReplicateOptions::default(),
        ))
        .expect("listen");
    let out = tmp.path().join("clone");
    let port = listener.local_addr.port();
    let args = vec![
        "clone".to_string(),
        "--no-dht".into(),
        "--quiet".into(),
        "--connect".into(),
        format!("127.0.0.1:{port}"),
        "--key".into(),
        hex::encode(key),
        "--version".into(),
        drive.version().to_string(),
        "--out".into(),
        out.to_str().expect("utf8").into(),
    ];
    let clone = run_node_json(&swarm_peer(), &args, DEFAULT_TIMEOUT);
    listener.close();
    let mut got: Vec<(String, String)> = clone["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().expect("path").to_string(),
                e["sha256"].as_str().expect("sha").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, file_hashes(&expected));
    assert_eq!(file_hashes(&out), file_hashes(&expected));
}

#[test]
fn checkout_mount_is_old_and_read_only_mounts_refuse_writes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let store = Corestore::with_master_key(tmp.path().join("store"), MASTER);
    let drive = rt
        .block_on(Drive::named(
            Arc::new(store),
            "default",
            DriveOptions::default(),
        ))
        .expect("drive");
    let v1 = rt.block_on(async {
        drive
            .write_file("/f.txt", b"version one\n", WriteOptions::default())
            .await
            .expect("w");
        drive.version()
    });
    rt.block_on(async {
        drive
            .write_file("/f.txt", b"version two\n", WriteOptions::default())
            .await
            .expect("w");
        drive
            .write_file("/later.txt", b"later\n", WriteOptions::default())
            .await
            .expect("w");
    });
    let old = mkdir(&tmp.path().join("old"));
    let live = mkdir(&tmp.path().join("live"));
    let m_old = mount_drive(
        drive.clone(),
        &old,
        &mount_opts(false, Some(v1)),
        rt.handle(),
    )
    .expect("+V");
    let m_live =
        mount_drive(drive.clone(), &live, &mount_opts(true, None), rt.handle()).expect("ro");
    assert_eq!(sh(&old, "cat f.txt; ls"), "version one\nf.txt\n");
    assert_eq!(
        sh(&live, "cat f.txt; ls"),
        "version two\nf.txt\nlater.txt\n"
    );
    for dir in [&old, &live] {
        for cmd in ["touch f.txt", "echo x > n.txt", "mkdir d", "rm f.txt"] {
            let (ok, err) = sh_try(dir, cmd);
            assert!(
                !ok && err.contains("Read-only"),
                "{cmd} in {}: {err}",
                dir.display()
            );
        }
    }
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let key: String = hex::encode(drive.key());
    assert!(mounts.contains(&format!("hyper://{key}+{v1}")), "{mounts}");
    finish(m_old);
    finish(m_live);
}

/// The mount-holding child process of the stale-mount test (runs only when spawned by it).
#[test]
#[ignore = "helper: run by stale_mount_is_recovered_after_kill_9"]
fn child_holds_a_mount() {
    let Some(mnt) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mnt = PathBuf::from(mnt);
    let rt = runtime();
    let store = Corestore::in_memory([0x11; 32]);
    let drive = rt
        .block_on(Drive::named(
            Arc::new(store),
            "default",
            DriveOptions::default(),
        ))
        .expect("drive");
    rt.block_on(drive.write_file("/child.txt", b"from the child\n", WriteOptions::default()))
        .expect("write");
    // Signals are caught before the mount exists, so a SIGTERM right after MOUNTED
    // still unmounts cleanly.
    let signals = {
        let _in_runtime = rt.enter();
        hypermount_mount::StopSignals::register().expect("signal handlers")
    };
    let mounted = mount_drive(drive, &mnt, &mount_opts(false, None), rt.handle()).expect("mount");
    println!("MOUNTED");
    if std::env::var(CHILD_MODE_ENV).as_deref() == Ok("serve") {
        rt.block_on(hypermount_mount::serve_until_signal(mounted, signals))
            .expect("clean unmount");
        println!("UNMOUNTED");
    } else {
        std::thread::sleep(Duration::from_secs(120));
        drop(mounted);
    }
}

/// Spawns this test binary as the mount-holding child and waits for its MOUNTED line.
fn spawn_child(
    mnt: &Path,
    mode: &str,
) -> (
    ChildGuard,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_holds_a_mount",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mnt)
        .env(CHILD_MODE_ENV, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let guard = ChildGuard::new(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("child exited before mounting")
            .expect("read child stdout");
        if line.contains("MOUNTED") {
            break;
        }
    }
    (guard, lines)
}

#[test]
fn stale_mount_is_recovered_after_kill_9() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = mkdir(&tmp.path().join("mnt"));
    let (mut child, _lines) = spawn_child(&mnt, "hold");
    assert_eq!(
        std::fs::read_to_string(mnt.join("child.txt")).expect("child's mount"),
        "from the child\n"
    );
    child.child_mut().kill().expect("kill -9");
    let _ = child.wait_timeout(Duration::from_secs(10));
    // The kernel answers stat from its attribute cache until the 1 s TTL runs out.
    let t0 = Instant::now();
    while !is_stale(&mnt) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(is_stale(&mnt), "a killed server leaves a stale mount");

    let rt = runtime();
    let store = Corestore::in_memory([0x22; 32]);
    let drive = rt
        .block_on(Drive::named(
            Arc::new(store),
            "default",
            DriveOptions::default(),
        ))
        .expect("drive");
    rt.block_on(drive.write_file("/parent.txt", b"recovered\n", WriteOptions::default()))
        .expect("write");
    let plain = mount_drive(drive.clone(), &mnt, &mount_opts(false, None), rt.handle());
    assert!(
        matches!(plain, Err(hypermount_mount::MountError::Stale(_))),
        "{plain:?}"
    );
    let mut opts = mount_opts(false, None);
    opts.mount.recover_stale = true;
    let mounted = mount_drive(drive, &mnt, &opts, rt.handle()).expect("mount over stale");
    assert_eq!(
        std::fs::read_to_string(mnt.join("parent.txt")).expect("read"),
        "recovered\n"
    );
    finish(mounted);
    assert!(!is_stale(&mnt));
}

#[test]
fn sigterm_unmounts_cleanly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = mkdir(&tmp.path().join("mnt"));
    let (mut child, mut lines) = spawn_child(&mnt, "serve");
    assert!(is_mount_point(&mnt.canonicalize().expect("canon")).expect("mountinfo"));
    assert_eq!(
        std::fs::read_to_string(mnt.join("child.txt")).expect("child's mount"),
        "from the child\n"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child
        .wait_timeout(Duration::from_secs(20))
        .expect("child exits");
    assert!(exit.success(), "child exit {exit:?}");
    let rest: Vec<String> = lines.by_ref().map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("UNMOUNTED")), "{rest:?}");
    assert!(!is_mount_point(&mnt).expect("mountinfo"));
    assert!(!is_stale(&mnt));
}

/// A Node drive with a second drive mounted inside it (tests/js/drive-common.js),
/// replicated over TCP and mounted with FUSE: the nested mount is a directory whose
/// files come from the second drive's own feeds, fetched on the same connection.
#[test]
fn node_drive_with_a_nested_mount_is_followed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut seed = spawn_node(
        &js_script("drive-serve.js"),
        &[
            tmp.path().join("node").to_str().expect("utf8").to_string(),
            hex::encode([0x4d; 32]),
        ],
    );
    let info = seed.next_json(Duration::from_secs(120));
    let rt = runtime();
    let store = Corestore::with_master_key(tmp.path().join("rust"), [0x53; 32]);
    let replica = rt.block_on(Replica::connect(
        json_u64(&info, "port") as u16,
        &key32(&info["key"]),
        json_u64(&info, "version"),
        store,
    ));
    let mnt = mkdir(&tmp.path().join("mnt"));
    let mounted = mount_drive(
        replica.drive.clone(),
        &mnt,
        &mount_opts(true, None),
        rt.handle(),
    )
    .expect("mount");
    let out = sh(
        &mnt,
        "test -d mnt && cat mnt/inner.txt && echo && cat mnt/through.txt && echo && \
         ls mnt/sub && cat 'ünï cödé/file with space.txt' && echo && readlink link-one && \
         cat deep/a/b/c/d.txt",
    );
    assert_eq!(
        out, "inside\nthrough\ns.txt\nunicode\none\ndeep",
        "files inside the nested mount and around it"
    );
    finish(mounted);
    rt.block_on(replica.close());
    seed.terminate(Duration::from_secs(5));
}
