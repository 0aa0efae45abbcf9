//! oxetcd member: one storage member of an etcd-compatible cluster.
//!
//! A write travels `api` -> `server::propose` -> openraft (`raft`: log append, fsync, commit)
//! -> `apply` (the state machine) -> `mvcc` -> back to the waiting request. A read goes `api` ->
//! `server::read_barrier` (unless serializable) -> `mvcc`.

// openraft's storage traits return its `StorageError` (224 bytes) by value; our helpers on that
// path return the same type rather than boxing and unboxing at every trait boundary.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod apply;
pub mod concurrency;
pub mod config;
pub mod dedup;
pub mod discovery;
pub mod error;
pub mod leadership;
pub mod lease;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub mod raft;
pub mod server;
pub mod storage;
pub mod watch;
