//! Tokio UDP driver for [`DhtNode`]: owns the socket and the timer, and turns walks into
//! async calls. All protocol decisions live in the node; this file only moves bytes.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::node::{DhtError, DhtNode, Event, NodeConfig, PingId, QueryId, Reply};
use super::utp::{is_utp, UtpInbox};
use super::wire::{decode_local_peers, decode_peer_list, PeersOutput, MAX_PACKET};

/// Commands queued to the driver task.
const COMMAND_QUEUE: usize = 64;
/// Replies kept per walk (a walk talks to a bounded number of nodes anyway).
const MAX_REPLIES: usize = 1024;

/// Errors of the async API.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Dht(#[from] DhtError),
    #[error("the DHT task has stopped")]
    Closed,
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("only IPv4 is supported, got {0}")]
    NotIpv4(SocketAddr),
}

/// One `peers` reply of a lookup or announce walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersFound {
    /// The DHT node that answered.
    pub node: SocketAddrV4,
    pub node_id: Option<[u8; 32]>,
    /// Our address as that node saw it.
    pub to: Option<SocketAddrV4>,
    pub peers: Vec<SocketAddrV4>,
    /// Peers on our /16, present only when we sent a local address.
    pub local_peers: Option<Vec<SocketAddrV4>>,
}

/// A snapshot of the node, for `info`/`status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: [u8; 32],
    pub ephemeral: bool,
    pub bootstrapped: bool,
    pub routing_table_len: usize,
    pub records: usize,
    pub remote_address: Option<SocketAddrV4>,
    pub holepunchable: bool,
}

type Replies = Result<Vec<Reply>, DhtError>;

enum Command {
    Ready(oneshot::Sender<()>),
    Ping(
        SocketAddrV4,
        oneshot::Sender<Result<SocketAddrV4, DhtError>>,
    ),
    Holepunch(
        SocketAddrV4,
        SocketAddrV4,
        oneshot::Sender<Result<SocketAddrV4, DhtError>>,
    ),
    Lookup([u8; 32], Option<SocketAddrV4>, oneshot::Sender<Replies>),
    Announce(
        [u8; 32],
        u16,
        Option<SocketAddrV4>,
        oneshot::Sender<Replies>,
    ),
    Unannounce(
        [u8; 32],
        u16,
        Option<SocketAddrV4>,
        oneshot::Sender<Replies>,
    ),
    Info(oneshot::Sender<NodeInfo>),
    Persistent,
}

/// A running DHT node. Dropping it stops the task and closes the socket.
#[derive(Debug)]
pub struct Dht {
    tx: mpsc::Sender<Command>,
    local_addr: SocketAddrV4,
    task: Option<JoinHandle<()>>,
}

impl Drop for Dht {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Dht {
    /// Bind a UDP socket on `addr` (IPv4) and start the node; the bootstrap walk starts at
    /// once. Use [`Dht::ready`] to wait for it.
    pub async fn bind(addr: SocketAddr, config: NodeConfig) -> Result<Dht, DriverError> {
        let SocketAddr::V4(_) = addr else {
            return Err(DriverError::NotIpv4(addr));
        };
        let socket = UdpSocket::bind(addr).await?;
        Dht::with_socket(socket, config)
    }

    /// Start the node on a socket bound already: a swarm binds its TCP listener and the
    /// DHT's UDP socket on the same port number, as the reference does (spec 0). Datagrams
    /// that are not DHT messages (uTP, which Node peers also send there) are dropped.
    pub fn with_socket(socket: UdpSocket, config: NodeConfig) -> Result<Dht, DriverError> {
        Dht::with_shared_socket(Arc::new(socket), config, None)
    }

    /// Like [`Dht::with_socket`], on a socket shared with uTP: datagrams that look like
    /// uTP go to `utp` instead of being dropped.
    pub fn with_shared_socket(
        socket: Arc<UdpSocket>,
        config: NodeConfig,
        utp: Option<Arc<UtpInbox>>,
    ) -> Result<Dht, DriverError> {
        let local_addr = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            other => return Err(DriverError::NotIpv4(other)),
        };
        let node = DhtNode::new(config, tokio::time::Instant::now().into_std());
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(run(socket, node, rx, utp));
        Ok(Dht {
            tx,
            local_addr,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Closed)?;
        rx.await.map_err(|_| DriverError::Closed)
    }

