//! The commands: each opens the storage's corestore, finds the drive (locally, or from
//! peers through the [`Network`]), does its job and closes its connections.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyperdrive::core::KeyPair;
use hyperdrive::drive::{Drive, DriveError, DriveOptions, Stat};
use hyperdrive::protocol::driver::FeedSource;
use hyperdrive::protocol::replicate::SharedFeed;
use hyperdrive::store::Corestore;
use hyperdrive::swarm::Transports;
use serde_json::json;

use crate::keyarg::DriveRef;
use crate::network::{bootstrap_list, JoinOptions, NetConfig, Network, Session, SwarmNetwork};
use crate::progress::{self, Progress, Watched};
use crate::storage::{self, Registry, Role};
use crate::sync;

/// How long to wait for a peer to send a drive we do not hold.
pub(crate) const FIRST_BLOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read waits for a missing block when peers can be asked.
const NETWORK_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// With no peers a missing block never comes: fail fast.
const OFFLINE_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Environment variable through which `mirror --daemon` tells its child where to
/// report that it is serving.
pub(crate) const READY_ENV: &str = "HYPERMOUNT_READY_FILE";

/// Options shared by every command.
#[derive(Debug)]
pub struct GlobalOpts {
    pub storage: Option<PathBuf>,
    pub bootstrap: Vec<String>,
    pub connect: Vec<SocketAddr>,
    pub listen: Option<SocketAddr>,
    pub no_dht: bool,
    pub announce_local: bool,
    pub mdns: bool,
    pub transports: Transports,
    pub quiet: bool,
}

/// A command's surroundings: the storage folder and the network.
pub struct Env {
    pub dir: PathBuf,
    pub quiet: bool,
    /// DHT bootstrap nodes (`None` with `--no-dht`).
    pub bootstrap: Option<Vec<String>>,
    /// Peers are also looked for on the LAN by mDNS (`--mdns`).
    pub mdns: bool,
    network: Box<dyn Network>,
}

impl Env {
    pub fn new(opts: GlobalOpts) -> Result<Env> {
        let dir = storage::resolve_dir(opts.storage)?;
        let bootstrap = if opts.no_dht {
            None
        } else {
            Some(bootstrap_list(&opts.bootstrap)?)
        };
        tracing::debug!(?bootstrap, "DHT bootstrap nodes");
        if bootstrap.is_none() && !opts.transports.tcp {
            bail!(
                "--transports without tcp needs the DHT: uTP shares the DHT's UDP port and \
                 reaches peers by holepunching through DHT nodes; drop --no-dht or add tcp"
            );
        }
        let network = Box::new(SwarmNetwork::new(NetConfig {
            bootstrap: bootstrap.clone(),
            connect: opts.connect,
            listen: opts.listen,
            announce_local_address: opts.announce_local,
            mdns: opts.mdns,
            transports: opts.transports,
        }));
        Ok(Env {
            dir,
            quiet: opts.quiet,
            bootstrap,
            mdns: opts.mdns,
            network,
        })
    }

    pub(crate) fn store(&self) -> Result<Corestore> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create storage folder {}", self.dir.display()))?;
        Corestore::open(&self.dir)
            .with_context(|| format!("cannot open storage {}", self.dir.display()))
    }

    fn registry(&self) -> Result<Registry> {
        Registry::load(&self.dir)
    }

    pub(crate) fn no_peers_hint(&self) -> &'static str {
        if self.bootstrap.is_some() {
            "check that a peer is serving it (hypermount seed, or a Node hyperswarm seeder) on \
             the DHT of the given --bootstrap nodes, or give --connect HOST:PORT of one"
        } else {
            "give --connect HOST:PORT of a peer serving it (or --listen HOST:PORT and let it \
             dial in), or drop --no-dht to find peers through the DHT"
        }
    }
}

/// Whether `store` holds a (non-empty) copy of the feed with `key`.
fn holds(store: &Corestore, key: &[u8; 32]) -> Result<bool> {
    let loc = store
        .locate_by_key(key)
        .with_context(|| format!("drive {} in storage", hex::encode(key)))?;
    if !loc.paths.key.exists() {
        return Ok(false);
    }
    Ok(std::fs::metadata(&loc.paths.tree)
        .map(|m| m.len() > 32)
        .unwrap_or(false))
}

