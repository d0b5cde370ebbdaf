//! hypercore-protocol 8: framing, the Noise XX handshake, the XSalsa20 transport,
//! channels and messages. Protocol logic here is sans-IO: bytes in, messages and
//! actions out; only the driver owns sockets.

pub mod capability;
pub mod cipher;
pub mod driver;
pub mod frame;
pub mod handshake;
pub mod messages;
pub mod net;
pub mod replicate;
pub mod rle;
pub mod stream;

pub use crate::varint;
pub use messages::Message;

/// Why a stream was refused or torn down. Every variant is a disconnect reason.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("frame of {size} bytes exceeds the 8 MiB limit")]
    FrameTooLarge { size: u64 },
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("invalid remote channel capability for discovery key {discovery_key}")]
    BadCapability { discovery_key: String },
    #[error("remote timed out (no data for {ms} ms)")]
    Timeout { ms: u64 },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
