//! One joined topic: the announce/lookup refresh loop (spec swarm.md 3).
//!
//! Each run is one DHT walk: `announce` (which also finds peers at every hop) when we
//! serve, `lookup` otherwise. Peers from every reply go to the swarm's queue when the
//! topic looks up. Runs repeat every 300–600 s as the reference does, so announcements
//! (kept 8–16 min by DHT nodes) never lapse. One deliberate addition: after a failed run,
//! and while a looking-up swarm has no connection at all, it runs again after 1 s, 2 s,
//! 4 s … (at most [`TopicConfig::relookup_max`]) instead of waiting minutes, so a mount
//! started before its seeder announced, or whose seeders all left, finds the next seeder
//! quickly, and a seeder whose bootstrap node was down at start announces once it is up.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};

use super::driver::{Dht, DriverError, PeersFound};
use super::queue::PeerAddr;

/// How a topic takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOptions {
    /// Let peers find us: announce our port under the topic.
    pub announce: bool,
    /// Look for peers and dial them.
    pub lookup: bool,
}

/// Timing of the refresh loop.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfig {
    /// Runs repeat after a uniform delay in this range (the reference: 300–600 s).
    pub refresh: (Duration, Duration),
    /// First quick re-lookup delay while no peer is connected; doubles each time.
    pub relookup_min: Duration,
    /// Longest quick re-lookup delay.
    pub relookup_max: Duration,
    /// A graceful leave waits this long for the unannounce walk.
    pub unannounce_timeout: Duration,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            refresh: (Duration::from_secs(300), Duration::from_secs(600)),
            relookup_min: Duration::from_secs(1),
            relookup_max: Duration::from_secs(30),
            unannounce_timeout: Duration::from_secs(3),
        }
    }
}

/// What a topic loop needs from the swarm that runs it.
pub(crate) trait TopicHost: Send + Sync + 'static {
    /// A peer some DHT node reported under this topic.
    fn found(&self, peer: PeerAddr);
    /// Live connections (duplicates included).
    fn connections(&self) -> usize;
    /// Notified when the last connection closes.
    fn lonely(&self) -> &Notify;
}

/// Summary of one walk, reported for the first run of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// DHT nodes whose reply listed peers.
    pub replies: usize,
    /// Distinct peers reported.
    pub peers: usize,
}

/// What a topic loop runs on.
pub(crate) struct TopicRun {
    pub host: Arc<dyn TopicHost>,
    pub dht: Arc<Dht>,
    pub topic: [u8; 32],
    pub opts: JoinOptions,
    pub config: TopicConfig,
    /// Our LAN address, sent with every walk (announce_local_address).
    pub local: Option<SocketAddrV4>,
}

/// Runs a topic until `stop` turns true; unannounces on the way out if it announced.
/// `first` gets the outcome of the first run.
pub(crate) async fn run_topic(
    run: TopicRun,
    first: oneshot::Sender<Result<RunReport, DriverError>>,
    mut stop: watch::Receiver<bool>,
) {
    let TopicRun {
        host,
        dht,
        topic,
        opts,
        config,
        local,
    } = run;
    let mut first = Some(first);
    let mut quick = config.relookup_min;
    loop {
        let walk = async {
            if opts.announce {
                dht.announce(topic, 0, local).await
            } else {
                dht.lookup(topic, local).await
            }
        };
        let res = tokio::select! {
            r = walk => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let report = res.map(|replies| {
            let report = RunReport {
                replies: replies.len(),
                peers: count_peers(&replies),
            };
            if opts.lookup {
                for p in peers_of(&replies, &topic) {
                    host.found(p);
                }
            }
            report
        });
        match &report {
            Ok(r) => tracing::debug!(
                topic = %hex::encode(&topic[..8]),
                replies = r.replies,
                peers = r.peers,
                announce = opts.announce,
                "discovery run done"
            ),
            Err(e) => {
                tracing::info!(topic = %hex::encode(&topic[..8]), error = %e, "discovery run failed")
            }
        }
        let failed_now = report.is_err();
        if let Some(tx) = first.take() {
            let _ = tx.send(report);
        }
        // The next run: soon after a failure or while a looking-up swarm is alone (the
        // reference waits 5–10 min in both cases), else the reference's refresh.
        let alone = failed_now || opts.lookup && host.connections() == 0;
        let delay = if alone {
            let d = quick;
            quick = (quick * 2).min(config.relookup_max);
            d
        } else {
            quick = config.relookup_min;
            random_between(config.refresh)
        };
        let lost_all = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            // Every connection went away: look again soon.
            _ = host.lonely().notified(), if opts.lookup && !alone => true,
            _ = stop.wait_for(|s| *s) => break,
        };
        if lost_all {
            tokio::select! {
                _ = tokio::time::sleep(config.relookup_min) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    if opts.announce {
        let r =
            tokio::time::timeout(config.unannounce_timeout, dht.unannounce(topic, 0, local)).await;
        if let Ok(Err(e)) = r {
            tracing::debug!(topic = %hex::encode(&topic[..8]), error = %e, "unannounce failed");
        }
    }
}

fn random_between((lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_millis() as u64;
    lo + Duration::from_millis(rand::random::<u64>() % (span + 1))
}

fn count_peers(replies: &[PeersFound]) -> usize {
    let mut all: Vec<SocketAddrV4> = replies
        .iter()
        .flat_map(|r| r.peers.iter().chain(r.local_peers.iter().flatten()))
        .copied()
        .collect();
    all.sort();
    all.dedup();
    all.len()
}

/// Every reported peer as the queue takes it: remote peers carry the replying node as
/// referrer and our address as that node saw it; local peers carry neither.
pub(crate) fn peers_of(replies: &[PeersFound], topic: &[u8; 32]) -> Vec<PeerAddr> {
    let mut out = Vec::new();
    for r in replies {
        for &addr in &r.peers {
            out.push(PeerAddr {
                addr,
                local: false,
                to: r.to,
                referrer: Some(r.node),
                topic: Some(*topic),
            });
        }
        for &addr in r.local_peers.iter().flatten() {
            out.push(PeerAddr {
                addr,
                local: true,
                to: None,
                referrer: None,
                topic: Some(*topic),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn replies_become_queue_entries() {
        let replies = vec![
            PeersFound {
                node: a("10.0.0.1:49737"),
                node_id: None,
                to: Some(a("1.2.3.4:5000")),
                peers: vec![a("5.6.7.8:1000"), a("5.6.7.9:1000")],
                local_peers: Some(vec![a("192.168.1.7:2000")]),
            },
            PeersFound {
                node: a("10.0.0.2:49737"),
                node_id: None,
                to: Some(a("1.2.3.4:5000")),
                peers: vec![a("5.6.7.8:1000")],
                local_peers: None,
            },
        ];
        let t = [7u8; 32];
        let peers = peers_of(&replies, &t);
        assert_eq!(peers.len(), 4);
        assert_eq!(peers[0].referrer, Some(a("10.0.0.1:49737")));
        assert_eq!(peers[0].to, Some(a("1.2.3.4:5000")));
        assert!(peers[2].local && peers[2].referrer.is_none());
        assert_eq!(peers[3].referrer, Some(a("10.0.0.2:49737")));
        assert_eq!(count_peers(&replies), 3);
    }

    #[test]
    fn refresh_delays_stay_in_range() {
        let r = (Duration::from_secs(300), Duration::from_secs(600));
        for _ in 0..100 {
            let d = random_between(r);
            assert!(d >= r.0 && d <= r.1);
        }
        assert_eq!(random_between((r.1, r.0)), r.1);
    }
}