/// An open drive and the connections that feed it.
pub(crate) struct Opened {
    pub(crate) store: Corestore,
    /// The live drive.
    pub(crate) live: Drive,
    /// The view asked for (live, or a checkout).
    pub(crate) view: Drive,
    pub(crate) session: Session,
    pub(crate) online: bool,
}

/// Opens the drive `r` names, from storage or (if peers can be reached) from peers.
pub(crate) async fn open_drive(env: &Env, r: &DriveRef, announce: bool) -> Result<Opened> {
    let store = env.store()?;
    let hexkey = r.hex();
    let held = holds(&store, &r.key)?;
    let mut online = env.network.can_reach_peers();
    if !held && !online {
        bail!(
            "drive {hexkey} is not in storage {}; {}",
            env.dir.display(),
            env.no_peers_hint()
        );
    }
    let meta = store
        .get_by_key(&r.key)
        .with_context(|| format!("opening drive {hexkey} in {}", env.dir.display()))?;
    // A drive written here has nothing to fetch: reading it once needs no DHT walk.
    if online && !announce && env.network.dht_only() && meta.lock().feed.writable() {
        online = false;
    }
    let session = if online {
        let source: Arc<dyn FeedSource> = Arc::new(store.clone());
        let joined = env
            .network
            .join(
                source,
                &[meta.discovery_key()],
                JoinOptions {
                    announce,
                    lookup: true,
                },
            )
            .await;
        match joined {
            Ok(s) => {
                if let Some(e) = s.dht_error.clone() {
                    if !held && !env.network.has_peers_besides_dht() {
                        s.close().await;
                        bail!("cannot find peers for drive {hexkey}: {e}");
                    }
                    tracing::warn!(
                        "{e}; going on with {}",
                        if held {
                            "the copy in storage"
                        } else {
                            "the given peers"
                        }
                    );
                } else if env.bootstrap.is_some() {
                    tracing::info!(peers = s.dht_peers, "looked up drive {hexkey} on the DHT");
                }
                s
            }
            Err(e) if held => {
                tracing::warn!("{e:#}; using the copy in storage only");
                online = false;
                Session::offline()
            }
            Err(e) => return Err(e.context(format!("cannot look for peers of drive {hexkey}"))),
        }
    } else {
        Session::offline()
    };
    if online && !meta.lock().feed.writable() {
        meta.set_track_length(true);
        if meta.is_empty() {
            let got = meta.wait_for_length(1, FIRST_BLOCK_TIMEOUT).await;
            if got == 0 {
                session.close().await;
                bail!(
                    "no peer sent drive {hexkey} within {} s; {}",
                    FIRST_BLOCK_TIMEOUT.as_secs(),
                    env.no_peers_hint()
                );
            }
        }
        // Give newer lengths peers announce a moment to land.
        loop {
            let len = meta.len();
            if meta
                .wait_for_length(len + 1, Duration::from_millis(400))
                .await
                <= len
            {
                break;
            }
        }
    }
    let opts = DriveOptions {
        timeout: if online {
            NETWORK_READ_TIMEOUT
        } else {
            OFFLINE_READ_TIMEOUT
        },
        clock: None,
    };
    let provider = Arc::new(store.clone());
    let live = match Drive::open(provider, &r.key, opts).await {
        Ok(d) => d,
        Err(e) => {
            session.close().await;
            return Err(anyhow!(e)).with_context(|| {
                if online {
                    format!("cannot read drive {hexkey} from peers")
                } else {
                    format!(
                        "cannot read drive {hexkey} from storage {} (not all of it is here; {})",
                        env.dir.display(),
                        env.no_peers_hint()
                    )
                }
            });
        }
    };
    let view = match r.version {
        None => live.clone(),
        Some(v) => {
            let latest = live.version();
            if v == 0 || v > latest {
                session.close().await;
                bail!("drive {hexkey} has no version {v} (it has versions 1 to {latest})");
            }
            live.checkout(v)
        }
    };
    Ok(Opened {
        store,
        live,
        view,
        session,
        online,
    })
}

