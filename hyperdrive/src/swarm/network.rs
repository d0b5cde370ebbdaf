//! The swarm: find peers for topics and keep connections to them (spec swarm.md 4).
//!
//! One [`Swarm`] owns one port number: a TCP listener and the DHT's UDP socket bound to the
//! same port, as hyperswarm does, so the port a DHT node records from our datagrams is the
//! port peers dial. Topics are joined with [`Swarm::join`]; the peers their discovery
//! loops report go to the [`PeerQueue`], which decides whom to dial and when to retry.
//! Every connection, dialled or accepted, is handed to the application on the channel
//! from [`Swarm::connections`]. After its handshake the application asks
//! [`ConnectionInfo::deduplicate`] whether to use it; dropping the connection's
//! [`ConnectionInfo`] tells the swarm it closed.
//!
//! TCP only: Node peers race TCP and uTP to the same port and accept TCP, so they reach
//! us and we reach them; the uTP datagrams they send to our UDP port are dropped by the
//! DHT decoder. Without uTP there is no holepunching through NATs (a peer behind a NAT
//! can still dial out to public peers, and accept on a forwarded port).
//!
//! Locking: the swarm's state sits under one `std::sync::Mutex`, held only for short
//! bookkeeping and never across an `.await`.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dedup::{ConnMeta, Dedup, Verdict};
use super::discovery::{run_topic, JoinOptions, RunReport, TopicConfig, TopicHost, TopicRun};
use super::driver::{Dht, DriverError, NodeInfo};
use super::mdns::{LocalPeer, MdnsConfig, MdnsError, MdnsService, MdnsSocket};
use super::node::NodeConfig;
use super::queue::{Added, PeerAddr, PeerQueue};
use super::stream::PeerStream;
use super::utp::{self, Utp, UtpInbox};
use crate::protocol::driver::HandshakeVerdict;

/// hyperswarm's default peer limit (dialled plus accepted connections).
pub const MAX_PEERS: usize = 24;
/// A dial that has not connected after this long fails (hyperswarm's connect timeout).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Dials in flight at once.
const MAX_DIALS: usize = 8;
/// Connections waiting for the application to take them.
const CONNECTION_QUEUE: usize = 64;
/// Topics one swarm may join.
pub const MAX_TOPICS: usize = 1024;
/// Attempts at finding a port free for both TCP and UDP.
const BIND_ATTEMPTS: usize = 8;
/// hyperswarm's adaptive mode turns persistent after 20–30 min if holepunchable.
const ADAPTIVE_CHECK: (Duration, Duration) = (Duration::from_secs(1200), Duration::from_secs(1800));

/// Errors of the swarm.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        #[source]
        source: io::Error,
    },
    #[error("DHT: {0}")]
    Dht(#[from] DriverError),
    #[error(
        "this swarm has no DHT and no mDNS (it only dials given peers and accepts connections)"
    )]
    NoDht,
    #[error(transparent)]
    Mdns(#[from] MdnsError),
    #[error("too many topics joined (limit {MAX_TOPICS})")]
    TooManyTopics,
    #[error("the swarm has been destroyed")]
    Destroyed,
}

/// The DHT part of a swarm.
#[derive(Debug, Clone)]
pub struct DhtSettings {
    /// Bootstrap nodes; empty makes this the first node of a private DHT.
    pub bootstrap: Vec<SocketAddrV4>,
    /// `Some(true)`: never enter routing tables; `Some(false)`: persistent; `None`:
    /// hyperswarm's adaptive mode (ephemeral, persistent once holepunchable).
    pub ephemeral: Option<bool>,
}

/// How a swarm is set up.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Address for the TCP listener (and, with a DHT, the UDP socket). Port 0 picks one.
    /// `None` without a DHT: dial only. With a DHT, `None` listens on 0.0.0.0, port 0.
    pub bind: Option<SocketAddrV4>,
    /// `None`: no DHT; peers come only from [`Swarm::add_peer`] and inbound connections.
    pub dht: Option<DhtSettings>,
    pub max_peers: usize,
    pub dial_timeout: Duration,
    pub topics: TopicConfig,
    /// Send our first non-internal IPv4 address and port with announces and lookups, so
    /// peers on our /16 can reach us directly (hyperswarm `announceLocalAddress`, off by
    /// default).
    pub announce_local_address: bool,
    /// Find peers on the LAN by multicast DNS too (off by default: it multicasts on
    /// every interface).
    pub mdns: Option<MdnsConfig>,
    /// Which transports to accept and dial.
    pub transports: Transports,
}

