//! `hypermount mount`, `unmount` and `dht bootstrap`.
//!
//! A mount is served by the process that made it (in the foreground, or detached with
//! `--daemon`). That process records its pid in `<storage>/mounts/<id>.pid`, keyed by
//! the canonical mountpoint, so `unmount` can ask it to stop (SIGTERM: a clean unmount
//! and a flush of the feeds) instead of pulling the mount away underneath it. A mount
//! whose process died (`kill -9`) is stale: every access fails with ENOTCONN until it is
//! lazily unmounted, which both `unmount` and the next `mount` at that place do.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hypermount_fs::DriveBackendOptions;
use hypermount_mount::{
    check_mountpoint, is_mount_point, is_stale, lazy_unmount, mount_drive, mount_points,
    recover_stale, DriveMountOptions, MountConfig,
};
use tokio::signal::unix::{signal, SignalKind};

use crate::commands::{
    flush, open_drive, out_line, say, until_stopped, Env, FIRST_BLOCK_TIMEOUT, READY_ENV,
};
use crate::keyarg::DriveRef;

/// How long a read through a mount waits for blocks from peers.
const NETWORK_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Without peers a missing block never comes: answer EIO/ETIMEDOUT quickly.
const OFFLINE_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a served mount is checked for having been unmounted from outside.
const ALIVE_POLL: Duration = Duration::from_millis(250);
/// How long `unmount` waits for the serving process to unmount and exit.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// Files in the storage folder that belong to the mount at `mountpoint` (canonical).
struct MountFiles {
    pid: PathBuf,
    ready: PathBuf,
    log: PathBuf,
}

fn mount_files(env: &Env, mountpoint: &Path) -> MountFiles {
    // One name per mountpoint; a hash keeps it short and free of slashes. The
    // mountpoint itself is written inside the pid file, so a collision is detected.
    let mut h = DefaultHasher::new();
    mountpoint.hash(&mut h);
    let id = format!("{:016x}", h.finish());
    let dir = env.dir.join("mounts");
    MountFiles {
        pid: dir.join(format!("{id}.pid")),
        ready: dir.join(format!("{id}.ready")),
        log: dir.join(format!("{id}.log")),
    }
}

/// The pid recorded for `mountpoint`, if the file names this mountpoint.
fn read_pid(files: &MountFiles, mountpoint: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(&files.pid).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    (Path::new(lines.next()?) == mountpoint).then_some(pid)
}

/// Whether `pid` is a running (not zombie) hypermount process.
fn serving(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    if matches!(state, None | Some('Z') | Some('X')) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .next()
                .is_some_and(|exe| exe.ends_with(b"hypermount"))
        })
        .unwrap_or(false)
}

/// `Some(is_ours)` if something is mounted at `path` (canonical), `None` if nothing is.
fn mounted_here(path: &Path) -> io::Result<Option<bool>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found = None;
    for line in info.lines() {
        let Some(mp) = mount_points(line).next() else {
            continue;
        };
        if Path::new(&mp) != path {
            continue;
        }
        // After the separator: file system type, then source. Ours are FUSE mounts named
        // `hyper://KEY[+V]` (or `hypermount`).
        let mut tail = line.split(" - ").nth(1).unwrap_or("").split(' ');
        let fstype = tail.next().unwrap_or("");
        let source = tail.next().unwrap_or("");
        let ours = (fstype == "fuse" || fstype.starts_with("fuse."))
            && (source.starts_with("hyper://") || source == "hypermount");
        // The last listed mount at a path is the one visible there.
        found = Some(ours);
    }
    Ok(found)
}

/// The absolute path of `p` with its parent resolved, without touching `p` itself (a
/// stale mountpoint cannot be stat'ed).
fn resolve_leaf(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(parent
            .canonicalize()
            .with_context(|| format!("{}: no such folder", parent.display()))?
            .join(name)),
        _ => Ok(abs),
    }
}

fn kill(pid: u32, sig: &str) -> Result<()> {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdin(std::process::Stdio::null())
        .status()
        .context("running kill")?;
    if !st.success() {
        bail!("cannot signal process {pid}");
    }
    Ok(())
}

