//! Replication of one feed with one remote peer (hypercore@9.12.0 lib/replicate.js),
//! as a state machine: messages and the clock in, messages out.
//!
//! The peer never owns the feed: every call borrows the feed and the feed-level
//! [`Wants`], so all peers of a feed share one view of what is held, wanted and in
//! flight. Nothing here touches a socket or a timer.

use std::time::{Duration, Instant};

use crate::core::{CoreError, Feed, Proof, RemoteTree};
use crate::protocol::messages::{Data, Have, Message, Request, Status, Unhave, Want};
use crate::protocol::rle;

use super::ranges::RangeSet;
use super::wants::Wants;

/// Wants are sent for regions of this many blocks (the reference's only size).
pub const WANT_REGION: u64 = 1024 * 1024;
/// Requests in flight per peer for selections (hypercore 9's default).
pub const MAX_REQUESTS: usize = 16;
/// Requests in flight per peer when readers are waiting (`urgentRequests`).
pub const URGENT_REQUESTS: usize = MAX_REQUESTS + 16;
/// Wants in flight per peer.
const MAX_INFLIGHT_WANTS: u32 = 16;
/// Most runs we track of what a remote holds before calling it a flood.
pub const MAX_REMOTE_RUNS: usize = 1 << 20;
/// Largest decoded `Have` bitfield we accept (8M blocks).
const MAX_HAVE_BITFIELD: usize = 1 << 20;

/// Why replication with a peer must stop. Each is a disconnect with this reason.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("peer sent data that failed verification: {0}")]
    Verify(#[source] CoreError),
    #[error("local storage failed: {0}")]
    Storage(#[source] CoreError),
    #[error("peer sent a malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("peer floods: {0}")]
    Flood(&'static str),
    #[error("request for block {index} timed out after {ms} ms")]
    RequestTimeout { index: u64, ms: u64 },
}

/// What a handled message changed, so the caller can wake readers and tell other peers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Blocks newly stored (verified) from this peer.
    pub stored: Vec<u64>,
    /// The feed's length grew to this.
    pub new_length: Option<u64>,
    /// The remote's length or holdings changed (new data may be fetchable).
    pub remote_updated: bool,
    /// The peer closed the channel.
    pub closed: bool,
    /// Extension messages received: (id in the remote's list, payload). Map them
    /// with [`PeerFeed::remote_extensions`].
    pub extensions: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    index: u64,
    hash: bool,
    sent: Instant,
}

/// Counters for `info`, progress output and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    pub uploaded_blocks: u64,
    pub uploaded_bytes: u64,
    pub downloaded_blocks: u64,
    pub downloaded_bytes: u64,
}

/// One feed replicated with one peer.
#[derive(Debug)]
pub struct PeerFeed {
    /// Blocks the remote says it holds.
    remote_haves: RangeSet,
    /// The remote's length, as far as we know.
    pub remote_length: u64,
    remote_opened: bool,
    /// The remote sent a Want: it wants to hear about our blocks.
    remote_want: bool,
    remote_uploading: bool,
    remote_downloading: bool,
    remote_ack: bool,
    /// Extension names the remote last announced (its ids index this list).
    remote_extensions: Vec<String>,
    /// Version of our extension list last announced in `Options` (0 = none sent).
    pub options_version: u64,
    uploading: bool,
    downloading: bool,
    /// Want regions already sent.
    wants_sent: std::collections::BTreeSet<u64>,
    inflight_wants: u32,
    inflight: Vec<Inflight>,
    remote_tree: RemoteTree,
    /// Our length the remote has been told about (for live announcements).
    announced_length: u64,
    request_timeout: Duration,
    pub stats: PeerStats,
}

impl PeerFeed {
    /// A peer for `feed`. Writable feeds upload only; others also download.
    pub fn new(feed: &Feed, request_timeout: Duration) -> Self {
        PeerFeed {
            remote_haves: RangeSet::new(),
            remote_length: 0,
            remote_opened: false,
            remote_want: false,
            remote_uploading: true,
            remote_downloading: true,
            remote_ack: false,
            remote_extensions: Vec::new(),
            options_version: 0,
            uploading: true,
            downloading: !feed.writable(),
            wants_sent: Default::default(),
            inflight_wants: 0,
            inflight: Vec::new(),
            remote_tree: RemoteTree::default(),
            announced_length: feed.len(),
            request_timeout,
            stats: PeerStats::default(),
        }
    }

