//! What the adapter answers from its caches on live mounts, against the real kernel:
//! metadata calls after a listing cost no backend call, yet every change (our own
//! writes, or the backend moving on) shows at once; page caches are kept across opens
//! only while the content is unchanged.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sh_ok, Fixture};
use hypermount_fs::MemoryBackend;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL")
}

/// `lgetxattr`: the value, or the errno.
fn getxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (path, name) = (cpath(p), CString::new(name).expect("no NUL"));
    let mut buf = vec![0u8; 256];
    // SAFETY: path and name are NUL-terminated and live across the call; buf is valid
    // for buf.len() bytes, which is the size passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `llistxattr`: the names.
fn listxattr(p: &Path) -> Vec<String> {
    let path = cpath(p);
    let mut buf = vec![0u8; 1024];
    // SAFETY: as in `getxattr`.
    let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `lsetxattr`.
fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let (path, name) = (cpath(p), CString::new(name).expect("no NUL"));
    // SAFETY: path and name are NUL-terminated; value is valid for value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
}

fn tree(b: &MemoryBackend) {
    for i in 0..20 {
        b.insert_file(
            &format!("/d/f{i:02}"),
            format!("file {i}").as_bytes(),
            0o644,
        );
    }
    b.insert_dir("/d/sub");
    b.insert_xattr("/d/f03", "user.k", b"v");
}

#[test]
fn metadata_after_a_listing_needs_no_backend_call() {
    let b = Arc::new(MemoryBackend::new(false));
    tree(&b);
    let fx = Fixture::live(b.clone());
    let mnt = fx.mnt();
    let d = mnt.join("d");
    sh_ok(&mnt, "ls -l d > /dev/null");
    let before = b.calls();
    // What `ls -l` asks per file (and a missing user attribute), again and again: all
    // from the cache.
    for _ in 0..3 {
        for i in 0..20 {
            let f = d.join(format!("f{i:02}"));
            assert_eq!(getxattr(&f, "security.selinux"), Err(libc::EOPNOTSUPP));
            assert_eq!(
                getxattr(&f, "system.posix_acl_access"),
                Err(libc::EOPNOTSUPP)
            );
            assert_eq!(getxattr(&f, "user.none"), Err(libc::ENODATA));
            let m = fs::symlink_metadata(&f).expect("stat");
            assert_eq!(m.len(), format!("file {i}").len() as u64);
        }
        assert_eq!(getxattr(&d.join("f03"), "user.k"), Ok(b"v".to_vec()));
        assert_eq!(listxattr(&d.join("f03")), ["user.k"]);
        assert!(listxattr(&d.join("f04")).is_empty());
        assert!(fs::symlink_metadata(d.join("sub")).expect("stat").is_dir());
        assert_eq!(
            fs::symlink_metadata(d.join("missing"))
                .map(|_| ())
                .map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENOENT)),
            "absent from the cached listing"
        );
        sh_ok(&mnt, "ls -l d > /dev/null");
    }
    assert_eq!(b.calls(), before, "answered without the backend");

    // The backend moves on: the next answers are the new ones, at once.
    b.insert_xattr("/d/f04", "user.new", b"1");
    assert_eq!(getxattr(&d.join("f04"), "user.new"), Ok(b"1".to_vec()));
    assert_eq!(listxattr(&d.join("f04")), ["user.new"]);
    b.insert_file("/d/f05", b"longer content now", 0o644);
    let t = Instant::now();
    while fs::symlink_metadata(d.join("f05")).expect("stat").len() != 18 {
        assert!(t.elapsed() < Duration::from_secs(5), "new size never shown");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.insert_file("/d/late", b"x", 0o644);
    let t = Instant::now();
    while !d.join("late").exists() {
        assert!(t.elapsed() < Duration::from_secs(5), "new name never shown");
        std::thread::sleep(Duration::from_millis(50));
    }
    fx.finish();
}

