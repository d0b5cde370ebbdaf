//! Sans-IO dht-rpc 4 node with the @hyperswarm/dht `peers` command (spec swarm.md 1–2).
//!
//! Datagrams and an `Instant` go in ([`DhtNode::handle_datagram`],
//! [`DhtNode::handle_timeout`]); datagrams to send and [`Event`]s come out
//! ([`DhtNode::poll_transmit`], [`DhtNode::poll_event`]). No sockets, no clocks of its own:
//! the tokio driver in `driver.rs` owns those. Every table, queue and query is bounded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

use super::peers::{handle_peers, PeersReply, RecordStore, DEFAULT_MAX_AGE, DEFAULT_MAX_RECORDS};
use super::routing::{AddOutcome, RoutingTable, K};
use super::wire::{
    decode_nodes, decode_peer, encode_nodes, encode_peer, Holepunch, Message, MessageType,
    NodeEntry, PeersInput, MAX_PACKET,
};

/// Request retransmission tick.
pub const IO_TICK: Duration = Duration::from_millis(750);
/// Routing-table maintenance tick.
pub const MAINTENANCE_TICK: Duration = Duration::from_secs(5);
/// Token secret rotation period.
pub const ROTATE_SECRETS: Duration = Duration::from_secs(300);
/// Requests in flight per query walk (and the saturation threshold).
pub const CONCURRENCY: usize = 16;
/// Sends per second (5 s average) above which a node with ≥16 requests in flight queues.
const CONCURRENCY_RPS: usize = 50;
/// Hard cap on requests in flight, so the 16-bit rid space never wraps onto a live request.
const MAX_INFLIGHT: usize = 4096;
/// Queued requests beyond this fail at once.
const MAX_PENDING: usize = 1024;
/// Queries running at once (user queries plus the bootstrap walk).
pub const MAX_QUERIES: usize = 256;
/// Outgoing datagrams buffered before new ones are dropped (the driver drains after each call).
const MAX_TRANSMITS: usize = 8192;
const TRIES: u8 = 3;

/// Node construction options.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id; random when `None`.
    pub id: Option<[u8; 32]>,
    /// Ephemeral nodes never send their id, so nobody adds them to a routing table.
    pub ephemeral: bool,
    /// Bootstrap nodes (no ids). Empty = first node of a private DHT, ready at once.
    pub bootstrap: Vec<SocketAddrV4>,
    /// `peers` record lifetime (record-cache `maxAge`).
    pub max_age: Duration,
    /// Cap on stored `peers` records.
    pub max_records: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            ephemeral: false,
            bootstrap: Vec::new(),
            max_age: DEFAULT_MAX_AGE,
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

/// Identifies a query walk.
pub type QueryId = u64;
/// Identifies a user ping.
pub type PingId = u64;

/// How a walk treats each hop (spec 1.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryMode {
    /// QUERY the command at every hop.
    Query,
    /// `_find_node` walk, then UPDATE the closest token holders.
    Update,
    /// QUERY at every hop, then UPDATE.
    QueryAndUpdate,
}

/// Why a request or walk failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhtError {
    #[error("request to {0} timed out")]
    Timeout(SocketAddrV4),
    #[error("No nodes responded")]
    NoNodesResponded,
    #[error("No close nodes responded")]
    NoCloseNodesResponded,
    #[error("too many queries running (limit {MAX_QUERIES})")]
    TooManyQueries,
    #[error("request queue full (limit {MAX_PENDING})")]
    QueueFull,
    #[error("invalid pong from {0}")]
    InvalidPong(SocketAddrV4),
    #[error("{from} answered with error: {message}")]
    Remote { from: SocketAddrV4, message: String },
}

/// One successful command reply of a walk (not yielded for `_find_node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// QUERY or UPDATE, the request this answers.
    pub kind: MessageType,
    pub node_id: Option<[u8; 32]>,
    pub from: SocketAddrV4,
    /// Our address as the replying node saw it.
    pub to: Option<SocketAddrV4>,
    pub value: Option<Vec<u8>>,
}

/// Counters of a finished walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryStats {
    pub responses: usize,
    pub updates: usize,
    pub errors: usize,
}

