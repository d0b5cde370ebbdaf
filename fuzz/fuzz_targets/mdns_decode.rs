//! Fuzz the mDNS receive path: any datagram on 224.0.0.251:5353 goes through it.
#![no_main]

use std::net::SocketAddrV4;
use std::time::Instant;

use hyperdrive::swarm::mdns::{MdnsState, MAX_PEERS_PER_PACKET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut s = MdnsState::new();
    let now = Instant::now();
    s.join([0xab; 32], Some(4000), true, [1; 32], now);
    s.join([0x01; 32], None, true, [2; 32], now);
    let h = s.handle(data, SocketAddrV4::new([10, 0, 0, 1].into(), 5353));
    assert!(h.peers.len() <= MAX_PEERS_PER_PACKET);
});
