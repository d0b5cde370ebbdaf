//! How commands reach peers: one [`Network`] interface over the swarm.
//!
//! A command opens the feeds it needs in the corestore, then [`Network::join`]s with the
//! store as the feed source and the discovery keys of the drives it serves or reads.
//! Peers come from the Hyperswarm DHT (unless `--no-dht`), from `--connect HOST:PORT`
//! (dialled and redialled for as long as the command runs) and from whoever dials our
//! listener (`--listen HOST:PORT`; with the DHT the listener also carries its UDP port).
//! Every connection replicates every open core and answers the peer's requests for cores
//! the store holds on disk, one stream per connection (@corestore/networker's job).

use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyperdrive::protocol::driver::{ConnectionStats, FeedSource, ReplicateOptions};
use hyperdrive::swarm::{
    DhtSettings, MdnsConfig, Replicator, Swarm, SwarmConfig, SwarmStatus, TopicConfig, Transports,
};

pub use hyperdrive::swarm::JoinOptions;

/// The public bootstrap nodes the reference uses (`@hyperswarm/dht` defaults). Used only
/// when neither `--bootstrap` nor `$HYPERMOUNT_BOOTSTRAP` names others.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "bootstrap1.hyperdht.org:49737",
    "bootstrap2.hyperdht.org:49737",
    "bootstrap3.hyperdht.org:49737",
];

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way to find and keep peers.
pub trait Network: Send + Sync {
    /// Starts replicating `source` with peers of the drives `discovery_keys`.
    fn join<'a>(
        &'a self,
        source: Arc<dyn FeedSource>,
        discovery_keys: &'a [[u8; 32]],
        opts: JoinOptions,
    ) -> BoxFut<'a, Result<Session>>;
    /// Whether this network can reach any peer at all (false: local data only).
    fn can_reach_peers(&self) -> bool;
    /// Whether peers come only from the DHT (no `--connect`/`--listen`): one-shot
    /// reads of a drive written here need no peers then.
    fn dht_only(&self) -> bool;
    /// Whether peers can come from somewhere besides the DHT (`--connect` peers or
    /// mDNS), so a DHT failure need not be fatal.
    fn has_peers_besides_dht(&self) -> bool;
}

/// Live connections of one join: counts, totals, and the way to end them.
pub struct Session {
    /// Address we listen on, if any.
    pub listening: Option<SocketAddr>,
    pub stats: Arc<ConnectionStats>,
    peers: Arc<AtomicUsize>,
    swarm: Option<Swarm>,
    replicator: Option<Replicator>,
    /// Why the first DHT run failed for every drive, if it did.
    pub dht_error: Option<String>,
    /// Peers the first DHT run reported.
    pub dht_peers: usize,
}

impl Session {
    /// A session with no peers (no network configured).
    pub fn offline() -> Session {
        Session {
            listening: None,
            stats: Arc::new(ConnectionStats::default()),
            peers: Arc::new(AtomicUsize::new(0)),
            swarm: None,
            replicator: None,
            dht_error: None,
            dht_peers: 0,
        }
    }

    /// Connected (replicating) peers now.
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// A reader of the peer count that outlives borrows of the session.
    pub fn peers_fn(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        let p = self.peers.clone();
        Arc::new(move || p.load(Ordering::Relaxed))
    }

    /// The swarm's counters and DHT state, if there is a swarm.
    pub async fn status(&self) -> Option<SwarmStatus> {
        match &self.swarm {
            Some(s) => Some(s.status().await),
            None => None,
        }
    }

    /// Whether this node looks reachable from outside (spec: two bootstrap nodes agree
    /// on our address). `None` without a DHT.
    pub async fn holepunchable(&self) -> Option<bool> {
        match &self.swarm {
            Some(s) if s.dht().is_some() => Some(s.holepunchable().await),
            _ => None,
        }
    }