/// Writes a drive's feeds' bitfields and tree to disk.
pub(crate) fn flush(drive: &Drive) -> Result<()> {
    for f in [drive.metadata_feed(), drive.content_feed()] {
        f.lock()
            .feed
            .sync()
            .with_context(|| format!("saving feed {}", hex::encode(f.key())))?;
    }
    Ok(())
}

fn not_found_hint(e: anyhow::Error, r: &DriveRef) -> anyhow::Error {
    match e.downcast_ref::<DriveError>() {
        Some(DriveError::NotFound { .. }) => anyhow!("{r}: no such file or folder in the drive"),
        Some(DriveError::Timeout { .. }) => e.context(format!(
            "{r}: part of the drive is neither stored here nor available from peers"
        )),
        _ => e.context(r.to_string()),
    }
}

pub(crate) async fn until_stopped() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

pub(crate) fn say(env: &Env, msg: impl std::fmt::Display) {
    if !env.quiet {
        eprintln!("{msg}");
    }
}

pub(crate) fn out_line(line: impl std::fmt::Display) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")?;
    o.flush()?;
    Ok(())
}

// ---- create / import ----

pub async fn create(env: &Env, import: Option<PathBuf>) -> Result<()> {
    if let Some(src) = &import {
        if !src.is_dir() {
            bail!("cannot import {}: not a folder", src.display());
        }
    }
    let store = env.store()?;
    // A fresh random name per drive: several drives per storage, each re-derivable
    // from its `name` file (by us and by the reference).
    let name = format!(
        "hypermount-{}",
        hex::encode(KeyPair::generate().public_bytes())
    );
    let drive = Drive::named(Arc::new(store.clone()), &name, DriveOptions::default())
        .await
        .with_context(|| format!("creating a drive in {}", env.dir.display()))?;
    let key = drive.key();
    env.registry()?.add(&key, Role::Own)?;
    if let Some(src) = import {
        let s = sync::import_dir(&drive, &src).await?;
        say(env, format!("imported {}: {s}", src.display()));
    }
    flush(&drive)?;
    say(
        env,
        format!(
            "created drive hyper://{} (version {}) in {}",
            hex::encode(key),
            drive.version(),
            env.dir.display()
        ),
    );
    out_line(hex::encode(key))
}

pub async fn import(env: &Env, r: DriveRef, src: PathBuf) -> Result<()> {
    if r.version.is_some() || r.path != "/" {
        bail!("import writes a whole drive: give the key alone, not {r}");
    }
    if !src.is_dir() {
        bail!("cannot import {}: not a folder", src.display());
    }
    let store = env.store()?;
    if !holds(&store, &r.key)? {
        bail!(
            "drive {} is not in storage {}; import only works on drives created there",
            r.hex(),
            env.dir.display()
        );
    }
    drop(store);
    let o = open_drive(env, &r, false).await?;
    if !o.live.writable() {
        o.session.close().await;
        bail!(
            "drive {} is not writable in storage {}: only drives created there \
             (hypermount create) can be imported into",
            r.hex(),
            env.dir.display()
        );
    }
    let res = sync::import_dir(&o.live, &src).await;
    let flushed = flush(&o.live);
    o.session.close().await;
    let s = res?;
    flushed?;
    out_line(format!(
        "{}: {s}; now version {}",
        src.display(),
        o.live.version()
    ))
}

// ---- export ----

fn watch_drive_feeds(d: &Drive) -> Watched {
    Arc::new(Mutex::new(vec![
        d.metadata_feed().clone(),
        d.content_feed().clone(),
    ]))
}

pub async fn export(env: &Env, r: DriveRef, dest: PathBuf) -> Result<()> {
    let o = open_drive(env, &r, false).await?;
    let progress = o.online.then(|| {
        let peers = o.session.peers_fn();
        Progress::start(
            format!("export {}", &r.hex()[..8]),
            watch_drive_feeds(&o.live),
            o.session.stats.clone(),
            peers,
            env.quiet,
        )
    });
    let res = sync::export_tree(&o.view, &r.path, &dest).await;
    if let Some(p) = progress {
        p.finish();
    }
    let _ = flush(&o.live);
    o.session.close().await;
    let s = res.map_err(|e| not_found_hint(e, &r))?;
    out_line(format!(
        "exported {} files, {} folders, {} links, {} bytes of {} (version {}) to {}",
        s.files,
        s.dirs,
        s.links,
        s.bytes,
        r,
        o.view.version(),
        dest.display()
    ))
}

