//! Everyday tools against real FUSE mounts of the in-memory backend.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{have, sh, sh_ok, Fixture, SLOW};
use hypermount_fs::{FileKind, HyperFsOptions, MemoryBackend};

/// A small tree on disk and the same tree in a backend.
fn source_tree(root: &Path, backend: &MemoryBackend) {
    let files: &[(&str, Vec<u8>)] = &[
        ("a.txt", b"alpha\n".to_vec()),
        ("docs/readme.md", b"# hello\nneedle here\n".to_vec()),
        (
            "docs/deep/x/y.bin",
            (0..=255u8).cycle().take(300_000).collect(),
        ),
        ("empty", Vec::new()),
        ("sp ace.txt", b"spaces are fine\n".to_vec()),
    ];
    for (p, data) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, data).expect("write");
        backend.insert_file(&format!("/{p}"), data, 0o644);
    }
    std::fs::create_dir_all(root.join("emptydir")).expect("mkdir");
    backend.insert_dir("/emptydir");
    std::os::unix::fs::symlink("docs/readme.md", root.join("link")).expect("symlink");
    backend.insert_symlink("/link", "docs/readme.md");
}

#[test]
fn read_only_mount_serves_everyday_tools() {
    let backend = Arc::new(MemoryBackend::new(false));
    let src = tempfile::tempdir().expect("tempdir");
    source_tree(src.path(), &backend);
    let fx = Fixture::new(backend, HyperFsOptions::immutable());
    let mnt = fx.mnt();
    let s = src.path();
    let m = mnt.display().to_string();

    let ls = sh_ok(&mnt, "ls -l");
    assert!(
        ls.contains("a.txt") && ls.contains("link -> docs/readme.md"),
        "{ls}"
    );
    assert_eq!(sh_ok(&mnt, "cat a.txt"), "alpha\n");
    let find_m = sh_ok(&mnt, "find . | sort");
    let find_s = sh_ok(s, "find . | sort");
    assert_eq!(find_m, find_s);
    assert_eq!(
        sh_ok(&mnt, "grep -r needle . | sort"),
        "./docs/readme.md:needle here\n"
    );
    // Directory sizes differ from the host fs (0 here), so compare files.
    let du = "find . -type f -exec du -b {} + | sort -k2";
    assert_eq!(sh_ok(&mnt, du), sh_ok(s, du));
    // du -s walks the whole tree: 586 blocks for y.bin + 1 each for the small files.
    assert_eq!(sh_ok(&mnt, "du -s -B512 . | cut -f1"), "590\n");
    // st_blocks in 512-byte units: 300 000 bytes -> 586 blocks.
    assert_eq!(sh_ok(&mnt, "stat -c %b docs/deep/x/y.bin"), "586\n");
    assert_eq!(
        sh_ok(&mnt, "stat -c %s:%F docs/deep/x/y.bin"),
        "300000:regular file\n"
    );
    // nlink: dirs 2 + subdirectories, files 1.
    assert_eq!(
        sh_ok(&mnt, "stat -c %h docs . a.txt emptydir"),
        "3\n4\n1\n2\n"
    );
    let uid = sh_ok(s, "id -u");
    assert_eq!(sh_ok(&mnt, "stat -c %u a.txt"), uid);
    sh_ok(&mnt, "tar cf - . | tar tf - | sort > /dev/null");
    let out = tempfile::tempdir().expect("tempdir");
    sh_ok(
        out.path(),
        &format!("cp -r '{m}' copy && diff -r '{}' copy", s.display()),
    );
    sh_ok(s, &format!("diff -r . '{m}'"));

    let (ok, _, err) = sh(&mnt, "touch new.txt");
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    let (ok, _, err) = sh(&mnt, "echo x >> a.txt");
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    let (ok, _, err) = sh(&mnt, "mkdir d");
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    fx.finish();
}

