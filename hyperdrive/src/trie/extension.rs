//! The `hypertrie` hypercore extension (hypertrie §12): one-round-trip sparse reads.
//! A reader that would wait for a block sends a `get` or `iterator` request; the
//! writer replays the lookup on its local blocks and answers with `cache` messages
//! listing every block the reader is going to need, which the reader then downloads
//! with ordinary requests.
//!
//! This module owns the message format and the writer's answer. It is advisory:
//! ignoring requests and never sending any interoperates with Node peers. Sending the
//! messages over a channel is the replication layer's job.

use super::feed_store::FeedStore;
use super::wire::{
    expect_bytes, expect_string, expect_varint, get_varint, put_bytes_field, put_tag, put_varint,
    put_varint_field, Field, Fields, WIRE_LEN,
};
use super::{Ctx, DecodeError, GetOptions, ListOptions, Trie, TrieStore};
use crate::protocol::replicate::{ExtensionHandler, ExtensionReply};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The extension's name on the feed.
pub const EXTENSION_NAME: &str = "hypertrie";
/// Most requests a writer serves at once.
pub const MAX_ACTIVE: usize = 32;
/// A `cache` answer is flushed every this many blocks.
pub const FLUSH_BATCH: usize = 128;
/// Blocks a reader assumes are coming after sending an iterator request.
pub const MAX_PASSIVE_BATCH: usize = 2048;
/// An iterator answer stops after this many blocks; received `cache` lists are cut
/// to this length.
pub const MAX_ACTIVE_BATCH: usize = MAX_PASSIVE_BATCH + FLUSH_BATCH;

/// `Extension.Get`: look up `key` at head `head`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetRequest {
    /// Head seq of the reader's view.
    pub head: Option<u64>,
    /// Normalised key.
    pub key: Option<String>,
}

/// `Extension.Iterator`: iterate `key` at `head`, or resume `checkpoint`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IteratorRequest {
    /// Head seq of the reader's view.
    pub head: Option<u64>,
    /// Prefix (an empty prefix is still written).
    pub key: Option<String>,
    /// [`ListOptions::flags`] of the reader's iterator.
    pub flags: Option<u64>,
    /// The reader's iterator checkpoint, once it has opened.
    pub checkpoint: Option<Vec<u8>>,
}

/// `Extension.Cache`: blocks the receiver should download.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// Smallest block listed.
    pub start: u64,
    /// Largest block listed + 1.
    pub end: u64,
    /// The blocks, in the order the writer touched them.
    pub blocks: Vec<u64>,
}

/// One extension message (in practice exactly one field is set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionMessage {
    /// Field 1.
    pub cache: Option<Cache>,
    /// Field 2.
    pub iterator: Option<IteratorRequest>,
    /// Field 3.
    pub get: Option<GetRequest>,
}

impl Cache {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint_field(out, 1, self.start);
        put_varint_field(out, 2, self.end);
        if !self.blocks.is_empty() {
            let mut packed = Vec::new();
            for &b in &self.blocks {
                put_varint(&mut packed, b);
            }
            put_bytes_field(out, 3, &packed);
        }
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut start, mut end) = (None, None);
        let mut blocks = Vec::new();
        let mut fields = Fields::new(buf);
        while let Some((n, f)) = fields.next_field()? {
            match (n, f) {
                (1, f) => start = Some(expect_varint(f, "Cache.start")?),
                (2, f) => end = Some(expect_varint(f, "Cache.end")?),
                (3, Field::Bytes(packed)) => {
                    let mut pos = 0;
                    while pos < packed.len() {
                        blocks.push(get_varint(packed, &mut pos)?);
                    }
                }
                (3, f) => blocks.push(expect_varint(f, "Cache.blocks")?),
                _ => {}
            }
        }
        Ok(Cache {
            start: start.ok_or(DecodeError::MissingField("Cache.start"))?,
            end: end.ok_or(DecodeError::MissingField("Cache.end"))?,
            blocks,
        })
    }

    /// The blocks to download, cut to [`MAX_ACTIVE_BATCH`] as the reference does.
    pub fn bounded_blocks(&self) -> &[u64] {
        &self.blocks[..self.blocks.len().min(MAX_ACTIVE_BATCH)]
    }
}

impl ExtensionMessage {
    /// A `get` request.
    pub fn get(head: u64, key: &str) -> Self {
        ExtensionMessage {
            get: Some(GetRequest {
                head: Some(head),
                key: Some(key.to_string()),
            }),
            ..Default::default()
        }
    }

    /// An `iterator` request (`checkpoint` once the reader's iterator has opened).
    pub fn iterator(head: u64, prefix: &str, flags: u64, checkpoint: Option<Vec<u8>>) -> Self {
        ExtensionMessage {
            iterator: Some(IteratorRequest {
                head: Some(head),
                key: Some(prefix.to_string()),
                flags: Some(flags),
                checkpoint,
            }),
            ..Default::default()
        }
    }

