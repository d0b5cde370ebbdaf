//! Block encodings: the `Header` (block 0) and the `Node` (every later block),
//! hypertrie §1–§2. Field order and presence match the reference byte for byte:
//! `seq` and `flags` are always written, `valueBuffer` only when the value is not null.

use std::fmt;

use super::hash::{default_hash, is_terminator, normalize_key, path_digit, split_key, HashFn};
use super::trie_buffer::TrieBuffer;
use super::wire::{
    expect_bytes, expect_string, expect_varint, put_bytes_field, put_varint_field, Fields,
};
use super::DecodeError;

/// Internal flag bit 0: the node lives in the hidden sub-tree.
pub const FLAG_HIDDEN: u64 = 1;

/// Block 0 of every trie feed (DEP-0007 compatible).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Always `"hypertrie"` for tries we write.
    pub kind: String,
    /// Opaque; hyperdrive stores the content feed's public key here.
    pub metadata: Option<Vec<u8>>,
    /// e.g. `"hyperdrive"`.
    pub subtype: Option<String>,
}

impl Header {
    /// A header with type `"hypertrie"`.
    pub fn new(metadata: Option<Vec<u8>>, subtype: Option<String>) -> Self {
        Header {
            kind: "hypertrie".into(),
            metadata,
            subtype,
        }
    }

    /// Fields 1, 2, 3 in order; absent optionals omitted.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes_field(&mut out, 1, self.kind.as_bytes());
        if let Some(m) = &self.metadata {
            put_bytes_field(&mut out, 2, m);
        }
        if let Some(s) = &self.subtype {
            put_bytes_field(&mut out, 3, s.as_bytes());
        }
        out
    }

    /// Decodes block 0; `type` is required.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut kind = None;
        let mut header = Header::default();
        let mut fields = Fields::new(buf);
        while let Some((n, f)) = fields.next_field()? {
            match n {
                1 => kind = Some(expect_string(f, "Header.type")?),
                2 => header.metadata = Some(expect_bytes(f, "Header.metadata")?.to_vec()),
                3 => header.subtype = Some(expect_string(f, "Header.subtype")?),
                _ => {}
            }
        }
        header.kind = kind.ok_or(DecodeError::MissingField("Header.type"))?;
        Ok(header)
    }
}

/// One trie node: a key, an optional value and the pointer trie, plus its cached hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    /// The block index this node was read from (or will be written at).
    pub seq: u64,
    /// The normalised key.
    pub key: String,
    /// The raw value bytes (`valueBuffer`); `None` = null.
    pub value: Option<Vec<u8>>,
    /// Raw flags: bit 0 hidden, user flags shifted left by 8.
    pub raw_flags: u64,
    /// Pointers to other nodes.
    pub trie: TrieBuffer,
    /// The `seq` field as stored (readers use the block index instead).
    pub seq_field: u64,
    hash: Vec<u8>,
    /// Byte ranges of the components within `key`.
    components: Vec<(usize, usize)>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("seq", &self.seq)
            .field("key", &self.key)
            .field("value", &self.value.as_ref().map(hex::encode))
            .field("raw_flags", &self.raw_flags)
            .field("trie", &self.trie)
            .finish()
    }
}

fn component_ranges(key: &str) -> Vec<(usize, usize)> {
    let base = key.as_ptr() as usize;
    split_key(key)
        .into_iter()
        .map(|c| {
            let start = c.as_ptr() as usize - base;
            (start, start + c.len())
        })
        .collect()
}

impl Node {
    /// Builds a node (key is normalised here, as the reference's constructor does).
    pub fn new(
        key: &str,
        value: Option<Vec<u8>>,
        raw_flags: u64,
        trie: TrieBuffer,
        seq: u64,
        hash_fn: Option<&HashFn>,
    ) -> Self {
        let key = normalize_key(key).to_string();
        let hash = match hash_fn {
            Some(h) => h(&key),
            None => default_hash(&key),
        };
        let components = component_ranges(&key);
        Node {
            seq,
            key,
            value,
            raw_flags,
            trie,
            seq_field: seq,
            hash,
            components,
        }
    }

    /// A probe node used by lookups: key and hidden bit only.
    pub fn probe(key: &str, hidden: bool, hash_fn: Option<&HashFn>) -> Self {
        let flags = if hidden { FLAG_HIDDEN } else { 0 };
        Node::new(key, None, flags, TrieBuffer::new(), 0, hash_fn)
    }

