//! oxetcd member: one storage member of an etcd-compatible cluster.
//!
//! A write travels `api` -> `server::propose` -> openraft (`raft`: log append, fsync, commit)
//! -> `apply` (the state machine) -> `mvcc` -> back to the waiting request. A read goes `api` ->
//! `server::read_barrier` (unless serializable) -> `mvcc`.

// openraft's storage traits return its `StorageError` (224 bytes) by value; our helpers on that
// path return the same type rather than boxing and unboxing at every trait boundary.
#![allow(clippy::result_large_err)]
// Only `config` and `member` are the binary's; everything else is the crate's own, so rustc
// can tell what is dead.
#![deny(unreachable_pub)]

mod alarm;
mod api;
mod apply;
mod auth;
mod compactor;
mod concurrency;
pub mod config;
mod corrupt;
mod dedup;
mod descriptors;
mod discovery;
mod error;
mod identity;
mod leadership;
mod lease;
pub mod logging;
pub mod member;
mod membership;
mod metrics;
mod mvcc;
pub mod offline;
mod peer;
mod quota;
mod raft;
mod server;
pub mod snapshot;
mod storage;
mod tasks;
mod tls;
mod waiters;
mod watch;
