//! The Dat2 hyperstack in Rust, byte-compatible with the Node.js reference.
//!
//! Layers, each depending only on the ones listed before it:
//! - [`core`]: Hypercore 9 signed append-only logs (flat tree, hashes, signatures,
//!   proofs, bitfield, Node-compatible files). Never touches the network.
//! - [`protocol`]: the hypercore-protocol 8 wire (framing, Noise XX, XSalsa20,
//!   channels, messages) as sans-IO state machines plus a thin tokio driver.
//! - [`store`]: many feeds in one folder, corestore-5 layout and key derivation.
//! - [`trie`]: Hypertrie 5 with mounts.
//! - [`drive`]: Hyperdrive 10.
//! - [`swarm`]: Hyperswarm 2 discovery and connections.
#![forbid(unsafe_code)]

pub mod core;
pub mod drive;
pub mod protocol;
pub mod store;
pub mod swarm;
pub mod trie;
pub mod varint;
