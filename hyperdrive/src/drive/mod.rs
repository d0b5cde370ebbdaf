//! Hyperdrive 10: files, directories, symlinks and mounts over a metadata trie and a
//! content feed (hyperdrive.md). [`Drive`] is the async API the FUSE adapter uses.
//!
//! Stored bytes match the reference exactly (Stat encoding, block layout, mount records,
//! tags). Where the reference has read-side bugs (hyperdrive.md §8) this module does the
//! correct thing instead: symlink loops end with [`DriveError::Loop`], range reads stop
//! at the end of the file, implicit directories report a clean directory stat, checkouts
//! open mounts at their own versions, and `truncate(path, 0)` empties the file.

mod block_cache;
mod error;
mod ops;
pub mod path;
pub mod stat;
pub mod storage;

pub use error::DriveError;
pub use ops::{
    Change, DirEntry, Drive, DriveOptions, FileHandle, FileWriter, MountInfo, WriteOptions,
    MAX_BLOCK_SIZE, MAX_MOUNT_DEPTH, MAX_SYMLINK_FOLLOWS,
};
pub use stat::{Stat, StatMount};
pub use storage::{DirProvider, FeedProvider, FeedTrieStore, MemoryProvider};