// ---- ls / cat / info / log ----

fn mode_string(st: &Stat) -> String {
    let kind = if st.mount.is_some() {
        'm'
    } else if st.is_dir() {
        'd'
    } else if st.is_symlink() {
        'l'
    } else {
        '-'
    };
    let mut s = String::from(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if st.mode & (1 << (8 - i)) != 0 {
            c
        } else {
            '-'
        });
    }
    s
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

pub(crate) fn long_line(name: &str, st: &Stat) -> String {
    let mut line = format!(
        "{} {:>12} {} {}",
        mode_string(st),
        st.size,
        format_time(st.mtime),
        name
    );
    if let Some(t) = &st.linkname {
        line.push_str(" -> ");
        line.push_str(t);
    }
    line
}

pub async fn ls(env: &Env, r: DriveRef, long: bool) -> Result<()> {
    let o = open_drive(env, &r, false).await?;
    let res = async {
        let st = o.view.lstat(&r.path).await;
        let st = match st {
            Ok(st) => st,
            Err(DriveError::NotFound { .. }) if r.path == "/" => Stat::default(),
            Err(e) => return Err(anyhow!(e)),
        };
        let mut lines = Vec::new();
        if r.path != "/"
            && !st.is_dir()
            && !(st.is_symlink() && o.view.stat(&r.path).await.is_ok_and(|s| s.is_dir()))
        {
            let name = r.path.rsplit('/').next().unwrap_or("");
            lines.push(if long {
                long_line(name, &st)
            } else {
                name.to_string()
            });
            return Ok(lines);
        }
        let entries = match o.view.readdir(&r.path, long).await {
            Ok(e) => e,
            // An empty drive has no root entry yet.
            Err(DriveError::NotFound { .. }) if r.path == "/" => Vec::new(),
            Err(e) => return Err(anyhow!(e)),
        };
        for e in entries {
            lines.push(match (&e.stat, long) {
                (Some(st), true) => long_line(&e.name, st),
                _ => e.name.clone(),
            });
        }
        Ok(lines)
    }
    .await;
    o.session.close().await;
    let lines = res.map_err(|e| not_found_hint(e, &r))?;
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(())
}

pub async fn cat(env: &Env, r: DriveRef) -> Result<()> {
    if r.path == "/" {
        bail!("cat needs a file: KEY/PATH, e.g. {}/README.md", r.hex());
    }
    let o = open_drive(env, &r, false).await?;
    let res = async {
        let h = o.view.open_file(&r.path).await?;
        let size = h.stat.size;
        let mut out = std::io::stdout().lock();
        let mut off = 0u64;
        while off < size {
            let chunk = h.read(off, (size - off).min(1 << 20)).await?;
            if chunk.is_empty() {
                bail!("{r} ended at byte {off} of {size}");
            }
            out.write_all(&chunk)?;
            off += chunk.len() as u64;
        }
        out.flush()?;
        Ok(())
    }
    .await;
    o.session.close().await;
    res.map_err(|e| not_found_hint(e, &r))
}

/// Bytes of `feed` held in this storage.
fn held_bytes(feed: &SharedFeed) -> Result<u64> {
    let mut st = feed.lock();
    let len = st.feed.len();
    if st.feed.bitfield().count_data(0, len) == len {
        return Ok(st.feed.byte_len());
    }
    let mut total = 0;
    for i in 0..len {
        if st.feed.has(i) {
            if let Some(n) = st.feed.node(2 * i)? {
                total += n.size;
            }
        }
    }
    Ok(total)
}

