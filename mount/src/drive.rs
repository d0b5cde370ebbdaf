//! Mounting a Hyperdrive: the drive adapter, the cache policy that fits the drive (a
//! fixed version may be cached for long, a live one must not), and serving until a
//! signal asks to stop.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyperdrive::drive::Drive;
use hyperdrive::protocol::replicate::SharedFeed;
use hypermount_fs::{Backend, DriveBackend, DriveBackendOptions, HyperFs, HyperFsOptions};

use crate::{mount, MountConfig, MountError, Mounted};

/// How to mount a drive.
#[derive(Clone, Debug, Default)]
pub struct DriveMountOptions {
    /// Serve the drive read-only even if it is ours.
    pub read_only: bool,
    /// Mount this version (a checkout: read-only, immutable, cached for long).
    pub version: Option<u64>,
    /// Read timeout and prefetch window of the drive adapter.
    pub backend: DriveBackendOptions,
    /// Mount options. `fs_name` is replaced by `hyper://<key>[+<version>]` when left at
    /// its default; `read_only` is forced on when the backend cannot write.
    pub mount: MountConfig,
}

/// Mounts `drive` (or its checkout at `opts.version`) at `mountpoint`.
///
/// `rt` runs every drive call; it must outlive the returned guard (drop the guard
/// first). On unmount the drive's feeds are synced to disk.
pub fn mount_drive(
    drive: Drive,
    mountpoint: &Path,
    opts: &DriveMountOptions,
    rt: &tokio::runtime::Handle,
) -> Result<Mounted, MountError> {
    let key: String = drive.key().iter().map(|b| format!("{b:02x}")).collect();
    let drive = match opts.version {
        Some(v) => drive.checkout(v),
        None => drive,
    };
    let backend_opts = DriveBackendOptions {
        read_only: opts.read_only || opts.backend.read_only,
        ..opts.backend.clone()
    };
    let feeds = [drive.metadata_feed().clone(), drive.content_feed().clone()];
    let backend = DriveBackend::new(drive, backend_opts.clone(), rt);
    let mut fs_opts = if opts.version.is_some() {
        HyperFsOptions::immutable()
    } else {
        HyperFsOptions::live()
    };
    // A read must be allowed to wait as long as the adapter's own bound, plus slack.
    fs_opts.op_timeout = fs_opts
        .op_timeout
        .max(backend_opts.read_timeout + Duration::from_secs(5));
    let writable = backend.writable();
    let mut config = opts.mount.clone();
    config.read_only = config.read_only || !writable;
    if config.fs_name == MountConfig::default().fs_name {
        config.fs_name = match opts.version {
            Some(v) => format!("hyper://{key}+{v}"),
            None => format!("hyper://{key}"),
        };
    }
    let fs = HyperFs::new(backend, rt.clone(), fs_opts);
    let mut mounted = mount(fs, mountpoint, &config)?;
    if writable {
        mounted.on_unmount(Box::new(move || sync_feeds(&feeds)));
    }
    Ok(mounted)
}

fn sync_feeds(feeds: &[Arc<SharedFeed>]) {
    for f in feeds {
        if let Err(e) = f.lock().feed.sync() {
            tracing::error!(error = %e, "syncing a feed after unmount failed");
        }
    }
}

/// How often [`serve_until_signal`] checks that the session still runs.
const ALIVE_POLL: Duration = Duration::from_millis(250);

/// SIGINT and SIGTERM, caught from the moment this is created.
///
/// Register them before mounting: a signal that arrives between the mount and the
/// registration would otherwise take the default action and kill the process with the
/// mount still in place (a stale mount).
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Catch SIGINT and SIGTERM from now on. Must run inside a tokio runtime.
    pub fn register() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Serves `mounted` until SIGINT or SIGTERM (caught by `signals`, registered before the
/// mount) or until it is unmounted from outside, then unmounts it (lazily if busy) and
/// runs its unmount hooks (feed sync). Returns the unmount result.
pub async fn serve_until_signal(mounted: Mounted, signals: StopSignals) -> Result<(), MountError> {
    let path = mounted.mountpoint().to_path_buf();
    let StopSignals { mut term, mut int } = signals;
    let mut poll = tokio::time::interval(ALIVE_POLL);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: unmounting"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: unmounting"); break; }
            _ = poll.tick() => {
                if !mounted.is_alive() {
                    tracing::info!(mountpoint = %path.display(), "unmounted from outside");
                    break;
                }
            }
        }
    }
    // Unmounting waits for the session thread: keep it off the runtime's workers.
    tokio::task::spawn_blocking(move || mounted.unmount())
        .await
        .map_err(|e| crate::io_err(&path, std::io::Error::other(e)))?
}
