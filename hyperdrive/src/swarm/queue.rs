//! Which discovered peer to dial next, and when to try again (spec swarm.md 4.3).
//!
//! A sans-IO model of hyperswarm 2's peer queue in `multiplex` mode (the mode
//! @corestore/networker uses): one entry per `host:port` whatever the topic, a priority per
//! entry (random order within a priority), backoff after a failed dial or a closed
//! connection (1 s, 5 s, 15 s), and entries forgotten 7.5 s after their last try. Times go in
//! as `Instant`s; nothing here sleeps, dials or owns a socket.
//!
//! Deliberate differences from the reference, none visible on the wire:
//! - hyperswarm's bulk timers fire after 1–2 batches of 0.66× the delay; here a retry fires
//!   at exactly its delay (the spread only exists to batch JavaScript timers);
//! - a soft-banned duplicate is requeued when the connection that beat it closes (the
//!   reference tries to, but looks the entry up under a key it never stored);
//! - explicitly added peers (`--connect`) are never forgotten, and retried on their own
//!   faster schedule ([`EXPLICIT_BACKOFF`]).

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Retry delays after a failed dial or a lost connection (hyperswarm's BACKOFF_S/M/L).
pub const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
];
/// Retry delays for explicitly given peers (`--connect`): a peer that is still starting
/// is reached quickly, and one that went away is tried every 2 s for as long as we run.
pub const EXPLICIT_BACKOFF: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// A peer that exhausted its retries is forgotten this long after (FORGET_UNRESPONSIVE).
pub const FORGET_UNRESPONSIVE: Duration = Duration::from_millis(7500);
/// Most peers remembered; more discoveries than this are ignored until some are forgotten.
pub const MAX_ENTRIES: usize = 4096;

/// A peer as discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// Where it listens (TCP).
    pub addr: SocketAddrV4,
    /// Found on the local network (mDNS or a local address record).
    pub local: bool,
    /// Our own address as the DHT node that reported this peer saw it.
    pub to: Option<SocketAddrV4>,
    /// The DHT node that reported it (the holepunch relay); `None` for local peers.
    pub referrer: Option<SocketAddrV4>,
    /// The topic it was found under (`None` for explicit peers).
    pub topic: Option<[u8; 32]>,
}

impl PeerAddr {
    /// A peer given by address (`--connect`), kept and retried for as long as we run.
    pub fn explicit(addr: SocketAddrV4) -> PeerAddr {
        PeerAddr {
            addr,
            local: false,
            to: None,
            referrer: None,
            topic: None,
        }
    }

    /// hyperswarm's initial priority: local 3, a peer sharing our public IP 1 (it is
    /// probably behind our own NAT, so its public address gets one try), otherwise 2.
    fn initial_priority(&self) -> u8 {
        if self.local {
            3
        } else if self.to.is_some_and(|to| to.ip() == self.addr.ip()) {
            1
        } else {
            2
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Requeue,
    Forget,
}

#[derive(Debug)]
struct Entry {
    peer: PeerAddr,
    topics: Vec<[u8; 32]>,
    priority: u8,
    retries: u32,
    /// Connected at least once.
    proven: bool,
    /// Dialled at least once.
    tried: bool,
    /// Being dialled or connected.
    active: bool,
    /// A duplicate connection we dialled: not redialled until the survivor closes.
    banned: bool,
    queued: bool,
    explicit: bool,
    timer: Option<(Instant, Timer)>,
}

impl Entry {
    fn new(peer: PeerAddr, explicit: bool) -> Entry {
        let priority = peer.initial_priority();
        Entry {
            retries: if priority == 1 { 3 } else { 0 },
            topics: peer.topic.into_iter().collect(),
            peer,
            priority,
            proven: false,
            tried: false,
            active: false,
            banned: false,
            queued: false,
            explicit,
            timer: None,
        }
    }

    /// peer-info.js `priority()`.
    fn computed_priority(&self) -> u8 {
        if self.tried && !self.proven {
            return 0;
        }
        match self.retries {
            3 => 1,
            2 => 4,
            1 => 5,
            _ if self.peer.local => 3,
            _ => 2,
        }
    }

    /// peer-info.js `update()`: may it be queued, and at which priority.
    fn update(&mut self) -> bool {
        if self.banned || self.active || self.retries > 3 {
            return false;
        }
        self.priority = self.computed_priority();
        true
    }
}

/// What [`PeerQueue::add`] did with a discovered peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// New, and queued for a dial.
    Queued,
    /// Already known (perhaps under another topic): nothing new to dial.
    Known,
    /// Not taken: the queue remembers [`MAX_ENTRIES`] peers already.
    Full,
}

/// The peer queue.
#[derive(Debug, Default)]
pub struct PeerQueue {
    entries: HashMap<SocketAddrV4, Entry>,
}

impl PeerQueue {
    pub fn new() -> PeerQueue {
        PeerQueue::default()
    }