    /// Whether the HIDDEN bit is set.
    pub fn hidden(&self) -> bool {
        self.raw_flags & FLAG_HIDDEN != 0
    }

    /// The user flags (`raw >> 8`), what the reference exposes as `node.flags`.
    pub fn flags(&self) -> u64 {
        self.raw_flags >> 8
    }

    /// The node hash bytes.
    pub fn hash(&self) -> &[u8] {
        &self.hash
    }

    /// Number of path digits: `4 * hash.len() + 2`.
    pub fn path_len(&self) -> usize {
        self.hash.len() * 4 + 2
    }

    /// Path digit `i` (0–4).
    pub fn path(&self, i: usize) -> u8 {
        path_digit(self.hidden(), &self.hash, i)
    }

    /// Component `j` of the key, if it has one.
    pub fn component(&self, j: usize) -> Option<&str> {
        self.components.get(j).map(|&(s, e)| &self.key[s..e])
    }

    /// Number of key components.
    pub fn component_count(&self) -> usize {
        self.components.len()
    }

    /// Whether this node and `other` are different strings at digit position `i`
    /// (only meaningful at terminators): at the last digit the full keys are
    /// compared, elsewhere the component that ends at `i`.
    pub fn collides(&self, other: &Node, i: usize) -> bool {
        if i == 0 {
            return false;
        }
        if i == self.path_len() - 1 {
            return self.key != other.key;
        }
        let j = (i - 1) / 32;
        self.component(j) != other.component(j)
    }

    /// Whether this is a reset marker (empty key): reads treat it as "no node".
    pub fn is_reset(&self) -> bool {
        self.key.is_empty()
    }

    /// Encodes the block: key, valueBuffer (if any), trieBuffer, seq, flags.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key.len() + 32);
        put_bytes_field(&mut out, 1, self.key.as_bytes());
        if let Some(v) = &self.value {
            put_bytes_field(&mut out, 2, v);
        }
        put_bytes_field(&mut out, 3, &self.trie.encode());
        put_varint_field(&mut out, 4, self.seq);
        put_varint_field(&mut out, 5, self.raw_flags);
        out
    }

    /// Decodes the block at index `seq`. `key` is required; an absent trieBuffer is
    /// an empty trie, a present one must decode.
    pub fn decode(buf: &[u8], seq: u64, hash_fn: Option<&HashFn>) -> Result<Self, DecodeError> {
        let mut key = None;
        let mut value = None;
        let mut trie = TrieBuffer::new();
        let mut seq_field = 0;
        let mut flags = 0;
        let mut fields = Fields::new(buf);
        while let Some((n, f)) = fields.next_field()? {
            match n {
                1 => key = Some(expect_string(f, "Node.key")?),
                2 => value = Some(expect_bytes(f, "Node.valueBuffer")?.to_vec()),
                3 => trie = TrieBuffer::decode(expect_bytes(f, "Node.trieBuffer")?)?,
                4 => seq_field = expect_varint(f, "Node.seq")?,
                5 => flags = expect_varint(f, "Node.flags")?,
                _ => {}
            }
        }
        let key = key.ok_or(DecodeError::MissingField("Node.key"))?;
        let mut node = Node::new(&key, value, flags, trie, seq, hash_fn);
        node.seq_field = seq_field;
        Ok(node)
    }
}

/// Whether position `i` is a terminator (re-exported for the algorithms).
pub(crate) fn terminator(i: usize) -> bool {
    is_terminator(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header() {
        let h = Header::new(None, None);
        assert_eq!(hex::encode(h.encode()), "0a09687970657274726965");
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        assert!(Header::decode(&[]).is_err());
    }

    #[test]
    fn node_roundtrip_and_reset() {
        let n = Node::new("/a/b", Some(vec![]), 5 << 8, TrieBuffer::new(), 3, None);
        assert_eq!(n.key, "a/b");
        let enc = n.encode();
        let d = Node::decode(&enc, 3, None).unwrap();
        assert_eq!(d, n);
        assert_eq!(d.flags(), 5);
        assert_eq!(d.component(1), Some("b"));
        assert!(Node::decode(&[0x12, 0x00], 1, None).is_err());
        assert!(Node::new("", None, 0, TrieBuffer::new(), 1, None).is_reset());
    }
}