    /// Leaves the DHT (unannouncing, bounded), ends every connection (each flushes what
    /// it queued, bounded) and stops listening.
    pub async fn close(mut self) {
        if let Some(r) = &self.replicator {
            r.stop();
        }
        if let Some(s) = self.swarm.take() {
            s.destroy().await;
        }
        if self.replicator.take().is_some() {
            // Streams send their last bytes for up to 2 s after being stopped.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while self.peers() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Where peers come from, as the global options say.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// DHT bootstrap nodes as `HOST:PORT`; `None` with `--no-dht`.
    pub bootstrap: Option<Vec<String>>,
    pub connect: Vec<SocketAddr>,
    pub listen: Option<SocketAddr>,
    /// Announce our LAN address with DHT records, for peers on our /16.
    pub announce_local_address: bool,
    /// Also find peers on the LAN by multicast DNS (`--mdns`).
    pub mdns: bool,
    /// `--transports`.
    pub transports: Transports,
}

/// Parses `--transports`: `tcp`, `utp` or both, comma-separated.
pub fn parse_transports(s: &str) -> std::result::Result<Transports, String> {
    let mut t = Transports {
        tcp: false,
        utp: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "tcp" => t.tcp = true,
            "utp" => t.utp = true,
            other => {
                return Err(format!(
                    "unknown transport {other:?} (use tcp, utp or tcp,utp)"
                ))
            }
        }
    }
    if !t.tcp && !t.utp {
        return Err("give at least one transport: tcp, utp or tcp,utp".into());
    }
    Ok(t)
}

/// The swarm-backed [`Network`].
pub struct SwarmNetwork {
    config: NetConfig,
}

impl SwarmNetwork {
    pub fn new(config: NetConfig) -> SwarmNetwork {
        SwarmNetwork { config }
    }
}

/// Resolves `HOST:PORT` bootstrap entries to IPv4 addresses (the DHT is IPv4 only).
async fn resolve_bootstrap(entries: &[String]) -> Result<Vec<SocketAddrV4>> {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for e in entries {
        match tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host(e.as_str()))
            .await
        {
            Ok(Ok(addrs)) => {
                let v4: Vec<SocketAddrV4> = addrs
                    .filter_map(|a| match a {
                        SocketAddr::V4(a) => Some(a),
                        SocketAddr::V6(_) => None,
                    })
                    .collect();
                if v4.is_empty() {
                    failures.push(format!("{e}: no IPv4 address"));
                }
                for a in v4 {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Ok(Err(err)) => failures.push(format!("{e}: {err}")),
            Err(_) => failures.push(format!("{e}: name lookup timed out")),
        }
    }
    if out.is_empty() {
        bail!(
            "cannot reach the DHT: no bootstrap node resolved ({}); give --bootstrap HOST:PORT \
             of a reachable node, or --no-dht with --connect/--listen",
            failures.join("; ")
        );
    }
    for f in failures {
        tracing::warn!("DHT bootstrap {f}");
    }
    Ok(out)
}

fn v4(addr: SocketAddr, what: &str) -> Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => bail!("{what} {addr}: only IPv4 addresses are supported"),
    }
}

impl Network for SwarmNetwork {
    fn can_reach_peers(&self) -> bool {
        self.config.bootstrap.is_some()
            || !self.config.connect.is_empty()
            || self.config.listen.is_some()
            || self.config.mdns
    }

    fn dht_only(&self) -> bool {
        self.config.bootstrap.is_some()
            && self.config.connect.is_empty()
            && self.config.listen.is_none()
    }

    fn has_peers_besides_dht(&self) -> bool {
        !self.config.connect.is_empty() || self.config.mdns
    }

