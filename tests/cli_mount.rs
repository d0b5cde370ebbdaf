//! `hypermount mount`/`unmount`/`dht bootstrap`/`demo` as a user runs them (needs root and
//! /dev/fuse): own drives read-write, `--read-only`, old versions, a remote drive over
//! `--connect`, `--daemon`, stale mounts after `kill -9`, and the bad-input paths.
//!
//! Every mountpoint is a guard that lazily unmounts on drop and every process is killed
//! by pid, so a failing test leaves neither mounts nor processes behind.

#[path = "cli_common/mod.rs"]
mod cli_common;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cli_common::*;
use hypermount_mount::is_stale;

/// errno of a write to a read-only file system (Linux).
const EROFS: i32 = 30;

fn sigkill(pid: u32) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn create_sample(tmp: &Path, storage: &Path) -> (PathBuf, String) {
    let src = sample_tree(tmp);
    let key = last_line(&ok(storage, &["create", "--import", src.to_str().unwrap()]));
    assert_eq!(key.len(), 64, "{key}");
    (src, key)
}

#[test]
fn own_drive_read_write_then_read_only_and_an_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("store");
    let (src, key) = create_sample(tmp.path(), &st);
    let v1: u64 = {
        let info: serde_json::Value =
            serde_json::from_str(&ok(&st, &["info", &key, "--json"])).unwrap();
        info["version"].as_u64().unwrap()
    };
    let mnt = MountDir::new(tmp.path(), "mnt");

    // Read-write: write through the mount, unmount with SIGTERM, read back via the CLI.
    let mut m = mount_fg(&st, &[&key, mnt.s()]);
    assert!(mnt.mounted());
    assert_eq!(
        std::fs::read_to_string(mnt.path().join("hello.txt")).unwrap(),
        "hello, drive\n"
    );
    assert_same_tree(&src.join("docs"), &mnt.path().join("docs"));
    std::fs::write(mnt.path().join("new.txt"), b"written through the mount\n").unwrap();
    std::fs::create_dir(mnt.path().join("made")).unwrap();
    assert_eq!(m.stop(), Some(0), "SIGTERM unmounts cleanly");
    assert!(!mnt.mounted());
    assert_eq!(
        ok(&st, &["cat", &format!("{key}/new.txt")]),
        "written through the mount\n"
    );
    assert!(ok(&st, &["ls", &key]).lines().any(|l| l == "made"));

    // --read-only: writes fail with EROFS.
    let mut m = mount_fg(&st, &[&key, mnt.s(), "--read-only"]);
    let e = std::fs::write(mnt.path().join("nope.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EROFS), "{e}");
    assert!(mnt.path().join("new.txt").exists());
    assert_eq!(m.stop(), Some(0));

    // KEY+V: the version before the writes, read-only.
    let mut m = mount_fg(&st, &[&format!("{key}+{v1}"), mnt.s()]);
    assert!(!mnt.path().join("new.txt").exists());
    assert!(mnt.path().join("hello.txt").exists());
    let e = std::fs::write(mnt.path().join("nope.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EROFS), "{e}");
    assert_eq!(m.stop(), Some(0));
    assert!(!mnt.mounted());
}

#[test]
fn remote_drive_over_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let (src, key) = create_sample(tmp.path(), &a);
    let mut seed = Bg::spawn(&a, &["seed", "--listen", "127.0.0.1:0"]);
    let addr = seed.listening();
    let mnt = MountDir::new(tmp.path(), "mnt");

    let mut m = mount_fg(&b, &[&key, mnt.s(), "--connect", &addr]);
    assert_eq!(
        std::fs::read_to_string(mnt.path().join("hello.txt")).unwrap(),
        "hello, drive\n"
    );
    assert_eq!(
        std::fs::read(mnt.path().join("docs/deep/big.bin")).unwrap(),
        std::fs::read(src.join("docs/deep/big.bin")).unwrap()
    );
    let e = std::fs::write(mnt.path().join("x"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EROFS), "not our drive: {e}");
    assert_eq!(m.stop(), Some(0));
    assert!(!mnt.mounted());
    seed.stop();
    // What was read through the mount stayed in the reader's storage.
    assert_eq!(
        ok(&b, &["cat", &format!("{key}/hello.txt")]),
        "hello, drive\n"
    );
}

#[test]
fn daemon_returns_and_unmount_ends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("store");
    let (_src, key) = create_sample(tmp.path(), &st);
    let mnt = MountDir::new(tmp.path(), "mnt");
    let out = ok(&st, &["mount", &key, mnt.s(), "--daemon"]);
    let pid: u32 = out
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    let _guard = PidGuard(pid);
    assert!(mnt.mounted(), "{out}");
    assert!(alive(pid));
    assert_eq!(
        std::fs::read_to_string(mnt.path().join("hello.txt")).unwrap(),
        "hello, drive\n"
    );
    std::fs::write(mnt.path().join("bg.txt"), b"from the daemon mount\n").unwrap();
    let out = ok(&st, &["unmount", mnt.s()]);
    assert!(
        out.contains("unmounted") && out.contains(&format!("process {pid}")),
        "{out}"
    );
    assert!(!mnt.mounted());
    wait_until("the daemon to exit", Duration::from_secs(10), || {
        !alive(pid)
    });
    assert_eq!(
        ok(&st, &["cat", &format!("{key}/bg.txt")]),
        "from the daemon mount\n",
        "the daemon flushed its writes"
    );
}

#[test]
fn kill_9_leaves_a_stale_mount_that_unmount_and_mount_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("store");
    let (_src, key) = create_sample(tmp.path(), &st);
    let mnt = MountDir::new(tmp.path(), "mnt");

    let m = mount_fg(&st, &[&key, mnt.s()]);
    sigkill(m.pid());
    drop(m);
    wait_until("a stale mount", Duration::from_secs(10), || {
        is_stale(mnt.path())
    });
    let out = ok(&st, &["unmount", mnt.s()]);
    assert!(out.contains("stale"), "{out}");
    assert!(!is_stale(mnt.path()) && !mnt.mounted());

    let m = mount_fg(&st, &[&key, mnt.s()]);
    sigkill(m.pid());
    drop(m);
    wait_until("a stale mount", Duration::from_secs(10), || {
        is_stale(mnt.path())
    });
    let mut m = mount_fg(&st, &[&key, mnt.s()]);
    assert!(!is_stale(mnt.path()));
    assert_eq!(
        std::fs::read_to_string(mnt.path().join("hello.txt")).unwrap(),
        "hello, drive\n"
    );
    assert_eq!(m.stop(), Some(0));
    assert!(!mnt.mounted() && !is_stale(mnt.path()));
}

