//! Errors of the hypercore layer. Every variant says what failed and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt storage file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("another hypercore is stored in {path} (key {found}, expected {expected})")]
    KeyMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("feed directory {path} is locked by another process")]
    Locked { path: PathBuf },
    #[error("feed is not writable (no secret key)")]
    NotWritable,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("block {index} is too large ({size} bytes; the limit is 8388608)")]
    BlockTooLarge { index: u64, size: usize },
    #[error("block {index} is not available locally")]
    BlockMissing { index: u64 },
    #[error("tree node {index} is not available")]
    NodeMissing { index: u64 },
    #[error("byte offset {offset} is out of bounds (byte length {byte_length})")]
    OutOfBounds { offset: u64, byte_length: u64 },
    #[error("signature for length {length} does not verify")]
    BadSignature { length: u64 },
    #[error("proof for block {index} is invalid: {reason}")]
    BadProof { index: u64, reason: String },
    #[error("missing tree roots needed to verify block {index}")]
    MissingRoots { index: u64 },
    #[error("no hypercore is stored in {path}")]
    NoFeed { path: PathBuf },
    #[error("no signature is stored for length {length}")]
    SignatureMissing { length: u64 },
}

impl CoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