/// hyperswarm's two transports on one port number. uTP needs the DHT (it shares its UDP
/// socket, and reaches peers behind NATs after a holepunch through the DHT node that
/// reported them); without a DHT only TCP is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    pub tcp: bool,
    pub utp: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            tcp: true,
            utp: true,
        }
    }
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            bind: None,
            dht: None,
            max_peers: MAX_PEERS,
            dial_timeout: DIAL_TIMEOUT,
            topics: TopicConfig::default(),
            announce_local_address: false,
            mdns: None,
            transports: Transports::default(),
        }
    }
}

/// A connection the swarm made or accepted.
pub struct Connection {
    pub stream: PeerStream,
    pub info: ConnectionInfo,
}

/// What the swarm knows about a connection; dropping it reports the connection closed.
pub struct ConnectionInfo {
    id: u64,
    /// We dialled it (we are the Noise initiator).
    pub client: bool,
    /// The peer as discovered (for dialled connections); `None` for accepted ones.
    pub peer: Option<PeerAddr>,
    /// The socket's remote address.
    pub remote_addr: SocketAddr,
    /// TCP (else uTP).
    pub tcp: bool,
    kill: watch::Receiver<bool>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("id", &self.id)
            .field("client", &self.client)
            .field("peer", &self.peer)
            .field("remote_addr", &self.remote_addr)
            .field("tcp", &self.tcp)
            .finish()
    }
}

impl ConnectionInfo {
    /// Turns true when the swarm wants this connection closed (it lost a deduplication
    /// to a newer connection, or the swarm is being destroyed).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.kill.clone()
    }

    /// Topics under which the dialled peer was found.
    pub fn topics(&self) -> Vec<[u8; 32]> {
        match &self.peer {
            Some(p) => self.inner.state().queue.topics(&p.addr).to_vec(),
            None => Vec::new(),
        }
    }

    /// Decide, from the handshake's static keys, whether this connection is the one to
    /// use with this peer (spec 4.4). The answer is what the replication driver's
    /// handshake gate expects.
    pub fn deduplicate(&self, local: &[u8; 32], remote: &[u8; 32]) -> HandshakeVerdict {
        let mut st = self.inner.state();
        let meta = ConnMeta {
            id: self.id,
            client: self.client,
            tcp: self.tcp,
        };
        let verdict = st.dedup.decide(local, remote, meta);
        let peer = self.peer.as_ref().map(|p| p.addr);
        match verdict {
            Verdict::ToSelf => {
                tracing::debug!(remote = %self.remote_addr, "connected to ourselves: dropped");
                if let Some(a) = peer {
                    // Never dial our own address again (the reference bans it for good).
                    st.queue.ban(&a);
                }
                HandshakeVerdict::Close
            }
            Verdict::Keep { replaced } => {
                if let Some(other) = replaced {
                    st.drop_duplicate(other.id, self.id);
                }
                if let Some(c) = st.conns.get_mut(&self.id) {
                    c.remote_key = Some(*remote);
                }
                HandshakeVerdict::Replicate
            }
            Verdict::Duplicate => {
                tracing::debug!(remote = %self.remote_addr, client = self.client, "duplicate connection");
                let winner = st
                    .conns
                    .iter()
                    .find(|(id, c)| **id != self.id && c.remote_key == Some(*remote))
                    .map(|(id, _)| *id);
                if let Some(w) = winner {
                    st.drop_duplicate(self.id, w);
                }
                if self.client {
                    HandshakeVerdict::Close
                } else {
                    HandshakeVerdict::Idle
                }
            }
        }
    }
}

impl Drop for ConnectionInfo {
    fn drop(&mut self) {
        self.inner.closed(self.id, Instant::now());
    }
}

struct ConnEntry {
    client: bool,
    tcp: bool,
    peer: Option<SocketAddrV4>,
    remote_key: Option<[u8; 32]>,
    kill: watch::Sender<bool>,
    /// Dialled duplicates this connection beat: requeued when it closes.
    beaten: Vec<SocketAddrV4>,
}

