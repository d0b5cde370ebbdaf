//! Hyperswarm 2: dht-rpc 4, @hyperswarm/dht 4, @hyperswarm/discovery 2, @hyperswarm/network
//! 2 and the corestore networker's one-stream-per-connection replication (spec swarm.md).
//!
//! Deliberate differences from the reference, each for the reader's sake: a topic that
//! looks up and has no connection runs its DHT walk again after 1 s, doubling to 30 s,
//! instead of waiting 5–10 min (a mount started before its seeder finds it); `--connect`
//! peers are redialled forever with a short backoff; retry timers fire on time rather
//! than in 0.66× batches.
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
//! - [`utp`]: uTP on the DHT's UDP socket (the socket is shared, datagrams demultiplexed).
//! - [`stream`]: a connection's byte stream, TCP or uTP.
//! - [`network`]: the [`Swarm`]: one port for TCP, uTP and the DHT, dials (TCP raced
//!   with holepunch-then-uTP), accepts, and the connections handed to replication.
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
pub mod stream;
pub mod utp;
pub mod wire;

pub use discovery::{JoinOptions, RunReport, TopicConfig};
pub use mdns::MdnsConfig;
pub use network::{
    Connection, ConnectionInfo, DhtSettings, Swarm, SwarmConfig, SwarmError, SwarmStatus,
    Transports,
};
pub use queue::PeerAddr;
pub use replicator::Replicator;
