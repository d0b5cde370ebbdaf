//! One hypercore-protocol 8 connection as a sans-IO state machine
//! (hypercore-protocol@8.0.7 + simple-hypercore-protocol@2.1.2): the Noise handshake,
//! then XSalsa20-encrypted frames multiplexed over channels, one per feed.
//!
//! Bytes and the clock go in ([`Protocol::receive`], [`Protocol::tick`]); events
//! ([`Protocol::poll_event`]) and encrypted bytes ([`Protocol::take_outgoing`]) come
//! out. Nothing here touches a socket or a timer, so every rule (capabilities, the
//! order Node needs, keep-alives, timeouts) is tested with plain byte vectors.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::capability;
use super::cipher::Transport;
use super::frame::{encode_frame, encode_keep_alive, FrameDecoder, FrameEvent};
use super::handshake::{Handshake, HandshakeResult, StaticKeypair};
use super::messages::{Close, Message, Open};
use super::ProtocolError;
use crate::core::crypto::discovery_key;

/// A channel as this side numbers it (the id we send with; Node starts at 1 too).
pub type ChannelId = u64;

/// Connection settings; defaults are the reference's.
#[derive(Debug, Clone)]
pub struct ProtocolOptions {
    /// No byte received for this long destroys the stream (Node: 20 s).
    pub timeout: Duration,
    /// Send a keep-alive after this long without sending (Node: 10 s).
    pub keep_alive: Duration,
    /// XOR the transport with XSalsa20 (Node's default; both sides must agree).
    pub encrypted: bool,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        ProtocolOptions {
            timeout: Duration::from_secs(20),
            keep_alive: Duration::from_secs(10),
            encrypted: true,
        }
    }
}

/// What the connection tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed; the remote's static Noise key.
    Handshake { remote_public_key: [u8; 32] },
    /// The remote opened a feed this side has not opened. Answer with
    /// [`Protocol::open`] (if the key is known) or [`Protocol::refuse`].
    DiscoveryKey { discovery_key: [u8; 32] },
    /// Both sides opened `channel` for feed `key`: messages may flow now.
    Opened { channel: ChannelId, key: [u8; 32] },
    /// A message on an open channel.
    Message {
        channel: ChannelId,
        message: Message,
    },
    /// The remote closed (or refused) the channel.
    Closed {
        channel: Option<ChannelId>,
        discovery_key: [u8; 32],
    },
}

#[derive(Debug)]
struct Channel {
    discovery_key: [u8; 32],
    key: Option<[u8; 32]>,
    local_id: Option<ChannelId>,
    remote_id: Option<u64>,
    remote_capability: Option<Vec<u8>>,
    /// `Opened` was emitted.
    announced: bool,
    closed_locally: bool,
}

enum State {
    Handshaking(Box<Handshake>),
    Transport {
        cipher: Box<Transport>,
        result: Box<HandshakeResult>,
    },
    Failed,
}

/// The connection state machine.
pub struct Protocol {
    state: State,
    opts: ProtocolOptions,
    decoder: FrameDecoder,
    /// Encrypted bytes waiting for the socket.
    out: Vec<u8>,
    /// Frames queued before the handshake completed (sent in order after it).
    queued: Vec<(ChannelId, Message)>,
    /// Opens queued before the handshake (their capability needs the split keys).
    channels: Vec<Channel>,
    by_local: HashMap<ChannelId, usize>,
    by_remote: HashMap<u64, usize>,
    next_local_id: ChannelId,
    events: VecDeque<Event>,
    last_recv: Instant,
    last_send: Instant,
}

/// Most channels one connection may have (both sides together). A corestore with
/// thousands of drives is far below this; a peer opening more is flooding.
pub const MAX_CHANNELS: usize = 65536;