pub async fn info(env: &Env, r: DriveRef, as_json: bool) -> Result<()> {
    let o = open_drive(env, &r, false).await?;
    let res = async {
        let mut files = 0u64;
        let mut bytes = 0u64;
        let entries = match o.view.readdir_recursive("/", false).await {
            Ok(e) => e,
            Err(DriveError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(anyhow!(e)),
        };
        for rel in entries {
            if let Ok(st) = o.view.lstat(&format!("/{rel}")).await {
                if st.is_file() {
                    files += 1;
                    bytes += st.size;
                }
            }
        }
        let held = held_bytes(o.live.metadata_feed())? + held_bytes(o.live.content_feed())?;
        Ok((files, bytes, held))
    }
    .await;
    // Peers the DHT reported are being dialled: give them a moment to count.
    if o.session.dht_peers > 0 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while o.session.peers() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let peers = o.session.peers();
    let swarm = o.session.status().await;
    let holepunchable = o.session.holepunchable().await;
    let dht_error = o.session.dht_error.clone();
    o.session.close().await;
    let (files, bytes, held) = res.map_err(|e| not_found_hint(e, &r))?;
    let dht = swarm.as_ref().and_then(|s| s.dht.as_ref());
    let dht_json = dht.map(|d| {
        json!({
            "nodes": d.routing_table_len,
            "ephemeral": d.ephemeral,
            "publicAddress": d.remote_address.map(|a| a.to_string()),
            "holepunchable": holepunchable.unwrap_or(false),
            "error": dht_error,
        })
    });
    let dht_line = match (dht, &dht_error) {
        (_, Some(e)) => format!("unreachable: {e}"),
        (Some(d), None) => format!(
            "{} node(s) known, public address {}, holepunchable: {}",
            d.routing_table_len,
            d.remote_address
                .map_or("unknown".to_string(), |a| a.to_string()),
            if holepunchable.unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
        ),
        (None, None) if env.bootstrap.is_none() => "off (--no-dht)".to_string(),
        (None, None) => "not used (the drive is written here)".to_string(),
    };
    let v = json!({
        "key": hex::encode(o.live.key()),
        "discoveryKey": hex::encode(o.live.discovery_key()),
        "contentKey": hex::encode(o.live.content_feed().key()),
        "version": o.view.version(),
        "writable": o.view.writable(),
        "files": files,
        "bytes": bytes,
        "bytesHeld": held,
        "peers": peers,
        "listening": swarm.as_ref().and_then(|s| s.local_addr).map(|a| a.to_string()),
        "dht": dht_json,
        "mdns": env.mdns,
    });
    if as_json {
        return out_line(v);
    }
    out_line(format!(
        "key:            {}\n\
         discovery key:  {}\n\
         content key:    {}\n\
         version:        {}\n\
         writable:       {}\n\
         files:          {files}\n\
         bytes:          {bytes} ({})\n\
         bytes held:     {held} ({})\n\
         peers:          {peers}\n\
         dht:            {dht_line}\n\
         lan (mDNS):     {}",
        hex::encode(o.live.key()),
        hex::encode(o.live.discovery_key()),
        hex::encode(o.live.content_feed().key()),
        o.view.version(),
        o.view.writable(),
        progress::human(bytes),
        progress::human(held),
        if env.mdns {
            "on"
        } else {
            "off (--mdns turns it on)"
        },
    ))
}

pub async fn log(env: &Env, r: DriveRef) -> Result<()> {
    let o = open_drive(env, &r, false).await?;
    let res = async {
        let mut lines = vec!["1 created".to_string()];
        for v in 2..=o.view.version() {
            let changes = o.live.diff(v - 1, v).await?;
            if changes.is_empty() {
                lines.push(format!("{v} (no visible change)"));
            }
            for c in changes {
                let (sign, what) = match (&c.before, &c.after) {
                    (None, Some(st)) => ('+', describe(st)),
                    (Some(_), None) => ('-', String::new()),
                    (_, Some(st)) => ('~', describe(st)),
                    (None, None) => continue,
                };
                lines.push(format!("{v} {sign} {}{what}", c.path));
            }
        }
        Ok::<_, anyhow::Error>(lines)
    }
    .await;
    o.session.close().await;
    let lines = res.map_err(|e| not_found_hint(e, &r))?;
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(())
}

fn describe(st: &Stat) -> String {
    if st.mount.is_some() {
        " (mount)".into()
    } else if st.is_dir() {
        "/".into()
    } else if let Some(t) = &st.linkname {
        format!(" -> {t}")
    } else {
        format!(" ({} bytes)", st.size)
    }
}

// ---- seed / mirror ----

/// Keeps every feed of `drive` and its mounts open; returns the mounted drives.
async fn open_mounts(drive: &Drive) -> Vec<Drive> {
    let mut out = Vec::new();
    match drive.mounts().await {
        Ok(mounts) => {
            for m in mounts.into_iter().skip(1) {
                match drive.open_other(&m.metadata).await {
                    Ok(d) => out.push(d),
                    Err(e) => {
                        tracing::warn!(mount = %m.path, error = %e, "cannot open mounted drive")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list mounts"),
    }
    out
}

pub async fn seed(env: &Env, keys: Vec<DriveRef>) -> Result<()> {
    if !env.network.can_reach_peers() {
        bail!("seed needs peers: drop --no-dht to announce on the DHT, or give --mdns, --listen HOST:PORT or --connect HOST:PORT");
    }
    let keys: Vec<[u8; 32]> = if keys.is_empty() {
        env.registry()?.keys().into_iter().map(|(k, _)| k).collect()
    } else {
        keys.iter().map(|r| r.key).collect()
    };
    if keys.is_empty() {
        bail!(
            "no drives to seed in storage {}; create one (hypermount create) or mirror one first",
            env.dir.display()
        );
    }
    let store = env.store()?;
    let mut drives = Vec::new();
    for key in &keys {
        if !holds(&store, key)? {
            bail!(
                "drive {} is not in storage {}; mirror it first",
                hex::encode(key),
                env.dir.display()
            );
        }
        let d = Drive::open(
            Arc::new(store.clone()),
            key,
            DriveOptions {
                timeout: OFFLINE_READ_TIMEOUT,
                clock: None,
            },
        )
        .await
        .with_context(|| {
            format!(
                "opening drive {} in {}",
                hex::encode(key),
                env.dir.display()
            )
        })?;
        let mounts = open_mounts(&d).await;
        drives.push((d, mounts));
    }
    // Every drive and every drive mounted in one is announced: a reader may look up
    // any of them.
    let mut topics: Vec<[u8; 32]> = Vec::new();
    for (d, mounts) in &drives {
        for x in std::iter::once(d).chain(mounts.iter()) {
            if !topics.contains(&x.discovery_key()) {
                topics.push(x.discovery_key());
            }
        }
    }
    let source: Arc<dyn FeedSource> = Arc::new(store.clone());
    let session = env
        .network
        .join(
            source,
            &topics,
            JoinOptions {
                announce: true,
                lookup: false,
            },
        )
        .await?;
    if let Some(addr) = session.listening {
        out_line(format!("listening on {addr}"))?;
    }
    report_dht(env, &session, topics.len());
    for (d, mounts) in &drives {
        out_line(format!(
            "seeding hyper://{} version {}{}",
            hex::encode(d.key()),
            d.version(),
            if mounts.is_empty() {
                String::new()
            } else {
                format!(" with {} mounted drive(s)", mounts.len())
            }
        ))?;
    }
    until_stopped().await?;
    say(env, "stopping");
    session.close().await;
    Ok(())
}

/// Says on stderr how the first DHT announce went (a failure is retried in the background).
fn report_dht(env: &Env, session: &Session, drives: usize) {
    if env.mdns {
        say(
            env,
            format!("answering for {drives} drive(s) on the LAN (mDNS)"),
        );
    }
    if env.bootstrap.is_none() {
        return;
    }
    match &session.dht_error {
        Some(e) => say(
            env,
            format!("warning: {e}; announcing again in the background"),
        ),
        None => say(env, format!("announced {drives} drive(s) on the DHT")),
    }
}

pub async fn mirror(env: &Env, r: DriveRef, daemon: bool) -> Result<()> {
    if r.version.is_some() || r.path != "/" {
        bail!("mirror copies a whole drive: give the key alone, not {r}");
    }
    if !env.network.can_reach_peers() {
        bail!("mirror needs peers: {}", env.no_peers_hint());
    }
    if daemon {
        return spawn_daemon(env, &r);
    }
    let o = open_drive(env, &r, true).await?;
    env.registry()?.add(&r.key, Role::Mirror)?;
    if let Some(addr) = o.session.listening {
        out_line(format!("listening on {addr}"))?;
    }
    if let Some(path) = std::env::var_os(READY_ENV) {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", Path::new(&path).display()))?;
    }
    let watched = watch_drive_feeds(&o.live);
    let progress = Progress::start(
        format!("mirror {}", &r.hex()[..8]),
        watched.clone(),
        o.session.stats.clone(),
        o.session.peers_fn(),
        env.quiet,
    );
    let mut stop = Box::pin(until_stopped());
    let mut synced_at: Option<u64> = None;
    let mut known_mounts: Vec<Drive> = Vec::new();
    let mut selected: std::collections::HashSet<[u8; 32]> = Default::default();
    loop {
        // Select every feed (drive, content, mounts) for a live download.
        let mut feeds = vec![
            o.live.metadata_feed().clone(),
            o.live.content_feed().clone(),
        ];
        for m in &known_mounts {
            feeds.push(m.metadata_feed().clone());
            feeds.push(m.content_feed().clone());
        }
        for f in &feeds {
            if selected.insert(f.key()) {
                f.download(0, None);
            }
        }
        *watched.lock().unwrap_or_else(|p| p.into_inner()) = feeds.clone();
        let snap = progress::snapshot(&feeds);
        let version = o.live.version();
        let mut complete = snap.held == snap.total && synced_at != Some(version);
        if complete {
            // The content feed's length arrives separately: done only when it covers
            // every file of this version (and of each mount).
            for d in std::iter::once(&o.live).chain(known_mounts.iter()) {
                if d.content_feed().len() < required_content_len(d).await {
                    complete = false;
                }
            }
        }
        if complete {
            // Mounts can only be listed once the metadata is here.
            let mounts = open_mounts(&o.live).await;
            let new = mounts
                .iter()
                .any(|m| !known_mounts.iter().any(|k| k.key() == m.key()));
            known_mounts = mounts;
            if !new {
                let _ = flush(&o.live);
                for m in &known_mounts {
                    let _ = flush(m);
                }
                synced_at = Some(version);
                out_line(format!(
                    "mirrored hyper://{} version {version}: {} blocks, {} mounted drive(s)",
                    r.hex(),
                    snap.total,
                    known_mounts.len()
                ))?;
            }
            continue;
        }
        tokio::select! {
            res = &mut stop => { res?; break; }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    progress.finish();
    say(env, "stopping");
    if let Some(path) = std::env::var_os(READY_ENV) {
        let _ = std::fs::remove_file(path);
    }
    let _ = flush(&o.live);
    drop(o.store);
    o.session.close().await;
    Ok(())
}

/// Content blocks the latest version of `drive` refers to (its own files, not mounts).
async fn required_content_len(drive: &Drive) -> u64 {
    let Ok(entries) = drive.readdir_recursive("/", true).await else {
        return 0;
    };
    let mut need = 0;
    for rel in entries {
        if let Ok(st) = drive.lstat(&format!("/{rel}")).await {
            if st.is_file() && st.mount.is_none() {
                need = need.max(st.offset + st.blocks);
            }
        }
    }
    need
}

/// `mirror --daemon`: run this same command detached (own process group, output to a
/// log in the storage folder) and return once the child says it is serving.
fn spawn_daemon(env: &Env, r: &DriveRef) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(&env.dir)
        .with_context(|| format!("cannot create storage folder {}", env.dir.display()))?;
    let ready = env.dir.join(format!("mirror-{}.ready", r.hex()));
    let log = env.dir.join(format!("mirror-{}.log", r.hex()));
    let _ = std::fs::remove_file(&ready);
    let exe = std::env::current_exe().context("finding the hypermount executable")?;
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let logf =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = std::process::Command::new(exe)
        // Same arguments and environment, so the child resolves the same storage.
        .args(&args)
        .env(READY_ENV, &ready)
        .stdin(std::process::Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .process_group(0)
        .spawn()
        .context("starting the background mirror")?;
    let deadline = std::time::Instant::now() + FIRST_BLOCK_TIMEOUT + Duration::from_secs(15);
    loop {
        if ready.exists() {
            out_line(format!(
                "mirroring hyper://{} in the background: pid {}, log {}",
                r.hex(),
                child.id(),
                log.display()
            ))?;
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the background mirror exited ({status}) before serving:\n{}",
                tail.join("\n")
            );
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the background mirror (pid {}) did not report serving in time; see {}",
                child.id(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn modes() {
        let st = Stat::file(0o644, 0);
        assert_eq!(mode_string(&st), "-rw-r--r--");
        let st = Stat::directory(0o755, 0);
        assert_eq!(mode_string(&st), "drwxr-xr-x");
    }
}
