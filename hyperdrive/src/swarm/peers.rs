//! The @hyperswarm/dht `peers` command: the announcement store (record-cache semantics) and
//! the request handler (spec swarm.md 2.2). Sans-IO: the caller passes the clock.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use rand::seq::IteratorRandom;

use super::wire::{encode_peer, PeersInput, PeersOutput};

/// Default record lifetime (record-cache `maxAge`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(12 * 60);
/// Default cap on stored records (fresh + stale), as the reference.
pub const DEFAULT_MAX_RECORDS: usize = 65_536;
/// Most local peers in one reply.
const MAX_LOCAL_REPLY: usize = 32;
/// Most peers (remote + local) in one reply.
const MAX_REPLY: usize = 128;

#[derive(Default, Debug)]
struct Generation {
    sets: HashMap<String, HashSet<Vec<u8>>>,
    size: usize,
}

impl Generation {
    fn add(&mut self, name: &str, rec: &[u8]) -> bool {
        let added = self
            .sets
            .entry(name.to_owned())
            .or_default()
            .insert(rec.to_vec());
        if added {
            self.size += 1;
        }
        added
    }

    fn remove(&mut self, name: &str, rec: &[u8]) {
        if let Some(set) = self.sets.get_mut(name) {
            if set.remove(rec) {
                self.size -= 1;
            }
            if set.is_empty() {
                self.sets.remove(name);
            }
        }
    }
}

/// Records in two generations: an announce puts a record in `fresh`; every ⌈⅔·max_age⌉ the
/// generations rotate and the old `stale` is dropped, so a record lives 0.66–1.33 × max_age
/// after its last announce. Overflowing `max_records` rotates early, as record-cache does.
#[derive(Debug)]
pub struct RecordStore {
    fresh: Generation,
    stale: Generation,
    max_records: usize,
    period: Duration,
    next_rotate: Instant,
}

impl RecordStore {
    pub fn new(max_age: Duration, max_records: usize, now: Instant) -> Self {
        let period = (max_age * 2).div_f64(3.0).max(Duration::from_millis(1));
        RecordStore {
            fresh: Generation::default(),
            stale: Generation::default(),
            max_records,
            period,
            next_rotate: now + period,
        }
    }