/// Output of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first bootstrap walk ended (successfully or not).
    Ready,
    Reply {
        query: QueryId,
        reply: Reply,
    },
    QueryDone {
        query: QueryId,
        result: Result<QueryStats, DhtError>,
    },
    Pong {
        ping: PingId,
        result: Result<SocketAddrV4, DhtError>,
    },
}

#[derive(Debug, Clone)]
enum Purpose {
    Query { query: QueryId },
    UserPing(PingId),
    Maintenance,
    Replace,
}

#[derive(Debug)]
struct Request {
    dest: SocketAddrV4,
    bytes: Vec<u8>,
    /// A holepunch's relayed copy (to the referrer), sent with every try.
    punch: Option<(SocketAddrV4, Vec<u8>)>,
    timeout: u8,
    tries: u8,
    expected_id: Option<[u8; 32]>,
    purpose: Purpose,
}

#[derive(Debug)]
struct Outgoing {
    dest: SocketAddrV4,
    msg: Message,
    /// Holepunch through this referrer (spec 1.12 step 2).
    punch_via: Option<SocketAddrV4>,
    expected_id: Option<[u8; 32]>,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: [u8; 32],
    addr: SocketAddrV4,
    distance: [u8; 32],
    queried: bool,
    token: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    MovingCloser,
    Updating,
}

#[derive(Debug)]
struct Query {
    mode: QueryMode,
    command: String,
    target: [u8; 32],
    value: Option<Vec<u8>>,
    phase: Phase,
    inflight: usize,
    stats: QueryStats,
    unverified: Vec<Candidate>,
    closest: Vec<Candidate>,
    is_bootstrap: bool,
}

impl Query {
    fn queries_command(&self) -> bool {
        self.mode != QueryMode::Update
    }
    fn updates(&self) -> bool {
        self.mode != QueryMode::Query
    }
}

#[derive(Debug)]
struct Replacement {
    newcomer: (NodeEntry, Option<Vec<u8>>, Option<[u8; 6]>),
    remaining: Vec<[u8; 32]>,
}

/// The DHT node state machine.
#[derive(Debug)]
pub struct DhtNode {
    id: [u8; 32],
    ephemeral: bool,
    bootstrap_nodes: Vec<SocketAddrV4>,
    table: RoutingTable,
    secrets: [[u8; 32]; 2],
    store: RecordStore,
    rid: u16,
    requests: HashMap<u16, Request>,
    pending: VecDeque<Outgoing>,
    sends: VecDeque<Instant>,
    queries: HashMap<QueryId, Query>,
    next_query: QueryId,
    next_ping: PingId,
    bootstrap_query: Option<QueryId>,
    bootstrapped: bool,
    replacement: Option<Replacement>,
    tick: u64,
    next_io_tick: Instant,
    next_maintenance: Instant,
    next_rotate: Instant,
    transmits: VecDeque<(SocketAddrV4, Vec<u8>)>,
    events: VecDeque<Event>,
    now: Instant,
}

/// BLAKE2b-256(secret ‖ dotted IP): the round-trip token (spec 1.4; the port is not covered).
pub fn token(secret: &[u8; 32], addr: SocketAddrV4) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(secret);
    h.update(addr.ip().to_string().as_bytes());
    h.finalize().into()
}

fn valid_id(v: &Option<Vec<u8>>) -> Option<[u8; 32]> {
    v.as_deref().and_then(|b| b.try_into().ok())
}

fn insert_sorted(list: &mut Vec<Candidate>, c: Candidate) {
    if list.len() == K && list.last().is_some_and(|l| c.distance >= l.distance) {
        return;
    }
    if list.iter().any(|x| x.id == c.id) {
        return;
    }
    let pos = list.partition_point(|x| x.distance <= c.distance);
    list.insert(pos, c);
    list.truncate(K);
}

impl DhtNode {
    /// A node that starts its bootstrap walk on the first [`DhtNode::handle_timeout`] or
    /// at once here (it is ready immediately with an empty bootstrap list).
    pub fn new(config: NodeConfig, now: Instant) -> Self {
        let id = config.id.unwrap_or_else(rand::random);
        let mut node = DhtNode {
            id,
            ephemeral: config.ephemeral,
            bootstrap_nodes: config.bootstrap,
            table: RoutingTable::new(id),
            secrets: [rand::random(), rand::random()],
            store: RecordStore::new(config.max_age, config.max_records, now),
            rid: rand::random(),
            requests: HashMap::new(),
            pending: VecDeque::new(),
            sends: VecDeque::new(),
            queries: HashMap::new(),
            next_query: 1,
            next_ping: 1,
            bootstrap_query: None,
            bootstrapped: false,
            replacement: None,
            tick: 0,
            next_io_tick: now + IO_TICK,
            next_maintenance: now + MAINTENANCE_TICK,
            next_rotate: now + ROTATE_SECRETS,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now,
        };
        node.bootstrap();
        node
    }

    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// Number of stored `peers` records.
    pub fn record_count(&self) -> usize {
        self.store.len()
    }