    /// Resolves once the first bootstrap walk has ended (successfully or not).
    pub async fn ready(&self) -> Result<(), DriverError> {
        self.call(Command::Ready).await
    }

    /// `_ping` a node; returns our address as it saw it.
    pub async fn ping(&self, addr: SocketAddrV4) -> Result<SocketAddrV4, DriverError> {
        Ok(self.call(|tx| Command::Ping(addr, tx)).await??)
    }

    /// Holepunch `peer` through `referrer` (the DHT node that reported it); resolves
    /// once the peer answered us, with our address as it saw it.
    pub async fn holepunch(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> Result<SocketAddrV4, DriverError> {
        Ok(self
            .call(|tx| Command::Holepunch(peer, referrer, tx))
            .await??)
    }

    /// Find peers announced under `topic`.
    pub async fn lookup(
        &self,
        topic: [u8; 32],
        local: Option<SocketAddrV4>,
    ) -> Result<Vec<PeersFound>, DriverError> {
        let replies = self.call(|tx| Command::Lookup(topic, local, tx)).await??;
        Ok(map_peers(replies, local))
    }

    /// Announce `port` (0 = this socket's port) under `topic`; also returns the peers the
    /// walk found on the way.
    pub async fn announce(
        &self,
        topic: [u8; 32],
        port: u16,
        local: Option<SocketAddrV4>,
    ) -> Result<Vec<PeersFound>, DriverError> {
        let replies = self
            .call(|tx| Command::Announce(topic, port, local, tx))
            .await??;
        Ok(map_peers(replies, local))
    }

    /// Remove an announcement from the closest nodes.
    pub async fn unannounce(
        &self,
        topic: [u8; 32],
        port: u16,
        local: Option<SocketAddrV4>,
    ) -> Result<(), DriverError> {
        self.call(|tx| Command::Unannounce(topic, port, local, tx))
            .await??;
        Ok(())
    }

    /// Start sending our id, so other nodes add us to their routing tables (spec 1.3).
    pub async fn persistent(&self) -> Result<(), DriverError> {
        self.tx
            .send(Command::Persistent)
            .await
            .map_err(|_| DriverError::Closed)
    }

    pub async fn info(&self) -> Result<NodeInfo, DriverError> {
        self.call(Command::Info).await
    }

    /// Resolves when the driver task ends (it only ends if it panics or is aborted).
    pub async fn closed(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Decode `peers` replies as @hyperswarm/dht's client does: replies with neither list are
/// skipped, a bad `peers` list becomes empty, `localPeers` uses our own first two octets.
fn map_peers(replies: Vec<Reply>, local: Option<SocketAddrV4>) -> Vec<PeersFound> {
    replies
        .into_iter()
        .filter_map(|r| {
            let out = PeersOutput::decode(r.value.as_deref()?).ok()?;
            if out.peers.is_none() && out.local_peers.is_none() {
                return None;
            }
            let peers = out
                .peers
                .as_deref()
                .and_then(decode_peer_list)
                .unwrap_or_default();
            let local_peers = local.and_then(|l| {
                let o = l.ip().octets();
                decode_local_peers([o[0], o[1]], out.local_peers.as_deref().unwrap_or_default())
            });
            Some(PeersFound {
                node: r.from,
                node_id: r.node_id,
                to: r.to,
                peers,
                local_peers,
            })
        })
        .collect()
}

struct Waiting {
    replies: Vec<Reply>,
    done: oneshot::Sender<Replies>,
}

async fn run(
    socket: Arc<UdpSocket>,
    mut node: DhtNode,
    mut rx: mpsc::Receiver<Command>,
    utp: Option<Arc<UtpInbox>>,
) {
    let mut buf = vec![0u8; 65536];
    let mut ready_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut pings: HashMap<PingId, oneshot::Sender<Result<SocketAddrV4, DhtError>>> =
        HashMap::new();
    let mut queries: HashMap<QueryId, Waiting> = HashMap::new();
    let mut commands_open = true;
    loop {
        flush(&socket, &mut node).await;
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Ready => ready_waiters.drain(..).for_each(|w| {
                    let _ = w.send(());
                }),
                Event::Reply { query, reply } => {
                    if let Some(w) = queries.get_mut(&query) {
                        if w.replies.len() < MAX_REPLIES {
                            w.replies.push(reply);
                        }
                    }
                }
                Event::QueryDone { query, result } => {
                    if let Some(w) = queries.remove(&query) {
                        let _ = w.done.send(result.map(|_| w.replies));
                    }
                }
                Event::Pong { ping, result } => {
                    if let Some(tx) = pings.remove(&ping) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::from_std(node.poll_timeout());
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) if utp.is_some() && is_utp(&buf[..n]) => {
                    if let Some(inbox) = &utp {
                        if !inbox.push(&buf[..n], from) {
                            tracing::trace!(%from, "uTP inbox full: datagram dropped");
                        }
                    }
                }
                Ok((n, SocketAddr::V4(from))) => {
                    node.handle_datagram(from, &buf[..n.min(MAX_PACKET + 1)], std::time::Instant::now());
                }
                Ok(_) => {}
                // ICMP port-unreachable and friends surface here on Linux; keep going.
                Err(e) => tracing::debug!("dht recv: {e}"),
            },
            cmd = rx.recv(), if commands_open => match cmd {
                None => commands_open = false,
                Some(cmd) => handle_command(&mut node, cmd, &mut ready_waiters, &mut pings, &mut queries),
            },
            _ = tokio::time::sleep_until(deadline) => node.handle_timeout(std::time::Instant::now()),
        }
    }
}

fn handle_command(
    node: &mut DhtNode,
    cmd: Command,
    ready_waiters: &mut Vec<oneshot::Sender<()>>,
    pings: &mut HashMap<PingId, oneshot::Sender<Result<SocketAddrV4, DhtError>>>,
    queries: &mut HashMap<QueryId, Waiting>,
) {
    let mut start = |r: Result<QueryId, DhtError>, done: oneshot::Sender<Replies>| match r {
        Ok(q) => {
            queries.insert(
                q,
                Waiting {
                    replies: Vec::new(),
                    done,
                },
            );
        }
        Err(e) => {
            let _ = done.send(Err(e));
        }
    };
    match cmd {
        Command::Ready(tx) => {
            if node.is_bootstrapped() {
                let _ = tx.send(());
            } else {
                ready_waiters.push(tx);
            }
        }
        Command::Ping(addr, tx) => {
            pings.insert(node.ping(addr), tx);
        }
        Command::Holepunch(peer, referrer, tx) => {
            pings.insert(node.holepunch(peer, referrer), tx);
        }
        Command::Lookup(t, l, tx) => start(node.lookup(t, l), tx),
        Command::Announce(t, p, l, tx) => start(node.announce(t, p, l), tx),
        Command::Unannounce(t, p, l, tx) => start(node.unannounce(t, p, l), tx),
        Command::Persistent => node.persistent(),
        Command::Info(tx) => {
            let t = node.routing_table();
            let _ = tx.send(NodeInfo {
                id: *node.id(),
                ephemeral: node.is_ephemeral(),
                bootstrapped: node.is_bootstrapped(),
                routing_table_len: t.len(),
                records: node.record_count(),
                remote_address: node.remote_address(),
                holepunchable: t.holepunchable(),
            });
        }
    }
}

async fn flush(socket: &UdpSocket, node: &mut DhtNode) {
    while let Some((to, bytes)) = node.poll_transmit() {
        if let Err(e) = socket.send_to(&bytes, SocketAddr::V4(to)).await {
            tracing::debug!("dht send to {to}: {e}");
        }
    }
}
