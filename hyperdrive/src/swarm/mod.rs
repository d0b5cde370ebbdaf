//! Hyperswarm 2 discovery (dht-rpc, @hyperswarm/dht) and connections. Built in the
//! swarm issue.