    /// Peers remembered (queued, waiting to retry, active or about to be forgotten).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Peers waiting for a dial now.
    pub fn queued(&self) -> usize {
        self.entries.values().filter(|e| e.queued).count()
    }

    /// Topics a remembered peer was found under.
    pub fn topics(&self, addr: &SocketAddrV4) -> &[[u8; 32]] {
        self.entries.get(addr).map_or(&[], |e| &e.topics)
    }

    /// A discovered peer. In multiplex mode a known `host:port` only gains the topic.
    pub fn add(&mut self, peer: PeerAddr) -> Added {
        self.insert(peer, false)
    }

    /// A peer given by address: dialled at once, retried forever, never forgotten.
    pub fn add_explicit(&mut self, addr: SocketAddrV4) -> Added {
        self.insert(PeerAddr::explicit(addr), true)
    }

    fn insert(&mut self, peer: PeerAddr, explicit: bool) -> Added {
        if let Some(e) = self.entries.get_mut(&peer.addr) {
            if let Some(t) = peer.topic {
                if !e.topics.contains(&t) && e.topics.len() < 64 {
                    e.topics.push(t);
                }
            }
            e.explicit |= explicit;
            return Added::Known;
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Added::Full;
        }
        let mut e = Entry::new(peer, explicit);
        e.queued = e.update();
        let addr = e.peer.addr;
        self.entries.insert(addr, e);
        Added::Queued
    }

    /// The next peer to dial: the highest priority, chosen at random within it. It is
    /// active (not handed out again) until [`Self::dial_failed`] or [`Self::disconnected`].
    pub fn shift(&mut self) -> Option<PeerAddr> {
        let best = self
            .entries
            .values()
            .filter(|e| e.queued)
            .map(|e| e.priority)
            .max()?;
        let candidates: Vec<SocketAddrV4> = self
            .entries
            .values()
            .filter(|e| e.queued && e.priority == best)
            .map(|e| e.peer.addr)
            .collect();
        let pick = candidates[rand::random::<usize>() % candidates.len()];
        let e = self.entries.get_mut(&pick)?;
        e.queued = false;
        e.active = true;
        e.tried = true;
        Some(e.peer.clone())
    }

