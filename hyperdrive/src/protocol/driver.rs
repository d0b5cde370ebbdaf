//! The tokio driver: runs one [`Protocol`] and the [`PeerFeed`]s of every shared feed
//! over any `AsyncRead + AsyncWrite`. This is the only replication code that owns a
//! socket or a timer; all decisions are made by the state machines it drives.
//!
//! Reads, protocol work and writes happen on one task: every turn of its loop first
//! writes what the protocol produced (as far as the socket takes it), then reads.
//! Writing from the same task matters for throughput: a separate writer task woken
//! from here lands in tokio's not-stealable LIFO slot and only runs once this task
//! yields, which under a steady stream of Data means after the whole burst is read,
//! so requests went out 16 at a time and the pipeline idled in between.
//!
//! Reading pauses while more than [`HIGH_WATER`] bytes wait to be written, so a peer
//! that requests without reading cannot grow our memory, and two peers uploading to
//! each other never deadlock on full socket buffers (each keeps reading until its own
//! queue is full, far above what 16 requests in flight need).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};

use super::handshake::StaticKeypair;
use super::messages::{Extension, Have, Message, Options};
use super::replicate::extension::EXTENSION_QUEUE;
use super::replicate::peer::WANT_REGION;
use super::replicate::{
    ExtensionReply, OutgoingExtension, PeerFeed, PeerStats, ReplicateError, SharedFeed,
};
use super::stream::{ChannelId, Event, Protocol, ProtocolOptions};
use super::ProtocolError;
use crate::protocol::rle;

/// Most bytes queued for the socket before reading pauses.
pub const HIGH_WATER: usize = 64 * 1024 * 1024;
/// Bytes read per call. A 64 KiB block is whole in one read; smaller reads would
/// only add syscalls, larger ones delay the requests the blocks in them free up.
const READ_BUFFER: usize = 256 * 1024;
/// Written buffers kept for reuse as the protocol's output buffer.
const SPARE_BUFFERS: usize = 4;

/// Encrypted bytes waiting for the socket: whole buffers taken from the protocol
/// (never copied), written front to back.
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Bytes waiting in total.
    queued: usize,
    spare: Vec<Vec<u8>>,
}

impl Outbox {
    fn take_from(&mut self, proto: &mut Protocol) {
        if proto.outgoing_len() == 0 {
            return;
        }
        let spare = self.spare.pop().unwrap_or_default();
        let bytes = proto.take_outgoing_into(spare);
        self.queued += bytes.len();
        self.chunks.push_back(bytes);
    }

    fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[self.offset..])
    }

    fn advance(&mut self, n: usize) {
        self.offset += n;
        self.queued -= n;
        let done = self.chunks.front().is_some_and(|c| self.offset >= c.len());
        if done {
            self.offset = 0;
            if let Some(c) = self.chunks.pop_front() {
                if self.spare.len() < SPARE_BUFFERS {
                    self.spare.push(c);
                }
            }
        }
    }
}

/// Acknowledges received TCP segments at once instead of after Linux's delayed-ACK
/// timer (up to 40 ms). Node leaves Nagle's algorithm on: it holds a small message
/// back while its previous small one is unacknowledged, and when we have nothing to
/// answer with (a Have after its Open, a Request after a Request), our ACK comes only
/// with the timer. That stalled the first block of a Node seeder by ~40 ms. Setting
/// TCP_QUICKACK after a read sends the pending ACK now; only plain TCP sockets on
/// Linux are touched (through a duplicate of the socket's descriptor).
struct AckNow(Option<socket2::Socket>);

impl AckNow {
    fn for_io<S: 'static>(io: &S) -> Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            let any: &dyn std::any::Any = io;
            if let Some(tcp) = any.downcast_ref::<tokio::net::TcpStream>() {
                if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                    return AckNow(Some(socket2::Socket::from(fd)));
                }
            }
        }
        let _ = io;
        AckNow(None)
    }

    fn after_read(&self) {
        #[cfg(target_os = "linux")]
        if let Some(s) = &self.0 {
            let _ = s.set_tcp_quickack(true);
        }
    }
}

/// Where a connection finds feeds: those to offer at once, those the remote asks
/// for by discovery key, and those opened later (a corestore implements this).
pub trait FeedSource: Send + Sync + 'static {
    /// Feeds to replicate on every new connection.
    fn feeds(&self) -> Vec<Arc<SharedFeed>>;
    /// A feed the remote opened, if this side holds it (opened on demand).
    fn by_discovery_key(&self, discovery_key: &[u8; 32]) -> Option<Arc<SharedFeed>>;
    /// Feeds opened after the connection started.
    fn subscribe(&self) -> broadcast::Receiver<Arc<SharedFeed>>;
}

