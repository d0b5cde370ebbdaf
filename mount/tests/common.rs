//! Shared fixture for real-mount tests: a MemoryBackend mounted under a tempdir, always
//! unmounted (the `Mounted` guard drops before the runtime).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hypermount_fs::{HyperFs, HyperFsOptions, MemoryBackend};
use hypermount_mount::{mount, MountConfig, Mounted};

pub struct Fixture {
    // Field order = drop order: unmount first, then stop the runtime.
    pub mounted: Option<Mounted>,
    pub backend: Arc<MemoryBackend>,
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(backend: Arc<MemoryBackend>, opts: HyperFsOptions) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        let fs = HyperFs::new(backend.clone(), rt.handle().clone(), opts);
        let config = MountConfig {
            read_only: !hypermount_fs::Backend::writable(&*backend),
            ..MountConfig::default()
        };
        let mounted = mount(fs, &mnt, &config).expect("mount");
        Fixture {
            mounted: Some(mounted),
            backend,
            rt,
            dir,
        }
    }

    pub fn live(backend: Arc<MemoryBackend>) -> Fixture {
        Self::new(backend, HyperFsOptions::live())
    }

    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Unmounts and checks the mount point is gone from mountinfo.
    pub fn finish(mut self) {
        let m = self.mounted.take().expect("mounted");
        let p = m.mountpoint().to_path_buf();
        m.unmount().expect("unmount");
        assert!(!hypermount_mount::is_mount_point(&p).expect("mountinfo"));
    }
}

/// Runs `sh -c script` in `cwd`; returns (success, stdout, stderr).
pub fn sh(cwd: &Path, script: &str) -> (bool, String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("spawn sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like `sh` but panics with the output on failure.
pub fn sh_ok(cwd: &Path, script: &str) -> String {
    let (ok, out, err) = sh(cwd, script);
    assert!(ok, "`{script}` failed:\nstdout: {out}\nstderr: {err}");
    out
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub const SLOW: Duration = Duration::from_secs(3);