#[test]
fn writable_mount_commits_to_the_backend() {
    let backend = Arc::new(MemoryBackend::new(true));
    let src = tempfile::tempdir().expect("tempdir");
    source_tree(src.path(), &MemoryBackend::new(true));
    let fx = Fixture::live(backend.clone());
    let mnt = fx.mnt();
    let s = src.path().display().to_string();

    sh_ok(&mnt, &format!("cp -r '{s}' in && diff -r '{s}' in"));
    sh_ok(
        &mnt,
        "mkdir -p a/b/c && echo one > a/b/c/f && mv a/b/c/f a/g",
    );
    sh_ok(&mnt, "mv a/b moved && test -d moved/c && test ! -e a/b");
    sh_ok(&mnt, "echo first > log && echo second >> log");
    sh_ok(
        &mnt,
        "printf 0123456789 > t && truncate -s 4 t && truncate -s 6 t",
    );
    sh_ok(&mnt, "ln -s a/g sym && cat sym");
    sh_ok(
        &mnt,
        "touch -d '2001-02-03 04:05:06 UTC' stamp && touch a/g",
    );
    sh_ok(&mnt, "chmod 600 log");
    sh_ok(&mnt, "cp -r in/docs docs2 && rm -r in");
    sh_ok(&mnt, "echo overwrite > a/g");

    let snap = backend.snapshot();
    let get = |p: &str| {
        snap.get(p)
            .unwrap_or_else(|| panic!("{p} missing: {:?}", snap.keys()))
    };
    assert_eq!(get("/a/g").data, b"overwrite\n");
    assert!(get("/moved/c").kind == FileKind::Dir);
    assert!(!snap.contains_key("/a/b"));
    assert!(!snap.keys().any(|k| k.starts_with("/in")));
    assert_eq!(get("/log").data, b"first\nsecond\n");
    assert_eq!(get("/log").mode, 0o600);
    assert_eq!(get("/t").data, b"0123\0\0");
    assert_eq!(get("/sym").kind, FileKind::Symlink);
    assert_eq!(get("/sym").data, b"a/g");
    let stamp = get("/stamp")
        .mtime
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time");
    assert_eq!(stamp.as_secs(), 981_173_106);
    assert_eq!(get("/docs2/deep/x/y.bin").data.len(), 300_000);
    assert_eq!(get("/docs2/readme.md").data, b"# hello\nneedle here\n");

    if have("setfattr") && have("getfattr") {
        sh_ok(&mnt, "setfattr -n user.color -v blue log");
        let out = sh_ok(&mnt, "getfattr --only-values -n user.color log");
        assert_eq!(out, "blue");
        sh_ok(
            &mnt,
            "setfattr -n user.gone -v x log && setfattr -x user.gone log",
        );
        let snap = backend.snapshot();
        assert_eq!(
            snap["/log"].xattrs.get("user.color").map(Vec::as_slice),
            Some(&b"blue"[..])
        );
        assert!(!snap["/log"].xattrs.contains_key("user.gone"));
    } else {
        eprintln!("setfattr/getfattr missing (apt-get install attr): xattr tools not run");
    }
    fx.finish();
}

#[test]
fn a_slow_read_does_not_block_the_loop() {
    let backend = Arc::new(MemoryBackend::new(false));
    backend.insert_file("/slow/big", b"late bytes", 0o644);
    backend.insert_file("/fast/a", b"a", 0o644);
    backend.insert_file("/fast/b", b"b", 0o644);
    let fx = Fixture::live(backend.clone());
    let mnt = fx.mnt();
    sh_ok(&mnt, "ls slow fast > /dev/null");
    backend.set_delay("/slow/big", SLOW);
    let m2 = mnt.clone();
    let reader = std::thread::spawn(move || sh_ok(&m2, "cat slow/big"));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(sh_ok(&mnt, "ls fast"), "a\nb\n");
        assert_eq!(sh_ok(&mnt, "cat fast/a"), "a");
    }
    let quick = t.elapsed();
    assert!(
        quick < SLOW / 2,
        "ls/cat waited for the slow read: {quick:?}"
    );
    assert!(!reader.is_finished(), "the slow read was not slow");
    assert_eq!(reader.join().expect("reader"), "late bytes");
    fx.finish();
}