#[test]
fn bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("store");
    let (_src, key) = create_sample(tmp.path(), &st);
    let missing = tmp.path().join("missing");
    fails(
        &st,
        &["mount", &key, missing.to_str().unwrap()],
        &["does not exist"],
    );
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("f"), b"x").unwrap();
    fails(
        &st,
        &["mount", &key, full.to_str().unwrap()],
        &["not empty"],
    );
    let mnt = MountDir::new(tmp.path(), "mnt");
    fails(&st, &["mount", "abc", mnt.s()], &["bad drive key"]);
    fails(
        &st,
        &["mount", &format!("{key}+999"), mnt.s()],
        &["no version 999"],
    );
    fails(&st, &["unmount", mnt.s()], &["nothing is mounted"]);
    fails(
        &st,
        &["unmount", missing.to_str().unwrap()],
        &["nothing is mounted"],
    );
    fails(&st, &["unmount", "/proc"], &["not a hypermount mount"]);
    assert!(!mnt.mounted());

    let mut m = mount_fg(&st, &[&key, mnt.s()]);
    fails(&st, &["mount", &key, mnt.s()], &["already a mount point"]);
    assert!(mnt.mounted(), "the failed mount left the first one alone");
    assert_eq!(m.stop(), Some(0));
    assert!(!mnt.mounted());
}

#[test]
fn dht_bootstrap_answers_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let mut boot = Bg::spawn(tmp.path(), &["dht", "bootstrap", "--listen", "127.0.0.1:0"]);
    let line = boot.line_starting("ready ", Duration::from_secs(30));
    let port: u16 = line.trim_start_matches("ready ").trim().parse().unwrap();
    assert_ne!(port, 0);
    let out = common::node_command(
        &common::swarm_peer(),
        &[
            "ping",
            "--bootstrap",
            &format!("127.0.0.1:{port}"),
            "--quiet",
        ],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ping failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["pong"].as_str().unwrap().starts_with("127.0.0.1:"), "{v}");
    assert_eq!(boot.stop(), Some(0), "SIGTERM ends the bootstrap node");

    fails(tmp.path(), &["dht", "bootstrap"], &["--listen"]);
}

#[test]
fn demo_mounts_lists_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo");
    std::fs::create_dir(&root).unwrap();
    let t = Instant::now();
    let out = ok(&root, &["demo"]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "demo took {:?}",
        t.elapsed()
    );
    assert!(out.contains("$ ls -l"), "{out}");
    // `ls -l` lines of the sample: a folder and files with their sizes.
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with('d') && l.ends_with(" notes")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("-r")
            && l.contains(" 2097152 ")
            && l.ends_with(" big.bin")),
        "{out}"
    );
    assert!(out.contains("Hello from a hyperdrive!"), "{out}");
    assert!(out.contains("content blocks"), "{out}");
    assert!(!root.join("mnt").exists(), "the mountpoint was removed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()), "{mounts}");
}
