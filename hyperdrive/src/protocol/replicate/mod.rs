//! Replication semantics of hypercore 9 (which blocks to ask for, what to announce,
//! how to answer), as state machines over a borrowed [`crate::core::Feed`].

pub mod extension;
pub mod peer;
pub mod ranges;
pub mod shared;
pub mod wants;

pub use extension::{ExtensionHandler, ExtensionReply, Extensions, OutgoingExtension};
pub use peer::{Effects, PeerFeed, PeerStats, ReplicateError};
pub use ranges::RangeSet;
pub use shared::{FetchError, SharedFeed};
pub use wants::Wants;