    pub fn len(&self) -> usize {
        self.fresh.size + self.stale.size
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn add(&mut self, name: &str, rec: &[u8]) {
        self.stale.remove(name, rec);
        if self.fresh.add(name, rec) && self.fresh.size > self.max_records {
            self.rotate();
        }
    }

    pub fn remove(&mut self, name: &str, rec: &[u8]) {
        self.fresh.remove(name, rec);
        self.stale.remove(name, rec);
    }

    /// A uniform random sample of at most `n` records of set `name`.
    pub fn sample(&self, name: &str, n: usize) -> Vec<Vec<u8>> {
        let a = self.fresh.sets.get(name).into_iter().flatten();
        let b = self.stale.sets.get(name).into_iter().flatten();
        a.chain(b)
            .cloned()
            .choose_multiple(&mut rand::thread_rng(), n)
    }

    fn rotate(&mut self) {
        self.stale = std::mem::take(&mut self.fresh);
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_rotate
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while now >= self.next_rotate {
            self.rotate();
            self.next_rotate += self.period;
        }
    }
}

/// What the handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeersReply {
    /// Success with this (possibly empty) encoded `PeersOutput`, or no value (UPDATE).
    Ok(Option<Vec<u8>>),
    /// Error reply text.
    Error(&'static str),
    /// Undecodable input: no reply at all, as the reference.
    Drop,
}

/// Handle a `peers` QUERY (`is_update == false`) or an UPDATE whose token was already checked.
/// A missing value is treated like an empty one (the reference crashes on it, Q1).
pub fn handle_peers(
    store: &mut RecordStore,
    is_update: bool,
    source: SocketAddrV4,
    target: &[u8],
    value: Option<&[u8]>,
) -> PeersReply {
    let Ok(input) = PeersInput::decode(value.unwrap_or_default()) else {
        return PeersReply::Drop;
    };
    let port = match input.port {
        Some(p) if p != 0 => p,
        _ => u32::from(source.port()),
    };
    let Ok(port) = u16::try_from(port) else {
        return PeersReply::Error("Invalid port");
    };
    if port == 0 {
        return PeersReply::Error("Invalid port");
    }
    let remote_record = encode_peer(SocketAddrV4::new(*source.ip(), port));
    let remote_name = hex::encode(target);
    // The reference slices whatever bytes were sent; require a well-formed 6-byte peer.
    let local = input
        .local_address
        .as_deref()
        .filter(|l| l.len() == 6)
        .map(|l| {
            (
                format!("{remote_name}@local.{}", hex::encode(&l[..2])),
                l[2..].to_vec(),
            )
        });

    if !is_update {
        let mut local_list = match &local {
            Some((name, suffix)) => {
                let mut v = store.sample(name, MAX_LOCAL_REPLY);
                v.retain(|r| r != suffix);
                v
            }
            None => Vec::new(),
        };
        let mut remote = store.sample(&remote_name, MAX_REPLY - local_list.len());
        if let Some(pos) = remote.iter().position(|r| r[..] == remote_record[..]) {
            remote.swap_remove(pos);
        }
        local_list.truncate(MAX_LOCAL_REPLY);
        let out = PeersOutput {
            peers: (!remote.is_empty()).then(|| remote.concat()),
            local_peers: (!local_list.is_empty()).then(|| local_list.concat()),
        };
        return PeersReply::Ok(Some(out.encode()));
    }
    if input.unannounce == Some(true) {
        store.remove(&remote_name, &remote_record);
        if let Some((name, suffix)) = &local {
            store.remove(name, suffix);
        }
    } else {
        store.add(&remote_name, &remote_record);
        if let Some((name, suffix)) = &local {
            store.add(name, suffix);
        }
    }
    PeersReply::Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::wire::decode_peer_list;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn announce_lookup_unannounce() {
        let now = Instant::now();
        let mut s = RecordStore::new(DEFAULT_MAX_AGE, 100, now);
        let t = [7u8; 32];
        let ann = PeersInput {
            port: Some(0),
            ..Default::default()
        }
        .encode();
        assert_eq!(
            handle_peers(&mut s, true, a("127.0.0.1:4000"), &t, Some(&ann)),
            PeersReply::Ok(None)
        );
        let ann2 = PeersInput {
            port: Some(5000),
            ..Default::default()
        }
        .encode();
        assert_eq!(
            handle_peers(&mut s, true, a("127.0.0.2:4001"), &t, Some(&ann2)),
            PeersReply::Ok(None)
        );
        // Idempotent.
        handle_peers(&mut s, true, a("127.0.0.1:4000"), &t, Some(&ann));
        assert_eq!(s.len(), 2);

        let PeersReply::Ok(Some(out)) =
            handle_peers(&mut s, false, a("127.0.0.9:1"), &t, Some(&[]))
        else {
            panic!()
        };
        let out = PeersOutput::decode(&out).unwrap();
        let mut peers = decode_peer_list(&out.peers.unwrap()).unwrap();
        peers.sort();
        assert_eq!(peers, vec![a("127.0.0.1:4000"), a("127.0.0.2:5000")]);
        assert_eq!(out.local_peers, None);

        // The requester's own record is left out.
        let PeersReply::Ok(Some(out)) = handle_peers(&mut s, false, a("127.0.0.1:4000"), &t, None)
        else {
            panic!()
        };
        let peers = decode_peer_list(&PeersOutput::decode(&out).unwrap().peers.unwrap()).unwrap();
        assert_eq!(peers, vec![a("127.0.0.2:5000")]);

        let un = PeersInput {
            port: Some(0),
            unannounce: Some(true),
            ..Default::default()
        }
        .encode();
        handle_peers(&mut s, true, a("127.0.0.1:4000"), &t, Some(&un));
        assert_eq!(s.len(), 1);

        // Nothing known: a zero-length value.
        assert_eq!(
            handle_peers(&mut s, false, a("127.0.0.1:1"), &[8; 32], Some(&[])),
            PeersReply::Ok(Some(vec![]))
        );
    }

    #[test]
    fn invalid_port_and_garbage() {
        let now = Instant::now();
        let mut s = RecordStore::new(DEFAULT_MAX_AGE, 100, now);
        let bad = PeersInput {
            port: Some(70000),
            ..Default::default()
        }
        .encode();
        assert_eq!(
            handle_peers(&mut s, true, a("127.0.0.1:1"), &[1; 32], Some(&bad)),
            PeersReply::Error("Invalid port")
        );
        assert_eq!(
            handle_peers(&mut s, true, a("127.0.0.1:1"), &[1; 32], Some(&[0xff])),
            PeersReply::Drop
        );
        assert!(s.is_empty());
    }

    #[test]
    fn local_records() {
        let now = Instant::now();
        let mut s = RecordStore::new(DEFAULT_MAX_AGE, 100, now);
        let t = [3u8; 32];
        let ann = PeersInput {
            port: Some(0),
            local_address: Some(vec![192, 168, 1, 10, 0x10, 0x92]),
            ..Default::default()
        }
        .encode();
        handle_peers(&mut s, true, a("127.0.0.1:4000"), &t, Some(&ann));
        let q = PeersInput {
            local_address: Some(vec![192, 168, 7, 7, 0, 1]),
            ..Default::default()
        }
        .encode();
        let PeersReply::Ok(Some(out)) = handle_peers(&mut s, false, a("127.0.0.5:9"), &t, Some(&q))
        else {
            panic!()
        };
        let out = PeersOutput::decode(&out).unwrap();
        assert_eq!(out.local_peers, Some(vec![1, 10, 0x10, 0x92]));
    }

    #[test]
    fn records_expire_after_two_rotations_and_are_bounded() {
        let now = Instant::now();
        let max_age = Duration::from_secs(12);
        let mut s = RecordStore::new(max_age, 3, now);
        s.add("t", &[1]);
        s.handle_timeout(now + Duration::from_secs(8));
        assert_eq!(s.sample("t", 10).len(), 1);
        s.handle_timeout(now + Duration::from_secs(16));
        assert!(s.is_empty());
        for i in 0..10u8 {
            s.add("t", &[i]);
        }
        assert!(s.len() <= 2 * (3 + 1));
    }
}
