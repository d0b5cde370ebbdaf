//! The command line between storages over loopback TCP: `seed --listen` in one storage,
//! `export`/`ls`/`cat`/`info`/`mirror` from others with `--connect`, a mirror serving
//! what it mirrored, and `mirror --daemon`.

#[path = "cli_common/mod.rs"]
mod cli_common;

use std::time::{Duration, Instant};

use cli_common::*;
use serde_json::Value;

#[test]
fn seed_then_export_ls_cat_info_mirror_from_other_storages() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let a = tmp.path().join("a");
    let key = last_line(&ok(&a, &["create", "--import", src.to_str().unwrap()]));

    let mut seeder = Bg::spawn(&a, &["seed", "--listen", "127.0.0.1:0"]);
    let addr = seeder.listening();
    let line = seeder.line_starting("seeding ", Duration::from_secs(30));
    assert!(line.contains(&key), "{line}");

    let b = tmp.path().join("b");
    let dest = tmp.path().join("out-b");
    let out = ok(
        &b,
        &["--connect", &addr, "export", &key, dest.to_str().unwrap()],
    );
    assert!(out.contains("exported 4 files"), "{out}");
    assert_same_tree(&src, &dest);

    let c = tmp.path().join("c");
    let ls = ok(&c, &["--connect", &addr, "ls", &format!("{key}/docs")]);
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["deep", "readme.md"]);
    let cat = ok(
        &c,
        &[
            "--connect",
            &addr,
            "cat",
            &format!("hyper://{key}/hello.txt"),
        ],
    );
    assert_eq!(cat, "hello, drive\n");
    let info: Value =
        serde_json::from_str(&ok(&c, &["--connect", &addr, "info", &key, "--json"])).unwrap();
    assert_eq!(info["writable"], false);
    assert_eq!(info["files"], 4);
    assert_eq!(info["peers"], 1);
    // Only what was read came over: far less than the 1.3 MB file.
    assert!(info["bytesHeld"].as_u64().unwrap() < 100_000, "{info}");

    // A mirror downloads everything, then serves it.
    let m = tmp.path().join("m");
    let mut mirror = Bg::spawn(
        &m,
        &[
            "--connect",
            &addr,
            "--listen",
            "127.0.0.1:0",
            "mirror",
            &key,
        ],
    );
    let maddr = mirror.listening();
    let line = mirror.line_starting("mirrored ", Duration::from_secs(60));
    assert!(line.contains(&key), "{line}");
    assert_eq!(seeder.stop(), Some(0), "seed exits 0 on SIGTERM");

    // The seeder is gone: the mirror alone serves the drive.
    let d = tmp.path().join("d");
    let dest = tmp.path().join("out-d");
    ok(
        &d,
        &["--connect", &maddr, "export", &key, dest.to_str().unwrap()],
    );
    assert_same_tree(&src, &dest);
    assert_eq!(mirror.stop(), Some(0), "mirror exits 0 on SIGTERM");

    // Offline, the mirror holds everything.
    let dest = tmp.path().join("out-m");
    ok(&m, &["export", &key, dest.to_str().unwrap()]);
    assert_same_tree(&src, &dest);
    let info: Value = serde_json::from_str(&ok(&m, &["info", &key, "--json"])).unwrap();
    assert!(info["bytesHeld"].as_u64().unwrap() >= 1_300_022, "{info}");
    let reg = std::fs::read_to_string(m.join("drives.json")).unwrap();
    assert!(reg.contains("\"mirror\""), "{reg}");

    // `seed` with no keys serves mirrored drives too.
    let mut again = Bg::spawn(&m, &["seed", "--listen", "127.0.0.1:0"]);
    let addr2 = again.listening();
    let cat = ok(
        &tmp.path().join("e"),
        &["--connect", &addr2, "cat", &format!("{key}/docs/readme.md")],
    );
    assert_eq!(cat, "# readme\n");
    assert_eq!(again.stop(), Some(0));
}