    /// A dial of `addr` connected.
    pub fn connected(&mut self, addr: &SocketAddrV4) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.proven = true;
            e.retries = 0;
            e.active = true;
        }
    }

    /// A dial of `addr` failed: retry later, or forget it.
    pub fn dial_failed(&mut self, addr: &SocketAddrV4, now: Instant) {
        self.requeue(addr, now);
    }

    /// A connection we dialled to `addr` closed: redial after the first backoff (its
    /// retries were reset when it connected).
    pub fn disconnected(&mut self, addr: &SocketAddrV4, now: Instant) {
        self.requeue(addr, now);
    }

    /// `addr` lost a deduplication: it stays unqueued until [`Self::unban`].
    pub fn ban(&mut self, addr: &SocketAddrV4) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.banned = true;
            e.active = false;
            e.queued = false;
            e.timer = None;
        }
    }

    /// The connection that beat `addr` closed: queue it again, at the lowest priority.
    pub fn unban(&mut self, addr: &SocketAddrV4) {
        if let Some(e) = self.entries.get_mut(addr) {
            if e.banned {
                e.banned = false;
                e.active = false;
                e.retries = 0;
                e.queued = e.update();
                e.priority = 0;
            }
        }
    }

    /// queue.js `requeue`: the next backoff, or forget after the last one.
    fn requeue(&mut self, addr: &SocketAddrV4, now: Instant) {
        let Some(e) = self.entries.get_mut(addr) else {
            return;
        };
        e.active = false;
        e.queued = false;
        if e.banned {
            e.timer = None;
            return;
        }
        if e.explicit {
            let i = (e.retries as usize).min(EXPLICIT_BACKOFF.len() - 1);
            // Kept at most 3 so the entry stays dialable (update() refuses beyond 3).
            e.retries = (e.retries + 1).min(3);
            e.timer = Some((now + EXPLICIT_BACKOFF[i], Timer::Requeue));
            return;
        }
        if e.retries >= 3 {
            e.retries += 1;
            e.timer = Some((now + FORGET_UNRESPONSIVE, Timer::Forget));
            return;
        }
        let delay = BACKOFF[e.retries as usize];
        e.retries += 1;
        e.timer = Some((now + delay, Timer::Requeue));
    }

    /// When [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.timer.map(|(at, _)| at))
            .min()
    }

    /// Fires due retries and forgets. Returns whether any peer became dialable.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let mut readable = false;
        let mut forget = Vec::new();
        for (addr, e) in self.entries.iter_mut() {
            let Some((at, kind)) = e.timer else { continue };
            if at > now {
                continue;
            }
            e.timer = None;
            match kind {
                Timer::Forget => forget.push(*addr),
                Timer::Requeue => {
                    if e.update() {
                        e.queued = true;
                        readable = true;
                    } else if !e.explicit {
                        e.timer = Some((now + FORGET_UNRESPONSIVE, Timer::Forget));
                    }
                }
            }
        }
        for addr in forget {
            self.entries.remove(&addr);
        }
        readable
    }

    /// Forget every peer found only under `topic` that is not connected (a topic left).
    pub fn remove_topic(&mut self, topic: &[u8; 32]) {
        self.entries.retain(|_, e| {
            e.topics.retain(|t| t != topic);
            e.explicit || e.active || !e.topics.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, last].into(), port)
    }

    fn dht_peer(a: SocketAddrV4, topic: u8) -> PeerAddr {
        PeerAddr {
            addr: a,
            local: false,
            to: Some(addr(200, 1000)),
            referrer: Some(addr(250, 49737)),
            topic: Some([topic; 32]),
        }
    }

    #[test]
    fn priorities_follow_the_reference() {
        let mut q = PeerQueue::new();
        let same_nat = PeerAddr {
            to: Some(SocketAddrV4::new([10, 0, 0, 1].into(), 9)),
            ..dht_peer(addr(1, 1), 1)
        };
        let local = PeerAddr {
            local: true,
            referrer: None,
            ..dht_peer(addr(2, 1), 1)
        };
        q.add(same_nat);
        q.add(dht_peer(addr(3, 1), 1));
        q.add(local);
        assert_eq!(q.shift().unwrap().addr, addr(2, 1), "local first");
        assert_eq!(q.shift().unwrap().addr, addr(3, 1), "then DHT peers");
        assert_eq!(q.shift().unwrap().addr, addr(1, 1), "then same-NAT peers");
        assert!(q.shift().is_none(), "active peers are not handed out twice");
    }

    #[test]
    fn multiplex_keeps_one_entry_per_address() {
        let mut q = PeerQueue::new();
        assert_eq!(q.add(dht_peer(addr(1, 1), 1)), Added::Queued);
        assert_eq!(q.add(dht_peer(addr(1, 1), 2)), Added::Known);
        assert_eq!(q.len(), 1);
        assert_eq!(q.topics(&addr(1, 1)).len(), 2);
        q.shift().unwrap();
        assert!(q.shift().is_none());
        q.remove_topic(&[1; 32]);
        assert_eq!(q.len(), 1, "active peers stay");
    }

    #[test]
    fn failed_dials_back_off_then_are_forgotten() {
        let t0 = Instant::now();
        let mut q = PeerQueue::new();
        let a = addr(1, 1);
        q.add(dht_peer(a, 1));
        let mut now = t0;
        for delay in BACKOFF {
            assert_eq!(q.shift().unwrap().addr, a);
            q.dial_failed(&a, now);
            assert!(q.shift().is_none(), "waits for the backoff");
            assert_eq!(q.poll_timeout(), Some(now + delay));
            assert!(!q.handle_timeout(now + delay - Duration::from_millis(1)));
            now += delay;
            assert!(q.handle_timeout(now));
        }
        // Tried and never proven: priority 0, still dialled.
        assert_eq!(q.shift().unwrap().addr, a);
        q.dial_failed(&a, now);
        assert_eq!(q.poll_timeout(), Some(now + FORGET_UNRESPONSIVE));
        q.handle_timeout(now + FORGET_UNRESPONSIVE);
        assert!(q.is_empty(), "forgotten after the last retry");
        assert_eq!(
            q.add(dht_peer(a, 1)),
            Added::Queued,
            "rediscovery starts over"
        );
    }

    #[test]
    fn a_same_nat_peer_gets_one_dial() {
        let now = Instant::now();
        let mut q = PeerQueue::new();
        let a = SocketAddrV4::new([10, 0, 0, 200].into(), 5);
        q.add(dht_peer(a, 1));
        q.shift().unwrap();
        q.dial_failed(&a, now);
        assert_eq!(q.poll_timeout(), Some(now + FORGET_UNRESPONSIVE));
    }

    #[test]
    fn a_closed_connection_is_redialled_after_a_second() {
        let now = Instant::now();
        let mut q = PeerQueue::new();
        // Even a same-NAT peer: connecting reset its retries.
        let a = SocketAddrV4::new([10, 0, 0, 200].into(), 5);
        q.add(dht_peer(a, 1));
        q.shift().unwrap();
        q.connected(&a);
        q.disconnected(&a, now);
        assert_eq!(q.poll_timeout(), Some(now + BACKOFF[0]));
        assert!(q.handle_timeout(now + BACKOFF[0]));
        assert_eq!(q.shift().unwrap().addr, a);
    }

    #[test]
    fn explicit_peers_are_retried_forever() {
        let mut now = Instant::now();
        let mut q = PeerQueue::new();
        let a = addr(9, 9);
        q.add_explicit(a);
        for _ in 0..10 {
            assert_eq!(q.shift().unwrap().addr, a);
            q.dial_failed(&a, now);
            let next = q.poll_timeout().unwrap();
            assert!(next - now <= EXPLICIT_BACKOFF[3]);
            now = next;
            assert!(q.handle_timeout(now));
        }
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_banned_duplicate_waits_for_the_survivor() {
        let now = Instant::now();
        let mut q = PeerQueue::new();
        let a = addr(1, 1);
        q.add(dht_peer(a, 1));
        q.shift().unwrap();
        q.connected(&a);
        q.ban(&a);
        q.disconnected(&a, now);
        assert!(q.poll_timeout().is_none());
        assert!(q.shift().is_none());
        q.unban(&a);
        assert_eq!(q.shift().unwrap().addr, a);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = PeerQueue::new();
        for i in 0..MAX_ENTRIES as u32 {
            let a = SocketAddrV4::new((0x0a00_0000 + i).into(), 1);
            assert_eq!(q.add(dht_peer(a, 1)), Added::Queued);
        }
        assert_eq!(q.add(dht_peer(addr(1, 2), 1)), Added::Full);
    }
}
