//! One connection per pair of peers (spec swarm.md 4.4).
//!
//! Two peers that both look each other up dial each other at the same time. After the
//! Noise handshake each side knows both static keys and decides, with the same rule on
//! both ends, which connection survives:
//! - equal keys: a connection to ourselves, dropped;
//! - the first connection for a pair is kept;
//! - of two connections of the same transport, the one dialled by the side with the
//!   smaller key (unsigned byte order) survives;
//! - of a TCP and a uTP connection, TCP survives.
//!
//! A loser we dialled is closed by us (and not redialled while the survivor lives); a
//! loser the remote dialled is left for the remote to close.

use std::collections::HashMap;

/// What the rule needs to know about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMeta {
    /// The swarm's id for the connection.
    pub id: u64,
    /// We dialled it.
    pub client: bool,
    /// TCP (otherwise uTP).
    pub tcp: bool,
}

/// The fate of the connection being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Both keys are ours: drop it.
    ToSelf,
    /// Keep it; `replaced` is an earlier connection to the same peer that now loses.
    Keep { replaced: Option<ConnMeta> },
    /// Another connection to this peer wins.
    Duplicate,
}

/// The pairs of keys with a live, kept connection.
#[derive(Debug, Default)]
pub struct Dedup {
    pairs: HashMap<([u8; 32], [u8; 32]), ConnMeta>,
}

impl Dedup {
    pub fn new() -> Dedup {
        Dedup::default()
    }

    /// Pairs with a kept connection.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Decide `conn`, whose handshake showed our key `local` and the remote's `remote`.
    pub fn decide(&mut self, local: &[u8; 32], remote: &[u8; 32], conn: ConnMeta) -> Verdict {
        if local == remote {
            return Verdict::ToSelf;
        }
        let key = (*local, *remote);
        let Some(other) = self.pairs.get(&key).copied() else {
            self.pairs.insert(key, conn);
            return Verdict::Keep { replaced: None };
        };
        if other.id == conn.id {
            return Verdict::Keep { replaced: None };
        }
        let local_smaller = local < remote;
        let other_loses = if other.tcp == conn.tcp {
            // Same transport: keep the one the smaller key dialled.
            if local_smaller {
                conn.client
            } else {
                !conn.client
            }
        } else {
            !other.tcp
        };
        if other_loses {
            self.pairs.insert(key, conn);
            Verdict::Keep {
                replaced: Some(other),
            }
        } else {
            Verdict::Duplicate
        }
    }

    /// `conn` closed: its pair is free again if it was the kept one.
    pub fn closed(&mut self, conn_id: u64) {
        self.pairs.retain(|_, c| c.id != conn_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    fn tcp(id: u64, client: bool) -> ConnMeta {
        ConnMeta {
            id,
            client,
            tcp: true,
        }
    }

    #[test]
    fn self_connections_are_dropped() {
        assert_eq!(Dedup::new().decide(&A, &A, tcp(1, true)), Verdict::ToSelf);
    }

    /// Both ends see the same two connections and must keep the same one: the one
    /// dialled by the side with the smaller key (A).
    #[test]
    fn both_ends_agree() {
        for first_a in [true, false] {
            for first_b in [true, false] {
                // Connection 1 is dialled by A, connection 2 by B.
                let mut at_a = Dedup::new();
                let mut at_b = Dedup::new();
                let a_sees = |d: &mut Dedup, which: u64| d.decide(&A, &B, tcp(which, which == 1));
                let b_sees = |d: &mut Dedup, which: u64| d.decide(&B, &A, tcp(which, which == 2));
                let order_a = if first_a { [1, 2] } else { [2, 1] };
                let order_b = if first_b { [1, 2] } else { [2, 1] };
                let mut kept_a = None;
                for c in order_a {
                    match a_sees(&mut at_a, c) {
                        Verdict::Keep { .. } => kept_a = Some(c),
                        Verdict::Duplicate => {}
                        Verdict::ToSelf => unreachable!(),
                    }
                }
                let mut kept_b = None;
                for c in order_b {
                    match b_sees(&mut at_b, c) {
                        Verdict::Keep { .. } => kept_b = Some(c),
                        Verdict::Duplicate => {}
                        Verdict::ToSelf => unreachable!(),
                    }
                }
                assert_eq!(kept_a, Some(1), "A's view, order {order_a:?}");
                assert_eq!(kept_b, Some(1), "B's view, order {order_b:?}");
            }
        }
    }

    #[test]
    fn a_later_winner_replaces_the_earlier_connection() {
        let mut d = Dedup::new();
        assert_eq!(
            d.decide(&A, &B, tcp(2, false)),
            Verdict::Keep { replaced: None }
        );
        assert_eq!(
            d.decide(&A, &B, tcp(1, true)),
            Verdict::Keep {
                replaced: Some(tcp(2, false))
            }
        );
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn tcp_beats_utp() {
        let mut d = Dedup::new();
        let utp = ConnMeta {
            id: 1,
            client: true,
            tcp: false,
        };
        d.decide(&A, &B, utp);
        assert_eq!(
            d.decide(&A, &B, tcp(2, false)),
            Verdict::Keep {
                replaced: Some(utp)
            }
        );
        let mut d = Dedup::new();
        d.decide(&A, &B, tcp(2, false));
        assert_eq!(d.decide(&A, &B, utp), Verdict::Duplicate);
    }

    #[test]
    fn a_closed_connection_frees_its_pair() {
        let mut d = Dedup::new();
        d.decide(&A, &B, tcp(1, true));
        d.closed(1);
        assert!(d.is_empty());
        assert_eq!(
            d.decide(&A, &B, tcp(3, false)),
            Verdict::Keep { replaced: None }
        );
        d.closed(99);
        assert_eq!(d.len(), 1, "closing an unknown connection changes nothing");
    }
}
