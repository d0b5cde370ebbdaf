//! LAN discovery over multicast DNS, as @hyperswarm/discovery 2 does it (spec swarm.md 3,
//! "mDNS"). Off unless asked for: it multicasts on every local network.
//!
//! A topic's name is `hex(topic[0..20]) + ".hyperswarm.local"`. Topics that look up send
//! an SRV question for it every 30–60 s. Topics that announce answer such questions with
//! an SRV record `{target "0.0.0.0", port}` (the receiver reads 0.0.0.0 as the packet's
//! source address) and a TXT record holding `"id=" + 32 random bytes`, by which a swarm
//! recognises and skips its own answers; replies to a real query add an A record
//! `referrer.hyperswarm.local` with the querier's address. An announcing topic also
//! multicasts its answer once when it joins. Packets are built field for field as the
//! reference's dns-packet does (id 0, no name compression, TTL 0, class IN).
//!
//! [`MdnsState`] is the protocol without sockets: packets in, packets and peers out,
//! timers polled. [`MdnsSocket`] is the multicast socket the swarm drives it with.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use simple_dns::rdata::{RData, A, SRV, TXT};
use simple_dns::{
    CharacterString, Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE,
};

/// The mDNS group and port (multicast-dns defaults).
pub const MDNS_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);
/// The reference's domain under which topics are named.
pub const DOMAIN: &str = "hyperswarm.local";
/// Lookups re-ask after a uniform delay in this range (the reference: 30–60 s).
pub const QUERY_INTERVAL: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(60));
/// Datagrams longer than this are dropped unread (an mDNS packet fits in 9000 bytes).
pub const MAX_PACKET: usize = 9000;
/// Peers taken from one packet at most; the rest of a flood is ignored.
pub const MAX_PEERS_PER_PACKET: usize = 32;
/// Topics one state tracks at most (the swarm's own limit is lower).
pub const MAX_TOPICS: usize = 4096;

const ID_PREFIX: &[u8] = b"id=";
/// Length of a topic id: `"id="` and 32 random bytes.
pub const ID_LEN: usize = 35;

/// The mDNS name of `topic`.
pub fn domain(topic: &[u8; 32]) -> String {
    let mut s = String::with_capacity(40 + 1 + DOMAIN.len());
    for b in &topic[..20] {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('.');
    s.push_str(DOMAIN);
    s
}

/// A peer some host on the LAN answered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPeer {
    pub topic: [u8; 32],
    pub addr: SocketAddrV4,
}

/// What one received packet asks of us.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// An answer to multicast.
    pub reply: Option<Vec<u8>>,
    /// Peers found for topics that look up.
    pub peers: Vec<LocalPeer>,
}

#[derive(Debug, Clone)]
struct Entry {
    topic: [u8; 32],
    id: [u8; ID_LEN],
    /// The TCP port we answer with; `None` when the topic only looks up.
    port: Option<u16>,
    lookup: bool,
    /// When the next query goes out (lookups only).
    next_query: Option<Instant>,
}

/// Errors of the mDNS socket.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("mDNS socket on port {port}: {source}")]
    Socket {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("mDNS: no IPv4 interface to join {group} on")]
    NoInterface { group: Ipv4Addr },
}

/// The mDNS side of a swarm, without sockets.
#[derive(Debug, Default)]
pub struct MdnsState {
    /// By mDNS name.
    topics: HashMap<String, Entry>,
}

impl MdnsState {
    pub fn new() -> MdnsState {
        MdnsState::default()
    }