/// The simplest [`FeedSource`]: a fixed, growable set of feeds.
pub struct FeedSet {
    feeds: Mutex<Vec<Arc<SharedFeed>>>,
    added: broadcast::Sender<Arc<SharedFeed>>,
}

impl FeedSet {
    pub fn new(feeds: Vec<Arc<SharedFeed>>) -> Arc<Self> {
        Arc::new(FeedSet {
            feeds: Mutex::new(feeds),
            added: broadcast::channel(64).0,
        })
    }

    /// Add a feed; live connections open it too.
    pub fn add(&self, feed: Arc<SharedFeed>) {
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(feed.clone());
        let _ = self.added.send(feed);
    }
}

impl FeedSource for FeedSet {
    fn feeds(&self) -> Vec<Arc<SharedFeed>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn by_discovery_key(&self, dk: &[u8; 32]) -> Option<Arc<SharedFeed>> {
        self.feeds().into_iter().find(|f| &f.discovery_key() == dk)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<SharedFeed>> {
        self.added.subscribe()
    }
}

/// What to do with a connection once the Noise handshake tells who the remote is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeVerdict {
    /// Replicate every feed of the source (the normal case).
    Replicate,
    /// End the connection now (a duplicate we dialled, or a connection to ourselves).
    Close,
    /// Keep the connection open but replicate nothing on it: a duplicate the remote
    /// dialled, which the remote closes itself. Closing it from here could make the
    /// remote see a lost connection and redial (hyperswarm's dedup leaves it so too).
    Idle,
}

/// Decides a connection's fate from (our static public key, the remote's). The swarm
/// uses it to keep one connection per pair of peers, as @corestore/networker does.
#[derive(Clone)]
pub struct HandshakeGate(pub Arc<GateFn>);

/// The function behind a [`HandshakeGate`].
pub type GateFn = dyn Fn(&[u8; 32], &[u8; 32]) -> HandshakeVerdict + Send + Sync;

impl std::fmt::Debug for HandshakeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandshakeGate")
    }
}

/// Settings of one replication connection.
#[derive(Debug, Clone)]
pub struct ReplicateOptions {
    pub protocol: ProtocolOptions,
    /// A request unanswered this long drops the peer (its blocks go to others).
    pub request_timeout: Duration,
    /// Our static Noise key pair (random per connection unless given).
    pub keypair: Option<[u8; 32]>,
    /// Asked once the handshake completes; no feed is opened before it answers
    /// [`HandshakeVerdict::Replicate`]. `None` replicates at once.
    pub gate: Option<HandshakeGate>,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        ReplicateOptions {
            protocol: ProtocolOptions::default(),
            request_timeout: Duration::from_secs(20),
            keypair: None,
            gate: None,
        }
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The [`HandshakeGate`] found another connection to the same peer (or ourselves).
    #[error("duplicate connection to the same peer: closed")]
    Deduplicated,
    #[error("feed {feed}: {source}")]
    Replicate {
        feed: String,
        #[source]
        source: ReplicateError,
    },
}

/// Totals of one connection, also readable while it runs.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub bytes_in: AtomicUsize,
    pub bytes_out: AtomicUsize,
    pub blocks_in: AtomicUsize,
    pub blocks_out: AtomicUsize,
}

struct Replica {
    shared: Arc<SharedFeed>,
    peer: PeerFeed,
    /// Next announcement sequence number to pass on.
    cursor: u64,
    last_stats: PeerStats,
}

