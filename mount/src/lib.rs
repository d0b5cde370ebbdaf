//! Mount lifecycle: mounting a [`HyperFs`] at a path, unmounting on drop, and finding
//! and clearing stale mounts. Owns the only `unsafe` of the mount path (`umount2`); never
//! looks inside the file system. [`mount_drive`] puts a hyperdrive behind the adapter with
//! the cache policy its kind needs; [`serve_until_signal`] serves it until SIGINT/SIGTERM.
//!
//! fuser's pure-Rust mount calls mount(2) directly, so mounting needs root (or
//! CAP_SYS_ADMIN); there is no fusermount fallback on machines without it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};
use hypermount_fs::{Backend, HyperFs};

/// Why a mount could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mountpoint {0} does not exist")]
    MissingMountpoint(PathBuf),
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("mountpoint {0} is not empty")]
    NotEmpty(PathBuf),
    #[error("{0} is already a mount point")]
    AlreadyMounted(PathBuf),
    #[error(
        "{0} is a stale mount (its file system process is gone); unmount it or pass recover_stale"
    )]
    Stale(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path, source: io::Error) -> MountError {
    MountError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Shown as the source in /proc/mounts.
    pub fs_name: String,
    /// Mount read-only in the kernel too (the backend decides the rest).
    pub read_only: bool,
    /// Accept a non-empty mountpoint (its files are hidden while mounted).
    pub allow_non_empty: bool,
    /// Lazily unmount a stale mount at the path first instead of failing.
    pub recover_stale: bool,
    /// Let other users in (needs `user_allow_other` for non-root).
    pub allow_other: bool,
    /// The kernel's read-ahead for this mount, in KiB (`None`: the kernel's default).
    pub read_ahead_kb: Option<u32>,
}

/// Read-ahead set on every mount. The kernel caps a FUSE mount's read-ahead at its
/// default (128 KiB) whatever the file system asks for at init, so a sequential reader
/// of a remote file has few reads in flight; 1 MiB keeps more of them going (remote cold
/// `cat` of 256 MiB over loopback here: about 15–25% faster than at 128 KiB, run for run).
/// Setting it needs root; without, the default stays.
pub const READ_AHEAD_KB: u32 = 1024;

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            fs_name: "hypermount".into(),
            read_only: false,
            allow_non_empty: false,
            recover_stale: false,
            allow_other: false,
            read_ahead_kb: Some(READ_AHEAD_KB),
        }
    }
}

/// Work run once the file system is unmounted (e.g. syncing the drive's feeds).
pub type UnmountHook = Box<dyn FnOnce() + Send>;

