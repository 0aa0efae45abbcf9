//! End-to-end test harness: starts real `oxetcd` (and real `etcd`, the reference) processes on
//! loopback ports chosen at run time, and runs `oxetcdctl` / real `etcdctl` against them.
//!
//! Readiness is awaited, not slept on: each member is started with `NOTIFY_SOCKET` pointing at a
//! datagram socket the test owns, and the test waits for the member's systemd `READY=1` (etcd
//! sends the same message when it is ready to serve).

pub mod dns;
pub mod netns;
pub mod pki;
pub mod prometheus;

mod binaries;
mod client;
mod ctl;
mod process;
mod rng;
mod transcript;

pub use binaries::{bin, bin_dir};
pub use client::{
    channel, client, http_get, http_get_at, http_request, http_request_with, key_space, rows, Row,
};
pub use ctl::{etcdctl_at, Ctl, Running};
pub use process::{free_port, Cluster, Kind, Member, Proxy, CLUSTER_TOKEN};
pub use rng::Rng;
pub use transcript::{
    against_etcd, against_etcd_with, auth_script, first_difference, kv_script, normalize,
    run_script, set_up_auth, write_history, Step, AUTH_SETUP,
};
