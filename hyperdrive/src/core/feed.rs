//! `Feed`: one hypercore. Append, read, seek, prove and verify-and-insert, persisted
//! so that Node opens what we write and we open what Node writes.
//!
//! Write order (docs/CRASH-SAFETY.md): data + tree, then the signature, then the
//! bitfield. Node derives a feed's length from the tree bits, so the bits are the
//! commit point: a crash before them leaves the previous length intact, and the
//! records already written past it are overwritten by the next append. On open we
//! check that the derived length has its roots and a signature that verifies, and
//! trim to the last length that does.
//!
//! Verification (`verify_and_put`) computes everything and checks every hash and the
//! signature before the first write, so a bad proof leaves no trace.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use super::bitfield::Bitfield;
use super::crypto::{self, KeyPair, Node, Signature};
use super::error::{CoreError, Result};
use super::flat_tree as ft;
use super::proof::{self, Proof, RemoteTree};
use super::storage::{self, FileKind, Storage, HEADER_SIZE, NODE_SIZE, SIGNATURE_SIZE};

/// Largest block `append` accepts (hypercore: "Individual blocks has be less than 8MB").
pub const MAX_BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// Block indices must stay below this (JS numbers; also keeps flat-tree math in u64).
pub const MAX_BLOCKS: u64 = 1 << 52;
/// Most nodes a proof can legitimately carry (siblings + roots of a 2^52 tree, twice).
const MAX_PROOF_NODES: usize = 256;
/// Bound of the read cache of tree nodes (cleared when full).
const NODE_CACHE_CAP: usize = 1 << 16;
/// Tree records kept in memory after the last append, so the parents an append
/// creates below its first leaf can go out in the same write as its new records.
const TAIL_WINDOW: usize = 1024;
const REC: usize = NODE_SIZE as usize;
/// Tree records read at once when a node is not cached: sequential reads then cost one
/// system call per this many leaves instead of one each.
const TREE_WINDOW_RECORDS: usize = 128;
/// Bytes of `data` read at once for small blocks, for the same reason.
const DATA_WINDOW: usize = 128 * 1024;
/// Blocks larger than this are read directly, without the data window.
const DATA_WINDOW_BLOCK_MAX: usize = DATA_WINDOW / 4;
/// Appends whose blocks average at most this many bytes are copied into one buffer and
/// written with one system call; larger blocks are written one by one without a copy.
const COALESCE_AVG_MAX: usize = 16 * 1024;

/// What happened when a verified block was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The feed length grew to this (a newer signed length was learned).
    pub new_length: Option<u64>,
    /// The block was not held before.
    pub stored: bool,
}

pub struct Feed {
    storage: Storage,
    keypair: KeyPair,
    key: [u8; 32],
    bitfield: Bitfield,
    length: u64,
    byte_length: u64,
    /// Roots at `length`, left to right (empty for length 0).
    roots: Vec<Node>,
    /// Read cache of tree nodes; nodes never change once their bit is set.
    cache: HashMap<u64, Node>,
    /// The on-disk tree records of nodes `tail_start ..` up to `2 * length` (writers).
    tail_start: u64,
    tail: Vec<u8>,
    /// Last block located by `get`: (index, byte offset, size), for sequential reads.
    last_read: Option<(u64, u64, u64)>,
    data_buf: Vec<u8>,
    page_buf: Vec<u8>,
    /// Leaf hashes of the batch being appended (reused between appends).
    leaf_buf: Vec<crypto::Hash>,
    hash_scratch: Vec<u8>,
    /// Read-ahead copy of tree records from node `tree_win_first` on, and of `data`
    /// from byte `data_win_offset` on. Emptied before anything is written to `tree`
    /// or `data`, so they never show bytes older than the file's.
    tree_win: Vec<u8>,
    tree_win_first: u64,
    data_win: Vec<u8>,
    data_win_offset: u64,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("key", &hex::encode(self.key))
            .field("length", &self.length)
            .field("byte_length", &self.byte_length)
            .field("writable", &self.writable())
            .field("storage", &self.storage)
            .finish()
    }
}

impl Feed {
    /// A new writable feed with a fresh key pair in `dir` (created if missing).
    pub fn create(dir: impl AsRef<Path>) -> Result<Feed> {
        Self::open_with_keypair(dir, KeyPair::generate())
    }
    /// A feed with the given key pair in `dir`; if `dir` already holds a feed its key
    /// must match. Read-only when the key pair has no secret.
    pub fn open_with_keypair(dir: impl AsRef<Path>, kp: KeyPair) -> Result<Feed> {
        Self::from_storage(Storage::open_dir(dir)?, Some(kp))
    }
    /// Open the feed stored in `dir` (key from `key`, writable if `secret_key` exists).
    pub fn open(dir: impl AsRef<Path>) -> Result<Feed> {
        let dir = dir.as_ref();
        if !dir.join(FileKind::Key.name()).exists() {
            return Err(CoreError::NoFeed {
                path: dir.to_path_buf(),
            });
        }
        Self::from_storage(Storage::open_dir(dir)?, None)
    }
    /// A feed kept in memory only.
    pub fn in_memory(kp: KeyPair) -> Feed {
        Self::from_storage(Storage::in_memory(), Some(kp))
            .expect("a fresh in-memory storage cannot fail to open")
    }