    /// Encodes fields 1, 2, 3 in order, sub-fields in ascending order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(c) = &self.cache {
            let mut inner = Vec::new();
            c.encode_into(&mut inner);
            put_bytes_field(&mut out, 1, &inner);
        }
        if let Some(it) = &self.iterator {
            let mut inner = Vec::new();
            if let Some(h) = it.head {
                put_varint_field(&mut inner, 1, h);
            }
            if let Some(k) = &it.key {
                put_bytes_field(&mut inner, 2, k.as_bytes());
            }
            if let Some(f) = it.flags {
                put_varint_field(&mut inner, 3, f);
            }
            if let Some(cp) = &it.checkpoint {
                put_bytes_field(&mut inner, 4, cp);
            }
            put_bytes_field(&mut out, 2, &inner);
        }
        if let Some(g) = &self.get {
            let mut inner = Vec::new();
            if let Some(h) = g.head {
                put_varint_field(&mut inner, 1, h);
            }
            if let Some(k) = &g.key {
                put_bytes_field(&mut inner, 2, k.as_bytes());
            }
            put_tag(&mut out, 3, WIRE_LEN);
            put_varint(&mut out, inner.len() as u64);
            out.extend_from_slice(&inner);
        }
        out
    }

    /// Decodes a message; unknown fields are skipped.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut msg = ExtensionMessage::default();
        let mut fields = Fields::new(buf);
        while let Some((n, f)) = fields.next_field()? {
            match n {
                1 => msg.cache = Some(Cache::decode(expect_bytes(f, "Extension.cache")?)?),
                2 => {
                    let mut it = IteratorRequest::default();
                    let mut sub = Fields::new(expect_bytes(f, "Extension.iterator")?);
                    while let Some((n, f)) = sub.next_field()? {
                        match n {
                            1 => it.head = Some(expect_varint(f, "Iterator.head")?),
                            2 => it.key = Some(expect_string(f, "Iterator.key")?),
                            3 => it.flags = Some(expect_varint(f, "Iterator.flags")?),
                            4 => {
                                it.checkpoint =
                                    Some(expect_bytes(f, "Iterator.checkpoint")?.to_vec())
                            }
                            _ => {}
                        }
                    }
                    msg.iterator = Some(it);
                }
                3 => {
                    let mut g = GetRequest::default();
                    let mut sub = Fields::new(expect_bytes(f, "Extension.get")?);
                    while let Some((n, f)) = sub.next_field()? {
                        match n {
                            1 => g.head = Some(expect_varint(f, "Get.head")?),
                            2 => g.key = Some(expect_string(f, "Get.key")?),
                            _ => {}
                        }
                    }
                    msg.get = Some(g);
                }
                _ => {}
            }
        }
        Ok(msg)
    }
}

/// Collects touched blocks into `cache` answers, flushing every [`FLUSH_BATCH`].
#[derive(Default)]
struct Batch {
    current: Cache,
    out: Vec<Cache>,
}

impl Batch {
    fn push(&mut self, seq: u64) {
        let c = &mut self.current;
        c.blocks.push(seq);
        if c.blocks.len() == 1 || seq < c.start {
            c.start = seq;
        }
        if c.blocks.len() == 1 || seq >= c.end {
            c.end = seq + 1;
        }
        if c.blocks.len() >= FLUSH_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.current.blocks.is_empty() {
            self.out.push(std::mem::take(&mut self.current));
        }
    }

    fn finish(mut self) -> Vec<ExtensionMessage> {
        self.flush();
        self.out
            .into_iter()
            .map(|c| ExtensionMessage {
                cache: Some(c),
                ..Default::default()
            })
            .collect()
    }
}

impl<S: TrieStore> Trie<S> {
    /// The writer's answer to a request (`cache` messages to send back to the
    /// requesting peer), computed from local blocks only. `cache` messages produce no
    /// answer: the receiver should download [`Cache::bounded_blocks`]. Callers bound
    /// concurrency to [`MAX_ACTIVE`].
    pub async fn answer_extension(&self, msg: &ExtensionMessage) -> Vec<ExtensionMessage> {
        let mut out = Vec::new();
        if let Some(it) = &msg.iterator {
            out.extend(self.answer_iterator(it).await);
        }
        if let Some(g) = &msg.get {
            out.extend(self.answer_get(g).await);
        }
        out
    }

    async fn answer_get(&self, req: &GetRequest) -> Vec<ExtensionMessage> {
        let key = req.key.as_deref().unwrap_or("");
        if key.is_empty() {
            return Vec::new();
        }
        let view = self.checkout(req.head.unwrap_or(0).saturating_add(1));
        let mut ctx = Ctx {
            touched: Some(Vec::new()),
            local_only: true,
        };
        let probe = view.probe(key, false);
        // A missing block just ends the answer early, as in the reference.
        let _ = view.get_ctx(&mut ctx, &probe, GetOptions::default()).await;
        let mut batch = Batch::default();
        for seq in ctx.touched.unwrap_or_default() {
            batch.push(seq);
        }
        batch.finish()
    }

