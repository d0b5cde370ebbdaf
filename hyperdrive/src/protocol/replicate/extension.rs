//! Feed-level hypercore extensions (protocol §7, abstract-extension@3.1.1): named,
//! opaque messages on a feed's channel. Each side announces its sorted list of names in
//! `Options`; an `Extension` message's id is the index of its name in the **sender's**
//! list, so the receiver maps ids through the list the remote last announced.
//!
//! The registry only routes bytes: handlers decide what a payload means and reply to
//! the peer that sent it through an [`ExtensionReply`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::protocol::stream::ChannelId;

/// Most extension names a remote may announce; a longer list is cut (ids past the
/// cut are then dropped like unknown ones).
pub const MAX_REMOTE_EXTENSIONS: usize = 256;
/// Extension messages queued per connection for sending; replies beyond are dropped
/// (extensions are advisory, a lost reply only costs a round trip).
pub const EXTENSION_QUEUE: usize = 256;

/// Receives the payloads of one named extension.
pub trait ExtensionHandler: Send + Sync + 'static {
    /// A message from a peer. Must not block: heavy work belongs on a task, replies go
    /// through `reply`, which reaches only the peer that sent this message.
    fn on_message(&self, payload: &[u8], reply: ExtensionReply);
}

/// One extension message a connection should send on `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingExtension {
    pub channel: ChannelId,
    pub name: Arc<str>,
    pub payload: Vec<u8>,
}

/// Sends extension messages back to the peer (channel) a message came from.
#[derive(Debug, Clone)]
pub struct ExtensionReply {
    tx: mpsc::Sender<OutgoingExtension>,
    channel: ChannelId,
    name: Arc<str>,
}

impl ExtensionReply {
    pub fn new(tx: mpsc::Sender<OutgoingExtension>, channel: ChannelId, name: Arc<str>) -> Self {
        ExtensionReply { tx, channel, name }
    }

    fn message(&self, payload: Vec<u8>) -> OutgoingExtension {
        OutgoingExtension {
            channel: self.channel,
            name: self.name.clone(),
            payload,
        }
    }

    /// Queue a reply, waiting while the connection's queue is full. Returns false
    /// once the connection is gone.
    pub async fn send(&self, payload: Vec<u8>) -> bool {
        self.tx.send(self.message(payload)).await.is_ok()
    }

    /// Queue a reply unless the connection's queue is full or gone.
    pub fn try_send(&self, payload: Vec<u8>) -> bool {
        self.tx.try_send(self.message(payload)).is_ok()
    }
}

struct Entry {
    name: Arc<str>,
    handler: Arc<dyn ExtensionHandler>,
    received: AtomicU64,
    sent: AtomicU64,
}

/// The extensions registered on one feed, sorted by name (JS string order, bytewise
/// for the ASCII names in use).
#[derive(Default)]
pub struct Extensions {
    entries: Vec<Arc<Entry>>,
    /// Bumped on every change so connections re-announce their `Options`.
    version: u64,
}

impl Extensions {
    /// Register `handler` under `name`, replacing a handler of the same name.
    pub fn register(&mut self, name: &str, handler: Arc<dyn ExtensionHandler>) {
        let entry = Arc::new(Entry {
            name: Arc::from(name),
            handler,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        match self
            .entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
        {
            Ok(i) => self.entries[i] = entry,
            Err(i) => self.entries.insert(i, entry),
        }
        self.version += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Changes so far (0 = never registered anything).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Our sorted names, as announced in `Options`.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.to_string()).collect()
    }

    /// The id we send `name` with: its index in our sorted list.
    pub fn id_of(&self, name: &str) -> Option<u64> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| i as u64)
    }

    /// The handler for a message the remote sent with `id`, mapped through the
    /// remote's announced `remote_names`. Unknown ids give None (the message is
    /// dropped, as the reference does).
    pub fn route(
        &self,
        remote_names: &[String],
        id: u64,
    ) -> Option<(Arc<str>, Arc<dyn ExtensionHandler>)> {
        let name = remote_names.get(usize::try_from(id).ok()?)?;
        let i = self
            .entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .ok()?;
        let e = &self.entries[i];
        e.received.fetch_add(1, Ordering::Relaxed);
        Some((e.name.clone(), e.handler.clone()))
    }

    /// Count a message sent under `name`.
    pub fn note_sent(&self, name: &str) {
        if let Ok(i) = self
            .entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
        {
            self.entries[i].sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages received and sent under `name` so far, across all connections.
    pub fn counts(&self, name: &str) -> (u64, u64) {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .map(|i| {
                let e = &self.entries[i];
                (
                    e.received.load(Ordering::Relaxed),
                    e.sent.load(Ordering::Relaxed),
                )
            })
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<Vec<u8>>>);

    impl ExtensionHandler for Record {
        fn on_message(&self, payload: &[u8], reply: ExtensionReply) {
            self.0.lock().unwrap().push(payload.to_vec());
            reply.try_send(b"pong".to_vec());
        }
    }

    #[test]
    fn ids_are_indexes_in_the_senders_sorted_list() {
        // The protocol spec's verified case: A=[a-ext, b-ext], B=[b-ext].
        let a_b = Arc::new(Record::default());
        let mut a = Extensions::default();
        a.register("b-ext", a_b.clone());
        a.register("a-ext", Arc::new(Record::default()));
        assert_eq!(a.names(), vec!["a-ext", "b-ext"]);
        assert_eq!(a.id_of("b-ext"), Some(1));
        assert_eq!(a.id_of("zzz"), None);

        let b_b = Arc::new(Record::default());
        let mut b = Extensions::default();
        b.register("b-ext", b_b.clone());
        assert_eq!(b.id_of("b-ext"), Some(0));

        // A sends b-ext as id 1: B maps it through A's list to its own b-ext.
        let (name, handler) = b.route(&a.names(), 1).expect("b-ext is known to B");
        assert_eq!(&*name, "b-ext");
        let (tx, mut rx) = mpsc::channel(4);
        handler.on_message(b"x", ExtensionReply::new(tx, 3, name));
        assert_eq!(b_b.0.lock().unwrap().as_slice(), &[b"x".to_vec()]);
        let out = rx.try_recv().unwrap();
        assert_eq!((out.channel, &*out.name), (3, "b-ext"));
        // A's a-ext (id 0) is unknown to B and dropped; so is an id past the list.
        assert!(b.route(&a.names(), 0).is_none());
        assert!(b.route(&a.names(), 2).is_none());
        assert!(b.route(&[], 0).is_none());
        // B sends b-ext as id 0: A maps it to its b-ext, not to its own id 0.
        let (name, _) = a.route(&b.names(), 0).unwrap();
        assert_eq!(&*name, "b-ext");
        assert_eq!(b.counts("b-ext"), (1, 0));
        assert_eq!(a.counts("b-ext"), (1, 0));
    }

    #[test]
    fn registering_again_replaces_and_bumps_the_version() {
        let mut x = Extensions::default();
        assert!(x.is_empty());
        x.register("hypertrie", Arc::new(Record::default()));
        x.register("hypertrie", Arc::new(Record::default()));
        assert_eq!(x.names(), vec!["hypertrie"]);
        assert_eq!(x.version(), 2);
    }
}