/// Ends connections: every connection holding a receiver stops when `true` is sent.
pub fn shutdown_channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Run replication over `io` until the remote closes, an error occurs, or
/// `shutdown` turns true. Returns Ok on a clean end.
pub async fn replicate<S>(
    io: S,
    initiator: bool,
    source: Arc<dyn FeedSource>,
    opts: ReplicateOptions,
    stats: Arc<ConnectionStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let ack_now = AckNow::for_io(&io);
    let (mut rd, mut wr) = tokio::io::split(io);
    let keypair = match opts.keypair {
        Some(seed) => StaticKeypair::from_seed(&seed),
        None => StaticKeypair::generate(),
    };
    let mut proto = Protocol::new(initiator, &keypair, opts.protocol.clone(), Instant::now())?;

    let mut outbox = Outbox::default();

    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    // Extension handlers' replies, bounded: handlers drop or wait when it is full.
    let (ext_tx, mut ext_rx) = mpsc::channel::<OutgoingExtension>(EXTENSION_QUEUE);
    let mut new_feeds = source.subscribe();
    let mut replicas: HashMap<ChannelId, Replica> = HashMap::new();
    let mut pending: HashMap<[u8; 32], Arc<SharedFeed>> = HashMap::new();

    let mut gate = Gate {
        state: if opts.gate.is_some() {
            GateState::Pending
        } else {
            GateState::Open
        },
        local: keypair.public,
    };
    if gate.state == GateState::Open {
        open_source_feeds(
            &mut proto,
            &mut replicas,
            &mut pending,
            &source,
            &wake_tx,
            &opts,
        );
    }

    let mut buf = vec![0u8; READ_BUFFER];
    let result = loop {
        outbox.take_from(&mut proto);
        let deadline = tokio::time::Instant::from_std(
            proto
                .next_deadline()
                .min(Instant::now() + Duration::from_secs(1)),
        );
        let can_read = outbox.queued < HIGH_WATER;
        let can_write = outbox.queued > 0;
        tokio::select! {
            // Writes first: requests and data leave as soon as they exist.
            biased;
            w = wr.write(outbox.front()), if can_write => {
                match w {
                    Ok(0) => break Err(ProtocolError::Io(std::io::ErrorKind::WriteZero.into()).into()),
                    Ok(n) => {
                        stats.bytes_out.fetch_add(n, Ordering::Relaxed);
                        outbox.advance(n);
                    }
                    Err(e) => break Err(ProtocolError::Io(e).into()),
                }
            }
            r = rd.read(&mut buf), if can_read => {
                let n = match r {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) => break Err(ProtocolError::Io(e).into()),
                };
                stats.bytes_in.fetch_add(n, Ordering::Relaxed);
                ack_now.after_read();
                let now = Instant::now();
                if let Err(e) = proto.receive(&mut buf[..n], now) {
                    break Err(e.into());
                }
                if let Err(e) = handle_events(&mut proto, &mut replicas, &mut pending, &source, &wake_tx, &ext_tx, &opts, &stats, &mut gate, now) {
                    break Err(e);
                }
            }
            Some(()) = wake_rx.recv() => {
                let now = Instant::now();
                if let Err(e) = serve_wake(&mut proto, &mut replicas, &stats, now) {
                    break Err(e);
                }
            }
            Some(o) = ext_rx.recv() => {
                send_extension(&mut proto, &replicas, o, Instant::now());
            }
            f = new_feeds.recv() => {
                if let (Ok(f), GateState::Open) = (f, gate.state) {
                    open_feed(&mut proto, &mut replicas, &mut pending, f, &wake_tx, &opts, Instant::now());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if let Err(e) = proto.tick(now) {
                    break Err(e.into());
                }
                if let Err(e) = tick_peers(&mut replicas, now) {
                    break Err(e);
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
        }
    };

    // Release whatever this connection had reserved so other peers take over.
    for r in replicas.values_mut() {
        let mut st = r.shared.lock();
        r.peer.release_all(&mut st.wants);
        drop(st);
        r.shared.wake_peers();
    }
    // Send what is left (a Close, the last blocks), bounded in time.
    outbox.take_from(&mut proto);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while outbox.queued > 0 {
            match wr.write(outbox.front()).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    stats.bytes_out.fetch_add(n, Ordering::Relaxed);
                    outbox.advance(n);
                }
            }
        }
        let _ = wr.shutdown().await;
    })
    .await;
    if let Err(e) = &result {
        // Every disconnect says why: verification failures and floods are the remote's
        // fault and worth a warning; timeouts and resets are ordinary network life.
        match e {
            DriverError::Replicate {
                source:
                    ReplicateError::Verify(_)
                    | ReplicateError::Flood(_)
                    | ReplicateError::Malformed { .. },
                ..
            }
            | DriverError::Protocol(
                ProtocolError::BadCapability { .. }
                | ProtocolError::Malformed { .. }
                | ProtocolError::FrameTooLarge { .. },
            ) => tracing::warn!(error = %e, "disconnecting a misbehaving peer"),
            _ => tracing::info!(error = %e, "replication connection ended"),
        }
    }
    result
}

/// Where the connection stands with its [`HandshakeGate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    /// Waiting for the handshake: no feed opened yet.
    Pending,
    /// Replicating.
    Open,
    /// A duplicate left open for the remote to close: every channel is refused.
    Idle,
}

struct Gate {
    state: GateState,
    /// Our static public key, for the gate's comparison.
    local: [u8; 32],
}