    /// Open a feed on any storage. With `kp`, a stored key must match it; without,
    /// the stored key is used (`CoreError::NoFeed` if there is none).
    pub fn from_storage(storage: Storage, kp: Option<KeyPair>) -> Result<Feed> {
        Self::open_storage(storage, kp, true)
    }

    /// Like [`Feed::from_storage`] with a key pair, but never writes `secret_key`: for
    /// corestore cores, whose secret is re-derived from their `name` file and must not
    /// touch the disk (a `secret_key` file already there is still read and checked).
    pub fn from_storage_unpersisted_secret(storage: Storage, kp: KeyPair) -> Result<Feed> {
        Self::open_storage(storage, Some(kp), false)
    }

    fn open_storage(
        mut storage: Storage,
        kp: Option<KeyPair>,
        persist_secret: bool,
    ) -> Result<Feed> {
        let stored_key = storage.read_key()?;
        let stored_secret = storage.read_secret_key()?;
        let corrupt = |storage: &Storage, kind: FileKind, reason: String| CoreError::Corrupt {
            path: storage.path(kind),
            reason,
        };
        let mut keypair = match (kp, stored_key) {
            (Some(kp), Some(k)) if kp.public_bytes() != k => {
                return Err(CoreError::KeyMismatch {
                    path: storage.path(FileKind::Key),
                    found: hex::encode(k),
                    expected: hex::encode(kp.public_bytes()),
                })
            }
            (Some(kp), _) => kp,
            (None, Some(k)) => KeyPair::from_public(&k)
                .map_err(|e| corrupt(&storage, FileKind::Key, e.to_string()))?,
            (None, None) => {
                return Err(CoreError::NoFeed {
                    path: storage
                        .dir()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| "<memory>".into()),
                })
            }
        };
        if let Some(sk) = &stored_secret {
            let from_file = KeyPair::from_libsodium_secret(sk)
                .map_err(|e| corrupt(&storage, FileKind::SecretKey, e.to_string()))?;
            if from_file.public != keypair.public {
                return Err(corrupt(
                    &storage,
                    FileKind::SecretKey,
                    "belongs to another public key than the one in `key`".into(),
                ));
            }
            if keypair.secret.is_none() {
                keypair = from_file;
            }
        }
        if stored_key.is_none() {
            storage.write_key(&keypair.public_bytes())?;
        }
        if let Some(sk) = keypair.libsodium_secret().filter(|_| persist_secret) {
            if stored_secret != Some(sk) {
                storage.write_secret_key(&sk)?;
            }
        }