#[test]
fn export_of_an_old_version_from_a_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let a = tmp.path().join("a");
    let key = last_line(&ok(&a, &["create", "--import", src.to_str().unwrap()]));
    std::fs::write(src.join("hello.txt"), b"second version\n").unwrap();
    ok(&a, &["import", &key, src.to_str().unwrap()]);
    let log = ok(&a, &["log", &key]);
    let latest: u64 = last_line(&log).split(' ').next().unwrap().parse().unwrap();

    let mut seeder = Bg::spawn(&a, &["seed", &key, "--listen", "127.0.0.1:0"]);
    let addr = seeder.listening();
    let b = tmp.path().join("b");
    let cat = ok(
        &b,
        &[
            "--connect",
            &addr,
            "cat",
            &format!("{key}+{}/hello.txt", latest - 1),
        ],
    );
    assert_eq!(cat, "hello, drive\n");
    let cat = ok(
        &b,
        &["--connect", &addr, "cat", &format!("{key}/hello.txt")],
    );
    assert_eq!(cat, "second version\n");
    fails(
        &b,
        &["--connect", &addr, "ls", &format!("{key}+{}", latest + 5)],
        &["no version"],
    );
    assert_eq!(seeder.stop(), Some(0));
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

#[test]
fn mirror_daemon_detaches_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let a = tmp.path().join("a");
    let key = last_line(&ok(&a, &["create", "--import", src.to_str().unwrap()]));
    let mut seeder = Bg::spawn(&a, &["seed", "--listen", "127.0.0.1:0"]);
    let addr = seeder.listening();

    let m = tmp.path().join("m");
    let out = ok(&m, &["--connect", &addr, "mirror", &key, "--daemon"]);
    let pid: u32 = out
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let _kill = Kill(pid);
    assert!(alive(pid));
    let log = m.join(format!("mirror-{key}.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("mirrored ")
    {
        assert!(
            Instant::now() < deadline,
            "daemon log never said mirrored: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seeder.stop(), Some(0));
    let dest = tmp.path().join("out");
    ok(&m, &["export", &key, dest.to_str().unwrap()]);
    assert_same_tree(&src, &dest);
}

/// Mounts drive `inner` at `/mnt` in drive `outer`, both in `storage` (no CLI process
/// may hold the storage meanwhile).
fn mount_in_storage(storage: &std::path::Path, outer: &str, inner: &str) {
    use hyperdrive::drive::{Drive, DriveOptions, WriteOptions};
    use hyperdrive::store::Corestore;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Corestore::open(storage).unwrap();
        let key = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
        let d = Drive::open(
            std::sync::Arc::new(store.clone()),
            &key(outer),
            DriveOptions::default(),
        )
        .await
        .unwrap();
        d.mount("/mnt", &key(inner), None, WriteOptions::default())
            .await
            .unwrap();
        d.metadata_feed().lock().feed.sync().unwrap();
    });
}

#[test]
fn mirror_downloads_mounted_drives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let inner_src = tmp.path().join("inner");
    std::fs::create_dir_all(&inner_src).unwrap();
    std::fs::write(inner_src.join("mounted.txt"), b"inside the mount\n").unwrap();
    let a = tmp.path().join("a");
    let outer = last_line(&ok(&a, &["create", "--import", src.to_str().unwrap()]));
    let inner = last_line(&ok(
        &a,
        &["create", "--import", inner_src.to_str().unwrap()],
    ));
    mount_in_storage(&a, &outer, &inner);
    assert_eq!(
        ok(&a, &["cat", &format!("{outer}/mnt/mounted.txt")]),
        "inside the mount\n"
    );

    let mut seeder = Bg::spawn(&a, &["seed", "--listen", "127.0.0.1:0"]);
    let addr = seeder.listening();
    let m = tmp.path().join("m");
    let mut mirror = Bg::spawn(&m, &["--connect", &addr, "mirror", &outer]);
    let line = mirror.line_starting("mirrored ", Duration::from_secs(60));
    assert!(line.contains("1 mounted drive(s)"), "{line}");
    assert_eq!(mirror.stop(), Some(0));
    assert_eq!(seeder.stop(), Some(0));

    // Offline: the mounted drive's file is held too.
    assert_eq!(
        ok(&m, &["cat", &format!("{outer}/mnt/mounted.txt")]),
        "inside the mount\n"
    );
    let dest = tmp.path().join("out");
    ok(&m, &["export", &outer, dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(dest.join("mnt/mounted.txt")).unwrap(),
        b"inside the mount\n"
    );
    assert_eq!(
        std::fs::read(dest.join("docs/deep/big.bin")).unwrap(),
        std::fs::read(src.join("docs/deep/big.bin")).unwrap()
    );
}