#[test]
fn writable_mount_sees_its_own_changes_at_once() {
    let b = Arc::new(MemoryBackend::new(true));
    tree(&b);
    let fx = Fixture::live(b.clone());
    let mnt = fx.mnt();
    let d = mnt.join("d");
    sh_ok(&mnt, "ls -l d > /dev/null");
    let f = d.join("f01");
    assert_eq!(getxattr(&f, "user.a"), Err(libc::ENODATA));
    setxattr(&f, "user.a", b"1");
    assert_eq!(getxattr(&f, "user.a"), Ok(b"1".to_vec()));
    setxattr(&f, "user.a", b"22");
    assert_eq!(getxattr(&f, "user.a"), Ok(b"22".to_vec()));
    assert_eq!(listxattr(&f), ["user.a"]);
    fs::write(&f, b"rewritten, longer").expect("write");
    assert_eq!(fs::metadata(&f).expect("stat").len(), 17);
    assert_eq!(fs::read(&f).expect("read"), b"rewritten, longer");
    assert_eq!(
        getxattr(&f, "user.a"),
        Ok(b"22".to_vec()),
        "kept on rewrite"
    );
    fs::write(d.join("new"), b"n").expect("create");
    assert_eq!(fs::read(d.join("new")).expect("read"), b"n");
    assert_eq!(sh_ok(&mnt, "ls d | grep -c ."), "22\n");
    fs::remove_file(d.join("new")).expect("unlink");
    assert!(!d.join("new").exists());
    sh_ok(&mnt, "chmod 600 d/f02");
    assert_eq!(sh_ok(&mnt, "stat -c %a d/f02"), "600\n");
    fx.finish();
}

#[test]
fn pages_are_kept_across_opens_only_while_unchanged() {
    let b = Arc::new(MemoryBackend::new(false));
    let one: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    b.insert_file("/f", &one, 0o644);
    let fx = Fixture::live(b.clone());
    let f = fx.mnt().join("f");
    assert_eq!(fs::read(&f).expect("read"), one);
    assert_eq!(fs::read(&f).expect("read"), one);
    let reads = b.reads();
    for _ in 0..3 {
        assert_eq!(fs::read(&f).expect("read"), one);
    }
    assert_eq!(b.reads(), reads, "unchanged file: served from kept pages");

    // Same size, new content: the next open must not keep the old pages.
    let two: Vec<u8> = one.iter().map(|x| x.wrapping_add(1)).collect();
    b.insert_file("/f", &two, 0o644);
    assert_eq!(fs::read(&f).expect("read"), two);

    // A file held open sees a change through the invalidator (no new open).
    let mut held = fs::File::open(&f).expect("open");
    let mut buf = vec![0u8; 16];
    held.read_exact(&mut buf).expect("read");
    assert_eq!(buf, two[..16]);
    let three: Vec<u8> = one.iter().map(|x| x.wrapping_add(2)).collect();
    b.insert_file("/f", &three, 0o644);
    let t = Instant::now();
    loop {
        held.seek(SeekFrom::Start(0)).expect("seek");
        held.read_exact(&mut buf).expect("read");
        if buf == three[..16] {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the open file kept stale pages"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    fx.finish();
}

/// Invalidations race reads in flight: a reader streams a big file again and again while
/// the backend keeps changing it (every change invalidates every inode the kernel holds,
/// pages included). Nothing may hang: the invalidations come from their own thread, never
/// from the FUSE thread or the runtime that answers the reads.
#[test]
fn invalidations_never_block_reads_in_flight() {
    let b = Arc::new(MemoryBackend::new(false));
    let big = |v: u8| vec![v; 4 << 20];
    b.insert_file("/big", &big(0), 0o644);
    let fx = Fixture::live(b.clone());
    let f = fx.mnt().join("big");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (f, stop) = (f.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let data = fs::read(&f).expect("read while changing");
                assert_eq!(data.len(), 4 << 20);
                // One version or another, never a mix within a page.
                assert!(data.chunks(4096).all(|p| p.iter().all(|x| *x == p[0])));
                rounds += 1;
            }
            rounds
        })
    };
    let t = Instant::now();
    for v in 1..=30u8 {
        b.insert_file("/big", &big(v), 0o644);
        std::thread::sleep(Duration::from_millis(40));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Bounded wait: a hang fails the test (and the fixture unmounts) instead of
    // hanging it.
    while !reader.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "reads stalled behind invalidations"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rounds = reader.join().expect("reader");
    assert!(rounds > 0);
    let t = Instant::now();
    while fs::read(&f).expect("read")[0] != 30 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "last version never shown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fx.finish();
}