    /// Start answering for `topic` (with `port`, when announcing) and/or looking it up.
    /// `random` makes the topic's id. Returns the packets to send now: an answer when
    /// announcing (so lookups on the LAN hear of us at once) and a query when looking up.
    /// Joining again replaces the earlier join.
    pub fn join(
        &mut self,
        topic: [u8; 32],
        port: Option<u16>,
        lookup: bool,
        random: [u8; 32],
        now: Instant,
    ) -> Vec<Vec<u8>> {
        let name = domain(&topic);
        if !self.topics.contains_key(&name) && self.topics.len() >= MAX_TOPICS {
            return Vec::new();
        }
        let mut id = [0u8; ID_LEN];
        id[..3].copy_from_slice(ID_PREFIX);
        id[3..].copy_from_slice(&random);
        let lookup = lookup || port.is_none();
        self.topics.insert(
            name.clone(),
            Entry {
                topic,
                id,
                port,
                lookup,
                next_query: None,
            },
        );
        let mut out = Vec::new();
        if port.is_some() {
            out.extend(self.answer(&[name.as_str()], None, None));
        }
        if lookup {
            out.push(query(&name));
            if let Some(e) = self.topics.get_mut(&name) {
                e.next_query = Some(now + jitter(QUERY_INTERVAL));
            }
        }
        out
    }

    /// Stop answering for and looking up `topic`.
    pub fn leave(&mut self, topic: &[u8; 32]) {
        self.topics.remove(&domain(topic));
    }

    /// Topics joined.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// When [`MdnsState::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.topics.values().filter_map(|e| e.next_query).min()
    }

    /// The queries due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (name, e) in self.topics.iter_mut() {
            if e.next_query.is_some_and(|at| at <= now) {
                out.push(query(name));
                e.next_query = Some(now + jitter(QUERY_INTERVAL));
            }
        }
        out
    }

    /// A datagram from `src`. Anything that doesn't parse, or is too long, is ignored.
    pub fn handle(&self, packet: &[u8], src: SocketAddrV4) -> Handled {
        if packet.len() > MAX_PACKET {
            return Handled::default();
        }
        let Ok(p) = Packet::parse(packet) else {
            return Handled::default();
        };
        if p.has_flags(PacketFlag::RESPONSE) {
            Handled {
                reply: None,
                peers: self.on_response(&p, *src.ip()),
            }
        } else {
            let names: Vec<String> = p
                .questions
                .iter()
                .filter(|q| q.qtype == QTYPE::TYPE(TYPE::SRV))
                .map(|q| q.qname.to_string())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            Handled {
                reply: self.answer(&names, Some(&p), Some(*src.ip())),
                peers: Vec::new(),
            }
        }
    }

    /// Our answers to SRV questions for `names` (the reference's `_onmdnsquery`).
    fn answer(
        &self,
        names: &[&str],
        query: Option<&Packet>,
        from: Option<Ipv4Addr>,
    ) -> Option<Vec<u8>> {
        let mut answers: Vec<(&str, &Entry)> = Vec::new();
        for &name in names {
            let Some(e) = self.topics.get(name) else {
                continue;
            };
            let Some(_) = e.port else { continue };
            // A query carrying our own id is our own.
            if query.is_some_and(|q| carries_id(q, name, &e.id)) {
                continue;
            }
            answers.push((name, e));
        }
        if answers.is_empty() {
            return None;
        }
        let mut reply = Packet::new_reply(0);
        reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        for (name, e) in &answers {
            let srv = SRV {
                priority: 0,
                weight: 0,
                port: e.port.unwrap_or(0),
                target: Name::new_unchecked("0.0.0.0"),
            };
            reply.answers.push(ResourceRecord::new(
                Name::new_unchecked(name),
                CLASS::IN,
                0,
                RData::SRV(srv),
            ));
            let id = CharacterString::new(&e.id).ok()?;
            reply.answers.push(ResourceRecord::new(
                Name::new_unchecked(name),
                CLASS::IN,
                0,
                RData::TXT(TXT::new().with_char_string(id)),
            ));
        }
        let referrer = format!("referrer.{DOMAIN}");
        if let Some(ip) = from {
            reply.answers.push(ResourceRecord::new(
                Name::new_unchecked(&referrer),
                CLASS::IN,
                0,
                RData::A(A {
                    address: u32::from(ip),
                }),
            ));
        }
        reply.build_bytes_vec().ok()
    }

    /// Peers in a response (the reference's `_onmdnsresponse`).
    fn on_response(&self, p: &Packet, from: Ipv4Addr) -> Vec<LocalPeer> {
        let mut peers = Vec::new();
        for a in &p.answers {
            let RData::SRV(srv) = &a.rdata else { continue };
            let name = a.name.to_string();
            let Some(e) = self.topics.get(&name) else {
                continue;
            };
            if !e.lookup || srv.port == 0 {
                continue;
            }
            let target = srv.target.to_string();
            let host = if target == "0.0.0.0" {
                from
            } else {
                // The reference would dial a host name too; we take addresses only.
                match target.parse::<Ipv4Addr>() {
                    Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() => {
                        ip
                    }
                    _ => continue,
                }
            };
            if carries_id(p, &name, &e.id) {
                continue;
            }
            let peer = LocalPeer {
                topic: e.topic,
                addr: SocketAddrV4::new(host, srv.port),
            };
            if !peers.contains(&peer) {
                peers.push(peer);
            }
            if peers.len() >= MAX_PEERS_PER_PACKET {
                break;
            }
        }
        peers
    }
}

