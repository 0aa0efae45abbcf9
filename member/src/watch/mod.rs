//! Watch: streams of the key space's changes.
//!
//! The apply path publishes every committed revision to the [`WatchHub`]. Each gRPC watch stream
//! ([`stream::serve`]) holds its watchers and one subscription to the hub. A new watcher first
//! replays history from the store, then follows the hub; a stream that falls behind the hub's
//! buffer catches up from the store. Every watcher tracks the next revision it owes its client,
//! so events come in revision order, none missed and none twice, across those switches.

mod hub;
pub(crate) mod stream;

pub(crate) use hub::WatchHub;
