//! Kademlia routing table shaped like k-bucket@5.1.0 (spec swarm.md 1.8, 1.9).
//!
//! Bucket `i` holds contacts whose id shares exactly `i` leading bits with ours, except the
//! last bucket, which holds every contact sharing at least that many; only that last bucket
//! splits, as in k-bucket where only the bucket covering the local id splits. Pure data: the
//! node decides what to do with a full bucket (ping the stale contacts).

use std::net::SocketAddrV4;

use super::wire::NodeEntry;

/// Contacts per bucket.
pub const K: usize = 20;
/// How many least-recently-seen contacts a full bucket offers for replacement.
pub const REPLACE_CANDIDATES: usize = 3;

/// A routing-table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: [u8; 32],
    pub addr: SocketAddrV4,
    /// The last round-trip token this node gave us.
    pub token: Option<Vec<u8>>,
    /// Maintenance tick of the last message from it.
    pub tick: u64,
    /// Our address as this node last reported it (6 bytes).
    pub to: Option<[u8; 6]>,
    /// Recency order: larger = seen more recently.
    pub seen: u64,
}

/// Result of [`RoutingTable::add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    Refreshed,
    /// The bucket is full and cannot split: these are its least-recently-seen ids.
    Full(Vec<[u8; 32]>),
    /// Our own id.
    Ignored,
}

/// The routing table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: [u8; 32],
    buckets: Vec<Vec<Contact>>,
    seen: u64,
}

/// Number of leading bits `a` and `b` share (256 when equal).
pub fn common_prefix_len(a: &[u8; 32], b: &[u8; 32]) -> usize {
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let d = x ^ y;
        if d != 0 {
            return i * 8 + d.leading_zeros() as usize;
        }
    }
    256
}

/// XOR distance, compared big-endian.
pub fn distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

impl RoutingTable {
    pub fn new(local: [u8; 32]) -> Self {
        RoutingTable {
            local,
            buckets: vec![Vec::new()],
            seen: 0,
        }
    }