    fn join<'a>(
        &'a self,
        source: Arc<dyn FeedSource>,
        discovery_keys: &'a [[u8; 32]],
        opts: JoinOptions,
    ) -> BoxFut<'a, Result<Session>> {
        Box::pin(async move {
            let dht = match &self.config.bootstrap {
                Some(entries) => Some(DhtSettings {
                    bootstrap: resolve_bootstrap(entries).await?,
                    ephemeral: None,
                }),
                None => None,
            };
            let bind = match self.config.listen {
                Some(a) => Some(v4(a, "--listen")?),
                None => None,
            };
            let config = SwarmConfig {
                bind,
                dht,
                topics: TopicConfig::default(),
                announce_local_address: self.config.announce_local_address,
                mdns: self.config.mdns.then(MdnsConfig::default),
                transports: self.config.transports,
                ..SwarmConfig::default()
            };
            let swarm = Swarm::bind(config).await.map_err(|e| anyhow!(e))?;
            let conns = swarm
                .connections()
                .ok_or_else(|| anyhow!("swarm connections already taken"))?;
            let replicator =
                Replicator::spawn(conns, source, rand::random(), ReplicateOptions::default());
            for &addr in &self.config.connect {
                swarm.add_peer(v4(addr, "--connect")?);
            }
            let mut dht_error = None;
            let mut dht_peers = 0;
            if swarm.dht().is_some() || self.config.mdns {
                let runs = discovery_keys.iter().map(|dk| swarm.join(*dk, opts));
                let results = futures_util::future::join_all(runs).await;
                let mut errors = Vec::new();
                for r in results {
                    match r {
                        Ok(report) => dht_peers += report.peers,
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if !errors.is_empty() && errors.len() == discovery_keys.len() {
                    let boot = self.config.bootstrap.as_deref().unwrap_or_default();
                    dht_error = Some(format!(
                        "no DHT node answered ({}; bootstrap {})",
                        errors[0],
                        boot.join(",")
                    ));
                }
            }
            let listening = swarm.local_addr().map(SocketAddr::V4);
            Ok(Session {
                listening,
                stats: replicator.stats.clone(),
                peers: replicator.peers_counter(),
                swarm: Some(swarm),
                replicator: Some(replicator),
                dht_error,
                dht_peers,
            })
        })
    }
}

/// Parses `--bootstrap`/`$HYPERMOUNT_BOOTSTRAP` entries: `HOST:PORT`, comma-separated.
pub fn bootstrap_list(given: &[String]) -> Result<Vec<String>> {
    let list: Vec<String> = if given.is_empty() {
        DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect()
    } else {
        given
            .iter()
            .flat_map(|g| g.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for b in &list {
        let (host, port) = b
            .rsplit_once(':')
            .with_context(|| format!("bootstrap node {b:?}: expected HOST:PORT"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            bail!("bootstrap node {b:?}: expected HOST:PORT with a port from 1 to 65535");
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_lists() {
        let both = Transports {
            tcp: true,
            utp: true,
        };
        assert_eq!(parse_transports("tcp,utp"), Ok(both));
        assert_eq!(parse_transports(" UTP , tcp "), Ok(both));
        assert_eq!(
            parse_transports("utp"),
            Ok(Transports {
                tcp: false,
                utp: true
            })
        );
        for bad in ["", ",", "quic", "tcp,udp"] {
            assert!(parse_transports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bootstrap_lists() {
        assert_eq!(bootstrap_list(&[]).unwrap().len(), 3);
        assert_eq!(
            bootstrap_list(&["127.0.0.1:1,127.0.0.2:2".into()]).unwrap(),
            vec!["127.0.0.1:1", "127.0.0.2:2"]
        );
        for bad in ["nope", "host:", ":80", "h:0", "h:99999"] {
            assert!(bootstrap_list(&[bad.into()]).is_err(), "{bad}");
        }
    }

    /// Resolution never leaves the machine here: literals only (a name would ask DNS).
    #[tokio::test]
    async fn bootstrap_resolution() {
        let e = resolve_bootstrap(&["[::1]:7".into()])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot reach the DHT") && e.contains("--no-dht"),
            "{e}"
        );
        assert!(e.contains("no IPv4 address"), "{e}");
        let ok = resolve_bootstrap(&["127.0.0.1:7".into(), "127.0.0.1:7".into()])
            .await
            .unwrap();
        assert_eq!(ok, vec!["127.0.0.1:7".parse::<SocketAddrV4>().unwrap()]);
    }
}