struct TopicEntry {
    opts: JoinOptions,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct State {
    queue: PeerQueue,
    dedup: Dedup,
    conns: HashMap<u64, ConnEntry>,
    dialing: usize,
    next_id: u64,
    topics: HashMap<[u8; 32], TopicEntry>,
    destroyed: bool,
    /// Totals for status.
    connected_total: u64,
    dial_failures: u64,
}

impl State {
    /// `loser` lost a deduplication to `winner`: a loser we dialled is closed and not
    /// redialled until the winner closes; an accepted loser is left to its dialler.
    fn drop_duplicate(&mut self, loser: u64, winner: u64) {
        let Some(l) = self.conns.get(&loser) else {
            return;
        };
        if !l.client {
            return;
        }
        let _ = l.kill.send(true);
        if let Some(addr) = l.peer {
            self.queue.ban(&addr);
            if let Some(w) = self.conns.get_mut(&winner) {
                w.beaten.push(addr);
            }
        }
    }
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the dial scheduler.
    wake: Notify,
    lonely: Notify,
    config: SwarmConfig,
    /// Where we listen (the port peers dial and the DHT records).
    local_addr: Option<SocketAddrV4>,
    dht: Option<Arc<Dht>>,
    conn_tx: mpsc::Sender<Connection>,
    /// Our address to send with lookups/announces (announce_local_address).
    local_announce: Option<SocketAddrV4>,
    mdns: Option<Arc<MdnsService>>,
    utp: Option<Utp>,
    /// Stops the uTP stack.
    cancel: CancellationToken,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `addr` is this swarm's own listening address.
    fn is_self(&self, addr: &SocketAddrV4) -> bool {
        let Some(me) = self.local_addr else {
            return false;
        };
        addr.port() == me.port()
            && (addr.ip() == me.ip()
                || addr.ip().is_loopback()
                || me.ip().is_unspecified() && is_own_ip(addr.ip()))
    }

    fn closed(&self, id: u64, now: Instant) {
        let mut st = self.state();
        let Some(c) = st.conns.remove(&id) else {
            return;
        };
        st.dedup.closed(id);
        if c.client {
            if let Some(a) = c.peer {
                st.queue.disconnected(&a, now);
            }
        }
        for a in c.beaten {
            st.queue.unban(&a);
        }
        let empty = st.conns.is_empty();
        drop(st);
        self.wake.notify_one();
        if empty {
            self.lonely.notify_waiters();
        }
    }

    /// Registers a connection and hands it to the application.
    fn deliver(
        self: &Arc<Self>,
        stream: PeerStream,
        client: bool,
        peer: Option<PeerAddr>,
        remote_addr: SocketAddr,
    ) {
        if let PeerStream::Tcp(s) = &stream {
            let _ = s.set_nodelay(true);
        }
        let tcp = stream.is_tcp();
        let (kill_tx, kill_rx) = watch::channel(false);
        let id = {
            let mut st = self.state();
            let id = st.next_id;
            st.next_id += 1;
            st.connected_total += 1;
            st.conns.insert(
                id,
                ConnEntry {
                    client,
                    tcp,
                    peer: peer.as_ref().map(|p| p.addr),
                    remote_key: None,
                    kill: kill_tx,
                    beaten: Vec::new(),
                },
            );
            id
        };
        let info = ConnectionInfo {
            id,
            client,
            peer,
            remote_addr,
            tcp,
            kill: kill_rx,
            inner: self.clone(),
        };
        // A full queue means the application is not taking connections: drop this one
        // (its info's drop reports it closed).
        if let Err(e) = self.conn_tx.try_send(Connection { stream, info }) {
            tracing::debug!("connection not taken: {e}");
        }
    }
}

impl TopicHost for Inner {
    fn found(&self, peer: PeerAddr) {
        if self.is_self(&peer.addr) || peer.addr.port() == 0 || peer.addr.ip().is_unspecified() {
            return;
        }
        let added = self.state().queue.add(peer);
        if added == Added::Queued {
            self.wake.notify_one();
        }
    }

    fn connections(&self) -> usize {
        self.state().conns.len()
    }