    pub fn local_id(&self) -> &[u8; 32] {
        &self.local
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket_index(&self, id: &[u8; 32]) -> usize {
        common_prefix_len(&self.local, id).min(self.buckets.len() - 1)
    }

    pub fn get(&self, id: &[u8; 32]) -> Option<&Contact> {
        self.buckets[self.bucket_index(id)]
            .iter()
            .find(|c| &c.id == id)
    }

    /// Add or refresh a contact (moving it to the most-recently-seen end). `token` and `to`
    /// keep their old value when `None`.
    pub fn add(
        &mut self,
        id: [u8; 32],
        addr: SocketAddrV4,
        token: Option<Vec<u8>>,
        to: Option<[u8; 6]>,
        tick: u64,
    ) -> AddOutcome {
        if id == self.local {
            return AddOutcome::Ignored;
        }
        self.seen += 1;
        let seen = self.seen;
        loop {
            let idx = self.bucket_index(&id);
            let last = self.buckets.len() - 1;
            let bucket = &mut self.buckets[idx];
            if let Some(pos) = bucket.iter().position(|c| c.id == id) {
                let mut c = bucket.remove(pos);
                c.addr = addr;
                if token.is_some() {
                    c.token = token;
                }
                if to.is_some() {
                    c.to = to;
                }
                c.tick = tick;
                c.seen = seen;
                bucket.push(c);
                return AddOutcome::Refreshed;
            }
            if bucket.len() < K {
                bucket.push(Contact {
                    id,
                    addr,
                    token,
                    tick,
                    to,
                    seen,
                });
                return AddOutcome::Added;
            }
            if idx == last && last < 255 {
                let local = self.local;
                let (stay, go): (Vec<Contact>, Vec<Contact>) = std::mem::take(bucket)
                    .into_iter()
                    .partition(|c| common_prefix_len(&local, &c.id) == last);
                self.buckets[last] = stay;
                self.buckets.push(go);
                continue;
            }
            return AddOutcome::Full(
                bucket
                    .iter()
                    .take(REPLACE_CANDIDATES)
                    .map(|c| c.id)
                    .collect(),
            );
        }
    }

    /// Mark a contact as seen in `tick` without other changes (a kept replacement candidate).
    pub fn touch(&mut self, id: &[u8; 32], tick: u64) {
        self.seen += 1;
        let seen = self.seen;
        let idx = self.bucket_index(id);
        let bucket = &mut self.buckets[idx];
        if let Some(pos) = bucket.iter().position(|c| &c.id == id) {
            let mut c = bucket.remove(pos);
            c.tick = tick;
            c.seen = seen;
            bucket.push(c);
        }
    }

    pub fn remove(&mut self, id: &[u8; 32]) -> Option<Contact> {
        let idx = self.bucket_index(id);
        let bucket = &mut self.buckets[idx];
        let pos = bucket.iter().position(|c| &c.id == id)?;
        Some(bucket.remove(pos))
    }

    /// Remove whichever contact has this address (a failed request to a node we knew).
    pub fn remove_addr(&mut self, addr: SocketAddrV4) -> Option<Contact> {
        let id = self.iter().find(|c| c.addr == addr)?.id;
        self.remove(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flatten()
    }

    /// The `n` contacts closest to `target` by exact XOR distance. (k-bucket orders by a
    /// float of the distance, so its order among near-ties can differ; the set is the same
    /// whenever the distances differ within their top 6 bytes.)
    pub fn closest(&self, target: &[u8; 32], n: usize) -> Vec<NodeEntry> {
        let mut all: Vec<(&Contact, [u8; 32])> =
            self.iter().map(|c| (c, distance(&c.id, target))).collect();
        all.sort_by_key(|a| a.1);
        all.into_iter()
            .take(n)
            .map(|(c, _)| NodeEntry {
                id: c.id,
                addr: c.addr,
            })
            .collect()
    }

    /// Contacts from least to most recently seen.
    pub fn oldest_first(&self) -> Vec<&Contact> {
        let mut v: Vec<&Contact> = self.iter().collect();
        v.sort_by_key(|c| c.seen);
        v
    }

    /// Our public address as the 10 most recently seen contacts report it (spec 1.9): the
    /// most common ip:port if ≥3 agree and <3 disagree, else the same test on the IP alone
    /// (port 0), else `None`.
    pub fn remote_address(&self) -> Option<([u8; 4], u16)> {
        if let Some(t) = self.tally(false) {
            return Some(t);
        }
        self.tally(true).map(|(ip, _)| (ip, 0))
    }

    /// True when ≥3 recent contacts agree on our ip:port (and <3 disagree).
    pub fn holepunchable(&self) -> bool {
        self.tally(false).is_some()
    }

    fn tally(&self, only_ip: bool) -> Option<([u8; 4], u16)> {
        let mut recent: Vec<&Contact> = self.iter().filter(|c| c.to.is_some()).collect();
        recent.sort_by_key(|c| std::cmp::Reverse(c.seen));
        let mut sums: Vec<([u8; 6], usize)> = Vec::new();
        let mut good = 0;
        let mut result = None;
        let mut cnt = 0;
        for c in recent.into_iter().take(10) {
            let Some(to) = c.to else { continue };
            let mut key = to;
            if only_ip {
                key[4] = 0;
                key[5] = 0;
            }
            let hits = match sums.iter_mut().find(|(k, _)| *k == key) {
                Some((_, h)) => {
                    *h += 1;
                    *h
                }
                None => {
                    sums.push((key, 1));
                    1
                }
            };
            if hits > good {
                good = hits;
                result = Some(to);
            }
            cnt += 1;
        }
        let bad = cnt - good;
        let to = result?;
        (bad < 3 && good >= 3).then(|| {
            (
                [to[0], to[1], to[2], to[3]],
                u16::from_be_bytes([to[4], to[5]]),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_with_prefix(bits: &[u8], fill: u8) -> [u8; 32] {
        let mut id = [fill; 32];
        id[..bits.len()].copy_from_slice(bits);
        id
    }

    fn addr(p: u16) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, 1].into(), p)
    }

    #[test]
    fn cpl() {
        assert_eq!(common_prefix_len(&[0; 32], &[0; 32]), 256);
        assert_eq!(common_prefix_len(&[0; 32], &id_with_prefix(&[0x80], 0)), 0);
        assert_eq!(
            common_prefix_len(&[0; 32], &id_with_prefix(&[0, 0x01], 0)),
            15
        );
    }

    #[test]
    fn far_bucket_fills_and_reports_oldest() {
        let mut t = RoutingTable::new([0; 32]);
        // 25 ids with the top bit set: all in bucket 0, which cannot split after the first
        // split moves them out of the local bucket.
        let mut outcomes = Vec::new();
        for i in 0..25u8 {
            outcomes.push(t.add(
                id_with_prefix(&[0x80, i], 0),
                addr(1000 + u16::from(i)),
                None,
                None,
                0,
            ));
        }
        assert!(outcomes[..20].iter().all(|o| *o == AddOutcome::Added));
        assert_eq!(
            outcomes[20],
            AddOutcome::Full(vec![
                id_with_prefix(&[0x80, 0], 0),
                id_with_prefix(&[0x80, 1], 0),
                id_with_prefix(&[0x80, 2], 0)
            ])
        );
        assert_eq!(t.len(), 20);
        // Re-adding moves to the recent end.
        assert_eq!(
            t.add(id_with_prefix(&[0x80, 0], 0), addr(1), None, None, 1),
            AddOutcome::Refreshed
        );
        match t.add(id_with_prefix(&[0x80, 99], 0), addr(2), None, None, 1) {
            AddOutcome::Full(ids) => assert_eq!(ids[0], id_with_prefix(&[0x80, 1], 0)),
            o => panic!("{o:?}"),
        }
        // Near ids still fit: the local bucket split.
        assert_eq!(
            t.add(id_with_prefix(&[0x01], 0), addr(3), None, None, 0),
            AddOutcome::Added
        );
        assert_eq!(t.add([0; 32], addr(4), None, None, 0), AddOutcome::Ignored);
    }

    #[test]
    fn many_random_ids_stay_bounded_and_closest_is_sorted() {
        let mut t = RoutingTable::new(rand::random());
        for i in 0..2000u16 {
            t.add(rand::random(), addr(i + 1), None, None, 0);
        }
        assert!(t.len() <= K * 256);
        let target: [u8; 32] = rand::random();
        let c = t.closest(&target, 20);
        assert_eq!(c.len(), 20);
        for w in c.windows(2) {
            assert!(distance(&w[0].id, &target) < distance(&w[1].id, &target));
        }
        let best = t.iter().map(|c| distance(&c.id, &target)).min().unwrap();
        assert_eq!(distance(&c[0].id, &target), best);
    }

    #[test]
    fn remote_address_tally() {
        let mut t = RoutingTable::new([0; 32]);
        let me = [1, 2, 3, 4, 0x10, 0x00];
        for i in 0..3u8 {
            t.add(id_with_prefix(&[0x80 | i], 1), addr(1), None, Some(me), 0);
        }
        assert_eq!(t.remote_address(), Some(([1, 2, 3, 4], 0x1000)));
        assert!(t.holepunchable());
        // Three disagreeing ports: ip:port fails, the IP alone still agrees.
        for i in 0..3u8 {
            let mut other = me;
            other[5] = i + 1;
            t.add(
                id_with_prefix(&[0x40 | i], 1),
                addr(1),
                None,
                Some(other),
                0,
            );
        }
        assert!(!t.holepunchable());
        assert_eq!(t.remote_address(), Some(([1, 2, 3, 4], 0)));
        let empty = RoutingTable::new([0; 32]);
        assert_eq!(empty.remote_address(), None);
    }
}
