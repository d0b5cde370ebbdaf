//! The FUSE adapter: turns POSIX calls into backend (hyperdrive) lookups and content
//! reads. Owns the [`Backend`] contract, the errno mapping ([`errno`]), the inode table
//! and [`HyperFs`]. Never blocks the FUSE session thread on I/O; never does mounting
//! (that is `mount/`).
#![forbid(unsafe_code)]

pub mod backend;
pub mod drive_backend;
pub mod error;
pub mod fuse;
pub mod inode;
pub mod keep_cache;
pub mod memory;
pub mod meta_cache;

pub use backend::{Attr, Backend, DirEntry, FileKind, SetAttr, StatFs, WriteSource, Xattrs};
pub use drive_backend::{DriveBackend, DriveBackendOptions};
pub use error::{errno, FsError};
pub use fuse::{ChangeFeed, FsStats, HyperFs, HyperFsOptions};
pub use fuser;
pub use memory::MemoryBackend;