pub async fn mount(
    env: &Env,
    r: DriveRef,
    mountpoint: PathBuf,
    read_only: bool,
    daemon: bool,
) -> Result<()> {
    if r.path != "/" {
        bail!(
            "mount serves a whole drive: give KEY or KEY+VERSION, not {r} \
             (a subfolder of the mount can be used directly)"
        );
    }
    // From here a signal must not kill us with a mount up: tokio keeps these handlers
    // installed for the life of the process.
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;

    if recover_stale(&mountpoint)? {
        say(
            env,
            format!(
                "cleared a stale mount at {} (its process had died)",
                mountpoint.display()
            ),
        );
    }
    let canonical = check_mountpoint(&mountpoint, &MountConfig::default())?;
    if daemon {
        return spawn_daemon(env, &r, &canonical);
    }
    let files = mount_files(env, &canonical);

    let o = tokio::select! {
        o = open_drive(env, &r, true) => o?,
        _ = term.recv() => bail!("stopped before the drive was mounted"),
        _ = int.recv() => bail!("interrupted before the drive was mounted"),
    };
    let writable = o.live.writable() && !read_only && r.version.is_none();
    let opts = DriveMountOptions {
        read_only,
        version: r.version,
        backend: DriveBackendOptions {
            read_timeout: if o.online {
                NETWORK_READ_TIMEOUT
            } else {
                OFFLINE_READ_TIMEOUT
            },
            ..DriveBackendOptions::default()
        },
        mount: MountConfig::default(),
    };
    let handle = tokio::runtime::Handle::current();
    let live = o.live.clone();
    let mounted =
        match tokio::task::block_in_place(|| mount_drive(live, &canonical, &opts, &handle)) {
            Ok(m) => m,
            Err(e) => {
                o.session.close().await;
                return Err(anyhow!(e)).context(if Path::new("/dev/fuse").exists() {
                    "cannot mount (mounting needs root or CAP_SYS_ADMIN)"
                } else {
                    "cannot mount: /dev/fuse is missing (load the fuse module)"
                });
            }
        };
    if let Some(dir) = files.pid.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pid_text = format!("{}\n{}\n", std::process::id(), canonical.display());
    if let Err(e) = std::fs::write(&files.pid, pid_text) {
        tracing::warn!(error = %e, path = %files.pid.display(), "cannot write the pid file");
    }
    out_line(format!(
        "mounted {r} at {} ({}{})",
        canonical.display(),
        if writable { "read-write" } else { "read-only" },
        if o.online {
            ", fetching from peers on demand"
        } else {
            ""
        }
    ))?;
    if let Some(path) = std::env::var_os(READY_ENV) {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", Path::new(&path).display()))?;
    }
    // Served here with the handlers registered before the mount (as
    // `hypermount_mount::StopSignals` does), so a fast `unmount` right after the mount
    // line is never lost.
    let mut poll = tokio::time::interval(ALIVE_POLL);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = poll.tick() => {
                if !mounted.is_alive() {
                    say(env, format!("{} was unmounted from outside", canonical.display()));
                    break;
                }
            }
        }
    }
    drop((term, int));
    // Unmounting waits for the FUSE session thread: keep it off the runtime's workers.
    let served = tokio::task::spawn_blocking(move || mounted.unmount())
        .await
        .context("unmounting")?;
    let _ = std::fs::remove_file(&files.pid);
    if let Some(path) = std::env::var_os(READY_ENV) {
        let _ = std::fs::remove_file(path);
    }
    let flushed = flush(&o.live);
    o.session.close().await;
    served.with_context(|| format!("unmounting {}", canonical.display()))?;
    flushed?;
    say(env, format!("unmounted {}", canonical.display()));
    Ok(())
}