        let pages = storage.open_headers()?;
        let bitfield = Bitfield::from_bytes(&pages);
        let key = keypair.public_bytes();
        let mut feed = Feed {
            storage,
            keypair,
            key,
            bitfield,
            length: 0,
            byte_length: 0,
            roots: Vec::new(),
            cache: HashMap::new(),
            tail_start: 0,
            tail: Vec::new(),
            last_read: None,
            data_buf: Vec::new(),
            page_buf: Vec::new(),
            leaf_buf: Vec::new(),
            hash_scratch: Vec::new(),
            tree_win: Vec::new(),
            tree_win_first: 0,
            data_win: Vec::new(),
            data_win_offset: 0,
        };
        feed.recover()?;
        Ok(feed)
    }

    /// Settle the length: the one the tree bits imply (as Node does), unless its
    /// signature or roots are missing, in which case the last signed length whose
    /// roots are all present. Then remove what lies past it (see CRASH-SAFETY.md).
    fn recover(&mut self) -> Result<()> {
        let derived = self.bitfield.blocks().min(MAX_BLOCKS);
        let mut len = derived;
        let mut found: Option<Vec<Node>> = None;
        while len > 0 {
            if let Some(sig) = self.storage.read_signature(len - 1)? {
                if let Some(roots) = self.load_roots(len)? {
                    let signable = crypto::signable(&roots, len);
                    if !crypto::verify_signable(&self.keypair.public, &signable, &sig) {
                        return Err(CoreError::Corrupt {
                            path: self.storage.path(FileKind::Key),
                            reason: format!(
                                "the signature for length {len} in `signatures` does not \
                                 verify under this key (wrong key file, or corrupt tree or \
                                 signatures)"
                            ),
                        });
                    }
                    found = Some(roots);
                    break;
                }
            }
            len = match self.storage.prev_signature(len - 1)? {
                Some(slot) => slot + 1,
                None => 0,
            };
        }
        let roots = found.unwrap_or_default();
        self.byte_length = sum_sizes(&roots).ok_or_else(|| CoreError::Corrupt {
            path: self.storage.path(FileKind::Tree),
            reason: "root sizes overflow".into(),
        })?;
        self.roots = roots;
        self.length = len;
        if len < derived {
            tracing::warn!(
                derived,
                kept = len,
                "feed storage ends in an incomplete append; trimming"
            );
            self.trim_to(len)?;
        }
        // Signature slots past the length can only be leftovers of an interrupted
        // append; drop them so `signature(i)` never returns one.
        let sig_end = HEADER_SIZE + SIGNATURE_SIZE * len;
        if self.storage.file_len(FileKind::Signatures)? > sig_end {
            self.storage.truncate(FileKind::Signatures, sig_end)?;
        }
        self.tail_start = 2 * len;
        self.tail.clear();
        Ok(())
    }

    /// Forget everything at or past block `len`: bits, the right-edge parents that
    /// would span past it, trailing records and data. Durable when it returns.
    fn trim_to(&mut self, len: u64) -> Result<()> {
        self.forget_reads();
        // Parents cut off here get new hashes when blocks are appended again.
        self.cache.clear();
        let edge = 2 * len;
        let pages = self.bitfield.page_count() as u64;
        for b in len..pages * 8192 {
            if self.bitfield.get_data(b) {
                self.bitfield.set_data(b, false);
            }
        }
        for n in edge..pages * 16384 {
            if self.bitfield.get_tree(n) {
                self.bitfield.set_tree(n, false);
            }
        }
        // Parents of the next leaf with a lower index span past the new end.
        let mut p = edge;
        while ft::depth(p) < 56 {
            p = ft::parent(p);
            if p < edge {
                self.bitfield.set_tree(p, false);
                if self.storage.read_node(p)?.is_some() {
                    self.storage.write(
                        FileKind::Tree,
                        HEADER_SIZE + NODE_SIZE * p,
                        &[0u8; NODE_SIZE as usize],
                    )?;
                }
            }
        }
        let tree_end = HEADER_SIZE + NODE_SIZE * edge.saturating_sub(1);
        if self.storage.file_len(FileKind::Tree)? > tree_end {
            self.storage.truncate(FileKind::Tree, tree_end)?;
        }
        if self.storage.file_len(FileKind::Data)? > self.byte_length {
            self.storage.truncate(FileKind::Data, self.byte_length)?;
        }
        self.flush_bitfield()?;
        self.storage.sync()
    }

    /// The roots at `len` if every one is held (bit and record), else `None`.
    fn load_roots(&mut self, len: u64) -> Result<Option<Vec<Node>>> {
        let mut roots = Vec::new();
        for r in ft::full_roots(2 * len) {
            match self.node(r)? {
                Some(n) => roots.push(n),
                None => return Ok(None),
            }
        }
        Ok(Some(roots))
    }

    pub fn key(&self) -> [u8; 32] {
        self.key
    }
    pub fn discovery_key(&self) -> [u8; 32] {
        crypto::discovery_key(&self.key)
    }
    pub fn writable(&self) -> bool {
        self.keypair.secret.is_some()
    }
    /// Number of blocks (the signed length).
    pub fn len(&self) -> u64 {
        self.length
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn byte_len(&self) -> u64 {
        self.byte_length
    }
    /// The roots at the current length, left to right.
    pub fn roots(&self) -> &[Node] {
        &self.roots
    }
    /// The key pair (the secret half only for writable feeds).
    pub fn keypair(&self) -> &KeyPair {
        &self.keypair
    }
    /// The directory, for feeds on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.storage.dir()
    }

    /// Append one block; one signature. Returns the new length.
    pub fn append(&mut self, block: &[u8]) -> Result<u64> {
        self.append_batch(&[block])
    }

    /// Append several blocks with one signature (for the last one). Returns the new length.
    pub fn append_batch<B: AsRef<[u8]>>(&mut self, blocks: &[B]) -> Result<u64> {
        if self.keypair.secret.is_none() {
            return Err(CoreError::NotWritable);
        }
        if blocks.is_empty() {
            return Ok(self.length);
        }
        let start = self.length;
        let n = blocks.len() as u64;
        if start + n > MAX_BLOCKS {
            return Err(CoreError::BlockTooLarge {
                index: start + n,
                size: 0,
            });
        }
        for (k, b) in blocks.iter().enumerate() {
            let size = b.as_ref().len();
            if size > MAX_BLOCK_SIZE {
                return Err(CoreError::BlockTooLarge {
                    index: start + k as u64,
                    size,
                });
            }
        }
        let first = 2 * start;
        // The tail ends with the last leaf; the record between it and the new first leaf
        // (node `first - 1`) is a parent that cannot exist yet: zero until this append
        // makes it, which is also what the file holds there.
        let tail_end = self.tail_start + (self.tail.len() / REC) as u64;
        if !self.tail.is_empty() && tail_end + 1 == first {
            self.tail.extend_from_slice(&[0u8; REC]);
        } else if tail_end != first || self.tail.is_empty() {
            self.tail.clear();
            self.tail_start = first;
        }
        let base = self.tail.len();
        self.tail.resize(base + (2 * n as usize - 1) * REC, 0);

        let mut outside: Vec<Node> = Vec::new();
        let mut lo = first;
        let mut added = 0u64;
        // Small blocks go out in one contiguous write; large ones are written where
        // they are, as copying them would cost more than the extra system calls.
        let coalesce = blocks.len() > 1
            && blocks.iter().map(|b| b.as_ref().len()).sum::<usize>()
                <= COALESCE_AVG_MAX * blocks.len();
        self.data_buf.clear();
        let mut leaves = std::mem::take(&mut self.leaf_buf);
        crypto::leaf_hashes(blocks, &mut self.hash_scratch, &mut leaves);
        // The roots followed by the new leaves; then, round by round, every adjacent
        // pair of siblings becomes its parent (all parents of a round hashed together)
        // until no siblings are left: what remains are the roots at the new length.
        let mut level = Vec::with_capacity(self.roots.len() + blocks.len());
        level.extend_from_slice(&self.roots);
        for (k, (b, hash)) in blocks.iter().zip(&leaves).enumerate() {
            let b = b.as_ref();
            added += b.len() as u64;
            if coalesce {
                self.data_buf.extend_from_slice(b);
            }
            level.push(Node::new(2 * (start + k as u64), *hash, b.len() as u64));
        }
        self.leaf_buf = leaves;
        let mut fresh: &[Node] = &level[self.roots.len()..];
        let mut pairs: Vec<(Node, Node)> = Vec::new();
        let mut parents: Vec<Node> = Vec::new();
        let mut next: Vec<Node> = Vec::with_capacity(level.len());
        loop {
            for node in fresh {
                if node.index >= self.tail_start {
                    let at = (node.index - self.tail_start) as usize * REC;
                    storage::encode_node(node, &mut self.tail[at..at + REC]);
                    lo = lo.min(node.index);
                } else {
                    outside.push(*node);
                }
            }
            pairs.clear();
            let mut i = 0;
            while i + 1 < level.len() {
                if ft::sibling(level[i + 1].index) == level[i].index {
                    pairs.push((level[i], level[i + 1]));
                    i += 2;
                } else {
                    i += 1;
                }
            }
            if pairs.is_empty() {
                break;
            }
            crypto::parents_of(&pairs, &mut parents);
            next.clear();
            let mut p = parents.iter();
            let mut i = 0;
            while i < level.len() {
                if i + 1 < level.len() && ft::sibling(level[i + 1].index) == level[i].index {
                    next.push(*p.next().expect("one parent per pair"));
                    i += 2;
                } else {
                    next.push(level[i]);
                    i += 1;
                }
            }
            std::mem::swap(&mut level, &mut next);
            fresh = &parents;
        }
        let roots = level;
        let new_length = start + n;
        let sig = self.keypair.sign(&crypto::signable(&roots, new_length))?;

        let result = self.write_append(blocks, coalesce, &outside, lo, new_length, &sig);
        if let Err(e) = result {
            // The tail may no longer mirror the file: forget it.
            self.tail.clear();
            self.tail_start = 2 * self.length;
            return Err(e);
        }
        self.length = new_length;
        self.byte_length += added;
        self.roots = roots;
        for k in 0..n {
            self.bitfield.set_data(start + k, true);
            self.bitfield.set_tree(2 * (start + k), true);
        }
        if self.tail.len() > 2 * TAIL_WINDOW * REC {
            let drop = self.tail.len() - TAIL_WINDOW * REC;
            self.tail.drain(..drop);
            self.tail_start += (drop / REC) as u64;
        }
        self.flush_bitfield()?;
        Ok(new_length)
    }

    /// Data and tree records, then the signature: everything but the bits.
    fn write_append<B: AsRef<[u8]>>(
        &mut self,
        blocks: &[B],
        coalesce: bool,
        outside: &[Node],
        lo: u64,
        new_length: u64,
        sig: &Signature,
    ) -> Result<()> {
        if coalesce {
            let buf = std::mem::take(&mut self.data_buf);
            let r = self.put_data(self.byte_length, &buf);
            self.data_buf = buf;
            r?;
        } else {
            let mut offset = self.byte_length;
            for b in blocks {
                self.put_data(offset, b.as_ref())?;
                offset += b.as_ref().len() as u64;
            }
        }
        for node in outside {
            self.put_node(node)?;
        }
        let from = (lo - self.tail_start) as usize * REC;
        let r = self.storage.write_node_records(lo, &self.tail[from..]);
        if r.is_err() {
            self.forget_reads();
        }
        r?;
        patch(
            &mut self.tree_win,
            tree_offset(self.tree_win_first),
            tree_offset(lo),
            &self.tail[from..],
        );
        self.storage.write_signature(new_length - 1, sig)
    }

    /// Write the bitfield pages changed since the last flush, one write per run of
    /// consecutive pages.
    fn flush_bitfield(&mut self) -> Result<()> {
        let dirty = self.bitfield.take_dirty();
        let mut i = 0;
        while i < dirty.len() {
            let mut j = i + 1;
            while j < dirty.len() && dirty[j] == dirty[j - 1] + 1 {
                j += 1;
            }
            self.page_buf.clear();
            for &p in &dirty[i..j] {
                self.page_buf.extend_from_slice(&self.bitfield.page(p));
            }
            let buf = std::mem::take(&mut self.page_buf);
            let r = self.storage.write_bitfield_pages(dirty[i] as u64, &buf);
            self.page_buf = buf;
            r?;
            i = j;
        }
        Ok(())
    }

    pub fn has(&self, index: u64) -> bool {
        self.bitfield.get_data(index)
    }

    /// The block, or `CoreError::BlockMissing` when it is not held.
    pub fn get(&mut self, index: u64) -> Result<Vec<u8>> {
        if index >= MAX_BLOCKS || !self.has(index) {
            return Err(CoreError::BlockMissing { index });
        }
        let (offset, size) = self.locate(index)?;
        let mut buf = vec![0u8; size as usize];
        self.read_data(offset, &mut buf)?;
        Ok(buf)
    }

    /// Empty the read-ahead windows (when a file is cut short or a write failed).
    fn forget_reads(&mut self) {
        self.tree_win.clear();
        self.data_win.clear();
    }

    /// Write to `data`, and into the read-ahead window where it overlaps.
    fn put_data(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if let Err(e) = self.storage.write_data(offset, data) {
            self.forget_reads();
            return Err(e);
        }
        patch(&mut self.data_win, self.data_win_offset, offset, data);
        Ok(())
    }

    /// Write tree records, runs of consecutive indices in one write each (a block, its
    /// sibling and their parent are neighbours in the file). Where two share an index
    /// the later one is written, as writing them in order would leave it.
    fn put_nodes(&mut self, mut nodes: Vec<Node>) -> Result<()> {
        nodes.sort_by_key(|n| n.index);
        let mut i = 0;
        let mut run = std::mem::take(&mut self.page_buf);
        let mut result = Ok(());
        while i < nodes.len() {
            run.clear();
            let first = nodes[i].index;
            let mut next = first;
            while i < nodes.len() && nodes[i].index <= next {
                let mut rec = [0u8; REC];
                storage::encode_node(&nodes[i], &mut rec);
                if nodes[i].index < next {
                    // Same index as the record before: the later one wins.
                    let at = run.len() - REC;
                    run[at..].copy_from_slice(&rec);
                } else {
                    run.extend_from_slice(&rec);
                    next += 1;
                }
                i += 1;
            }
            result = self.storage.write_node_records(first, &run);
            if result.is_err() {
                self.forget_reads();
                break;
            }
            patch(
                &mut self.tree_win,
                tree_offset(self.tree_win_first),
                tree_offset(first),
                &run,
            );
        }
        self.page_buf = run;
        result
    }

    /// Write one tree record, and into the read-ahead window where it overlaps.
    fn put_node(&mut self, node: &Node) -> Result<()> {
        if let Err(e) = self.storage.write_node(node) {
            self.forget_reads();
            return Err(e);
        }
        let mut rec = [0u8; REC];
        storage::encode_node(node, &mut rec);
        patch(
            &mut self.tree_win,
            tree_offset(self.tree_win_first),
            tree_offset(node.index),
            &rec,
        );
        Ok(())
    }

    /// Fill `buf` from `data` at `offset`, through the read-ahead window for small blocks.
    fn read_data(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.len() > DATA_WINDOW_BLOCK_MAX {
            return self.storage.read_data(offset, buf);
        }
        let in_window = |s: &Self| {
            offset
                .checked_sub(s.data_win_offset)
                .and_then(|o| usize::try_from(o).ok())
                .filter(|&o| {
                    o.checked_add(buf.len())
                        .is_some_and(|e| e <= s.data_win.len())
                })
        };
        let at = match in_window(self) {
            Some(at) => at,
            None => {
                self.data_win.resize(DATA_WINDOW, 0);
                let n = self
                    .storage
                    .read(FileKind::Data, offset, &mut self.data_win);
                let n = n.inspect_err(|_| self.data_win.clear())?;
                self.data_win.truncate(n);
                self.data_win_offset = offset;
                if n < buf.len() {
                    // Short file: let storage report it.
                    return self.storage.read_data(offset, buf);
                }
                0
            }
        };
        buf.copy_from_slice(&self.data_win[at..at + buf.len()]);
        Ok(())
    }

    /// Tree record `index` from the read-ahead window: `Some(None)` when the window
    /// holds it as absent, `None` when the window does not cover it.
    fn window_node(&self, index: u64) -> Option<Option<Node>> {
        let i = usize::try_from(index.checked_sub(self.tree_win_first)?).ok()?;
        let rec = self
            .tree_win
            .get(i.checked_mul(REC)?..i.checked_mul(REC)? + REC)?;
        Some(storage::decode_node(index, rec))
    }

    /// Read the aligned run of records around `index` into the window (aligned, so that
    /// a leaf and its nearby parents share one read); the node at `index`.
    fn fill_tree_window(&mut self, index: u64) -> Result<Option<Node>> {
        let first = index - index % TREE_WINDOW_RECORDS as u64;
        let Some(off) = first
            .checked_mul(NODE_SIZE)
            .and_then(|o| o.checked_add(HEADER_SIZE))
        else {
            return Ok(None);
        };
        self.tree_win.resize(TREE_WINDOW_RECORDS * REC, 0);
        let n = self.storage.read(FileKind::Tree, off, &mut self.tree_win);
        let n = n.inspect_err(|_| self.tree_win.clear())?;
        // Past the end of the file every record is absent (zero), and so is a record the
        // end cuts short, as in `read_node`. The window keeps its whole span so that
        // records written later land in it (see `put_node`).
        let whole = n / REC * REC;
        self.tree_win[whole..].fill(0);
        self.tree_win_first = first;
        Ok(self.window_node(index).flatten())
    }

    /// Byte offset and size of block `index` in `data` (hypercore.md §6.5).
    fn locate(&mut self, index: u64) -> Result<(u64, u64)> {
        let leaf = self.need_node(2 * index)?;
        if leaf.size > MAX_BLOCK_SIZE as u64 {
            return Err(CoreError::Corrupt {
                path: self.storage.path(FileKind::Tree),
                reason: format!("block {index} claims {} bytes", leaf.size),
            });
        }
        let offset = match self.last_read {
            Some((i, off, _)) if i == index => off,
            Some((i, off, size)) if i + 1 == index => off + size,
            _ => {
                let mut off = 0u64;
                for r in ft::full_roots(2 * index) {
                    off = off.checked_add(self.need_node(r)?.size).ok_or_else(|| {
                        CoreError::Corrupt {
                            path: self.storage.path(FileKind::Tree),
                            reason: "node sizes overflow".into(),
                        }
                    })?;
                }
                off
            }
        };
        self.last_read = Some((index, offset, leaf.size));
        Ok((offset, leaf.size))
    }

    /// Byte offset -> (block index, offset inside it).
    pub fn seek(&mut self, byte: u64) -> Result<(u64, u64)> {
        if byte > self.byte_length {
            return Err(CoreError::OutOfBounds {
                offset: byte,
                byte_length: self.byte_length,
            });
        }
        if byte == 0 {
            return Ok((0, 0));
        }
        if byte == self.byte_length {
            return Ok((self.length, 0));
        }
        let mut rem = byte;
        for r in ft::full_roots(2 * self.length) {
            let root = self.need_node(r)?;
            if root.size <= rem {
                rem -= root.size;
                continue;
            }
            let mut n = root.index;
            while let Some((l, right)) = ft::children(n) {
                let left = self.need_node(l)?;
                if left.size > rem {
                    n = l;
                } else {
                    rem -= left.size;
                    n = right;
                }
            }
            return Ok((n / 2, rem));
        }
        Err(CoreError::OutOfBounds {
            offset: byte,
            byte_length: self.byte_length,
        })
    }

    /// Tree node `index` if held.
    pub fn node(&mut self, index: u64) -> Result<Option<Node>> {
        if index >= 2 * MAX_BLOCKS || !self.bitfield.get_tree(index) {
            return Ok(None);
        }
        if let Some(n) = self.cache.get(&index) {
            return Ok(Some(*n));
        }
        if let Some(n) = self.window_node(index) {
            // Parents and roots are asked for again long after the window has moved on.
            if let Some(node) = n.filter(|_| ft::depth(index) > 0) {
                self.cache_node(node);
            }
            return Ok(n);
        }
        let node = self.fill_tree_window(index)?;
        if let Some(n) = node {
            self.cache_node(n);
        }
        Ok(node)
    }

    fn cache_node(&mut self, node: Node) {
        if self.cache.len() >= NODE_CACHE_CAP {
            self.cache.clear();
        }
        self.cache.insert(node.index, node);
    }

    /// A node the bitfield says we hold; `NodeMissing` if it is not there.
    fn need_node(&mut self, index: u64) -> Result<Node> {
        self.node(index)?.ok_or(CoreError::NodeMissing { index })
    }

    /// The first non-empty signature slot >= `index` (hypercore `signature(i)`).
    pub fn signature(&mut self, index: u64) -> Result<Option<(u64, Signature)>> {
        self.storage.next_signature(index)
    }
    pub fn bitfield(&self) -> &Bitfield {
        &self.bitfield
    }
    /// `Request.nodes` digest for block `index` (what we hold on its path).
    pub fn digest(&self, index: u64) -> u64 {
        self.bitfield.digest(index)
    }

    /// Build the reply to `Request{index, nodes: digest, hash}`; `None` if not held
    /// (no node for the block, or no data for a non-hash request).
    pub fn proof(
        &mut self,
        index: u64,
        digest: u64,
        hash: bool,
        remote: &mut RemoteTree,
    ) -> Result<Option<Proof>> {
        if index >= MAX_BLOCKS || (!hash && !self.has(index)) {
            return Ok(None);
        }
        let Some(plan) = proof::plan(&self.bitfield, index, digest, hash, remote) else {
            return Ok(None);
        };
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        for i in plan.nodes {
            nodes.push(self.need_node(i)?);
        }
        let signature = match plan.verified_by {
            Some(vb) if vb >= 2 => {
                let length = vb / 2;
                Some(
                    self.storage
                        .read_signature(length - 1)?
                        .ok_or(CoreError::SignatureMissing { length })?,
                )
            }
            _ => None,
        };
        Ok(Some(Proof {
            index,
            nodes,
            signature,
        }))
    }

    /// Verify `value` (None for hash-only replies) with `proof` against our trusted
    /// nodes or a signed root, then store it. Nothing is written if it fails.
    pub fn verify_and_put(&mut self, value: Option<&[u8]>, proof: &Proof) -> Result<PutOutcome> {
        let index = proof.index;
        let bad = |reason: &str| CoreError::BadProof {
            index,
            reason: reason.into(),
        };
        if index >= MAX_BLOCKS {
            return Err(bad("block index out of range"));
        }
        if value.is_some_and(|v| v.len() > MAX_BLOCK_SIZE) {
            return Err(bad("block larger than 8 MiB"));
        }
        if proof.nodes.len() > MAX_PROOF_NODES {
            return Err(bad("too many proof nodes"));
        }
        if proof.nodes.iter().any(|n| n.index >= 2 * MAX_BLOCKS) {
            return Err(bad("proof node index out of range"));
        }
        let remote = &proof.nodes;

        // 1. Walk up from the block: the first held node is trusted; siblings not in
        //    the proof must be held locally (hypercore `_putBuffer`).
        let mut trusted_idx = None;
        let mut missing = Vec::new();
        let mut next = 2 * index;
        let mut i = usize::from(value.is_none());
        loop {
            if self.bitfield.get_tree(next) {
                trusted_idx = Some(next);
                break;
            }
            if ft::depth(next) >= 54 {
                break;
            }
            let sib = ft::sibling(next);
            next = ft::parent(next);
            if i < remote.len() && remote[i].index == sib {
                i += 1;
                continue;
            }
            if !self.bitfield.get_tree(sib) {
                break;
            }
            missing.push(sib);
        }
        if trusted_idx.is_none() && self.bitfield.get_tree(next) {
            trusted_idx = Some(next);
        }
        let trusted = match trusted_idx {
            Some(t) => Some(self.need_node(t)?),
            None => None,
        };
        let mut local = VecDeque::with_capacity(missing.len());
        for m in missing {
            local.push_back(self.need_node(m)?);
        }

        // 2. Hash up to the trusted node or to a root (`_verifyAndWrite`).
        let mut r = 0usize;
        let mut top = match value {
            Some(v) => Node::leaf(index, v),
            None => {
                let n = remote
                    .first()
                    .ok_or_else(|| bad("hash reply without nodes"))?;
                if n.index != 2 * index {
                    return Err(bad("first node of a hash reply is not the block's node"));
                }
                r = 1;
                *n
            }
        };
        let matches = |t: &Option<Node>, n: &Node| {
            t.as_ref()
                .is_some_and(|t| t.index == n.index && t.hash == n.hash)
        };
        let mut visited: Vec<Node> = Vec::new();
        let by_trust = loop {
            if matches(&trusted, &top) {
                break true;
            }
            let want = ft::sibling(top.index);
            let sib = if r < remote.len() && remote[r].index == want {
                r += 1;
                visited.push(remote[r - 1]);
                remote[r - 1]
            } else if local.front().is_some_and(|n| n.index == want) {
                local.pop_front().expect("front checked")
            } else {
                break false;
            };
            if top.size.checked_add(sib.size).is_none() {
                return Err(bad("node sizes overflow"));
            }
            visited.push(top);
            top = Node::parent_of(&top, &sib);
        };

        // 3. Otherwise `top` must be a root at the signed length (`_verifyRootsAndWrite`).
        let mut extra: Vec<Node> = Vec::new();
        let mut sig_write = None;
        let mut adopt: Option<(u64, Vec<Node>, u64)> = None;
        if !by_trust {
            let last = if r < remote.len() {
                remote[remote.len() - 1].index
            } else {
                top.index
            };
            let vb = ft::right_span(top.index).max(ft::right_span(last)) + 2;
            let length = vb / 2;
            let root_idx = ft::full_roots(vb);
            // Node would accept a top below the roots, leaving the block unverified.
            if !root_idx.contains(&top.index) {
                return Err(bad("the proof does not reach a root"));
            }
            let mut roots = Vec::with_capacity(root_idx.len());
            for idx in root_idx {
                let node = if idx == top.index {
                    extra.push(top);
                    top
                } else if r < remote.len() && remote[r].index == idx {
                    r += 1;
                    extra.push(remote[r - 1]);
                    remote[r - 1]
                } else if self.bitfield.get_tree(idx) {
                    self.need_node(idx)?
                } else {
                    return Err(CoreError::MissingRoots { index });
                };
                roots.push(node);
            }
            let byte_length = sum_sizes(&roots).ok_or_else(|| bad("root sizes overflow"))?;
            let sig = proof.signature.ok_or(CoreError::BadSignature { length })?;
            let signable = crypto::signable(&roots, length);
            if !crypto::verify_signable(&self.keypair.public, &signable, &sig) {
                return Err(CoreError::BadSignature { length });
            }
            if length > self.length {
                if self.writable() {
                    return Err(bad(
                        "signed by our key for a length past ours (a fork of this writer)",
                    ));
                }
                adopt = Some((length, roots, byte_length));
            }
            sig_write = Some((length - 1, sig));
        }

        // 4. Where the data goes: the roots at `index` from what we just verified or
        //    what we hold. Checked before writing anything.
        let mut data_offset = 0u64;
        if value.is_some() {
            for ri in ft::full_roots(2 * index) {
                let size = match visited.iter().chain(&extra).find(|n| n.index == ri) {
                    Some(n) => n.size,
                    None => self.need_node(ri)?.size,
                };
                data_offset = data_offset
                    .checked_add(size)
                    .ok_or_else(|| bad("node sizes overflow"))?;
            }
        }

        // 5. Write: data + tree, signature, then the bits.
        if let Some(v) = value {
            self.put_data(data_offset, v)?;
        }
        self.put_nodes(visited.iter().chain(&extra).copied().collect())?;
        if let Some((slot, sig)) = sig_write {
            self.storage.write_signature(slot, &sig)?;
        }
        for n in visited.iter().chain(&extra) {
            self.bitfield.set_tree(n.index, true);
        }
        self.bitfield.set_tree(2 * index, true);
        let stored = value.is_some() && self.bitfield.set_data(index, true);
        let mut new_length = None;
        if let Some((length, roots, byte_length)) = adopt {
            self.length = length;
            self.byte_length = byte_length;
            self.roots = roots;
            new_length = Some(length);
        }
        self.tail.clear();
        self.tail_start = 2 * self.length;
        self.flush_bitfield()?;
        Ok(PutOutcome { new_length, stored })
    }

    /// Make every write so far durable (fsync data, tree, signatures, bitfield).
    pub fn sync(&mut self) -> Result<()> {
        self.storage.sync()
    }
}

