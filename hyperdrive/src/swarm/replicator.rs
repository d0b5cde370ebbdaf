//! One replication stream per swarm connection, carrying every feed a [`FeedSource`]
//! holds: what @corestore/networker does for a corestore (spec swarm.md 5).
//!
//! The dialler is the Noise initiator. Every connection of one replicator uses the same
//! static Noise key, so after the handshake the swarm can tell two connections to the same
//! peer apart from two peers, and keep one ([`ConnectionInfo::deduplicate`]). Feeds the
//! remote asks for by discovery key are opened from the source; feeds opened later join
//! every live stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::network::{Connection, ConnectionInfo};
use crate::protocol::driver::{
    replicate, ConnectionStats, FeedSource, HandshakeGate, HandshakeVerdict, ReplicateOptions,
};

/// Replicates every connection a swarm hands over until stopped.
pub struct Replicator {
    /// Byte and block totals over every connection.
    pub stats: Arc<ConnectionStats>,
    peers: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Replicator {
    /// Start taking connections from `connections`. `noise_seed` makes this process's
    /// static Noise key (the same on every connection, for deduplication).
    pub fn spawn(
        mut connections: mpsc::Receiver<Connection>,
        source: Arc<dyn FeedSource>,
        noise_seed: [u8; 32],
        opts: ReplicateOptions,
    ) -> Replicator {
        let stats = Arc::new(ConnectionStats::default());
        let peers = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let (st, pe) = (stats.clone(), peers.clone());
        let task = tokio::spawn(async move {
            let mut stop_rx2 = stop_rx.clone();
            loop {
                let conn = tokio::select! {
                    c = connections.recv() => match c {
                        Some(c) => c,
                        None => return,
                    },
                    _ = stop_rx2.wait_for(|s| *s) => return,
                };
                let opts = ReplicateOptions {
                    keypair: Some(noise_seed),
                    ..opts.clone()
                };
                tokio::spawn(serve(
                    conn,
                    source.clone(),
                    opts,
                    st.clone(),
                    pe.clone(),
                    stop_rx.clone(),
                ));
            }
        });
        Replicator {
            stats,
            peers,
            stop,
            task,
        }
    }

    /// Connections replicating now (duplicates and unfinished handshakes not counted).
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// A reader of the peer count that outlives borrows of the replicator.
    pub fn peers_counter(&self) -> Arc<AtomicUsize> {
        self.peers.clone()
    }

    /// Ends every stream (each sends what it has queued, bounded in time).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// Counts a replicating connection for as long as it lives.
struct Counted(Option<Arc<AtomicUsize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

async fn serve(
    conn: Connection,
    source: Arc<dyn FeedSource>,
    mut opts: ReplicateOptions,
    stats: Arc<ConnectionStats>,
    peers: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
) {
    let Connection { stream, info } = conn;
    let info: Arc<ConnectionInfo> = Arc::new(info);
    let counted = Arc::new(std::sync::Mutex::new(Counted(None)));
    {
        let (info, counted, peers) = (info.clone(), counted.clone(), peers.clone());
        opts.gate = Some(HandshakeGate(Arc::new(move |local, remote| {
            let v = info.deduplicate(local, remote);
            if v == HandshakeVerdict::Replicate {
                peers.fetch_add(1, Ordering::Relaxed);
                counted.lock().unwrap_or_else(|p| p.into_inner()).0 = Some(peers.clone());
            }
            v
        })));
    }
    // Stop when the replicator stops or the swarm wants this connection closed.
    let (end_tx, end_rx) = watch::channel(false);
    let mut closing = info.closing();
    let mut stop2 = stop.clone();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            _ = closing.wait_for(|c| *c) => {}
            _ = stop2.wait_for(|s| *s) => {}
        }
        let _ = end_tx.send(true);
    });
    let remote = info.remote_addr;
    match replicate(stream, info.client, source, opts, stats, end_rx).await {
        Ok(()) => tracing::debug!(%remote, "peer disconnected"),
        Err(e) => tracing::debug!(%remote, error = %e, "peer disconnected"),
    }
    watcher.abort();
    drop(counted);
    // Dropping the last `info` reports the close to the swarm (the gate held a clone).
}
