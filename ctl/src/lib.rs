//! oxetcdctl and oxetcdutl: etcdctl's and etcdutl's commands, flags and output for oxetcd
//! (and any etcd). `etcdctl` and `etcdutl` parse their command lines and dispatch; each command
//! group lives in its module, shared by both where they overlap (`snapshot`).

#![deny(unreachable_pub)]

mod alarm;
mod auth;
mod bench;
mod client;
mod coordination;
mod endpoint;
mod error;
mod kv;
mod lease;
mod maintenance;
mod member;
mod output;
mod prompt;
mod snapshot;
mod txn;
mod version;
mod watch;

pub mod etcdctl;
pub mod etcdutl;
