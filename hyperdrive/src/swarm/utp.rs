//! uTP (BEP 29, as libutp and the reference's utp-native speak it) on the DHT's UDP
//! socket. hyperswarm listens for TCP and uTP on one port number and shares the UDP
//! socket between dht-rpc and uTP; a peer behind a NAT can only be reached over uTP,
//! after a holepunch through a DHT node (spec 1.12, 4.2).
//!
//! The DHT driver reads the socket and hands over every datagram that looks like uTP
//! ([`is_utp`]) through a [`UtpInbox`]; [`SharedUdp`] is the transport the uTP stack
//! (librqbit-utp) reads from that inbox and sends through the shared socket.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use librqbit_dualstack_sockets::PollSendToVectored;
use librqbit_utp::{SocketOpts, Transport, UtpSocket};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// uTP datagrams waiting for the uTP stack; more are dropped (uTP retransmits).
pub const INBOX_CAPACITY: usize = 4096;
/// A uTP header is 20 bytes.
const HEADER_LEN: usize = 20;

/// Whether a datagram is uTP rather than dht-rpc: a uTP header starts with
/// `type << 4 | version 1`, types 0–4 (DATA, FIN, STATE, RESET, SYN). A dht-rpc message
/// is protobuf and starts with a field tag (0x08 for its first field), never `0x?1`.
pub fn is_utp(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0x0f == 1 && buf[0] >> 4 <= 4
}

/// uTP datagrams handed over by the socket's reader.
#[derive(Debug, Default)]
pub struct UtpInbox {
    queue: Mutex<VecDeque<(Vec<u8>, SocketAddr)>>,
    ready: Notify,
}

impl UtpInbox {
    pub fn new() -> Arc<UtpInbox> {
        Arc::new(UtpInbox::default())
    }

    /// Queues a datagram; false if the inbox was full and it was dropped.
    pub fn push(&self, datagram: &[u8], from: SocketAddr) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= INBOX_CAPACITY {
            return false;
        }
        q.push_back((datagram.to_vec(), from));
        drop(q);
        self.ready.notify_one();
        true
    }

    fn try_pop(&self) -> Option<(Vec<u8>, SocketAddr)> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    async fn pop(&self) -> (Vec<u8>, SocketAddr) {
        loop {
            if let Some(d) = self.try_pop() {
                return d;
            }
            // notify_one stores a permit when nobody waits, so a push between the
            // check above and this wait is not lost.
            self.ready.notified().await;
        }
    }
}

/// The uTP stack's transport: reads from the inbox, sends through the shared socket.
#[derive(Debug)]
pub struct SharedUdp {
    socket: Arc<UdpSocket>,
    inbox: Arc<UtpInbox>,
    local: SocketAddr,
}

impl SharedUdp {
    pub fn new(socket: Arc<UdpSocket>, inbox: Arc<UtpInbox>) -> io::Result<SharedUdp> {
        let local = socket.local_addr()?;
        Ok(SharedUdp {
            socket,
            inbox,
            local,
        })
    }
}

impl PollSendToVectored for SharedUdp {
    fn poll_send_to_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let datagram: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.socket.poll_send_to(cx, &datagram, target)
    }
}

impl Transport for SharedUdp {
    // The trait wants `Send + Sync` futures, which an `async fn` can't promise.
    #[allow(clippy::manual_async_fn)]
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = io::Result<(usize, SocketAddr)>> + Send + Sync + 'a {
        async move {
            let (datagram, from) = self.inbox.pop().await;
            let n = datagram.len().min(buf.len());
            buf[..n].copy_from_slice(&datagram[..n]);
            Ok((n, from))
        }
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send + Sync + 'a {
        std::future::poll_fn(move |cx| self.socket.poll_send_to(cx, buf, target))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_send_to(cx, buf, target)
    }

    fn bind_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Names the uTP stack's default environment (clock and randomness), which the crate
/// uses but does not export.
pub trait EnvOf {
    type Env;
}

impl<T, E> EnvOf for UtpSocket<T, E> {
    type Env = E;
}

type DefaultEnv = <librqbit_utp::UtpSocketUdp as EnvOf>::Env;

/// The uTP stack on a shared socket.
pub type Utp = Arc<UtpSocket<SharedUdp, DefaultEnv>>;

/// Starts uTP on `socket`, fed by `inbox`; it stops when `cancel` fires.
pub fn start(
    socket: Arc<UdpSocket>,
    inbox: Arc<UtpInbox>,
    cancel: CancellationToken,
) -> io::Result<Utp> {
    let transport = SharedUdp::new(socket, inbox)?;
    let opts = SocketOpts {
        cancellation_token: cancel,
        disable_nagle: true,
        ..SocketOpts::default()
    };
    UtpSocket::new_with_opts(transport, Default::default(), opts).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_utp_from_dht_rpc() {
        let mut syn = [0u8; 20];
        syn[0] = 0x41;
        assert!(is_utp(&syn));
        for t in 0..=4u8 {
            syn[0] = t << 4 | 1;
            assert!(is_utp(&syn));
        }
        syn[0] = 0x51;
        assert!(!is_utp(&syn), "no type 5");
        syn[0] = 0x42;
        assert!(!is_utp(&syn), "version 2");
        assert!(!is_utp(&[0x41; 19]), "shorter than a header");
        let ping = crate::swarm::wire::Message::new(crate::swarm::wire::MessageType::Query, 1);
        assert!(!is_utp(&ping.encode()));
    }

    #[tokio::test]
    async fn a_full_inbox_drops() {
        let inbox = UtpInbox::new();
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..INBOX_CAPACITY {
            assert!(inbox.push(b"x", from));
        }
        assert!(!inbox.push(b"x", from));
        assert_eq!(inbox.pop().await, (b"x".to_vec(), from));
    }
}