    fn lonely(&self) -> &Notify {
        &self.lonely
    }
}

fn is_own_ip(ip: &Ipv4Addr) -> bool {
    first_local_ipv4().is_some_and(|mine| mine == *ip)
}

/// Our first non-internal IPv4 address, found without sending anything: a UDP socket
/// "connected" to a public address only asks the kernel which source it would use.
fn first_local_ipv4() -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?; // TEST-NET-1: nothing is sent by connect()
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_loopback() && !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}

/// Counts for `info`/`status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmStatus {
    /// Where peers can dial us.
    pub local_addr: Option<SocketAddrV4>,
    /// Live connections (duplicates included).
    pub connections: usize,
    /// Of which over uTP.
    pub utp_connections: usize,
    /// Dials in flight.
    pub dialing: usize,
    /// Peers remembered by the queue.
    pub known_peers: usize,
    pub topics: usize,
    pub connected_total: u64,
    pub dial_failures: u64,
    pub dht: Option<NodeInfo>,
}

/// A running swarm. [`Swarm::destroy`] leaves every topic (unannouncing) and closes
/// every connection; dropping it stops its tasks without unannouncing.
pub struct Swarm {
    inner: Arc<Inner>,
    connections: Mutex<Option<mpsc::Receiver<Connection>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.inner.cancel.cancel();
        let mut st = self.inner.state();
        st.destroyed = true;
        for (_, t) in st.topics.drain() {
            t.task.abort();
        }
        for c in st.conns.values() {
            let _ = c.kill.send(true);
        }
    }
}

