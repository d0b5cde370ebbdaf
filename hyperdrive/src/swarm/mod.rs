//! Hyperswarm 2 discovery: dht-rpc 4 and @hyperswarm/dht 4 (spec swarm.md 1–2).
//!
//! - [`wire`]: datagram and payload encodings, byte-exact with the reference.
//! - [`routing`]: the k-bucket routing table.
//! - [`peers`]: the `peers` command (announcement records with TTLs).
//! - [`node`]: the sans-IO DHT node (requests, retries, walks, maintenance).
//! - [`driver`]: a tokio UDP driver and async handle.
//! - [`bootstrap`]: a standalone bootstrap node (`hypermount dht bootstrap`).
//! - [`queue`]: which discovered peer to dial next, and when to retry (sans-IO).
//! - [`dedup`]: one connection per pair of peers, decided on the Noise keys (sans-IO).
//! - [`mdns`]: LAN discovery by multicast DNS, as the reference (off unless asked for).
//! - [`discovery`]: a joined topic's announce/lookup refresh loop.
//! - [`network`]: the [`Swarm`]: one port for TCP and the DHT, dials, accepts, and the
//!   connections handed to replication.
//! - [`replicator`]: one replication stream per connection, every feed of a source on it.

pub mod bootstrap;
pub mod dedup;
pub mod discovery;
pub mod driver;
pub mod mdns;
pub mod network;
pub mod node;
pub mod peers;
pub mod queue;
pub mod replicator;
pub mod routing;
pub mod wire;

pub use discovery::{JoinOptions, RunReport, TopicConfig};
pub use mdns::MdnsConfig;
pub use network::{
    Connection, ConnectionInfo, DhtSettings, Swarm, SwarmConfig, SwarmError, SwarmStatus,
};
pub use queue::PeerAddr;
pub use replicator::Replicator;
