//! Mount lifecycle against the real kernel: clear errors, the drop guard, stale mounts.

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use common::{sh_ok, Fixture};
use hypermount_fs::{HyperFs, HyperFsOptions, MemoryBackend};
use hypermount_mount::{
    is_mount_point, is_stale, mount, read_ahead, recover_stale, MountConfig, MountError,
    READ_AHEAD_KB,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn memfs(rt: &tokio::runtime::Runtime) -> HyperFs<Arc<MemoryBackend>> {
    let b = Arc::new(MemoryBackend::new(false));
    b.insert_file("/hello", b"hi", 0o644);
    HyperFs::new(b, rt.handle().clone(), HyperFsOptions::live())
}

#[test]
fn drop_unmounts() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().canonicalize().expect("canon");
    let m = mount(memfs(&rt), &mnt, &MountConfig::default()).expect("mount");
    assert!(is_mount_point(&mnt).expect("mountinfo"));
    assert_eq!(sh_ok(&mnt, "cat hello"), "hi");
    // Sequential readers get a deep read-ahead (as root, which mounting needs here),
    // set once the kernel has the INIT reply.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while read_ahead(&mnt).expect("bdi read_ahead_kb") != READ_AHEAD_KB {
        assert!(std::time::Instant::now() < deadline, "read-ahead never set");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(m);
    assert!(!is_mount_point(&mnt).expect("mountinfo"));
}

#[test]
fn busy_mount_is_detached_lazily_on_drop() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().canonicalize().expect("canon");
    let m = mount(memfs(&rt), &mnt, &MountConfig::default()).expect("mount");
    // An open file keeps the mount busy: umount gives EBUSY, so the guard detaches.
    let open = std::fs::File::open(mnt.join("hello")).expect("open");
    drop(m);
    assert!(!is_mount_point(&mnt).expect("mountinfo"));
    drop(open);
}

#[test]
fn clear_errors_for_bad_mountpoints() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MountConfig::default();
    let missing = dir.path().join("missing");
    assert!(matches!(
        mount(memfs(&rt), &missing, &cfg),
        Err(MountError::MissingMountpoint(_))
    ));
    let full = dir.path().join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("x"), b"x").expect("write");
    let err = mount(memfs(&rt), &full, &cfg).expect_err("non-empty");
    assert!(matches!(err, MountError::NotEmpty(_)), "{err}");
    assert!(err.to_string().contains("not empty"));

    let target = dir.path().join("target");
    std::fs::create_dir(&target).expect("mkdir");
    let first = mount(memfs(&rt), &target, &cfg).expect("mount");
    let again = MountConfig {
        allow_non_empty: true,
        ..MountConfig::default()
    };
    let err = mount(memfs(&rt), &target, &again).expect_err("twice");
    assert!(matches!(err, MountError::AlreadyMounted(_)), "{err}");
    drop(first);
    assert!(!is_mount_point(&target.canonicalize().expect("canon")).expect("mountinfo"));
}

/// Mounts a FUSE file system whose server is already gone: mount(2) with a /dev/fuse fd
/// that is then closed. Every access gets ENOTCONN, as after a crashed daemon.
fn make_stale(path: &Path) {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .expect("open /dev/fuse");
    let opts = CString::new(format!(
        "fd={},rootmode=40000,user_id=0,group_id=0",
        dev.as_raw_fd()
    ))
    .expect("cstr");
    let src = CString::new("hypermount-stale").expect("cstr");
    let fstype = CString::new("fuse").expect("cstr");
    let target = CString::new(path.as_os_str().as_bytes()).expect("cstr");
    // SAFETY: all pointers are valid NUL-terminated strings that live across the call;
    // mount(2) only reads them.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount: {}", std::io::Error::last_os_error());
    drop(dev);
}

#[test]
fn stale_mount_is_detected_and_recovered() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).expect("mkdir");
    make_stale(&mnt);
    assert!(is_stale(&mnt));
    let err = mount(memfs(&rt), &mnt, &MountConfig::default()).expect_err("stale");
    assert!(matches!(err, MountError::Stale(_)), "{err}");
    let cfg = MountConfig {
        recover_stale: true,
        ..MountConfig::default()
    };
    let m = mount(memfs(&rt), &mnt, &cfg).expect("remount over stale");
    assert!(!is_stale(&mnt));
    assert_eq!(sh_ok(&mnt, "cat hello"), "hi");
    drop(m);

    // recover_stale on its own.
    make_stale(&mnt);
    assert!(recover_stale(&mnt).expect("recover"));
    assert!(!is_stale(&mnt));
    assert!(!recover_stale(&mnt).expect("nothing to do"));
    assert!(!is_mount_point(&mnt.canonicalize().expect("canon")).expect("mountinfo"));
}

#[test]
fn fixture_finish_leaves_nothing_mounted() {
    let b = Arc::new(MemoryBackend::new(true));
    let fx = Fixture::live(b);
    sh_ok(&fx.mnt(), "echo x > f && cat f");
    fx.finish();
}