/// The SRV question for `name`.
fn query(name: &str) -> Vec<u8> {
    let mut q = Packet::new_query(0);
    q.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::SRV),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    // A name we made always encodes; an empty packet is never sent.
    q.build_bytes_vec().unwrap_or_default()
}

/// Whether the first TXT answer for `name` carries `id` (the reference's `_getId`
/// compared with a topic's id).
fn carries_id(p: &Packet, name: &str, id: &[u8; ID_LEN]) -> bool {
    let txt = p.answers.iter().find_map(|a| match &a.rdata {
        RData::TXT(t) if a.name.to_string() == name => Some(t),
        _ => None,
    });
    // iter_raw splits each string at its first '='; ours is "id=" + 32 bytes.
    match txt.and_then(|t| t.iter_raw().next()) {
        Some((key, Some(value))) => key == &id[..2] && value == &id[3..],
        _ => false,
    }
}

/// A uniform delay in `range`.
fn jitter(range: (Duration, Duration)) -> Duration {
    let (lo, hi) = range;
    let span = hi.saturating_sub(lo).as_millis() as u64;
    lo + Duration::from_millis(if span == 0 {
        0
    } else {
        rand::random::<u64>() % span
    })
}

/// Where the mDNS socket listens and multicasts.
#[derive(Debug, Clone)]
pub struct MdnsConfig {
    /// The group and port (224.0.0.251:5353 on a real LAN).
    pub group: SocketAddrV4,
    /// Interfaces (by address) to join the group on. `None`: as multicast-dns, the first
    /// IPv4 address of every interface, loopback included.
    pub interfaces: Option<Vec<Ipv4Addr>>,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        MdnsConfig {
            group: MDNS_GROUP,
            interfaces: None,
        }
    }
}

/// The first IPv4 address of every interface, and whether any is not loopback.
fn ipv4_interfaces() -> (Vec<Ipv4Addr>, bool) {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut external = false;
    for i in if_addrs::get_if_addrs().unwrap_or_default() {
        let if_addrs::IfAddr::V4(v4) = &i.addr else {
            continue;
        };
        if seen.contains(&i.name) {
            continue;
        }
        seen.push(i.name.clone());
        external |= !v4.ip.is_loopback();
        out.push(v4.ip);
    }
    (out, external)
}

/// A UDP socket on the mDNS port, member of the group, shared with other mDNS
/// responders on the host (SO_REUSEADDR, as multicast-dns).
#[derive(Debug)]
pub struct MdnsSocket {
    socket: tokio::net::UdpSocket,
    group: SocketAddrV4,
}

