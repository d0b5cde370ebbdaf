//! Fuzz the DHT datagram and payload decoders, and the node's whole receive path.
#![no_main]

use std::net::SocketAddrV4;
use std::time::Instant;

use hyperdrive::swarm::node::{DhtNode, NodeConfig};
use hyperdrive::swarm::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = wire::Message::decode(data) {
        // Re-encoding a decoded message decodes to the same message.
        assert_eq!(wire::Message::decode(&m.encode()).ok(), Some(m));
    }
    let _ = wire::Holepunch::decode(data);
    let _ = wire::PeersInput::decode(data);
    let _ = wire::PeersOutput::decode(data);
    let _ = wire::decode_nodes(data);
    let _ = wire::decode_peer_list(data);
    let _ = wire::decode_local_peers([10, 0], data);
    let now = Instant::now();
    let mut node = DhtNode::new(NodeConfig::default(), now);
    node.handle_datagram(SocketAddrV4::new([127, 0, 0, 1].into(), 4000), data, now);
    while node.poll_transmit().is_some() {}
});