    async fn answer_iterator(&self, req: &IteratorRequest) -> Vec<ExtensionMessage> {
        let key = req.key.as_deref().unwrap_or("");
        let checkpointed = req.checkpoint.is_some();
        // The reader's flags are not applied: the reference iterates with defaults.
        let mut ite = if !key.is_empty() {
            let view = self.checkout(req.head.unwrap_or(0).saturating_add(1));
            view.iter(key, ListOptions::default())
        } else {
            self.iter(
                "",
                ListOptions {
                    checkpoint: req.checkpoint.clone(),
                    ..ListOptions::default()
                },
            )
        };
        ite.trace();
        ite.local_only();
        let mut batch = Batch::default();
        let mut total = 0usize;
        let opened = ite.open_now().await;
        let during_open = ite.take_touched();
        if !checkpointed {
            for seq in during_open {
                total += 1;
                batch.push(seq);
            }
        }
        if opened.is_err() {
            return batch.finish();
        }
        loop {
            let res = ite.next().await;
            for seq in ite.take_touched() {
                total += 1;
                batch.push(seq);
            }
            match res {
                Ok(Some(_)) if total < MAX_ACTIVE_BATCH => {}
                _ => break,
            }
        }
        batch.finish()
    }
}

/// The `hypertrie` extension on a trie's feed: answers `get`/`iterator` requests
/// from local blocks and downloads what `cache` answers list.
///
/// Holds the trie weakly: the feed owns its handlers, and the trie owns the feed.
pub struct TrieExtension {
    trie: std::sync::Weak<super::Inner<FeedStore>>,
    /// Requests being answered now (at most [`MAX_ACTIVE`]; more are dropped).
    active: Arc<AtomicUsize>,
}

/// Decrements the active count when an answer task ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TrieExtension {
    /// Register the extension on `trie`'s feed (replacing an earlier registration).
    pub fn register(trie: &Trie<FeedStore>) {
        let handler = Arc::new(TrieExtension {
            trie: Arc::downgrade(&trie.inner),
            active: Arc::default(),
        });
        trie.store()
            .feed()
            .register_extension(EXTENSION_NAME, handler);
    }
}

impl ExtensionHandler for TrieExtension {
    fn on_message(&self, payload: &[u8], reply: ExtensionReply) {
        // Malformed messages are ignored, as the reference does.
        let Ok(msg) = ExtensionMessage::decode(payload) else {
            return;
        };
        let Some(inner) = self.trie.upgrade() else {
            return;
        };
        let trie = Trie {
            inner,
            checkout: None,
        };
        if let Some(cache) = &msg.cache {
            let mut blocks = cache.bounded_blocks().to_vec();
            blocks.sort_unstable();
            blocks.dedup();
            // Ordinary (sparse) selections; a writer's prefetch does nothing.
            trie.store().prefetch(&blocks);
        }
        let wants_answer = msg.get.as_ref().is_some_and(|g| g.key.is_some())
            || msg
                .iterator
                .as_ref()
                .is_some_and(|i| i.key.is_some() || i.checkpoint.is_some());
        if !wants_answer {
            return;
        }
        if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_ACTIVE {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let guard = ActiveGuard(self.active.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _guard = guard;
            for m in trie.answer_extension(&msg).await {
                if !reply.send(m.encode()).await {
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod handler_tests {
    use super::*;
    use crate::core::{Feed, KeyPair};
    use crate::protocol::replicate::SharedFeed;
    use crate::trie::TrieOptions;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn registered_handler_answers_gets_to_the_asking_peer() {
        let feed = SharedFeed::new(Feed::in_memory(KeyPair::generate()));
        let trie = Trie::open(FeedStore::new(feed.clone()), TrieOptions::default())
            .await
            .unwrap();
        for i in 0..50 {
            trie.put(&format!("dir/file{i}"), b"x").await.unwrap();
        }
        TrieExtension::register(&trie);
        let names = feed.extensions().names();
        assert_eq!(names, vec![EXTENSION_NAME.to_string()]);

        let (tx, mut rx) = mpsc::channel(8);
        let ask = |payload: Vec<u8>| {
            let (name, handler) = feed.extensions().route(&names, 0).expect("routed");
            handler.on_message(&payload, ExtensionReply::new(tx.clone(), 7, name));
        };
        // Malformed and answer-less messages are ignored.
        ask(vec![0x1a, 0xff]);
        ask(ExtensionMessage::get(0, "").encode());
        let head = feed.len() - 1;
        ask(ExtensionMessage::get(head, "dir/file7").encode());
        let out = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((out.channel, &*out.name), (7, EXTENSION_NAME));
        let cache = ExtensionMessage::decode(&out.payload)
            .unwrap()
            .cache
            .unwrap();
        let expected = trie
            .answer_extension(&ExtensionMessage::get(head, "dir/file7"))
            .await;
        assert_eq!(expected.len(), 1);
        assert_eq!(Some(cache.clone()), expected[0].cache);
        let node = trie.get("dir/file7").await.unwrap().unwrap();
        assert!(cache.blocks.contains(&node.seq), "{cache:?}");
        assert!(cache.blocks.contains(&head));
        assert!(rx.try_recv().is_err(), "one answer only");
        assert_eq!(feed.extension_counts(EXTENSION_NAME).0, 3);
    }
}
