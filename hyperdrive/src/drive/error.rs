//! Typed drive errors. Each carries the drive path it concerns so the FUSE layer can log
//! it, and maps to a Linux errno with [`DriveError::errno`].

use crate::trie::TrieError;

/// Why a drive operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// No entry at this path.
    #[error("no such file or directory: {path}")]
    NotFound {
        /// Drive path.
        path: String,
    },
    /// A path component that must be a directory is not.
    #[error("not a directory: {path}")]
    NotADirectory {
        /// Drive path.
        path: String,
    },
    /// A file operation on a directory.
    #[error("is a directory: {path}")]
    IsADirectory {
        /// Drive path.
        path: String,
    },
    /// The entry already exists.
    #[error("already exists: {path}")]
    Exists {
        /// Drive path.
        path: String,
    },
    /// The directory has entries.
    #[error("directory not empty: {path}")]
    NotEmpty {
        /// Drive path.
        path: String,
    },
    /// The drive (or the checkout, or the mounted drive) is not writable.
    #[error("read-only drive: {path}")]
    ReadOnly {
        /// Drive path.
        path: String,
    },
    /// Too many symlinks or nested mounts (a cycle).
    #[error("too many levels of symbolic links or mounts: {path}")]
    Loop {
        /// Drive path.
        path: String,
    },
    /// The path cannot name a drive entry.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// Drive path as given.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A bad argument (e.g. unmount of something that is not a mount).
    #[error("invalid argument for {path}: {reason}")]
    InvalidArgument {
        /// Drive path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A block did not arrive in time.
    #[error("timed out reading {path}")]
    Timeout {
        /// Drive path.
        path: String,
    },
    /// Stored data does not decode.
    #[error("corrupt entry {path}: {reason}")]
    Corrupt {
        /// Drive path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A feed could not be opened or read.
    #[error("storage error at {path}: {reason}")]
    Storage {
        /// Drive path (or feed key).
        path: String,
        /// What failed.
        reason: String,
    },
}

impl DriveError {
    /// Linux errno for a FUSE reply.
    pub fn errno(&self) -> i32 {
        match self {
            DriveError::NotFound { .. } => 2,
            DriveError::NotADirectory { .. } => 20,
            DriveError::IsADirectory { .. } => 21,
            DriveError::Exists { .. } => 17,
            DriveError::NotEmpty { .. } => 39,
            DriveError::ReadOnly { .. } => 30,
            DriveError::Loop { .. } => 40,
            DriveError::InvalidPath { .. } | DriveError::InvalidArgument { .. } => 22,
            DriveError::Timeout { .. } => 110,
            DriveError::Corrupt { .. } | DriveError::Storage { .. } => 5,
        }
    }

    /// Wraps a trie error for `path`.
    pub fn from_trie(path: &str, e: TrieError) -> Self {
        let path = path.to_string();
        match e {
            TrieError::NotWritable => DriveError::ReadOnly { path },
            TrieError::Timeout { .. } => DriveError::Timeout { path },
            TrieError::Decode { .. } | TrieError::Corrupt { .. } => DriveError::Corrupt {
                path,
                reason: e.to_string(),
            },
            other => DriveError::Storage {
                path,
                reason: other.to_string(),
            },
        }
    }
}
