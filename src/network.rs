//! How commands reach peers: one [`Network`] interface, so the commands never know
//! whether peers come from `--connect`/`--listen` or (later) the DHT.
//!
//! A command opens the feeds it needs in the corestore, then [`Network::join`]s with the
//! store as the feed source: every connection replicates every open core and answers
//! the peer's requests for cores the store holds on disk.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyperdrive::protocol::driver::{
    replicate, shutdown_channel, ConnectionStats, FeedSource, ReplicateOptions,
};
use hyperdrive::protocol::net::connect_with_retry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The public bootstrap nodes the reference uses; stored for the DHT, never contacted
/// while it does not exist.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "bootstrap1.hyperdht.org:49737",
    "bootstrap2.hyperdht.org:49737",
    "bootstrap3.hyperdht.org:49737",
];

/// How long a dial keeps retrying a peer that is not up yet.
const DIAL_RETRY: Duration = Duration::from_secs(10);
/// Pause before redialling a peer whose connection ended.
const REDIAL_PAUSE: Duration = Duration::from_secs(1);

/// What a command asks of the network for a drive.
#[derive(Debug, Clone, Copy)]
pub struct JoinOptions {
    /// Let peers find us (serve).
    pub announce: bool,
    /// Look for peers (fetch).
    pub lookup: bool,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way to find and keep peers.
pub trait Network: Send + Sync {
    /// Starts replicating `source` with peers for the drive `discovery_key`.
    fn join(
        &self,
        source: Arc<dyn FeedSource>,
        discovery_key: [u8; 32],
        opts: JoinOptions,
    ) -> BoxFut<'_, Result<Session>>;
    /// Whether this network can reach any peer at all (false: local data only).
    fn can_reach_peers(&self) -> bool;
}

/// Live connections of one join: counts, totals, and the way to end them.
pub struct Session {
    /// Address we listen on, if any.
    pub listening: Option<SocketAddr>,
    pub stats: Arc<ConnectionStats>,
    peers: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Session {
    /// A session with no peers (no network configured).
    pub fn offline() -> Session {
        Session {
            listening: None,
            stats: Arc::new(ConnectionStats::default()),
            peers: Arc::new(AtomicUsize::new(0)),
            stop: shutdown_channel().0,
            tasks: Vec::new(),
        }
    }

    /// Connected peers now.
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// A reader of the peer count that outlives borrows of the session.
    pub fn peers_fn(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        let p = self.peers.clone();
        Arc::new(move || p.load(Ordering::Relaxed))
    }

    /// Ends every connection and stops listening; waits (bounded) for them to close.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Counts a live connection for as long as it is held.
struct PeerGuard(Arc<AtomicUsize>);

impl PeerGuard {
    fn new(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        PeerGuard(c.clone())
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `--connect HOST:PORT` (dialled, redialled when dropped) and `--listen HOST:PORT`.
pub struct TcpNetwork {
    pub connect: Vec<SocketAddr>,
    pub listen: Option<SocketAddr>,
}

impl Network for TcpNetwork {
    fn can_reach_peers(&self) -> bool {
        !self.connect.is_empty() || self.listen.is_some()
    }

    fn join(
        &self,
        source: Arc<dyn FeedSource>,
        _discovery_key: [u8; 32],
        opts: JoinOptions,
    ) -> BoxFut<'_, Result<Session>> {
        Box::pin(async move {
            let (stop, stop_rx) = shutdown_channel();
            let stats = Arc::new(ConnectionStats::default());
            let peers = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            let mut listening = None;
            let ropts = ReplicateOptions::default();
            // Only a session that announces (serves) or looks up accepts peers; with
            // TCP both mean "accept on --listen" and "dial --connect".
            let _ = (opts.announce, opts.lookup);
            if let Some(addr) = self.listen {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                listening = Some(local);
                let (source, stats, peers, ropts) =
                    (source.clone(), stats.clone(), peers.clone(), ropts.clone());
                let mut stop = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let accepted = tokio::select! {
                            a = listener.accept() => a,
                            _ = stop.wait_for(|s| *s) => return,
                        };
                        let Ok((socket, peer)) = accepted else {
                            continue;
                        };
                        let _ = socket.set_nodelay(true);
                        tracing::info!(%peer, "peer connected");
                        let guard = PeerGuard::new(&peers);
                        let (source, ropts, stats, stop) =
                            (source.clone(), ropts.clone(), stats.clone(), stop.clone());
                        tokio::spawn(async move {
                            let _guard = guard;
                            if let Err(e) =
                                replicate(socket, false, source, ropts, stats, stop).await
                            {
                                tracing::info!(%peer, error = %e, "peer disconnected");
                            }
                        });
                    }
                }));
            }
            for &addr in &self.connect {
                let (source, stats, peers, ropts) =
                    (source.clone(), stats.clone(), peers.clone(), ropts.clone());
                let mut stop = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let socket = tokio::select! {
                            s = connect_with_retry(addr, DIAL_RETRY) => s,
                            _ = stop.wait_for(|s| *s) => return,
                        };
                        match socket {
                            Ok(socket) => {
                                tracing::info!(%addr, "connected");
                                let _guard = PeerGuard::new(&peers);
                                let r = replicate(
                                    socket,
                                    true,
                                    source.clone(),
                                    ropts.clone(),
                                    stats.clone(),
                                    stop.clone(),
                                )
                                .await;
                                if let Err(e) = r {
                                    tracing::info!(%addr, error = %e, "connection ended");
                                }
                            }
                            Err(e) => tracing::warn!(%addr, error = %e, "cannot connect"),
                        }
                        if *stop.borrow() {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(REDIAL_PAUSE) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                }));
            }
            Ok(Session {
                listening,
                stats,
                peers,
                stop,
                tasks,
            })
        })
    }
}