    /// Our public address as the routing table reports it (spec 1.9).
    pub fn remote_address(&self) -> Option<SocketAddrV4> {
        self.table
            .remote_address()
            .map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
    }

    /// Start sending our id and re-bootstrap (spec 1.3).
    pub fn persistent(&mut self) {
        if self.ephemeral {
            self.ephemeral = false;
            self.bootstrap();
        }
    }

    /// Run the `_find_node` walk to our own id; [`Event::Ready`] after the first one ends.
    pub fn bootstrap(&mut self) {
        if self.bootstrap_nodes.is_empty() {
            self.mark_ready();
            return;
        }
        if self.bootstrap_query.is_some() {
            return;
        }
        let id = self.id;
        if let Ok(q) = self.start_query(QueryMode::Query, "_find_node", id, None, true) {
            self.bootstrap_query = Some(q);
        }
    }

    fn mark_ready(&mut self) {
        if !self.bootstrapped {
            self.bootstrapped = true;
            self.events.push_back(Event::Ready);
        }
    }

    /// Ping an address (no expected id). Answered by [`Event::Pong`] with our address as seen.
    pub fn ping(&mut self, addr: SocketAddrV4) -> PingId {
        let ping = self.next_ping;
        self.next_ping += 1;
        let msg = self.request_message(MessageType::Query, addr, "_ping", None, None);
        self.request(addr, msg, None, Purpose::UserPing(ping));
        ping
    }

    /// Holepunch `peer` through `referrer`, the node that reported it (spec 1.12): a
    /// `_holepunch` to the peer opens our NAT toward it, the same request relayed by the
    /// referrer makes the peer answer us, which opens its NAT toward us. Answered by
    /// [`Event::Pong`] once the peer's answer arrives (with our address as it saw it),
    /// or with a timeout after the usual retries (each retry punches again).
    pub fn holepunch(&mut self, peer: SocketAddrV4, referrer: SocketAddrV4) -> PingId {
        let ping = self.next_ping;
        self.next_ping += 1;
        let msg = self.request_message(MessageType::Query, peer, "_holepunch", None, None);
        let out = Outgoing {
            dest: peer,
            msg,
            punch_via: (referrer != peer).then_some(referrer),
            expected_id: None,
            purpose: Purpose::UserPing(ping),
        };
        self.enqueue(out);
        ping
    }

    /// Start an iterative walk.
    pub fn query(
        &mut self,
        mode: QueryMode,
        command: &str,
        target: [u8; 32],
        value: Option<Vec<u8>>,
    ) -> Result<QueryId, DhtError> {
        self.start_query(mode, command, target, value, false)
    }

    /// `peers` lookup: a query with an empty `PeersInput` (never a missing value, Q1).
    pub fn lookup(
        &mut self,
        topic: [u8; 32],
        local: Option<SocketAddrV4>,
    ) -> Result<QueryId, DhtError> {
        let input = PeersInput {
            local_address: local.map(|a| encode_peer(a).to_vec()),
            ..Default::default()
        };
        self.query(QueryMode::Query, "peers", topic, Some(input.encode()))
    }

    /// `peers` announce (queryAndUpdate). Port 0 announces the UDP source port.
    pub fn announce(
        &mut self,
        topic: [u8; 32],
        port: u16,
        local: Option<SocketAddrV4>,
    ) -> Result<QueryId, DhtError> {
        let input = PeersInput {
            port: Some(u32::from(port)),
            local_address: local.map(|a| encode_peer(a).to_vec()),
            unannounce: None,
        };
        self.query(
            QueryMode::QueryAndUpdate,
            "peers",
            topic,
            Some(input.encode()),
        )
    }