impl MdnsSocket {
    /// Opens and joins. Must run inside a tokio runtime.
    pub fn open(config: &MdnsConfig) -> Result<MdnsSocket, MdnsError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let port = config.group.port();
        let err = |source| MdnsError::Socket { port, source };
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        s.bind(&any.into()).map_err(err)?;
        let (ifaces, external) = match &config.interfaces {
            Some(list) => (list.clone(), list.iter().any(|ip| !ip.is_loopback())),
            None => ipv4_interfaces(),
        };
        let group = *config.group.ip();
        let mut joined = Vec::new();
        for ip in &ifaces {
            match s.join_multicast_v4(&group, ip) {
                Ok(()) => joined.push(*ip),
                Err(e) => tracing::debug!(interface = %ip, "mDNS: cannot join {group}: {e}"),
            }
        }
        if joined.is_empty() {
            return Err(MdnsError::NoInterface { group });
        }
        // multicast-dns sends through the default route when the host has a real
        // interface, else through loopback.
        let out_if = match &config.interfaces {
            Some(_) => joined[0],
            None if external => Ipv4Addr::UNSPECIFIED,
            None => Ipv4Addr::LOCALHOST,
        };
        s.set_multicast_if_v4(&out_if).map_err(err)?;
        s.set_multicast_ttl_v4(255).map_err(err)?;
        s.set_multicast_loop_v4(true).map_err(err)?;
        let socket = tokio::net::UdpSocket::from_std(s.into()).map_err(err)?;
        Ok(MdnsSocket {
            socket,
            group: config.group,
        })
    }

    /// Multicasts `packet` to the group.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.socket.send_to(packet, self.group).await.map(|_| ())
    }

    /// The next IPv4 datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            if let std::net::SocketAddr::V4(from) = from {
                return Ok((n, from));
            }
        }
    }
}

/// Runs [`MdnsState`] on an [`MdnsSocket`]: answers questions, sends due queries, and
/// hands the peers found to `found`.
pub struct MdnsService {
    state: std::sync::Mutex<MdnsState>,
    socket: MdnsSocket,
    /// Wakes the loop when a join changed the timers.
    wake: tokio::sync::Notify,
}

/// Called with every peer found on the LAN.
pub type FoundFn = Box<dyn Fn(LocalPeer) + Send + Sync>;

