//! Hyperswarm 2 discovery: dht-rpc 4 and @hyperswarm/dht 4 (spec swarm.md 1–2).
//!
//! - [`wire`]: datagram and payload encodings, byte-exact with the reference.
//! - [`routing`]: the k-bucket routing table.
//! - [`peers`]: the `peers` command (announcement records with TTLs).
//! - [`node`]: the sans-IO DHT node (requests, retries, walks, maintenance).
//! - [`driver`]: a tokio UDP driver and async handle.
//! - [`bootstrap`]: a standalone bootstrap node (`hypermount dht bootstrap`).
//!
//! Connection establishment (TCP/uTP dial of discovered peers, dedup) is not here yet.

pub mod bootstrap;
pub mod driver;
pub mod node;
pub mod peers;
pub mod routing;
pub mod wire;