    /// `peers` unannounce (update walk).
    pub fn unannounce(
        &mut self,
        topic: [u8; 32],
        port: u16,
        local: Option<SocketAddrV4>,
    ) -> Result<QueryId, DhtError> {
        let input = PeersInput {
            port: Some(u32::from(port)),
            local_address: local.map(|a| encode_peer(a).to_vec()),
            unannounce: Some(true),
        };
        self.query(QueryMode::Update, "peers", topic, Some(input.encode()))
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant [`DhtNode::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Instant {
        self.next_io_tick
            .min(self.next_maintenance)
            .min(self.next_rotate)
            .min(self.store.poll_timeout())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while now >= self.next_io_tick {
            self.next_io_tick += IO_TICK;
            self.io_tick();
        }
        while now >= self.next_maintenance {
            self.next_maintenance += MAINTENANCE_TICK;
            self.maintenance_tick();
        }
        while now >= self.next_rotate {
            self.next_rotate += ROTATE_SECRETS;
            self.secrets[1] = self.secrets[0];
            self.secrets[0] = rand::random();
        }
        self.store.handle_timeout(now);
    }

    /// One received datagram. Anything malformed is dropped silently (spec 1.2).
    pub fn handle_datagram(&mut self, from: SocketAddrV4, buf: &[u8], now: Instant) {
        self.now = now;
        if from.port() == 0 || buf.len() > MAX_PACKET {
            return;
        }
        let Ok(mut msg) = Message::decode(buf) else {
            return;
        };
        if msg.id.as_ref().is_some_and(|id| id.len() != 32) {
            return;
        }
        if msg.version.unwrap_or(0) < 1 {
            msg.id = None;
        }
        let id = valid_id(&msg.id);
        let to: Option<[u8; 6]> = msg.to.as_deref().and_then(|t| t.try_into().ok());
        match msg.kind {
            MessageType::Response => {
                if let Some(id) = id {
                    self.add_node(id, from, msg.roundtrip_token.clone(), to);
                }
                self.finish(msg, from);
            }
            MessageType::Query => {
                if let Some(id) = id {
                    self.add_node(id, from, None, to);
                }
                self.on_request(msg, from);
            }
            MessageType::Update => {
                let ok = msg.roundtrip_token.as_deref().is_some_and(|t| {
                    t == token(&self.secrets[0], from) || t == token(&self.secrets[1], from)
                });
                if !ok {
                    return;
                }
                if let Some(id) = id {
                    self.add_node(id, from, None, to);
                }
                self.on_request(msg, from);
            }
        }
    }

    // ---------------------------------------------------------------- server side ----

    fn on_request(&mut self, msg: Message, from: SocketAddrV4) {
        match msg.command.as_deref().unwrap_or("") {
            "_ping" => {
                if msg.value.as_deref().is_some_and(|v| v != self.id) {
                    return;
                }
                self.respond(&msg, from, Some(encode_peer(from).to_vec()), None);
            }
            "_find_node" => {
                let Some(target) = valid_id(&msg.target) else {
                    return;
                };
                let closer = encode_nodes(&self.table.closest(&target, K));
                self.respond(&msg, from, None, Some(closer));
            }
            "_holepunch" => self.on_holepunch(msg, from),
            command => {
                let Some(target) = valid_id(&msg.target) else {
                    return;
                };
                let closer = encode_nodes(&self.table.closest(&target, K));
                if command != "peers" {
                    self.respond_error(&msg, from, "Unsupported command", Some(closer));
                    return;
                }
                let is_update = msg.kind == MessageType::Update;
                match handle_peers(
                    &mut self.store,
                    is_update,
                    from,
                    &target,
                    msg.value.as_deref(),
                ) {
                    PeersReply::Ok(value) => self.respond(&msg, from, value, Some(closer)),
                    PeersReply::Error(e) => self.respond_error(&msg, from, e, Some(closer)),
                    PeersReply::Drop => {}
                }
            }
        }
    }

    fn on_holepunch(&mut self, msg: Message, from: SocketAddrV4) {
        let Some(value) = msg.value.as_deref() else {
            return;
        };
        let Ok(hp) = Holepunch::decode(value) else {
            return;
        };
        if let Some(to) = hp.to {
            let Some(to) = decode_peer(&to) else { return };
            if to == from {
                return;
            }
            let mut fwd = msg;
            fwd.version = Some(1);
            fwd.id = (!self.ephemeral).then(|| self.id.to_vec());
            fwd.to = Some(encode_peer(to).to_vec());
            fwd.value = Some(
                Holepunch {
                    from: Some(encode_peer(from).to_vec()),
                    to: None,
                }
                .encode(),
            );
            self.transmit(to, fwd.encode());
            return;
        }
        let peer = hp.from.as_deref().and_then(decode_peer).unwrap_or(from);
        self.respond(&msg, peer, None, None);
    }

    fn respond(
        &mut self,
        req: &Message,
        to: SocketAddrV4,
        value: Option<Vec<u8>>,
        closer: Option<Vec<u8>>,
    ) {
        let mut m = Message::new(MessageType::Response, req.rid);
        m.to = Some(encode_peer(to).to_vec());
        m.id = (!self.ephemeral).then(|| self.id.to_vec());
        m.closer_nodes = closer;
        m.roundtrip_token = Some(token(&self.secrets[0], to).to_vec());
        m.value = value;
        self.transmit(to, m.encode());
    }

    fn respond_error(
        &mut self,
        req: &Message,
        to: SocketAddrV4,
        error: &str,
        closer: Option<Vec<u8>>,
    ) {
        let mut m = Message::new(MessageType::Response, req.rid);
        m.to = Some(encode_peer(to).to_vec());
        m.id = (!self.ephemeral).then(|| self.id.to_vec());
        m.closer_nodes = closer;
        m.error = Some(error.to_owned());
        self.transmit(to, m.encode());
    }

    fn transmit(&mut self, to: SocketAddrV4, bytes: Vec<u8>) {
        if self.transmits.len() < MAX_TRANSMITS {
            self.transmits.push_back((to, bytes));
        }
    }

    // ---------------------------------------------------------------- routing ----

    fn add_node(
        &mut self,
        id: [u8; 32],
        addr: SocketAddrV4,
        token: Option<Vec<u8>>,
        to: Option<[u8; 6]>,
    ) {
        if id == self.id {
            return;
        }
        let AddOutcome::Full(oldest) = self.table.add(id, addr, token.clone(), to, self.tick)
        else {
            return;
        };
        // Before the first bootstrap completes, or while another replacement runs: drop.
        if !self.bootstrapped || self.replacement.is_some() {
            return;
        }
        let mut reping = Vec::new();
        for old in oldest {
            match self.table.get(&old) {
                Some(c) if c.tick == self.tick => self.table.touch(&old, self.tick),
                Some(_) => reping.push(old),
                None => {}
            }
        }
        if reping.is_empty() {
            return;
        }
        reping.reverse(); // pop() takes the least recently seen first
        self.replacement = Some(Replacement {
            newcomer: (NodeEntry { id, addr }, token, to),
            remaining: reping,
        });
        self.next_replacement_ping();
    }

    fn next_replacement_ping(&mut self) {
        let Some(rep) = self.replacement.as_mut() else {
            return;
        };
        let Some(next) = rep.remaining.pop() else {
            self.replacement = None;
            return;
        };
        let Some(addr) = self.table.get(&next).map(|c| c.addr) else {
            self.next_replacement_ping();
            return;
        };
        let msg =
            self.request_message(MessageType::Query, addr, "_ping", None, Some(next.to_vec()));
        let out = Outgoing {
            dest: addr,
            msg,
            punch_via: None,
            expected_id: Some(next),
            purpose: Purpose::Replace,
        };
        self.send_now(out);
    }

    fn maintenance_tick(&mut self) {
        self.tick += 1;
        if self.tick & 7 == 0 {
            let running = self.queries.len();
            let cnt = if running > 2 { 3 } else { 5 };
            let oldest: Vec<([u8; 32], SocketAddrV4, u64)> = self
                .table
                .oldest_first()
                .iter()
                .map(|c| (c.id, c.addr, c.tick))
                .collect();
            if oldest.is_empty() {
                self.bootstrap();
            }
            for (id, addr, tick) in oldest.into_iter().take(cnt) {
                if tick == self.tick {
                    break;
                }
                let msg = self.request_message(
                    MessageType::Query,
                    addr,
                    "_ping",
                    None,
                    Some(id.to_vec()),
                );
                self.request(addr, msg, Some(id), Purpose::Maintenance);
            }
        }
        if self.tick & 63 == 0 && self.table.len() < K {
            self.bootstrap();
        }
    }

    // ---------------------------------------------------------------- requests ----

    fn request_message(
        &self,
        kind: MessageType,
        dest: SocketAddrV4,
        command: &str,
        target: Option<[u8; 32]>,
        value: Option<Vec<u8>>,
    ) -> Message {
        let mut m = Message::new(kind, 0);
        m.to = Some(encode_peer(dest).to_vec());
        m.id = (!self.ephemeral).then(|| self.id.to_vec());
        m.target = target.map(|t| t.to_vec());
        m.command = Some(command.to_owned());
        m.value = value;
        m
    }

    fn saturated(&mut self) -> bool {
        let cutoff = self.now.checked_sub(Duration::from_secs(5));
        while let (Some(front), Some(cutoff)) = (self.sends.front(), cutoff) {
            if *front < cutoff {
                self.sends.pop_front();
            } else {
                break;
            }
        }
        self.requests.len() >= MAX_INFLIGHT
            || (self.sends.len() >= CONCURRENCY_RPS * 5 && self.requests.len() >= CONCURRENCY)
    }

    fn request(
        &mut self,
        dest: SocketAddrV4,
        msg: Message,
        expected_id: Option<[u8; 32]>,
        purpose: Purpose,
    ) {
        let out = Outgoing {
            dest,
            msg,
            punch_via: None,
            expected_id,
            purpose,
        };
        self.enqueue(out);
    }

    fn enqueue(&mut self, out: Outgoing) {
        if !self.pending.is_empty() || self.saturated() {
            if self.pending.len() >= MAX_PENDING {
                self.fail(out.purpose, out.expected_id, out.dest, DhtError::QueueFull);
            } else {
                self.pending.push_back(out);
            }
        } else {
            self.send_now(out);
        }
    }

    fn send_now(&mut self, mut out: Outgoing) {
        // Skip rids still in use (only possible after 65 536 sends with stragglers).
        while self.requests.contains_key(&self.rid) {
            self.rid = self.rid.wrapping_add(1);
        }
        let rid = self.rid;
        self.rid = self.rid.wrapping_add(1);
        out.msg.rid = u64::from(rid);
        let bytes = out.msg.encode();
        if self.sends.len() < CONCURRENCY_RPS * 5 * 4 {
            self.sends.push_back(self.now);
        }
        self.transmit(out.dest, bytes.clone());
        // The referrer gets the same rid, so the peer's answer (sent with it) completes
        // this request.
        let punch = out.punch_via.map(|via| {
            let mut relay = out.msg.clone();
            relay.to = Some(encode_peer(via).to_vec());
            relay.value = Some(
                Holepunch {
                    from: None,
                    to: Some(encode_peer(out.dest).to_vec()),
                }
                .encode(),
            );
            (via, relay.encode())
        });
        if let Some((via, b)) = &punch {
            self.transmit(*via, b.clone());
        }
        self.requests.insert(
            rid,
            Request {
                dest: out.dest,
                bytes,
                punch,
                timeout: 4,
                tries: 0,
                expected_id: out.expected_id,
                purpose: out.purpose,
            },
        );
    }

    fn drain_pending(&mut self) {
        while !self.pending.is_empty() && !self.saturated() {
            if let Some(out) = self.pending.pop_front() {
                self.send_now(out);
            }
        }
    }

    fn io_tick(&mut self) {
        let mut rids: Vec<u16> = self.requests.keys().copied().collect();
        rids.sort_unstable();
        let mut expired = Vec::new();
        for rid in rids {
            let saturated = self.saturated();
            let Some(req) = self.requests.get_mut(&rid) else {
                continue;
            };
            if req.timeout == 2 && req.tries + 1 < TRIES {
                if !saturated {
                    req.tries += 1;
                    req.timeout = 4;
                    let (dest, bytes) = (req.dest, req.bytes.clone());
                    let punch = req.punch.clone();
                    self.transmit(dest, bytes);
                    if let Some((via, b)) = punch {
                        self.transmit(via, b);
                    }
                }
                continue;
            }
            req.timeout = req.timeout.saturating_sub(1);
            if req.timeout == 0 {
                expired.push(rid);
            }
        }
        for rid in expired {
            if let Some(req) = self.requests.remove(&rid) {
                self.fail(
                    req.purpose,
                    req.expected_id,
                    req.dest,
                    DhtError::Timeout(req.dest),
                );
            }
        }
        self.drain_pending();
    }

    fn finish(&mut self, msg: Message, from: SocketAddrV4) {
        let Ok(rid) = u16::try_from(msg.rid) else {
            return;
        };
        let Some(req) = self.requests.remove(&rid) else {
            return;
        };
        if let Some(expected) = req.expected_id {
            if valid_id(&msg.id) != Some(expected) {
                self.table.remove(&expected);
            }
        }
        match req.purpose {
            Purpose::Query { query } => self.on_query_response(query, msg, from),
            Purpose::UserPing(ping) => {
                let result = if let Some(err) = msg.error {
                    Err(DhtError::Remote { from, message: err })
                } else {
                    msg.to
                        .as_deref()
                        .or(msg.value.as_deref())
                        .and_then(decode_peer)
                        .ok_or(DhtError::InvalidPong(from))
                };
                self.events.push_back(Event::Pong { ping, result });
            }
            Purpose::Maintenance => {}
            Purpose::Replace => self.next_replacement_ping(),
        }
        self.drain_pending();
    }

    fn fail(
        &mut self,
        purpose: Purpose,
        expected_id: Option<[u8; 32]>,
        dest: SocketAddrV4,
        err: DhtError,
    ) {
        if let Some(id) = expected_id {
            self.table.remove(&id);
        }
        match purpose {
            Purpose::Query { query } => self.on_query_error(query),
            Purpose::UserPing(ping) => self.events.push_back(Event::Pong {
                ping,
                result: Err(err),
            }),
            Purpose::Maintenance => {}
            Purpose::Replace => {
                if let Some(rep) = self.replacement.take() {
                    let (entry, token, to) = rep.newcomer;
                    self.table.add(entry.id, entry.addr, token, to, self.tick);
                }
            }
        }
        let _ = dest;
    }

    // ---------------------------------------------------------------- queries ----

    fn start_query(
        &mut self,
        mode: QueryMode,
        command: &str,
        target: [u8; 32],
        value: Option<Vec<u8>>,
        is_bootstrap: bool,
    ) -> Result<QueryId, DhtError> {
        if self.queries.len() >= MAX_QUERIES {
            return Err(DhtError::TooManyQueries);
        }
        let qid = self.next_query;
        self.next_query += 1;
        let mut q = Query {
            mode,
            command: command.to_owned(),
            target,
            value,
            phase: Phase::MovingCloser,
            inflight: 0,
            stats: QueryStats::default(),
            unverified: Vec::new(),
            closest: Vec::new(),
            is_bootstrap,
        };
        let start = self.table.closest(&target, K);
        for n in &start {
            insert_sorted(
                &mut q.unverified,
                Candidate {
                    id: n.id,
                    addr: n.addr,
                    distance: super::routing::distance(&n.id, &target),
                    queried: false,
                    token: None,
                },
            );
        }
        let force_bootstrap = start.len() < self.bootstrap_nodes.len();
        self.queries.insert(qid, q);
        if force_bootstrap {
            for b in self.bootstrap_nodes.clone() {
                self.send_to(qid, b, None, None);
            }
        }
        self.advance(qid);
        Ok(qid)
    }

    /// Send the walk's request to one node: a command QUERY, a `_find_node`, or (with a
    /// token) an UPDATE.
    fn send_to(
        &mut self,
        qid: QueryId,
        addr: SocketAddrV4,
        id: Option<[u8; 32]>,
        update_token: Option<Vec<u8>>,
    ) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.inflight += 1;
        let (kind, command, value) = if update_token.is_some() {
            (MessageType::Update, q.command.clone(), q.value.clone())
        } else if q.queries_command() {
            (MessageType::Query, q.command.clone(), q.value.clone())
        } else {
            (MessageType::Query, "_find_node".to_owned(), None)
        };
        let target = q.target;
        let mut msg = self.request_message(kind, addr, &command, Some(target), value);
        msg.roundtrip_token = update_token;
        self.request(addr, msg, id, Purpose::Query { query: qid });
    }

    fn send_all(&mut self, qid: QueryId, updating: bool) -> usize {
        let inflight_total = self.requests.len();
        let Some(q) = self.queries.get_mut(&qid) else {
            return 0;
        };
        let mut free = CONCURRENCY.saturating_sub(inflight_total);
        if free == 0 && q.inflight == 0 {
            free = 1;
        }
        let list = if updating {
            &mut q.closest
        } else {
            &mut q.unverified
        };
        let mut picked = Vec::new();
        for c in list.iter_mut() {
            if picked.len() >= free {
                break;
            }
            if c.queried {
                continue;
            }
            c.queried = true;
            picked.push((c.addr, c.id, if updating { c.token.clone() } else { None }));
        }
        let sent = picked.len();
        for (addr, id, token) in picked {
            if updating && token.is_none() {
                continue; // closest only holds token holders
            }
            self.send_to(qid, addr, Some(id), token);
        }
        sent
    }

    fn advance(&mut self, qid: QueryId) {
        let Some(q) = self.queries.get(&qid) else {
            return;
        };
        match q.phase {
            Phase::MovingCloser => {
                let sent = self.send_all(qid, false);
                let Some(q) = self.queries.get_mut(&qid) else {
                    return;
                };
                if sent > 0 || q.inflight > 0 {
                    return;
                }
                if q.updates() {
                    for c in q.closest.iter_mut() {
                        c.queried = false;
                    }
                    q.phase = Phase::Updating;
                    self.advance(qid);
                } else {
                    self.finalize(qid);
                }
            }
            Phase::Updating => {
                let sent = self.send_all(qid, true);
                let Some(q) = self.queries.get(&qid) else {
                    return;
                };
                if sent > 0 || q.inflight > 0 {
                    return;
                }
                self.finalize(qid);
            }
        }
    }

    fn finalize(&mut self, qid: QueryId) {
        let Some(q) = self.queries.remove(&qid) else {
            return;
        };
        let result = if q.stats.responses == 0 {
            Err(DhtError::NoNodesResponded)
        } else if q.phase == Phase::Updating && q.stats.updates == 0 {
            Err(DhtError::NoCloseNodesResponded)
        } else {
            Ok(q.stats)
        };
        if q.is_bootstrap {
            self.bootstrap_query = None;
            self.mark_ready();
        } else {
            self.events
                .push_back(Event::QueryDone { query: qid, result });
        }
    }

    fn on_query_error(&mut self, qid: QueryId) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.inflight -= 1;
        q.stats.errors += 1;
        self.advance(qid);
    }

    fn on_query_response(&mut self, qid: QueryId, msg: Message, from: SocketAddrV4) {
        let own = self.id;
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.inflight -= 1;
        q.stats.responses += 1;
        // addVerified: only replies with both an id and a token enter `closest`.
        if let (Some(id), Some(tok)) = (valid_id(&msg.id), msg.roundtrip_token.clone()) {
            if id != own {
                let mut c =
                    q.unverified
                        .iter()
                        .find(|c| c.id == id)
                        .cloned()
                        .unwrap_or(Candidate {
                            id,
                            addr: from,
                            distance: super::routing::distance(&id, &q.target),
                            queried: false,
                            token: None,
                        });
                c.token = Some(tok);
                c.queried = false;
                insert_sorted(&mut q.closest, c);
            }
        }
        match q.phase {
            Phase::MovingCloser => {
                for n in decode_nodes(msg.closer_nodes.as_deref().unwrap_or_default()) {
                    if n.id == own {
                        continue;
                    }
                    let distance = super::routing::distance(&n.id, &q.target);
                    insert_sorted(
                        &mut q.unverified,
                        Candidate {
                            id: n.id,
                            addr: n.addr,
                            distance,
                            queried: false,
                            token: None,
                        },
                    );
                }
            }
            Phase::Updating => q.stats.updates += 1,
        }
        // Error replies, and `_find_node` hops of an update walk, are not yielded.
        let yield_reply = msg.error.is_none()
            && (q.queries_command() || q.phase != Phase::MovingCloser)
            && q.command != "_find_node";
        if yield_reply {
            let kind = if q.phase == Phase::Updating {
                MessageType::Update
            } else {
                MessageType::Query
            };
            let reply = Reply {
                kind,
                node_id: valid_id(&msg.id),
                from,
                to: msg.to.as_deref().and_then(decode_peer),
                value: msg.value,
            };
            self.events.push_back(Event::Reply { query: qid, reply });
        }
        self.advance(qid);
    }
}