    pub fn remote_opened(&self) -> bool {
        self.remote_opened
    }

    /// The remote asked to hear about our blocks (it sent a Want) and opened.
    pub fn wants_announcements(&self) -> bool {
        self.remote_want && self.remote_opened
    }

    /// Extension names the remote last announced, in its order.
    pub fn remote_extensions(&self) -> &[String] {
        &self.remote_extensions
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether the remote claims block `index`.
    pub fn remote_has(&self, index: u64) -> bool {
        self.remote_haves.contains(index)
    }

    /// The remote opened the channel: from now on it accepts our messages.
    pub fn on_open(&mut self, feed: &Feed, wants: &mut Wants, out: &mut Vec<Message>) {
        if self.remote_opened {
            return;
        }
        self.remote_opened = true;
        if !self.uploading || !self.downloading {
            out.push(Message::Status(Status {
                uploading: Some(self.uploading),
                downloading: Some(self.downloading),
            }));
        }
        self.send_wants(feed, wants, out);
    }

    /// Handle one message on this channel.
    pub fn on_message(
        &mut self,
        msg: Message,
        feed: &mut Feed,
        wants: &mut Wants,
        now: Instant,
        out: &mut Vec<Message>,
    ) -> Result<Effects, ReplicateError> {
        let mut fx = Effects::default();
        match msg {
            Message::Options(mut o) => {
                self.remote_ack = o.ack.unwrap_or(false);
                o.extensions
                    .truncate(super::extension::MAX_REMOTE_EXTENSIONS);
                self.remote_extensions = o.extensions;
            }
            Message::Status(s) => self.on_status(s, wants),
            Message::Have(h) => {
                fx.remote_updated = self.on_have(h, feed)?;
            }
            Message::Unhave(u) => {
                let start = u.start;
                let len = u.length.unwrap_or(1);
                if start == 0 && len >= self.remote_length {
                    self.remote_haves.clear();
                    self.remote_length = 0;
                } else {
                    self.remote_haves.remove(start..start.saturating_add(len));
                }
            }
            Message::Want(w) => self.on_want(w, feed, out),
            Message::Request(r) => self.on_request(r, feed, out)?,
            Message::Data(d) => self.on_data(d, feed, wants, out, &mut fx)?,
            Message::Close(_) => {
                self.release_all(wants);
                fx.closed = true;
            }
            // Unwant and Cancel are ignored by the reference too; Open is the stream's.
            Message::Unwant(_) | Message::Cancel(_) | Message::Open(_) => {}
            Message::Extension(e) => fx.extensions.push((e.id, e.payload)),
        }
        if !fx.closed {
            self.update(feed, wants, now, out);
        }
        Ok(fx)
    }

    fn on_status(&mut self, s: Status, wants: &mut Wants) {
        self.remote_uploading = s.uploading.unwrap_or(false);
        self.remote_downloading = s.downloading.unwrap_or(false);
        if !self.remote_uploading {
            self.release_all(wants);
            self.inflight_wants = 0;
            self.wants_sent.clear();
        }
    }

    /// Returns whether the remote's holdings or length changed.
    fn on_have(&mut self, h: Have, feed: &Feed) -> Result<bool, ReplicateError> {
        let before_len = self.remote_length;
        let before_runs = self.remote_haves.runs();
        let length = h.length.unwrap_or(1);
        if length == WANT_REGION && self.inflight_wants > 0 {
            self.inflight_wants -= 1;
        }
        if let Some(bits) = h.bitfield.as_deref() {
            let buf =
                rle::decode(bits, MAX_HAVE_BITFIELD).map_err(|e| ReplicateError::Malformed {
                    what: "Have bitfield",
                    reason: e.to_string(),
                })?;
            let mut i = 0usize;
            let total = buf.len() * 8;
            while i < total {
                // Find runs of set bits, MSB first.
                if buf[i / 8] == 0 && i.is_multiple_of(8) {
                    i += 8;
                    continue;
                }
                if buf[i / 8] & (0x80 >> (i % 8)) == 0 {
                    i += 1;
                    continue;
                }
                let s = i;
                while i < total && buf[i / 8] & (0x80 >> (i % 8)) != 0 {
                    i += 1;
                }
                let a = h.start.saturating_add(s as u64);
                let b = h.start.saturating_add(i as u64);
                self.remote_haves.insert(a..b);
            }
            let last = self.remote_haves.end();
            if last > self.remote_length {
                self.remote_length = last;
            }
        } else {
            let end = h.start.saturating_add(length);
            self.remote_haves.insert(h.start..end);
            if end > self.remote_length {
                self.remote_length = end;
            }
        }
        if self.remote_haves.runs() > MAX_REMOTE_RUNS {
            return Err(ReplicateError::Flood(
                "Have messages fragment the remote bitfield",
            ));
        }
        let _ = feed;
        Ok(self.remote_length != before_len || self.remote_haves.runs() != before_runs)
    }

    fn on_want(&mut self, w: Want, feed: &Feed, out: &mut Vec<Message>) {
        if !self.uploading {
            return;
        }
        let length = w.length.unwrap_or(0);
        if w.start & 8191 != 0 || length & 8191 != 0 {
            return;
        }
        let len = feed.len();
        if !self.remote_want && len > 0 && feed.has(len - 1) {
            out.push(Message::Have(Have {
                start: len - 1,
                length: None,
                bitfield: None,
                ack: None,
            }));
        }
        self.remote_want = true;
        self.announced_length = self.announced_length.max(len);
        let clip = if w.start >= len {
            0
        } else {
            length.min(len - w.start)
        };
        let bits = feed.bitfield().data_bytes(w.start, clip);
        out.push(Message::Have(Have {
            start: w.start,
            length: Some(length),
            bitfield: Some(rle::encode(&bits)),
            ack: None,
        }));
    }

    fn on_request(
        &mut self,
        r: Request,
        feed: &mut Feed,
        out: &mut Vec<Message>,
    ) -> Result<(), ReplicateError> {
        if !self.uploading {
            return Ok(());
        }
        let mut index = r.index;
        let mut digest = r.nodes.unwrap_or(0);
        let hash = r.hash.unwrap_or(false);
        if let Some(bytes) = r.bytes.filter(|&b| b > 0) {
            if let Ok((i, _)) = feed.seek(bytes) {
                index = i;
                digest = 0;
            }
        }
        // Only prove what we hold: the reference kills the stream on an unprovable
        // request; not replying lets the requester time out and ask someone else.
        let proof = match feed.proof(index, digest, hash, &mut self.remote_tree) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ReplicateError::Storage(e)),
        };
        let value = if hash {
            None
        } else if feed.has(index) {
            match feed.get(index) {
                Ok(v) => Some(v),
                Err(CoreError::BlockMissing { .. }) => return Ok(()),
                Err(e) => return Err(ReplicateError::Storage(e)),
            }
        } else {
            return Ok(());
        };
        if let Some(v) = &value {
            self.stats.uploaded_blocks += 1;
            self.stats.uploaded_bytes += v.len() as u64;
        }
        if index + 1 > self.remote_length {
            self.remote_length = index + 1;
        }
        let mut data = Data::from_proof(&proof, value);
        data.index = index;
        out.push(Message::Data(data));
        Ok(())
    }

    fn on_data(
        &mut self,
        d: Data,
        feed: &mut Feed,
        wants: &mut Wants,
        out: &mut Vec<Message>,
        fx: &mut Effects,
    ) -> Result<(), ReplicateError> {
        let requested = self.inflight.iter().position(|r| r.index == d.index);
        let Some(pos) = requested else {
            // Unrequested data is ignored; tell the peer if we do not hold it.
            if d.value.is_some() && !feed.has(d.index) {
                out.push(Message::Unhave(Unhave {
                    start: d.index,
                    length: None,
                }));
            }
            return Ok(());
        };
        let proof = proof_from_wire(&d)?;
        let value = d.value.as_deref();
        let outcome = feed.verify_and_put(value, &proof).map_err(|e| match e {
            CoreError::Io { .. } => ReplicateError::Storage(e),
            other => ReplicateError::Verify(other),
        })?;
        self.inflight.swap_remove(pos);
        wants.release(d.index);
        if let Some(v) = value {
            self.remote_haves.insert(d.index..d.index + 1);
            if outcome.stored {
                self.stats.downloaded_blocks += 1;
                self.stats.downloaded_bytes += v.len() as u64;
                fx.stored.push(d.index);
            }
            if self.remote_ack {
                out.push(Message::Have(Have {
                    start: d.index,
                    length: Some(1),
                    bitfield: None,
                    ack: Some(true),
                }));
            }
        }
        if let Some(l) = outcome.new_length {
            fx.new_length = Some(l);
        }
        Ok(())
    }

    /// Tell the remote about blocks we now hold (appended or downloaded), if it asked
    /// to hear about them.
    pub fn announce(&mut self, start: u64, length: u64, out: &mut Vec<Message>) {
        if !self.remote_want || !self.remote_opened || length == 0 {
            return;
        }
        out.push(Message::Have(Have {
            start,
            length: if length > 1 { Some(length) } else { None },
            bitfield: None,
            ack: None,
        }));
    }

    /// Announce appends since the last call (live mode): compares the feed's length
    /// with what the remote was told.
    pub fn announce_length(&mut self, feed: &Feed, out: &mut Vec<Message>) {
        let len = feed.len();
        if len > self.announced_length && self.remote_want && self.remote_opened {
            let start = self.announced_length;
            self.announced_length = len;
            self.announce(start, len - start, out);
        }
    }

    /// Schedule requests for what is wanted and what the remote holds.
    pub fn update(&mut self, feed: &Feed, wants: &mut Wants, now: Instant, out: &mut Vec<Message>) {
        if !self.downloading || !self.remote_uploading || !self.remote_opened {
            return;
        }
        // Urgent: blocks readers wait for.
        let waiting: Vec<u64> = wants.waiting().collect();
        for i in waiting {
            if self.inflight.len() >= URGENT_REQUESTS {
                break;
            }
            if !feed.has(i) && self.remote_haves.contains(i) && wants.reserve(i) {
                self.request(i, feed, now, out);
            }
        }
        // Learn a newer length by fetching the newest block.
        if wants.track_length && self.remote_length > feed.len() {
            let i = self.remote_length - 1;
            if self.inflight.len() < URGENT_REQUESTS
                && !feed.has(i)
                && self.remote_haves.contains(i)
                && wants.reserve(i)
            {
                self.request(i, feed, now, out);
            }
        }
        // Selections, lowest missing blocks first.
        wants.advance_low_water(feed);
        let remote_length = self.remote_length;
        let count = wants.selections().len();
        for k in 0..count {
            if self.inflight.len() >= MAX_REQUESTS {
                break;
            }
            let sel = wants.selections()[k];
            let end = sel.end.unwrap_or(u64::MAX).min(remote_length);
            let mut i = sel.low_water.max(sel.start);
            while self.inflight.len() < MAX_REQUESTS {
                let Some(next) = self.remote_haves.next_in(i, end) else {
                    break;
                };
                i = next + 1;
                if feed.has(next) || !wants.reserve(next) {
                    continue;
                }
                self.request(next, feed, now, out);
            }
        }
        self.send_wants(feed, wants, out);
    }

    fn request(&mut self, index: u64, feed: &Feed, now: Instant, out: &mut Vec<Message>) {
        self.inflight.push(Inflight {
            index,
            hash: false,
            sent: now,
        });
        out.push(Message::Request(Request {
            index,
            bytes: Some(0),
            hash: Some(false),
            nodes: Some(feed.digest(index)),
        }));
    }

    fn send_wants(&mut self, feed: &Feed, wants: &Wants, out: &mut Vec<Message>) {
        if !self.downloading || !self.remote_opened || !self.remote_uploading {
            return;
        }
        let mut regions: Vec<u64> = wants.waiting().map(|i| i / WANT_REGION).collect();
        for s in wants.selections() {
            let mut r = s.start / WANT_REGION;
            let end = s
                .end
                .unwrap_or(u64::MAX)
                .min(self.remote_length.max(feed.len()));
            while r * WANT_REGION < end && regions.len() < 64 {
                regions.push(r);
                r += 1;
            }
        }
        regions.push(0);
        for r in regions {
            if self.inflight_wants >= MAX_INFLIGHT_WANTS {
                return;
            }
            if self.wants_sent.insert(r) {
                self.inflight_wants += 1;
                out.push(Message::Want(Want {
                    start: r * WANT_REGION,
                    length: Some(WANT_REGION),
                }));
            }
        }
    }

    /// Expire requests older than the timeout: release them so another peer can serve
    /// them, and report the stall (the caller disconnects this peer).
    pub fn tick(&mut self, wants: &mut Wants, now: Instant) -> Result<(), ReplicateError> {
        if let Some(r) = self
            .inflight
            .iter()
            .find(|r| now.saturating_duration_since(r.sent) > self.request_timeout)
            .copied()
        {
            self.release_all(wants);
            return Err(ReplicateError::RequestTimeout {
                index: r.index,
                ms: self.request_timeout.as_millis() as u64,
            });
        }
        Ok(())
    }

    /// Release every reservation this peer holds (on close, error or stall).
    pub fn release_all(&mut self, wants: &mut Wants) {
        for r in self.inflight.drain(..) {
            let _ = r.hash;
            wants.release(r.index);
        }
    }
}