fn open_source_feeds(
    proto: &mut Protocol,
    replicas: &mut HashMap<ChannelId, Replica>,
    pending: &mut HashMap<[u8; 32], Arc<SharedFeed>>,
    source: &Arc<dyn FeedSource>,
    wake_tx: &mpsc::Sender<()>,
    opts: &ReplicateOptions,
) {
    let now = Instant::now();
    for f in source.feeds() {
        open_feed(proto, replicas, pending, f, wake_tx, opts, now);
    }
}

fn open_feed(
    proto: &mut Protocol,
    replicas: &mut HashMap<ChannelId, Replica>,
    pending: &mut HashMap<[u8; 32], Arc<SharedFeed>>,
    f: Arc<SharedFeed>,
    wake_tx: &mpsc::Sender<()>,
    opts: &ReplicateOptions,
    now: Instant,
) {
    if replicas.values().any(|r| r.shared.key() == f.key()) {
        return;
    }
    let Some(id) = proto.open(f.key(), now) else {
        return;
    };
    f.subscribe(wake_tx.clone());
    let (peer, cursor) = {
        let st = f.lock();
        (PeerFeed::new(&st.feed, opts.request_timeout), st.next_seq())
    };
    pending.remove(&f.discovery_key());
    replicas.insert(
        id,
        Replica {
            shared: f,
            peer,
            cursor,
            last_stats: PeerStats::default(),
        },
    );
}

#[allow(clippy::too_many_arguments)]
fn handle_events(
    proto: &mut Protocol,
    replicas: &mut HashMap<ChannelId, Replica>,
    pending: &mut HashMap<[u8; 32], Arc<SharedFeed>>,
    source: &Arc<dyn FeedSource>,
    wake_tx: &mpsc::Sender<()>,
    ext_tx: &mpsc::Sender<OutgoingExtension>,
    opts: &ReplicateOptions,
    stats: &ConnectionStats,
    gate: &mut Gate,
    now: Instant,
) -> Result<(), DriverError> {
    while let Some(ev) = proto.poll_event() {
        match ev {
            Event::Handshake { remote_public_key } => {
                if gate.state != GateState::Pending {
                    continue;
                }
                let verdict = opts.gate.as_ref().map_or(HandshakeVerdict::Replicate, |g| {
                    (g.0)(&gate.local, &remote_public_key)
                });
                match verdict {
                    HandshakeVerdict::Replicate => {
                        gate.state = GateState::Open;
                        open_source_feeds(proto, replicas, pending, source, wake_tx, opts);
                    }
                    HandshakeVerdict::Idle => gate.state = GateState::Idle,
                    HandshakeVerdict::Close => return Err(DriverError::Deduplicated),
                }
            }
            Event::DiscoveryKey { discovery_key } => {
                if gate.state != GateState::Open {
                    proto.refuse(discovery_key, now);
                    continue;
                }
                match source.by_discovery_key(&discovery_key) {
                    Some(f) => open_feed(proto, replicas, pending, f, wake_tx, opts, now),
                    None => proto.refuse(discovery_key, now),
                }
            }
            Event::Opened { channel, .. } => {
                if let Some(r) = replicas.get_mut(&channel) {
                    let mut out = Vec::new();
                    if !r.peer.remote_opened() {
                        // Options come first, as the reference's `onopen` sends them.
                        out.extend(options_if_changed(r));
                    }
                    {
                        let mut st = r.shared.lock();
                        let st = &mut *st;
                        r.peer.on_open(&st.feed, &mut st.wants, &mut out);
                        r.peer.update(&st.feed, &mut st.wants, now, &mut out);
                    }
                    for m in out {
                        proto.send(channel, m, now);
                    }
                }
            }
            Event::Message { channel, message } => {
                let Some(r) = replicas.get_mut(&channel) else {
                    continue;
                };
                let mut out = Vec::new();
                let fx = {
                    let mut st = r.shared.lock();
                    let st = &mut *st;
                    let res =
                        r.peer
                            .on_message(message, &mut st.feed, &mut st.wants, now, &mut out);
                    let fx = res.map_err(|source| DriverError::Replicate {
                        feed: hex::encode(r.shared.key()),
                        source,
                    })?;
                    for &i in &fx.stored {
                        st.record(i, 1);
                    }
                    fx
                };
                count_blocks(r, stats);
                for m in out {
                    proto.send(channel, m, now);
                }
                for (id, payload) in &fx.extensions {
                    let routed = r.shared.extensions().route(r.peer.remote_extensions(), *id);
                    if let Some((name, handler)) = routed {
                        handler.on_message(
                            payload,
                            ExtensionReply::new(ext_tx.clone(), channel, name),
                        );
                    }
                }
                if !fx.stored.is_empty() || fx.new_length.is_some() {
                    r.shared.notify_data();
                }
                if fx.closed {
                    if let Some(r) = replicas.remove(&channel) {
                        r.shared.wake_peers();
                    }
                }
            }
            Event::Closed { channel, .. } => {
                if let Some(channel) = channel {
                    if let Some(mut r) = replicas.remove(&channel) {
                        let mut st = r.shared.lock();
                        r.peer.release_all(&mut st.wants);
                        drop(st);
                        r.shared.wake_peers();
                    }
                }
            }
        }
    }
    Ok(())
}

