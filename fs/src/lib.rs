//! The FUSE adapter: turns POSIX calls into hyperdrive lookups and content reads.
//! Built in the mount issue; this crate owns errno mapping and the inode table.