/// `mount --daemon`: run the same command detached (own process group, output to a log
/// in the storage folder) and return once the child reports the mount is up.
fn spawn_daemon(env: &Env, r: &DriveRef, mountpoint: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let files = mount_files(env, mountpoint);
    if let Some(dir) = files.ready.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&files.ready);
    let exe = std::env::current_exe().context("finding the hypermount executable")?;
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let logf = std::fs::File::create(&files.log)
        .with_context(|| format!("creating {}", files.log.display()))?;
    let mut child = std::process::Command::new(exe)
        .args(&args)
        .env(READY_ENV, &files.ready)
        .stdin(std::process::Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .process_group(0)
        .spawn()
        .context("starting the background mount")?;
    let deadline = Instant::now() + FIRST_BLOCK_TIMEOUT + Duration::from_secs(15);
    loop {
        if files.ready.exists() && is_mount_point(mountpoint).unwrap_or(false) {
            return out_line(format!(
                "mounted {r} at {} in the background: pid {}, log {}",
                mountpoint.display(),
                child.id(),
                files.log.display()
            ));
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&files.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the background mount exited ({status}) before the mount was up:\n{}",
                tail.join("\n")
            );
        }
        if Instant::now() > deadline {
            let _ = kill(child.id(), "-TERM");
            bail!(
                "the background mount (pid {}) was not up in time and was stopped; see {}",
                child.id(),
                files.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub async fn unmount(env: &Env, mountpoint: PathBuf) -> Result<()> {
    let path = resolve_leaf(&mountpoint)?;
    let files = mount_files(env, &path);
    if is_stale(&path) {
        lazy_unmount(&path)?;
        let _ = std::fs::remove_file(&files.pid);
        return out_line(format!(
            "cleared the stale mount at {} (its process had died)",
            path.display()
        ));
    }
    let path = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("nothing is mounted at {}: no such folder", path.display())
        }
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    let files = mount_files(env, &path);
    match mounted_here(&path).context("reading /proc/self/mountinfo")? {
        None => bail!("nothing is mounted at {}", path.display()),
        Some(false) => bail!(
            "{} is not a hypermount mount; leaving it alone (use umount)",
            path.display()
        ),
        Some(true) => {}
    }
    let pid = read_pid(&files, &path).filter(|&p| serving(p));
    let how = match pid {
        Some(pid) => {
            // The serving process unmounts, flushes and exits on SIGTERM.
            kill(pid, "-TERM")?;
            let deadline = Instant::now() + STOP_WAIT;
            while (is_mount_point(&path).unwrap_or(false) || serving(pid))
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if is_mount_point(&path).unwrap_or(false) {
                lazy_unmount(&path)?;
                format!("process {pid} did not unmount in time; detached lazily")
            } else {
                format!("stopped process {pid}")
            }
        }
        None => {
            // No process of ours is known to serve it (another storage, or gone): detach
            // it; a live server notices and ends on its own.
            lazy_unmount(&path)?;
            "detached".to_string()
        }
    };
    let _ = std::fs::remove_file(&files.pid);
    out_line(format!("unmounted {} ({how})", path.display()))
}

/// `hypermount dht bootstrap --listen HOST:PORT`: a bootstrap node for a private DHT,
/// until SIGINT/SIGTERM. Prints `ready <port>` once it answers.
/// Other bootstrap nodes given with `--bootstrap` are joined (several private bootstrap
/// nodes that know each other), as the reference's `bootstrap --bootstrap H:P` does.
pub async fn dht_bootstrap(listen: Option<SocketAddr>, others: &[String]) -> Result<()> {
    let listen = listen
        .ok_or_else(|| anyhow!("dht bootstrap needs --listen HOST:PORT (port 0 picks one)"))?;
    let mut peers = Vec::new();
    for o in others
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let addr: std::net::SocketAddrV4 = o
            .trim()
            .parse()
            .map_err(|_| anyhow!("--bootstrap {o}: a bootstrap node joins others by IPv4:PORT"))?;
        peers.push(addr);
    }
    let run = hyperdrive::swarm::bootstrap::run_with(listen, peers, |addr| {
        if let Err(e) = out_line(format!("ready {}", addr.port())) {
            tracing::warn!(error = %e, "cannot print the ready line");
        }
    });
    tokio::select! {
        r = run => r.with_context(|| format!("dht bootstrap node on {listen}")),
        s = until_stopped() => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_mount_but_not_ours() {
        assert_eq!(mounted_here(Path::new("/")).unwrap(), Some(false));
        let d = tempfile::tempdir().unwrap();
        assert_eq!(mounted_here(d.path()).unwrap(), None);
    }

    #[test]
    fn leaf_is_not_touched() {
        let d = tempfile::tempdir().unwrap();
        let p = resolve_leaf(&d.path().join("x/../missing")).unwrap_err();
        assert!(format!("{p:#}").contains("no such folder"), "{p:#}");
        let p = resolve_leaf(&d.path().join("missing")).unwrap();
        assert_eq!(p, d.path().canonicalize().unwrap().join("missing"));
    }

    #[test]
    fn our_own_process_is_not_a_server() {
        // The test binary is not named hypermount.
        assert!(!serving(std::process::id()));
        assert!(!serving(u32::MAX));
    }
}