impl Protocol {
    /// A connection; the initiator's first handshake message is ready at once.
    pub fn new(
        initiator: bool,
        keypair: &StaticKeypair,
        opts: ProtocolOptions,
        now: Instant,
    ) -> Result<Self, ProtocolError> {
        let hs = Handshake::new(initiator, keypair, super::handshake::random_nonce())?;
        Ok(Self::with_handshake(hs, opts, now))
    }

    /// A connection around a prepared handshake (tests pin its keys and nonce).
    pub fn with_handshake(mut hs: Handshake, opts: ProtocolOptions, now: Instant) -> Self {
        let out = hs.take_outgoing();
        Protocol {
            state: State::Handshaking(Box::new(hs)),
            opts,
            decoder: FrameDecoder::new(),
            out,
            queued: Vec::new(),
            channels: Vec::new(),
            by_local: HashMap::new(),
            by_remote: HashMap::new(),
            next_local_id: 1,
            events: VecDeque::new(),
            last_recv: now,
            last_send: now,
        }
    }

    pub fn is_handshake_done(&self) -> bool {
        matches!(self.state, State::Transport { .. })
    }

    /// The remote's static Noise key, once the handshake is done.
    pub fn remote_public_key(&self) -> Option<[u8; 32]> {
        match &self.state {
            State::Transport { result, .. } => Some(result.remote_static_key),
            _ => None,
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to write to the socket, in order.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes to write to the socket, in order; `spare` (cleared) becomes the new
    /// output buffer, so a caller that recycles written buffers spares the
    /// allocation and the regrowth of a fresh one for every flush.
    pub fn take_outgoing_into(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        std::mem::replace(&mut self.out, spare)
    }

    /// Bytes waiting to be written.
    pub fn outgoing_len(&self) -> usize {
        self.out.len()
    }

    /// Feed bytes read from the socket. They are decrypted in place (hence `&mut`).
    /// An error means the stream must be destroyed.
    pub fn receive(&mut self, data: &mut [u8], now: Instant) -> Result<(), ProtocolError> {
        self.last_recv = now;
        let res = self.receive_inner(data, now);
        if res.is_err() {
            self.state = State::Failed;
        }
        res
    }

    fn receive_inner(&mut self, data: &mut [u8], now: Instant) -> Result<(), ProtocolError> {
        match &mut self.state {
            State::Failed => Err(ProtocolError::Malformed {
                what: "stream",
                reason: "the stream already failed".into(),
            }),
            State::Handshaking(hs) => {
                let done = hs.push(data)?;
                let more = hs.take_outgoing();
                self.out.extend_from_slice(&more);
                if let Some(done) = done {
                    let cipher = Box::new(Transport::new(&done.result));
                    let remote_public_key = done.result.remote_static_key;
                    self.state = State::Transport {
                        cipher,
                        result: Box::new(done.result),
                    };
                    self.events
                        .push_back(Event::Handshake { remote_public_key });
                    self.flush_queued(now)?;
                    let mut overflow = done.overflow;
                    if !overflow.is_empty() {
                        self.receive_transport(&mut overflow)?;
                    }
                }
                Ok(())
            }
            State::Transport { .. } => self.receive_transport(data),
        }
    }

    fn receive_transport(&mut self, data: &mut [u8]) -> Result<(), ProtocolError> {
        if let State::Transport { cipher, .. } = &mut self.state {
            if self.opts.encrypted {
                cipher.decrypt(data);
            }
        }
        let mut rest: &[u8] = data;
        loop {
            let n = self.decoder.push(rest);
            rest = &rest[n..];
            while let Some(ev) = self.decoder.next_frame()? {
                if let FrameEvent::Frame(f) = ev {
                    if let Some(msg) = f.message()? {
                        self.on_message(f.channel, msg)?;
                    }
                }
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    fn on_message(&mut self, remote_id: u64, msg: Message) -> Result<(), ProtocolError> {
        match msg {
            Message::Open(open) => self.on_open(remote_id, open),
            Message::Close(close) => {
                self.on_close(remote_id, close);
                Ok(())
            }
            // Stream-level Options/Extension (channel 0) carry stream extensions,
            // which this implementation does not register; dropping them is what the
            // reference does for unknown extensions.
            message => {
                let Some(&idx) = self.by_remote.get(&remote_id) else {
                    return Ok(()); // channel the remote never opened: dropped
                };
                let ch = &self.channels[idx];
                match ch.local_id {
                    Some(channel) if ch.announced && !ch.closed_locally => {
                        self.events.push_back(Event::Message { channel, message });
                    }
                    _ => {} // not opened locally yet: the reference drops these too
                }
                Ok(())
            }
        }
    }

    fn on_open(&mut self, remote_id: u64, open: Open) -> Result<(), ProtocolError> {
        let dk: [u8; 32] =
            open.discovery_key
                .as_slice()
                .try_into()
                .map_err(|_| ProtocolError::Malformed {
                    what: "Open",
                    reason: format!("discovery key of {} bytes", open.discovery_key.len()),
                })?;
        if let Some(&old) = self.by_remote.get(&remote_id) {
            if self.channels[old].discovery_key != dk {
                return Err(ProtocolError::Malformed {
                    what: "Open",
                    reason: format!("remote channel {remote_id} reopened for another feed"),
                });
            }
            return Ok(());
        }
        let idx = match self.find_dk(&dk) {
            Some(i) => i,
            None => {
                if self.channels.len() >= MAX_CHANNELS {
                    return Err(ProtocolError::Malformed {
                        what: "Open",
                        reason: "too many channels".into(),
                    });
                }
                self.channels.push(Channel {
                    discovery_key: dk,
                    key: None,
                    local_id: None,
                    remote_id: None,
                    remote_capability: None,
                    announced: false,
                    closed_locally: false,
                });
                self.channels.len() - 1
            }
        };
        self.by_remote.insert(remote_id, idx);
        let ch = &mut self.channels[idx];
        ch.remote_id = Some(remote_id);
        ch.remote_capability = open.capability;
        match (ch.local_id, ch.key) {
            (Some(local), Some(key)) => {
                if !self.capability_ok(idx, &key) {
                    return Err(ProtocolError::BadCapability {
                        discovery_key: hex::encode(dk),
                    });
                }
                let ch = &mut self.channels[idx];
                ch.announced = true;
                self.events.push_back(Event::Opened {
                    channel: local,
                    key,
                });
            }
            _ => self
                .events
                .push_back(Event::DiscoveryKey { discovery_key: dk }),
        }
        Ok(())
    }

    fn on_close(&mut self, remote_id: u64, close: Close) {
        let idx = self.by_remote.get(&remote_id).copied().or_else(|| {
            let dk: [u8; 32] = close.discovery_key.as_deref()?.try_into().ok()?;
            self.find_dk(&dk)
        });
        let Some(idx) = idx else { return };
        let (local, dk, closed_locally) = {
            let ch = &self.channels[idx];
            (ch.local_id, ch.discovery_key, ch.closed_locally)
        };
        if let Some(local) = local {
            if !closed_locally {
                self.send_now(
                    local,
                    &Message::Close(Close {
                        discovery_key: None,
                    }),
                );
            }
        }
        self.remove_channel(idx);
        self.events.push_back(Event::Closed {
            channel: local,
            discovery_key: dk,
        });
    }

    fn remove_channel(&mut self, idx: usize) {
        let ch = self.channels.swap_remove(idx);
        if let Some(l) = ch.local_id {
            self.by_local.remove(&l);
        }
        if let Some(r) = ch.remote_id {
            self.by_remote.remove(&r);
        }
        // Fix the indices of the channel that moved into `idx`.
        if idx < self.channels.len() {
            let moved = &self.channels[idx];
            if let Some(l) = moved.local_id {
                self.by_local.insert(l, idx);
            }
            if let Some(r) = moved.remote_id {
                self.by_remote.insert(r, idx);
            }
        }
    }

    fn find_dk(&self, dk: &[u8; 32]) -> Option<usize> {
        self.channels.iter().position(|c| &c.discovery_key == dk)
    }

    fn capability_ok(&self, idx: usize, key: &[u8; 32]) -> bool {
        match &self.state {
            State::Transport { result, .. } => capability::verify_remote_capability(
                &result.split_tx,
                &result.split_rx,
                key,
                self.channels[idx].remote_capability.as_deref(),
            ),
            _ => false,
        }
    }

    /// Open (or accept) the channel for feed `key`. Returns its local id, or `None`
    /// when the remote already opened it with a capability that does not match the
    /// key: then the channel is refused with `Close{discoveryKey}` as Node does.
    pub fn open(&mut self, key: [u8; 32], now: Instant) -> Option<ChannelId> {
        let dk = discovery_key(&key);
        let idx = match self.find_dk(&dk) {
            Some(i) => {
                if let Some(l) = self.channels[i].local_id {
                    return Some(l);
                }
                i
            }
            None => {
                self.channels.push(Channel {
                    discovery_key: dk,
                    key: None,
                    local_id: None,
                    remote_id: None,
                    remote_capability: None,
                    announced: false,
                    closed_locally: false,
                });
                self.channels.len() - 1
            }
        };
        let remote_opened = self.channels[idx].remote_id.is_some();
        if remote_opened && self.is_handshake_done() && !self.capability_ok(idx, &key) {
            self.remove_channel(idx);
            self.refuse(dk, now);
            return None;
        }
        let local = self.alloc_id();
        let ch = &mut self.channels[idx];
        ch.key = Some(key);
        ch.local_id = Some(local);
        self.by_local.insert(local, idx);
        self.send_open(local, key, now);
        if remote_opened {
            self.channels[idx].announced = true;
            self.events.push_back(Event::Opened {
                channel: local,
                key,
            });
        }
        Some(local)
    }

    /// Refuse a feed the remote opened that we do not hold.
    pub fn refuse(&mut self, discovery_key: [u8; 32], now: Instant) {
        let id = self.alloc_id();
        if let Some(idx) = self.find_dk(&discovery_key) {
            if self.channels[idx].local_id.is_none() {
                self.remove_channel(idx);
            }
        }
        self.send(
            id,
            Message::Close(Close {
                discovery_key: Some(discovery_key.to_vec()),
            }),
            now,
        );
    }

    /// Close our side of `channel`.
    pub fn close(&mut self, channel: ChannelId, now: Instant) {
        let Some(&idx) = self.by_local.get(&channel) else {
            return;
        };
        if self.channels[idx].closed_locally {
            return;
        }
        self.channels[idx].closed_locally = true;
        self.send(
            channel,
            Message::Close(Close {
                discovery_key: None,
            }),
            now,
        );
        if self.channels[idx].remote_id.is_none() {
            self.remove_channel(idx);
        }
    }

    /// Whether `channel` is open on both sides.
    pub fn is_open(&self, channel: ChannelId) -> bool {
        self.by_local
            .get(&channel)
            .is_some_and(|&i| self.channels[i].announced && !self.channels[i].closed_locally)
    }

    fn alloc_id(&mut self) -> ChannelId {
        let id = self.next_local_id;
        self.next_local_id += 1;
        id
    }

    fn send_open(&mut self, local: ChannelId, key: [u8; 32], now: Instant) {
        let dk = discovery_key(&key);
        // The capability needs the split keys; before the handshake the Open waits in
        // the queue and gets its capability when flushed.
        let capability = match &self.state {
            State::Transport { result, .. } => Some(result.capability(&key).to_vec()),
            _ => None,
        };
        self.send(
            local,
            Message::Open(Open {
                discovery_key: dk.to_vec(),
                capability,
            }),
            now,
        );
    }

    /// Send `message` on `channel` (queued until the handshake completes).
    pub fn send(&mut self, channel: ChannelId, message: Message, now: Instant) {
        if !self.is_handshake_done() {
            self.queued.push((channel, message));
            return;
        }
        self.last_send = now;
        self.send_now(channel, &message);
    }

    fn send_now(&mut self, channel: ChannelId, message: &Message) {
        let State::Transport { cipher, .. } = &mut self.state else {
            return;
        };
        let start = self.out.len();
        if encode_frame(channel, message, &mut self.out).is_err() {
            // Only an oversized message fails to encode; nothing was appended that
            // the peer would misread. Callers bound block sizes before this.
            self.out.truncate(start);
            return;
        }
        if self.opts.encrypted {
            cipher.encrypt(&mut self.out[start..]);
        }
    }

    fn flush_queued(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let queued = std::mem::take(&mut self.queued);
        for (channel, message) in queued {
            let message = match message {
                Message::Open(mut open) => {
                    // Fill in the capability now that the split keys exist.
                    if let Some(&idx) = self.by_local.get(&channel) {
                        if let (Some(key), State::Transport { result, .. }) =
                            (self.channels[idx].key, &self.state)
                        {
                            open.capability = Some(result.capability(&key).to_vec());
                        }
                    }
                    Message::Open(open)
                }
                m => m,
            };
            self.send(channel, message, now);
        }
        // A remote Open that arrived with the last handshake bytes is checked in
        // `on_open`; one that arrived before we opened locally is checked in `open`.
        Ok(())
    }

    /// Drive timers: keep-alives and the idle timeout. An error means the stream
    /// must be destroyed.
    pub fn tick(&mut self, now: Instant) -> Result<(), ProtocolError> {
        if now.saturating_duration_since(self.last_recv) >= self.opts.timeout {
            self.state = State::Failed;
            return Err(ProtocolError::Timeout {
                ms: self.opts.timeout.as_millis() as u64,
            });
        }
        if self.is_handshake_done()
            && now.saturating_duration_since(self.last_send) >= self.opts.keep_alive
        {
            if let State::Transport { cipher, .. } = &mut self.state {
                let start = self.out.len();
                encode_keep_alive(&mut self.out);
                if self.opts.encrypted {
                    cipher.encrypt(&mut self.out[start..]);
                }
                self.last_send = now;
            }
        }
        Ok(())
    }

    /// When the next [`Protocol::tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        let timeout = self.last_recv + self.opts.timeout;
        if self.is_handshake_done() {
            timeout.min(self.last_send + self.opts.keep_alive)
        } else {
            timeout
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::test_vectors::{core_json, hex32, hex_str, nonce24};
    use crate::protocol::messages::{Status, Want};

    fn now() -> Instant {
        Instant::now()
    }

    fn pair() -> (Protocol, Protocol) {
        let t = now();
        let a = Protocol::new(
            true,
            &StaticKeypair::generate(),
            ProtocolOptions::default(),
            t,
        )
        .unwrap();
        let b = Protocol::new(
            false,
            &StaticKeypair::generate(),
            ProtocolOptions::default(),
            t,
        )
        .unwrap();
        (a, b)
    }

    /// Move bytes both ways until neither side has anything to send.
    fn pump(a: &mut Protocol, b: &mut Protocol) -> Result<(), ProtocolError> {
        for _ in 0..100 {
            let mut ab = a.take_outgoing();
            let mut ba = b.take_outgoing();
            if ab.is_empty() && ba.is_empty() {
                return Ok(());
            }
            if !ab.is_empty() {
                b.receive(&mut ab, now())?;
            }
            if !ba.is_empty() {
                a.receive(&mut ba, now())?;
            }
        }
        panic!("pump did not settle");
    }

    fn events(p: &mut Protocol) -> Vec<Event> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    #[test]
    fn open_both_sides_and_exchange() {
        let (mut a, mut b) = pair();
        let key = [7u8; 32];
        let dk = discovery_key(&key);
        let ca = a.open(key, now()).unwrap();
        assert_eq!(ca, 1, "channel ids start at 1 like Node's");
        pump(&mut a, &mut b).unwrap();
        let eb = events(&mut b);
        assert!(matches!(eb[0], Event::Handshake { .. }));
        assert_eq!(eb[1], Event::DiscoveryKey { discovery_key: dk });
        let cb = b.open(key, now()).unwrap();
        assert_eq!(events(&mut b), vec![Event::Opened { channel: cb, key }]);
        pump(&mut a, &mut b).unwrap();
        let ea = events(&mut a);
        assert!(ea.contains(&Event::Opened { channel: ca, key }));
        let want = Message::Want(Want {
            start: 0,
            length: Some(1048576),
        });
        a.send(ca, want.clone(), now());
        pump(&mut a, &mut b).unwrap();
        assert_eq!(
            events(&mut b),
            vec![Event::Message {
                channel: cb,
                message: want
            }]
        );
    }

    #[test]
    fn messages_before_local_open_are_dropped() {
        let (mut a, mut b) = pair();
        let key = [9u8; 32];
        let ca = a.open(key, now()).unwrap();
        pump(&mut a, &mut b).unwrap();
        // b has not opened yet: a's Status must not be delivered later either.
        a.send(
            ca,
            Message::Status(Status {
                uploading: Some(true),
                downloading: Some(false),
            }),
            now(),
        );
        pump(&mut a, &mut b).unwrap();
        let eb = events(&mut b);
        assert!(!eb.iter().any(|e| matches!(e, Event::Message { .. })));
        b.open(key, now()).unwrap();
        pump(&mut a, &mut b).unwrap();
        assert!(!events(&mut b)
            .iter()
            .any(|e| matches!(e, Event::Message { .. })));
    }

    #[test]
    fn refuse_closes_the_remote_channel() {
        let (mut a, mut b) = pair();
        let key = [3u8; 32];
        let dk = discovery_key(&key);
        let ca = a.open(key, now()).unwrap();
        pump(&mut a, &mut b).unwrap();
        events(&mut b);
        b.refuse(dk, now());
        pump(&mut a, &mut b).unwrap();
        let ea = events(&mut a);
        assert!(ea.contains(&Event::Closed {
            channel: Some(ca),
            discovery_key: dk
        }));
        assert!(!a.is_open(ca));
    }

    #[test]
    fn wrong_capability_after_local_open_destroys_the_stream() {
        let (mut a, mut b) = pair();
        let key = [5u8; 32];
        let dk = discovery_key(&key);
        a.open(key, now()).unwrap();
        pump(&mut a, &mut b).unwrap();
        // b knows only the discovery key: it forges an Open with a made-up capability.
        b.send(
            1,
            Message::Open(Open {
                discovery_key: dk.to_vec(),
                capability: Some(vec![0u8; 32]),
            }),
            now(),
        );
        let mut bytes = b.take_outgoing();
        let err = a.receive(&mut bytes, now()).unwrap_err();
        assert!(matches!(err, ProtocolError::BadCapability { .. }), "{err}");
    }

    #[test]
    fn wrong_capability_before_local_open_is_refused() {
        let (mut a, mut b) = pair();
        pump(&mut a, &mut b).unwrap();
        let key = [6u8; 32];
        let dk = discovery_key(&key);
        b.send(
            1,
            Message::Open(Open {
                discovery_key: dk.to_vec(),
                capability: None,
            }),
            now(),
        );
        pump(&mut a, &mut b).unwrap();
        assert!(events(&mut a).contains(&Event::DiscoveryKey { discovery_key: dk }));
        assert_eq!(
            a.open(key, now()),
            None,
            "no capability: the channel is refused"
        );
        pump(&mut a, &mut b).unwrap();
        assert!(!a.is_open(1));
    }

    #[test]
    fn keep_alive_and_timeout() {
        let t0 = now();
        let mut a = Protocol::new(
            true,
            &StaticKeypair::generate(),
            ProtocolOptions::default(),
            t0,
        )
        .unwrap();
        let mut b = Protocol::new(
            false,
            &StaticKeypair::generate(),
            ProtocolOptions::default(),
            t0,
        )
        .unwrap();
        pump(&mut a, &mut b).unwrap();
        a.tick(t0 + Duration::from_secs(11)).unwrap();
        let mut ka = a.take_outgoing();
        assert_eq!(ka.len(), 1, "one encrypted keep-alive byte");
        b.receive(&mut ka, t0 + Duration::from_secs(11)).unwrap();
        assert!(events(&mut b)
            .iter()
            .all(|e| matches!(e, Event::Handshake { .. })));
        let err = a.tick(t0 + Duration::from_secs(40)).unwrap_err();
        assert!(matches!(err, ProtocolError::Timeout { .. }));
    }

    #[test]
    fn garbage_after_handshake_is_an_error_not_a_panic() {
        let (mut a, mut b) = pair();
        pump(&mut a, &mut b).unwrap();
        // Encrypted with a's keystream, so b decrypts it to 0xff bytes: a frame length
        // varint that never ends (with raw junk the outcome depended on the random keys).
        let mut junk = vec![0xffu8; 64];
        let State::Transport { cipher, .. } = &mut a.state else {
            panic!("handshake done")
        };
        cipher.encrypt(&mut junk);
        assert!(b.receive(&mut junk, now()).is_err());
        let mut more = vec![1u8; 4];
        assert!(
            b.receive(&mut more, now()).is_err(),
            "a failed stream stays failed"
        );
    }

    /// The reference session: handshake messages and both Opens, byte for byte, from
    /// each side; then the reader's Want.
    #[test]
    fn session_vector_bytes() {
        let s = &core_json()["session"];
        let side = |name: &str, initiator: bool| {
            let v = &s[name];
            let kp = StaticKeypair::from_seed(&hex32(&v["static"]["seed"]));
            let eph: [u8; 32] = hex32(&v["ephemeral"]["secretKey"]);
            let hs =
                Handshake::with_fixed_ephemeral(initiator, &kp, nonce24(&v["streamNonce"]), &eph)
                    .unwrap();
            Protocol::with_handshake(hs, ProtocolOptions::default(), now())
        };
        let mut i = side("initiator", true);
        let mut r = side("responder", false);
        let key = hex32(&s["feedKey"]);
        let wire: Vec<(String, Vec<u8>)> = s["wire"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["from"].as_str().unwrap().to_string(),
                    hex_str(&w["bytes"]),
                )
            })
            .collect();
        // Writer opens at once (queued until the handshake is done).
        i.open(key, now()).unwrap();
        let m1 = i.take_outgoing();
        assert_eq!(m1, wire[0].1);
        r.receive(&mut m1.clone(), now()).unwrap();
        let m2 = r.take_outgoing();
        assert_eq!(m2, wire[1].1);
        i.receive(&mut m2.clone(), now()).unwrap();
        let out = i.take_outgoing();
        // Message 3, then the encrypted Open.
        assert_eq!(out, [wire[2].1.clone(), wire[3].1.clone()].concat());
        r.receive(&mut out.clone(), now()).unwrap();
        assert!(events(&mut r).contains(&Event::DiscoveryKey {
            discovery_key: discovery_key(&key)
        }));
        let cr = r.open(key, now()).unwrap();
        assert_eq!(r.take_outgoing(), wire[4].1, "responder's encrypted Open");
        r.send(
            cr,
            Message::Want(Want {
                start: 0,
                length: Some(1048576),
            }),
            now(),
        );
        assert_eq!(r.take_outgoing(), wire[5].1, "responder's encrypted Want");
        let mut w4 = wire[4].1.clone();
        i.receive(&mut w4, now()).unwrap();
        assert!(events(&mut i).contains(&Event::Opened { channel: 1, key }));
    }
}
