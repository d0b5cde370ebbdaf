//! Replication over plain TCP: dial a peer or accept peers on a listener, one
//! replication stream per connection. The swarm uses the same entry points for the
//! sockets it finds; `--connect`/`--listen` use them directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::driver::{
    replicate, shutdown_channel, ConnectionStats, DriverError, FeedSource, ReplicateOptions,
};

/// Dial `addr` (retrying every `retry` until `deadline` passes) and replicate as the
/// initiator until the connection ends.
pub async fn connect(
    addr: SocketAddr,
    source: Arc<dyn FeedSource>,
    opts: ReplicateOptions,
    stats: Arc<ConnectionStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let socket = TcpStream::connect(addr).await?;
    let _ = socket.set_nodelay(true);
    replicate(socket, true, source, opts, stats, shutdown).await
}

/// Dial with retries: a seeder that is still starting is not an error until
/// `give_up_after`.
pub async fn connect_with_retry(
    addr: SocketAddr,
    give_up_after: Duration,
) -> std::io::Result<TcpStream> {
    let deadline = tokio::time::Instant::now() + give_up_after;
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A listening replication endpoint.
pub struct Listener {
    pub local_addr: SocketAddr,
    pub stats: Arc<ConnectionStats>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Bind `addr` and replicate (as responder) with every peer that connects.
    /// Connections share one stats record.
    pub async fn bind(
        addr: SocketAddr,
        source: Arc<dyn FeedSource>,
        opts: ReplicateOptions,
    ) -> std::io::Result<Listener> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, stop) = shutdown_channel();
        let stats = Arc::new(ConnectionStats::default());
        let task = {
            let mut stop = stop.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    let Ok((socket, peer)) = accepted else {
                        continue;
                    };
                    let _ = socket.set_nodelay(true);
                    let (source, opts, stats, stop) =
                        (source.clone(), opts.clone(), stats.clone(), stop.clone());
                    tokio::spawn(async move {
                        if let Err(e) = replicate(socket, false, source, opts, stats, stop).await {
                            tracing::info!(%peer, error = %e, "peer disconnected");
                        }
                    });
                }
            })
        };
        Ok(Listener {
            local_addr,
            stats,
            shutdown,
            task,
        })
    }

    /// Stop accepting and end every connection of this listener.
    pub fn close(&self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}