/// Convert a wire `Data` into a core [`Proof`], checking every length.
pub fn proof_from_wire(d: &Data) -> Result<Proof, ReplicateError> {
    d.to_proof().map_err(|e| ReplicateError::Malformed {
        what: "Data",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::KeyPair;
    use crate::protocol::messages::DataNode;
    use proptest::prelude::*;

    fn t() -> Instant {
        Instant::now()
    }

    /// A writer with `n` blocks and an empty reader of the same feed.
    fn setup(n: u64) -> (Feed, Feed) {
        let kp = KeyPair::generate();
        let mut w = Feed::in_memory(kp.clone());
        for i in 0..n {
            w.append(format!("block {i}").as_bytes()).unwrap();
        }
        let r = Feed::in_memory(KeyPair::from_public(&kp.public_bytes()).unwrap());
        (w, r)
    }

    /// A reader peer that has been told the writer holds `0..n` and asked for `index`.
    fn requesting(r: &Feed, wants: &mut Wants, n: u64, index: u64) -> PeerFeed {
        let mut p = PeerFeed::new(r, Duration::from_secs(5));
        let mut out = Vec::new();
        p.on_open(r, wants, &mut out);
        p.remote_haves.insert(0..n);
        p.remote_length = n;
        wants.wait(index);
        p.update(r, wants, t(), &mut out);
        assert!(out
            .iter()
            .any(|m| matches!(m, Message::Request(q) if q.index == index)));
        p
    }

    fn data_for(w: &mut Feed, r: &Feed, index: u64) -> Data {
        let proof = w
            .proof(index, r.digest(index), false, &mut RemoteTree::default())
            .unwrap()
            .unwrap();
        Data::from_proof(&proof, Some(w.get(index).unwrap()))
    }

    #[test]
    fn tampered_block_is_rejected_and_nothing_is_stored() {
        let (mut w, mut r) = setup(8);
        let mut wants = Wants::new();
        let mut p = requesting(&r, &mut wants, 8, 3);
        let mut d = data_for(&mut w, &r, 3);
        d.value = Some(b"forged".to_vec());
        let err = p
            .on_message(Message::Data(d), &mut r, &mut wants, t(), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(err, ReplicateError::Verify(_)), "{err}");
        assert!(!r.has(3));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn forged_signature_and_bad_lengths_are_rejected() {
        let (mut w, mut r) = setup(8);
        let mut wants = Wants::new();
        let mut p = requesting(&r, &mut wants, 8, 5);
        let mut d = data_for(&mut w, &r, 5);
        if let Some(s) = d.signature.as_mut() {
            s[0] ^= 1;
        }
        let err = p
            .on_message(
                Message::Data(d.clone()),
                &mut r,
                &mut wants,
                t(),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(err, ReplicateError::Verify(_)), "{err}");
        d.signature = Some(vec![0; 10]);
        let err = p
            .on_message(Message::Data(d), &mut r, &mut wants, t(), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(err, ReplicateError::Malformed { .. }), "{err}");
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn unrequested_data_is_ignored_with_unhave() {
        let (mut w, mut r) = setup(4);
        let mut wants = Wants::new();
        let mut p = PeerFeed::new(&r, Duration::from_secs(5));
        let d = data_for(&mut w, &r, 1);
        let mut out = Vec::new();
        let fx = p
            .on_message(Message::Data(d), &mut r, &mut wants, t(), &mut out)
            .unwrap();
        assert!(fx.stored.is_empty());
        assert!(!r.has(1));
        assert!(out
            .iter()
            .any(|m| matches!(m, Message::Unhave(u) if u.start == 1)));
    }

    #[test]
    fn genuine_block_is_stored_and_acked_when_asked() {
        let (mut w, mut r) = setup(8);
        let mut wants = Wants::new();
        let mut p = requesting(&r, &mut wants, 8, 6);
        let mut out = Vec::new();
        p.on_message(
            Message::Options(crate::protocol::messages::Options {
                extensions: vec![],
                ack: Some(true),
            }),
            &mut r,
            &mut wants,
            t(),
            &mut out,
        )
        .unwrap();
        let d = data_for(&mut w, &r, 6);
        let fx = p
            .on_message(Message::Data(d), &mut r, &mut wants, t(), &mut out)
            .unwrap();
        assert_eq!(fx.stored, vec![6]);
        assert_eq!(fx.new_length, Some(8));
        assert_eq!(r.get(6).unwrap(), b"block 6");
        assert!(out
            .iter()
            .any(|m| matches!(m, Message::Have(h) if h.start == 6 && h.ack == Some(true))));
        assert!(!wants.is_reserved(6));
    }

    #[test]
    fn requests_are_bounded_per_peer() {
        let (_w, r) = setup(0);
        let mut wants = Wants::new();
        let mut p = PeerFeed::new(&r, Duration::from_secs(5));
        let mut out = Vec::new();
        p.on_open(&r, &mut wants, &mut out);
        p.remote_haves.insert(0..1000);
        p.remote_length = 1000;
        wants.select(0, Some(1000));
        p.update(&r, &mut wants, t(), &mut out);
        let requests = out
            .iter()
            .filter(|m| matches!(m, Message::Request(_)))
            .count();
        assert_eq!(requests, MAX_REQUESTS);
        assert_eq!(p.inflight(), MAX_REQUESTS);
    }

    #[test]
    fn stalled_requests_are_released_for_other_peers() {
        let (_w, r) = setup(0);
        let mut wants = Wants::new();
        let mut p = requesting(&r, &mut wants, 10, 2);
        assert!(wants.is_reserved(2));
        let later = t() + Duration::from_secs(6);
        let err = p.tick(&mut wants, later).unwrap_err();
        assert!(matches!(
            err,
            ReplicateError::RequestTimeout { index: 2, .. }
        ));
        assert!(!wants.is_reserved(2));
    }

    #[test]
    fn huge_have_ranges_cost_nothing() {
        let (_w, mut r) = setup(0);
        let mut wants = Wants::new();
        let mut p = PeerFeed::new(&r, Duration::from_secs(5));
        let mut out = Vec::new();
        p.on_message(
            Message::Have(Have {
                start: 0,
                length: Some(1 << 60),
                bitfield: None,
                ack: None,
            }),
            &mut r,
            &mut wants,
            t(),
            &mut out,
        )
        .unwrap();
        assert_eq!(p.remote_length, 1 << 60);
        assert_eq!(p.remote_haves.runs(), 1);
    }

    #[test]
    fn rle_bomb_in_have_is_an_error() {
        let (_w, mut r) = setup(0);
        let mut wants = Wants::new();
        let mut p = PeerFeed::new(&r, Duration::from_secs(5));
        // One run token claiming 2^40 bytes of 0xff.
        let mut bits = Vec::new();
        crate::protocol::varint::encode((1u64 << 42) | 3, &mut bits);
        let err = p
            .on_message(
                Message::Have(Have {
                    start: 0,
                    length: Some(1 << 20),
                    bitfield: Some(bits),
                    ack: None,
                }),
                &mut r,
                &mut wants,
                t(),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(err, ReplicateError::Malformed { .. }), "{err}");
    }

    #[test]
    fn want_is_answered_like_the_reference() {
        // The 7-block feed of the vectors answers Want{0, 1048576} with Have{start: 6}
        // and Have{0, 1048576, bitfield 02fe}.
        let (mut w, _r) = setup(7);
        let mut wants = Wants::new();
        let mut p = PeerFeed::new(&w, Duration::from_secs(5));
        let mut out = Vec::new();
        p.on_open(&w, &mut wants, &mut out);
        assert_eq!(
            out,
            vec![Message::Status(crate::protocol::messages::Status {
                uploading: Some(true),
                downloading: Some(false)
            })]
        );
        out.clear();
        p.on_message(
            Message::Want(Want {
                start: 0,
                length: Some(WANT_REGION),
            }),
            &mut w,
            &mut wants,
            t(),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                Message::Have(Have {
                    start: 6,
                    length: None,
                    bitfield: None,
                    ack: None
                }),
                Message::Have(Have {
                    start: 0,
                    length: Some(WANT_REGION),
                    bitfield: Some(vec![0x02, 0xfe]),
                    ack: None
                }),
            ]
        );
        // A misaligned Want is ignored, as the reference does.
        out.clear();
        p.on_message(
            Message::Want(Want {
                start: 5,
                length: Some(3),
            }),
            &mut w,
            &mut wants,
            t(),
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let small = 0u64..64;
        prop_oneof![
            (small.clone(), proptest::option::of(0u64..1 << 40)).prop_map(|(s, l)| Message::Have(
                Have {
                    start: s,
                    length: l,
                    bitfield: None,
                    ack: None
                }
            )),
            (small.clone(), proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(s, b)| {
                Message::Have(Have {
                    start: s,
                    length: Some(1 << 20),
                    bitfield: Some(b),
                    ack: None,
                })
            }),
            (small.clone(), proptest::option::of(0u64..1 << 40)).prop_map(
                |(s, l)| Message::Unhave(Unhave {
                    start: s,
                    length: l
                })
            ),
            (small.clone(), any::<u64>()).prop_map(|(s, l)| Message::Want(Want {
                start: s * 8192,
                length: Some(l)
            })),
            (
                small.clone(),
                proptest::option::of(any::<u64>()),
                any::<bool>(),
                any::<u64>()
            )
                .prop_map(|(i, b, h, n)| Message::Request(Request {
                    index: i,
                    bytes: b,
                    hash: Some(h),
                    nodes: Some(n)
                })),
            (
                small.clone(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                proptest::collection::vec(
                    (
                        0u64..200,
                        proptest::collection::vec(any::<u8>(), 0..40),
                        any::<u64>()
                    ),
                    0..6
                ),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
            )
                .prop_map(|(i, v, nodes, sig)| Message::Data(Data {
                    index: i,
                    value: v,
                    nodes: nodes
                        .into_iter()
                        .map(|(index, hash, size)| DataNode { index, hash, size })
                        .collect(),
                    signature: sig
                })),
            (any::<bool>(), any::<bool>()).prop_map(|(u, d)| Message::Status(Status {
                uploading: Some(u),
                downloading: Some(d)
            })),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever a peer sends, the state machine answers or errors, never panics,
        /// and the reader's feed only ever holds blocks that verify.
        #[test]
        fn hostile_message_sequences_never_panic(msgs in proptest::collection::vec(arb_message(), 0..40)) {
            let (mut w, mut r) = setup(16);
            let mut wants = Wants::new();
            wants.select(0, None);
            let mut reader = PeerFeed::new(&r, Duration::from_secs(5));
            let mut writer = PeerFeed::new(&w, Duration::from_secs(5));
            let mut out = Vec::new();
            reader.on_open(&r, &mut wants, &mut out);
            writer.on_open(&w, &mut Wants::new(), &mut out);
            for m in msgs {
                let _ = reader.on_message(m.clone(), &mut r, &mut wants, t(), &mut out);
                let _ = writer.on_message(m, &mut w, &mut Wants::new(), t(), &mut out);
                out.clear();
            }
            for i in 0..16 {
                if r.has(i) {
                    prop_assert_eq!(r.get(i).unwrap(), w.get(i).unwrap());
                }
            }
        }
    }
}