impl Swarm {
    /// Bind and start. With a DHT the bootstrap walk starts at once; joins wait for it.
    pub async fn bind(config: SwarmConfig) -> Result<Swarm, SwarmError> {
        let (listener, udp) = match (&config.dht, config.bind) {
            (None, None) if config.mdns.is_none() => (None, None),
            (None, bind) => {
                // With mDNS we answer with a port, so we listen on one.
                let addr = bind.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| SwarmError::Bind { addr, source })?;
                (Some(l), None)
            }
            (Some(_), bind) => {
                let addr = bind.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                let (l, u) = bind_pair(addr).await?;
                (Some(l), Some(u))
            }
        };
        let local_addr = match &listener {
            Some(l) => match l.local_addr() {
                Ok(SocketAddr::V4(a)) => Some(a),
                _ => None,
            },
            None => None,
        };
        // Without TCP (a DHT-only transport choice) the port stays ours through the UDP
        // socket; the listener goes.
        let listener = listener.filter(|_| config.transports.tcp || udp.is_none());
        let cancel = CancellationToken::new();
        let (dht, utp) = match (udp, &config.dht) {
            (Some(udp), Some(d)) => {
                let node = NodeConfig {
                    ephemeral: d.ephemeral.unwrap_or(true),
                    bootstrap: d.bootstrap.clone(),
                    ..NodeConfig::default()
                };
                let udp = Arc::new(udp);
                let (utp, inbox) = if config.transports.utp {
                    let inbox = UtpInbox::new();
                    let utp = utp::start(udp.clone(), inbox.clone(), cancel.clone()).map_err(
                        |source| SwarmError::Bind {
                            addr: local_addr.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
                            source,
                        },
                    )?;
                    (Some(utp), Some(inbox))
                } else {
                    (None, None)
                };
                (
                    Some(Arc::new(Dht::with_shared_socket(udp, node, inbox)?)),
                    utp,
                )
            }
            _ => (None, None),
        };
        let local_announce = match (config.announce_local_address, local_addr) {
            (true, Some(a)) => first_local_ipv4().map(|ip| SocketAddrV4::new(ip, a.port())),
            _ => None,
        };
        let mdns_socket = match &config.mdns {
            Some(m) => Some(MdnsSocket::open(m)?),
            None => None,
        };
        let (conn_tx, conn_rx) = mpsc::channel(CONNECTION_QUEUE);
        let mut tasks = Vec::new();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            // LAN peers go to the queue as DHT peers do (the service holds only a weak
            // reference, so dropping the swarm frees it).
            let mdns = mdns_socket.map(|socket| {
                let weak = weak.clone();
                let found = Box::new(move |p: LocalPeer| {
                    if let Some(inner) = weak.upgrade() {
                        inner.found(PeerAddr {
                            addr: p.addr,
                            local: true,
                            to: None,
                            referrer: None,
                            topic: Some(p.topic),
                        });
                    }
                });
                let (svc, task) = MdnsService::spawn(socket, found);
                tasks.push(task);
                svc
            });
            Inner {
                state: Mutex::new(State {
                    queue: PeerQueue::new(),
                    dedup: Dedup::new(),
                    conns: HashMap::new(),
                    dialing: 0,
                    next_id: 1,
                    topics: HashMap::new(),
                    destroyed: false,
                    connected_total: 0,
                    dial_failures: 0,
                }),
                wake: Notify::new(),
                lonely: Notify::new(),
                local_addr,
                dht,
                conn_tx,
                local_announce,
                config,
                mdns,
                utp,
                cancel,
            }
        });
        tasks.push(tokio::spawn(schedule(inner.clone())));
        if let Some(l) = listener {
            tasks.push(tokio::spawn(accept(inner.clone(), l)));
        }
        if let Some(u) = inner.utp.clone() {
            tasks.push(tokio::spawn(accept_utp(inner.clone(), u)));
        }
        if inner
            .config
            .dht
            .as_ref()
            .is_some_and(|d| d.ephemeral.is_none())
        {
            tasks.push(tokio::spawn(adaptive(inner.clone())));
        }
        Ok(Swarm {
            inner,
            connections: Mutex::new(Some(conn_rx)),
            tasks,
        })
    }

    /// The address peers dial (and, with a DHT, the DHT's UDP port).
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.inner.local_addr
    }

    /// The DHT node, if this swarm has one.
    pub fn dht(&self) -> Option<&Dht> {
        self.inner.dht.as_deref()
    }

    /// The connections this swarm makes and accepts; can be taken once.
    pub fn connections(&self) -> Option<mpsc::Receiver<Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Dial `addr` and keep redialling it whenever the connection ends (`--connect`).
    pub fn add_peer(&self, addr: SocketAddrV4) {
        self.inner.state().queue.add_explicit(addr);
        self.inner.wake.notify_one();
    }

    /// Join `topic`: start its discovery loop, and return once the first DHT run has
    /// ended, with what it found. Joining a joined topic restarts its loop (a fresh run
    /// at once, as hyperswarm does).
    pub async fn join(&self, topic: [u8; 32], opts: JoinOptions) -> Result<RunReport, SwarmError> {
        if self.inner.dht.is_none() && self.inner.mdns.is_none() {
            return Err(SwarmError::NoDht);
        }
        if let Some(mdns) = &self.inner.mdns {
            let port = match (opts.announce, self.inner.local_addr) {
                (true, Some(a)) => Some(a.port()),
                _ => None,
            };
            mdns.join(topic, port, opts.lookup).await;
        }
        let Some(dht) = self.inner.dht.clone() else {
            // mDNS only: the topic is registered above; keep an entry so leave() works.
            let (stop, mut stop_rx) = watch::channel(false);
            let task = tokio::spawn(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            });
            let mut st = self.inner.state();
            if st.destroyed {
                task.abort();
                return Err(SwarmError::Destroyed);
            }
            if !st.topics.contains_key(&topic) && st.topics.len() >= MAX_TOPICS {
                task.abort();
                return Err(SwarmError::TooManyTopics);
            }
            if let Some(old) = st.topics.insert(topic, TopicEntry { opts, stop, task }) {
                old.task.abort();
            }
            return Ok(RunReport {
                replies: 0,
                peers: 0,
            });
        };
        dht.ready().await?;
        let (first_tx, first_rx) = oneshot::channel();
        {
            let mut st = self.inner.state();
            if st.destroyed {
                return Err(SwarmError::Destroyed);
            }
            if let Some(old) = st.topics.remove(&topic) {
                // Replaced at once (no unannounce: the new loop announces again if asked).
                old.task.abort();
            } else if st.topics.len() >= MAX_TOPICS {
                return Err(SwarmError::TooManyTopics);
            }
            let (stop, stop_rx) = watch::channel(false);
            let host: Arc<dyn TopicHost> = self.inner.clone();
            let run = TopicRun {
                host,
                dht,
                topic,
                opts,
                config: self.inner.config.topics,
                local: self.inner.local_announce,
            };
            let task = tokio::spawn(run_topic(run, first_tx, stop_rx));
            st.topics.insert(topic, TopicEntry { opts, stop, task });
        }
        match first_rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(SwarmError::Destroyed),
        }
    }

    /// Leave `topic`: stop its loop, unannounce if it announced (bounded in time), and
    /// forget the peers found only under it.
    pub async fn leave(&self, topic: &[u8; 32]) {
        let entry = self.inner.state().topics.remove(topic);
        if let Some(t) = entry {
            let _ = t.stop.send(true);
            let abort = t.task.abort_handle();
            let bound = self.inner.config.topics.unannounce_timeout + Duration::from_secs(1);
            if tokio::time::timeout(bound, t.task).await.is_err() {
                abort.abort();
            }
            let _ = t.opts;
        }
        if let Some(mdns) = &self.inner.mdns {
            mdns.leave(topic);
        }
        self.inner.state().queue.remove_topic(topic);
    }

    /// Topics joined now.
    pub fn topics(&self) -> Vec<([u8; 32], JoinOptions)> {
        self.inner
            .state()
            .topics
            .iter()
            .map(|(t, e)| (*t, e.opts))
            .collect()
    }

    pub async fn status(&self) -> SwarmStatus {
        let dht = match &self.inner.dht {
            Some(d) => d.info().await.ok(),
            None => None,
        };
        let st = self.inner.state();
        SwarmStatus {
            local_addr: self.inner.local_addr,
            connections: st.conns.len(),
            utp_connections: st.conns.values().filter(|c| !c.tcp).count(),
            dialing: st.dialing,
            known_peers: st.queue.len(),
            topics: st.topics.len(),
            connected_total: st.connected_total,
            dial_failures: st.dial_failures,
            dht,
        }
    }

    /// @hyperswarm/discovery's test: at least two bootstrap nodes answered a ping and all
    /// reported the same public address for us, so others could reach us through it.
    pub async fn holepunchable(&self) -> bool {
        let (Some(dht), Some(cfg)) = (&self.inner.dht, &self.inner.config.dht) else {
            return false;
        };
        let pings = cfg.bootstrap.iter().map(|b| {
            let dht = dht.clone();
            let b = *b;
            async move {
                tokio::time::timeout(Duration::from_secs(10), dht.ping(b))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        });
        let seen: Vec<SocketAddrV4> = futures_util::future::join_all(pings)
            .await
            .into_iter()
            .flatten()
            .collect();
        seen.len() >= 2 && seen.iter().all(|a| *a == seen[0])
    }

    /// Leave every topic (unannouncing, bounded in time), then close every connection.
    pub async fn destroy(mut self) {
        let topics: Vec<[u8; 32]> = self.inner.state().topics.keys().copied().collect();
        let leaves = topics.iter().map(|t| self.leave(t));
        futures_util::future::join_all(leaves).await;
        {
            let mut st = self.inner.state();
            st.destroyed = true;
            for c in st.conns.values() {
                let _ = c.kill.send(true);
            }
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// A TCP listener and a UDP socket on the same port (the OS's pick when port is 0).
async fn bind_pair(addr: SocketAddrV4) -> Result<(TcpListener, UdpSocket), SwarmError> {
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| SwarmError::Bind { addr, source })?;
        let port = match tcp.local_addr() {
            Ok(a) => a.port(),
            Err(source) => return Err(SwarmError::Bind { addr, source }),
        };
        let uaddr = SocketAddrV4::new(*addr.ip(), port);
        match UdpSocket::bind(uaddr).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(source) => return Err(SwarmError::Bind { addr, source }),
        }
    }
    Err(SwarmError::Bind {
        addr,
        source: last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")),
    })
}

