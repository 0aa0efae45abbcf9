//! What the oxetcd binaries share: the etcd v3 wire API (generated from `proto/`), the server
//! version we report, and small helpers for URLs and keys.

pub mod duration;
pub mod proto;
pub mod signal;
pub mod systemd;
pub mod version;

pub use proto::{authpb, etcdserverpb, mvccpb, oxetcdpb, oxetcdpeerpb, v3electionpb, v3lockpb};