/// Byte offset of tree record `index` (indices stay below `2 * MAX_BLOCKS`, so this
/// cannot overflow).
fn tree_offset(index: u64) -> u64 {
    HEADER_SIZE + NODE_SIZE * index
}

/// Copy the part of a write of `data` at file offset `offset` that falls inside
/// `window` (a copy of the file from `start` on) into it.
fn patch(window: &mut [u8], start: u64, offset: u64, data: &[u8]) {
    let lo = start.max(offset);
    let hi = start
        .saturating_add(window.len() as u64)
        .min(offset.saturating_add(data.len() as u64));
    if lo >= hi {
        return;
    }
    let (w, d) = ((lo - start) as usize, (lo - offset) as usize);
    let n = (hi - lo) as usize;
    window[w..w + n].copy_from_slice(&data[d..d + n]);
}

fn sum_sizes(nodes: &[Node]) -> Option<u64> {
    nodes
        .iter()
        .try_fold(0u64, |acc, n| acc.checked_add(n.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Block `i`: sizes cycle through small, medium and large (above the copy and
    /// scratch-hash thresholds), so every path of `append_batch` is taken.
    fn block(i: u64) -> Vec<u8> {
        let size = [0usize, 1, 100, 1024, 9000, 20_000, 3, 70_000][(i % 8) as usize];
        (0..size).map(|k| (k as u64 * 7 + i * 13) as u8).collect()
    }

    fn whole(feed: &Feed, kind: FileKind) -> Vec<u8> {
        let len = feed.storage.file_len(kind).unwrap() as usize;
        let mut buf = vec![0u8; len];
        assert_eq!(feed.storage.read(kind, 0, &mut buf).unwrap(), len);
        buf
    }

    #[test]
    fn batched_appends_match_single_appends() {
        let kp = KeyPair::from_seed(&[7u8; 32]);
        let total = 150u64;
        let mut one = Feed::in_memory(kp.clone());
        for i in 0..total {
            one.append(&block(i)).unwrap();
        }
        let mut many = Feed::in_memory(kp);
        let mut i = 0u64;
        for n in [1u64, 2, 3, 64, 5, 8, 13, 16, 21, 17].iter().cycle() {
            if i == total {
                break;
            }
            let n = (*n).min(total - i);
            let batch: Vec<Vec<u8>> = (i..i + n).map(block).collect();
            assert_eq!(many.append_batch(&batch).unwrap(), i + n);
            i += n;
        }
        assert_eq!(many.len(), one.len());
        assert_eq!(many.byte_len(), one.byte_len());
        assert_eq!(many.roots(), one.roots());
        assert_eq!(whole(&many, FileKind::Tree), whole(&one, FileKind::Tree));
        // And both hold exactly the tree computed from scratch: every node whose leaves
        // are all present, zeros for the others, nothing past the last leaf.
        let tree = whole(&one, FileKind::Tree);
        assert_eq!(tree.len() as u64, HEADER_SIZE + NODE_SIZE * (2 * total - 1));
        let mut level: Vec<Node> = (0..total).map(|i| Node::leaf(i, &block(i))).collect();
        let mut expected = vec![None; 2 * total as usize - 1];
        while !level.is_empty() {
            for n in &level {
                expected[n.index as usize] = Some(*n);
            }
            level = level
                .chunks_exact(2)
                .map(|p| Node::parent_of(&p[0], &p[1]))
                .filter(|n| ft::right_span(n.index) < 2 * total)
                .collect();
        }
        for (i, want) in expected.iter().enumerate() {
            let rec = &tree[HEADER_SIZE as usize + i * REC..][..REC];
            assert_eq!(storage::decode_node(i as u64, rec), *want, "record {i}");
        }
        assert_eq!(whole(&many, FileKind::Data), whole(&one, FileKind::Data));
        assert_eq!(
            many.storage.read_signature(total - 1).unwrap(),
            one.storage.read_signature(total - 1).unwrap()
        );
        for i in 0..total {
            assert_eq!(many.get(i).unwrap(), block(i), "block {i}");
        }
        for n in 0..2 * total - 1 {
            assert_eq!(many.node(n).unwrap(), one.node(n).unwrap(), "node {n}");
        }
    }

    #[test]
    fn reads_see_what_was_stored_after_a_read_ahead() {
        let mut writer = Feed::in_memory(KeyPair::from_seed(&[8u8; 32]));
        let blocks: Vec<Vec<u8>> = (0..40u64).map(|i| vec![i as u8; 10 + i as usize]).collect();
        writer.append_batch(&blocks).unwrap();
        let mut reader = Feed::in_memory(KeyPair::from_public(&writer.key()).unwrap());
        let mut put = |reader: &mut Feed, i: u64| {
            let mut remote = RemoteTree::default();
            let proof = writer
                .proof(i, reader.digest(i), false, &mut remote)
                .unwrap()
                .unwrap();
            let value = writer.get(i).unwrap();
            reader.verify_and_put(Some(&value), &proof).unwrap();
        };
        // Each read fills the windows past the block with records and bytes that are
        // not there yet; the next put must make them visible.
        for i in [10u64, 11, 3, 12, 39, 4, 0] {
            put(&mut reader, i);
            assert_eq!(reader.get(i).unwrap(), blocks[i as usize], "block {i}");
        }
        for i in [10u64, 11, 3, 12, 39, 4, 0] {
            assert_eq!(reader.get(i).unwrap(), blocks[i as usize], "again {i}");
        }
        assert!(matches!(
            reader.get(13),
            Err(CoreError::BlockMissing { index: 13 })
        ));
    }
}