/// A live mount. Dropping it unmounts (lazily if the mount is busy).
pub struct Mounted {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    /// Tells the kernel about new versions of a live drive.
    invalidator: Option<Invalidator>,
    after_unmount: Vec<UnmountHook>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("mountpoint", &self.mountpoint)
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// Mounts `fs` at `mountpoint` and serves it from a background thread.
pub fn mount<B: Backend>(
    fs: HyperFs<B>,
    mountpoint: &Path,
    config: &MountConfig,
) -> Result<Mounted, MountError> {
    let mountpoint = check_mountpoint(mountpoint, config)?;
    let mut options = vec![
        MountOption::FSName(config.fs_name.clone()),
        MountOption::Subtype("hypermount".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.read_only {
        options.push(MountOption::RO);
    }
    if config.allow_other {
        options.push(MountOption::AllowOther);
    }
    let feed = fs.change_feed();
    let session =
        fuser::spawn_mount2(fs, &mountpoint, &options).map_err(|e| io_err(&mountpoint, e))?;
    let invalidator = match feed {
        Some(feed) => match Invalidator::start(feed, session.notifier()) {
            Ok(i) => Some(i),
            Err(e) => {
                // Without it a live mount would show stale pages: do not serve one.
                drop(session);
                return Err(io_err(&mountpoint, e));
            }
        },
        None => None,
    };
    if let Some(kb) = config.read_ahead_kb {
        // The kernel sets a FUSE mount's read-ahead when it reads the INIT reply, which
        // the session thread sends after this returns; a stat of the root waits for that.
        // On a thread of its own, so a caller on a runtime the backend needs never waits.
        let path = mountpoint.clone();
        let spawned = std::thread::Builder::new()
            .name("hypermount-readahead".into())
            .spawn(move || {
                let res = std::fs::metadata(&path).and_then(|_| set_read_ahead(&path, kb));
                if let Err(e) = res {
                    tracing::debug!(mountpoint = %path.display(), "read-ahead left at the default: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("read-ahead left at the default: {e}");
        }
    }
    tracing::info!(mountpoint = %mountpoint.display(), "mounted");
    Ok(Mounted {
        mountpoint,
        session: Some(session),
        invalidator,
        after_unmount: Vec::new(),
    })
}

mod drive;
mod invalidator;
pub use drive::{mount_drive, serve_until_signal, DriveMountOptions, StopSignals};
use invalidator::Invalidator;

/// Checks a mountpoint before mounting; returns its canonical path.
pub fn check_mountpoint(path: &Path, config: &MountConfig) -> Result<PathBuf, MountError> {
    if is_stale(path) {
        if !config.recover_stale {
            return Err(MountError::Stale(path.to_path_buf()));
        }
        tracing::warn!(mountpoint = %path.display(), "clearing a stale mount");
        lazy_unmount(path)?;
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::MissingMountpoint(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path, e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(path.to_path_buf()));
    }
    let canonical = path.canonicalize().map_err(|e| io_err(path, e))?;
    if is_mount_point(&canonical).map_err(|e| io_err(path, e))? {
        return Err(MountError::AlreadyMounted(canonical));
    }
    if !config.allow_non_empty {
        let mut entries = std::fs::read_dir(&canonical).map_err(|e| io_err(path, e))?;
        if entries.next().is_some() {
            return Err(MountError::NotEmpty(canonical));
        }
    }
    Ok(canonical)
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts now, reporting failures (Drop does the same but can only log).
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.teardown()
    }

    /// Runs `hook` after the unmount (on [`Mounted::unmount`] or drop), once.
    pub fn on_unmount(&mut self, hook: UnmountHook) {
        self.after_unmount.push(hook);
    }

    /// Whether the FUSE session still runs (false once someone else unmounted it, e.g.
    /// `umount` from a shell, or the kernel aborted the connection).
    pub fn is_alive(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    fn teardown(&mut self) -> Result<(), MountError> {
        if let Some(mut inv) = self.invalidator.take() {
            inv.stop();
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        let mut wait = Duration::from_secs(5);
        if is_mount_point(&self.mountpoint).unwrap_or(true) {
            if let Err(e) = umount(&self.mountpoint, 0) {
                tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e,
                    "unmount failed, detaching lazily");
                result = lazy_unmount(&self.mountpoint);
                // The connection lives until the last open file closes: do not wait.
                wait = Duration::from_millis(100);
            }
        }
        // The session thread ends once the kernel closes the connection; if it does not
        // in time it is left to finish on its own.
        let BackgroundSession { guard, .. } = session;
        let deadline = Instant::now() + wait;
        while !guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if guard.is_finished() {
            if let Ok(Err(e)) = guard.join() {
                tracing::warn!(error = %e, "FUSE session ended with an error");
            }
        }
        for hook in self.after_unmount.drain(..) {
            hook();
        }
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
        result
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(error = %e, "unmount on drop failed");
        }
    }
}

fn umount(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; umount2 only
    // reads it and touches no memory of ours.
    let rc = unsafe { libc::umount2(c.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `umount2(path, MNT_DETACH)`: detach now, finish when the last user lets go.
pub fn lazy_unmount(path: &Path) -> Result<(), MountError> {
    umount(path, libc::MNT_DETACH).map_err(|e| io_err(path, e))
}

/// A mount whose FUSE server is gone: stat fails with ENOTCONN.
pub fn is_stale(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

/// Clears a stale mount at `path` (lazy unmount) so it can be mounted again.
pub fn recover_stale(path: &Path) -> Result<bool, MountError> {
    if !is_stale(path) {
        return Ok(false);
    }
    lazy_unmount(path)?;
    Ok(true)
}

/// The device (`major:minor`) of the mount at `path` (canonical), from mountinfo text:
/// no stat, so nothing waits on the file system being mounted.
pub fn mount_device(mountinfo: &str, path: &Path) -> Option<String> {
    // The last entry for a path is the mount on top.
    mountinfo.lines().rev().find_map(|l| {
        let mut fields = l.split(' ');
        let dev = fields.nth(2)?;
        let point = fields.nth(1)?;
        (Path::new(&unescape_mountinfo(point)) == path).then(|| dev.to_owned())
    })
}

/// The kernel's read-ahead of the mount at `path`, in KiB.
pub fn read_ahead(path: &Path) -> io::Result<u32> {
    let dev = device_of(path)?;
    let s = std::fs::read_to_string(format!("/sys/class/bdi/{dev}/read_ahead_kb"))?;
    s.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "read_ahead_kb"))
}

fn set_read_ahead(path: &Path, kb: u32) -> io::Result<()> {
    let dev = device_of(path)?;
    std::fs::write(
        format!("/sys/class/bdi/{dev}/read_ahead_kb"),
        kb.to_string(),
    )
}

fn device_of(path: &Path) -> io::Result<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    mount_device(&info, path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in /proc/self/mountinfo"))
}

/// Whether `path` (canonical) is a mount point, from /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let found = mount_points(&info).any(|p| Path::new(&p) == path);
    Ok(found)
}

/// Mount points listed in mountinfo text (field 5, octal escapes undone).
pub fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing_unescapes() {
        let info =
            "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        let v: Vec<_> = mount_points(info).collect();
        assert_eq!(v, ["/mnt with space", "/proc"]);
    }

    #[test]
    fn mount_devices_come_from_mountinfo() {
        let info = "36 35 98:0 /mnt1 /mnt\\040x rw - ext3 /dev/root rw\n\
                    40 35 0:51 / /tmp/m rw - fuse.hypermount hypermount rw\n\
                    41 40 0:52 / /tmp/m rw - fuse.hypermount hypermount rw\n";
        assert_eq!(
            mount_device(info, Path::new("/mnt x")).as_deref(),
            Some("98:0")
        );
        // Stacked mounts: the last (top) one is what the path shows.
        assert_eq!(
            mount_device(info, Path::new("/tmp/m")).as_deref(),
            Some("0:52")
        );
        assert_eq!(mount_device(info, Path::new("/nope")), None);
    }

    #[test]
    fn root_is_a_mount_point_and_tmp_file_is_not() {
        assert!(is_mount_point(Path::new("/")).expect("mountinfo"));
        let d = tempfile::tempdir().expect("tempdir");
        assert!(!is_mount_point(d.path()).expect("mountinfo"));
    }

    #[test]
    fn mountpoint_checks() {
        let d = tempfile::tempdir().expect("tempdir");
        let cfg = MountConfig::default();
        let missing = d.path().join("nope");
        assert!(matches!(
            check_mountpoint(&missing, &cfg),
            Err(MountError::MissingMountpoint(_))
        ));
        let file = d.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(
            check_mountpoint(&file, &cfg),
            Err(MountError::NotADirectory(_))
        ));
        assert!(matches!(
            check_mountpoint(d.path(), &cfg),
            Err(MountError::NotEmpty(_))
        ));
        let ok = MountConfig {
            allow_non_empty: true,
            ..MountConfig::default()
        };
        assert!(check_mountpoint(d.path(), &ok).is_ok());
        assert!(matches!(
            check_mountpoint(Path::new("/proc"), &ok),
            Err(MountError::AlreadyMounted(_))
        ));
    }
}