#[test]
fn a_read_past_the_timeout_fails_with_etimedout() {
    let backend = Arc::new(MemoryBackend::new(false));
    backend.insert_file("/f", b"never", 0o644);
    let opts = HyperFsOptions {
        op_timeout: Duration::from_millis(300),
        ..HyperFsOptions::live()
    };
    let fx = Fixture::new(backend.clone(), opts);
    let mnt = fx.mnt();
    sh_ok(&mnt, "test -f f");
    backend.set_delay("/f", Duration::from_secs(2));
    let t = Instant::now();
    let (ok, _, err) = sh(&mnt, "cat f");
    assert!(!ok && err.contains("Input/output error"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    backend.set_delay("/f", Duration::ZERO);
    fx.finish();
}

#[test]
fn forgotten_inodes_leave_the_table_and_handles_close() {
    let backend = Arc::new(MemoryBackend::new(false));
    for i in 0..200 {
        backend.insert_file(&format!("/many/f{i}"), b"x", 0o644);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = hypermount_fs::HyperFs::new(backend, rt.handle().clone(), HyperFsOptions::live());
    let stats = fs.stats();
    let cfg = hypermount_mount::MountConfig {
        read_only: true,
        ..Default::default()
    };
    let m = hypermount_mount::mount(fs, dir.path(), &cfg).expect("mount");
    sh_ok(
        dir.path(),
        "ls -l many > /dev/null && cat many/f1 many/f2 > /dev/null",
    );
    let seen = stats.inodes();
    assert!(seen > 200, "readdirplus/lookup remembered {seen}");
    // The kernel forgets unused dentries and inodes on drop_caches; so must we.
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop_caches");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.inodes() > 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stats.inodes() <= 10,
        "still {} inodes after FORGET",
        stats.inodes()
    );
    assert_eq!(stats.open_files(), 0);
    drop(m);
}

#[test]
fn live_mount_shows_remote_updates_after_the_ttl() {
    let backend = Arc::new(MemoryBackend::new(false));
    backend.insert_file("/news", b"old", 0o644);
    let fx = Fixture::live(backend.clone());
    let mnt = fx.mnt();
    assert_eq!(sh_ok(&mnt, "cat news; ls"), "oldnews\n");
    // A replicated update: new content and a new file.
    backend.insert_file("/news", b"fresh!", 0o644);
    backend.insert_file("/later", b"", 0o644);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(sh_ok(&mnt, "cat news; ls"), "fresh!later\nnews\n");
    fx.finish();
}

#[test]
fn big_files_round_trip_in_large_requests() {
    let backend = Arc::new(MemoryBackend::new(true));
    let fx = Fixture::live(backend.clone());
    let mnt = fx.mnt();
    let t = Instant::now();
    let v0 = hypermount_fs::Backend::version(&*backend);
    sh_ok(&mnt, "head -c 24000000 /dev/urandom > /tmp/.hm-big-$$ && cp /tmp/.hm-big-$$ big && cmp /tmp/.hm-big-$$ big; rc=$?; rm -f /tmp/.hm-big-$$; exit $rc");
    let snap = backend.snapshot();
    assert_eq!(snap["/big"].data.len(), 24_000_000);
    // One commit for the whole copy: create (empty) + content, not one per write.
    let versions = hypermount_fs::Backend::version(&*backend) - v0;
    assert_eq!(versions, 2, "versions for one cp");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "slow: {:?}",
        t.elapsed()
    );
    sh_ok(&mnt, "dd if=big of=/dev/null bs=4M 2>/dev/null");
    fx.finish();
}

#[test]
fn live_read_only_mount_invalidates_on_a_new_version() {
    let backend = Arc::new(MemoryBackend::new(false));
    backend.insert_file("/news", b"old", 0o644);
    let fx = Fixture::live(backend.clone());
    let mnt = fx.mnt();
    // Warm the kernel caches (attributes, pages) with an open held across the update.
    assert_eq!(sh_ok(&mnt, "cat news"), "old");
    let held = std::fs::File::open(mnt.join("news")).expect("open");
    backend.insert_file("/news", b"fresh!", 0o644);
    std::thread::sleep(Duration::from_millis(300));
    // Well inside the 1 s attribute TTL: only the invalidation can make this fresh.
    assert_eq!(sh_ok(&mnt, "stat -c %s news; cat news"), "6\nfresh!");
    drop(held);
    fx.finish();
}