impl MdnsService {
    /// Starts the service's loop on `socket`; the loop ends when the handle is aborted.
    pub fn spawn(
        socket: MdnsSocket,
        found: FoundFn,
    ) -> (std::sync::Arc<MdnsService>, tokio::task::JoinHandle<()>) {
        let svc = std::sync::Arc::new(MdnsService {
            state: std::sync::Mutex::new(MdnsState::new()),
            socket,
            wake: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(svc.clone().run(found));
        (svc, task)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MdnsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers for `topic` on `port` (when announcing) and/or looks it up.
    pub async fn join(&self, topic: [u8; 32], port: Option<u16>, lookup: bool) {
        let packets = self
            .state()
            .join(topic, port, lookup, rand::random(), Instant::now());
        self.wake.notify_one();
        self.send_all(&packets).await;
    }

    pub fn leave(&self, topic: &[u8; 32]) {
        self.state().leave(topic);
    }

    async fn send_all(&self, packets: &[Vec<u8>]) {
        for p in packets {
            if let Err(e) = self.socket.send(p).await {
                tracing::debug!("mDNS send: {e}");
            }
        }
    }

    async fn run(self: std::sync::Arc<Self>, found: FoundFn) {
        let mut buf = vec![0u8; MAX_PACKET + 1];
        loop {
            let next = self.state().poll_timeout();
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv(&mut buf) => match r {
                    Ok((n, from)) => {
                        let h = self.state().handle(&buf[..n], from);
                        for p in h.peers {
                            found(p);
                        }
                        if let Some(reply) = h.reply {
                            self.send_all(&[reply]).await;
                        }
                    }
                    Err(e) => {
                        tracing::debug!("mDNS receive: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = timer => {
                    let due = self.state().handle_timeout(Instant::now());
                    self.send_all(&due).await;
                }
                _ = self.wake.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: [u8; 32] = [0xab; 32];
    const T2: [u8; 32] = [0x01; 32];

    fn src(ip: [u8; 4]) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(ip), 5353)
    }

    #[test]
    fn names_are_the_first_20_bytes_in_hex() {
        assert_eq!(
            domain(&T1),
            "abababababababababababababababababababab.hyperswarm.local"
        );
    }

    #[test]
    fn a_lookup_finds_an_announcer_and_not_itself() {
        let now = Instant::now();
        let mut seeder = MdnsState::new();
        let out = seeder.join(T1, Some(4000), false, [1; 32], now);
        // Announcing multicasts one answer at once.
        assert_eq!(out.len(), 1);
        let mut reader = MdnsState::new();
        let out = reader.join(T1, None, true, [2; 32], now);
        assert_eq!(out.len(), 1);
        let question = &out[0];

        // The seeder answers the reader's question; the reader's own copy of its
        // question (multicast loops back) has nothing for it to answer.
        assert_eq!(
            reader.handle(question, src([127, 0, 0, 1])),
            Handled::default()
        );
        let h = seeder.handle(question, src([10, 0, 0, 7]));
        let reply = h.reply.expect("an answer");
        assert!(h.peers.is_empty());

        // The reader reads 0.0.0.0 as the packet's source.
        let h = reader.handle(&reply, src([10, 0, 0, 9]));
        assert_eq!(
            h.peers,
            vec![LocalPeer {
                topic: T1,
                addr: "10.0.0.9:4000".parse().unwrap()
            }]
        );
        // The seeder hears its own answer and skips it by id.
        assert_eq!(
            seeder.handle(&reply, src([10, 0, 0, 9])),
            Handled::default()
        );
        // The join-time announcement is found the same way.
        let h = reader.handle(
            &seeder.join(T1, Some(4000), false, [1; 32], now)[0],
            src([10, 0, 0, 3]),
        );
        assert_eq!(h.peers.len(), 1);
    }

    #[test]
    fn other_topics_and_announce_only_topics_yield_nothing() {
        let now = Instant::now();
        let mut seeder = MdnsState::new();
        let answer = seeder.join(T1, Some(4000), false, [1; 32], now).remove(0);
        let mut other = MdnsState::new();
        other.join(T2, None, true, [2; 32], now);
        assert!(other.handle(&answer, src([10, 0, 0, 1])).peers.is_empty());
        // A topic that only announces answers questions but dials nobody.
        let mut second = MdnsState::new();
        second.join(T1, Some(5000), false, [3; 32], now);
        assert!(second.handle(&answer, src([10, 0, 0, 1])).peers.is_empty());
        // Nor does anything answer a question for a topic it hasn't joined.
        let q = other.join(T2, None, true, [2; 32], now).remove(0);
        assert!(seeder.handle(&q, src([10, 0, 0, 1])).reply.is_none());
        seeder.leave(&T1);
        assert!(seeder.is_empty());
    }

    #[test]
    fn lookups_repeat_every_30_to_60_s() {
        let now = Instant::now();
        let mut s = MdnsState::new();
        s.join(T1, None, true, [2; 32], now);
        s.join(T2, Some(1), false, [2; 32], now);
        let at = s.poll_timeout().expect("a query is due later");
        assert!(at >= now + QUERY_INTERVAL.0 && at <= now + QUERY_INTERVAL.1);
        assert!(s.handle_timeout(at - Duration::from_millis(1)).is_empty());
        let due = s.handle_timeout(at);
        assert_eq!(due, vec![query(&domain(&T1))]);
        assert!(s.poll_timeout().unwrap() >= at + QUERY_INTERVAL.0);
    }

    #[test]
    fn garbage_and_oversized_packets_are_ignored() {
        let mut s = MdnsState::new();
        let q = s
            .join(T1, Some(4000), true, [1; 32], Instant::now())
            .pop()
            .unwrap();
        for bad in [
            &[][..],
            &[0xff; 11][..],
            &q[..q.len() - 3],
            &[0u8; MAX_PACKET + 1][..],
        ] {
            assert_eq!(s.handle(bad, src([10, 0, 0, 1])), Handled::default());
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut s = MdnsState::new();
            s.join(T1, Some(4000), true, [1; 32], Instant::now());
            let _ = s.handle(&bytes, src([10, 0, 0, 1]));
        }
    }
}