async fn accept(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        inner.accepted(PeerStream::Tcp(stream), remote);
    }
}

async fn accept_utp(inner: Arc<Inner>, utp: Utp) {
    loop {
        match utp.accept().await {
            Ok(stream) => {
                let remote = stream.remote_addr();
                inner.accepted(PeerStream::Utp(stream), remote);
            }
            Err(e) => {
                tracing::debug!("uTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Inner {
    /// An inbound connection: delivered, or closed at once at the peer limit.
    fn accepted(self: &Arc<Self>, stream: PeerStream, remote: SocketAddr) {
        let full = {
            let st = self.state();
            st.destroyed || st.conns.len() + st.dialing >= self.config.max_peers
        };
        if full {
            // At the peer limit the reference accepts and closes at once.
            tracing::debug!(%remote, "peer limit reached: connection refused");
            drop(stream);
            return;
        }
        tracing::debug!(%remote, transport = stream.kind(), "peer connected (inbound)");
        self.deliver(stream, false, None, remote);
    }
}

/// Starts dials while there is room, and fires the queue's timers.
async fn schedule(inner: Arc<Inner>) {
    loop {
        let next = {
            let mut st = inner.state();
            if st.destroyed {
                return;
            }
            st.queue.handle_timeout(Instant::now());
            while st.conns.len() + st.dialing < inner.config.max_peers && st.dialing < MAX_DIALS {
                let Some(peer) = st.queue.shift() else { break };
                st.dialing += 1;
                tokio::spawn(dial(inner.clone(), peer));
            }
            st.queue.poll_timeout()
        };
        let sleep = match next {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = sleep => {}
            _ = inner.wake.notified() => {}
        }
    }
}

/// hyperswarm's `connect` (spec 4.2): TCP at once and, for a peer a DHT node reported,
/// a holepunch through that node followed by uTP to the same address; the first to
/// connect wins, and the dial fails once every attempt has.
async fn connect(inner: &Inner, peer: &PeerAddr) -> io::Result<PeerStream> {
    type Attempt<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<PeerStream>> + Send + 'a>>;
    let addr = peer.addr;
    // Without a DHT there is no uTP, and TCP is the only way.
    let tcp_on = inner.config.transports.tcp || inner.dht.is_none();
    let mut attempts: Vec<Attempt<'_>> = Vec::new();
    if tcp_on {
        attempts.push(Box::pin(async move {
            TcpStream::connect(addr).await.map(PeerStream::Tcp)
        }));
    }
    if let (Some(utp), Some(dht), Some(referrer)) = (&inner.utp, &inner.dht, peer.referrer) {
        attempts.push(Box::pin(async move {
            let seen = dht.holepunch(addr, referrer).await.map_err(|e| {
                tracing::debug!(%addr, %referrer, "holepunch failed: {e}");
                io::Error::new(io::ErrorKind::ConnectionRefused, e)
            })?;
            tracing::debug!(%addr, %referrer, %seen, "holepunched; connecting over uTP");
            utp.connect(SocketAddr::V4(addr))
                .await
                .map(PeerStream::Utp)
                .map_err(|e| {
                    tracing::debug!(%addr, "uTP connect failed: {e}");
                    io::Error::new(io::ErrorKind::ConnectionRefused, e)
                })
        }));
    }
    if attempts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no transport can reach this peer (TCP off, and uTP needs a referrer)",
        ));
    }
    futures_util::future::select_ok(attempts)
        .await
        .map(|(stream, _rest)| stream)
}

async fn dial(inner: Arc<Inner>, peer: PeerAddr) {
    let addr = peer.addr;
    let res = tokio::time::timeout(inner.config.dial_timeout, connect(&inner, &peer)).await;
    let res = match res {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "dial timed out")),
    };
    let now = Instant::now();
    match res {
        Ok(stream) => {
            let keep = {
                let mut st = inner.state();
                st.dialing -= 1;
                if st.destroyed {
                    false
                } else {
                    st.queue.connected(&addr);
                    true
                }
            };
            if keep {
                tracing::debug!(%addr, transport = stream.kind(), "connected to peer");
                inner.deliver(stream, true, Some(peer), SocketAddr::V4(addr));
            }
        }
        Err(e) => {
            tracing::debug!(%addr, error = %e, "dial failed");
            let mut st = inner.state();
            st.dialing -= 1;
            st.dial_failures += 1;
            st.queue.dial_failed(&addr, now);
        }
    }
    inner.wake.notify_one();
}

/// hyperswarm's adaptive mode: ephemeral until, checked every 20–30 min, the node looks
/// holepunchable; then persistent (it starts serving the DHT).
async fn adaptive(inner: Arc<Inner>) {
    let Some(dht) = inner.dht.clone() else { return };
    loop {
        let (lo, hi) = ADAPTIVE_CHECK;
        let wait = lo + Duration::from_millis(rand::random::<u64>() % (hi - lo).as_millis() as u64);
        tokio::time::sleep(wait).await;
        let Ok(info) = dht.info().await else { return };
        if info.holepunchable {
            tracing::info!("this node looks holepunchable: becoming a persistent DHT node");
            let _ = dht.persistent().await;
            return;
        }
    }
}