/// `Options` announcing our extension list, if it changed since we last told this
/// peer. Nothing is sent while no extension is registered (as the reference, which
/// sends Options only for extensions or acks), keeping those streams byte-identical.
fn options_if_changed(r: &mut Replica) -> Option<Message> {
    let ext = r.shared.extensions();
    if ext.is_empty() || ext.version() == r.peer.options_version {
        return None;
    }
    r.peer.options_version = ext.version();
    Some(Message::Options(Options {
        extensions: ext.names(),
        ack: Some(false),
    }))
}

/// Send a handler's extension message on its channel, with our id for its name.
fn send_extension(
    proto: &mut Protocol,
    replicas: &HashMap<ChannelId, Replica>,
    o: OutgoingExtension,
    now: Instant,
) {
    let Some(r) = replicas.get(&o.channel) else {
        return;
    };
    if !r.peer.remote_opened() {
        return;
    }
    let id = {
        let ext = r.shared.extensions();
        let id = ext.id_of(&o.name);
        if id.is_some() {
            ext.note_sent(&o.name);
        }
        id
    };
    if let Some(id) = id {
        proto.send(
            o.channel,
            Message::Extension(Extension {
                id,
                payload: o.payload,
            }),
            now,
        );
    }
}

fn count_blocks(r: &mut Replica, stats: &ConnectionStats) {
    let s = r.peer.stats;
    stats.blocks_in.fetch_add(
        (s.downloaded_blocks - r.last_stats.downloaded_blocks) as usize,
        Ordering::Relaxed,
    );
    stats.blocks_out.fetch_add(
        (s.uploaded_blocks - r.last_stats.uploaded_blocks) as usize,
        Ordering::Relaxed,
    );
    r.last_stats = s;
}

/// Something changed in a shared feed: announce new blocks, schedule requests.
fn serve_wake(
    proto: &mut Protocol,
    replicas: &mut HashMap<ChannelId, Replica>,
    stats: &ConnectionStats,
    now: Instant,
) -> Result<(), DriverError> {
    for (&channel, r) in replicas.iter_mut() {
        if !r.peer.remote_opened() {
            continue;
        }
        let mut out = Vec::new();
        out.extend(options_if_changed(r));
        {
            let mut st = r.shared.lock();
            let st = &mut *st;
            match st.announcements_since(r.cursor) {
                Some(list) => {
                    for a in list {
                        r.peer.announce(a.start, a.length, &mut out);
                    }
                }
                None => resend_bitfield(&mut r.peer, &st.feed, &mut out),
            }
            r.cursor = st.next_seq();
            r.peer.update(&st.feed, &mut st.wants, now, &mut out);
        }
        count_blocks(r, stats);
        for m in out {
            proto.send(channel, m, now);
        }
    }
    Ok(())
}

/// Fell behind the announcement log: tell the remote everything we hold instead.
fn resend_bitfield(peer: &mut PeerFeed, feed: &crate::core::Feed, out: &mut Vec<Message>) {
    let len = feed.len();
    let mut start = 0;
    while start < len {
        let n = WANT_REGION.min(len - start);
        let bits = feed.bitfield().data_bytes(start, n);
        if peer.wants_announcements() {
            out.push(Message::Have(Have {
                start,
                length: Some(WANT_REGION),
                bitfield: Some(rle::encode(&bits)),
                ack: None,
            }));
        }
        start += WANT_REGION;
    }
}

fn tick_peers(replicas: &mut HashMap<ChannelId, Replica>, now: Instant) -> Result<(), DriverError> {
    for r in replicas.values_mut() {
        let mut st = r.shared.lock();
        if let Err(source) = r.peer.tick(&mut st.wants, now) {
            drop(st);
            r.shared.wake_peers();
            return Err(DriverError::Replicate {
                feed: hex::encode(r.shared.key()),
                source,
            });
        }
    }
    Ok(())
}
