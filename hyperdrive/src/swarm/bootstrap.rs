//! A standalone bootstrap node for a private DHT (`hypermount dht bootstrap --listen H:P`).
//!
//! It is a persistent node (it sends its id, so it enters other nodes' routing tables and
//! their announce walks can UPDATE it; an ephemeral bootstrap makes announces fail with
//! "No close nodes responded", spec 1.11) and it stores `peers` records like any node.

use std::net::{SocketAddr, SocketAddrV4};

use super::driver::{Dht, DriverError};
use super::node::NodeConfig;

/// Start a persistent bootstrap node on `listen`, optionally joining other bootstrap nodes.
/// The returned handle keeps it running; [`Dht::local_addr`] gives the bound port.
pub async fn spawn(listen: SocketAddr, others: Vec<SocketAddrV4>) -> Result<Dht, DriverError> {
    let config = NodeConfig {
        ephemeral: false,
        bootstrap: others,
        ..NodeConfig::default()
    };
    let dht = Dht::bind(listen, config).await?;
    dht.ready().await?;
    Ok(dht)
}

/// Run a bootstrap node on `listen` until the task stops; `on_ready` is called with the
/// bound address once it is serving (the CLI prints it).
pub async fn run(
    listen: SocketAddr,
    on_ready: impl FnOnce(SocketAddrV4),
) -> Result<(), DriverError> {
    run_with(listen, Vec::new(), on_ready).await
}

/// [`run`], joining the bootstrap nodes `others` (which must be up).
pub async fn run_with(
    listen: SocketAddr,
    others: Vec<SocketAddrV4>,
    on_ready: impl FnOnce(SocketAddrV4),
) -> Result<(), DriverError> {
    let dht = spawn(listen, others).await?;
    tracing::info!(addr = %dht.local_addr(), "dht bootstrap node ready");
    on_ready(dht.local_addr());
    dht.closed().await;
    Err(DriverError::Closed)
}
