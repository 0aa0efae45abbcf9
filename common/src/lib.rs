//! What the oxetcd binaries share: the etcd v3 wire API (generated from `proto/`), the server
//! version we report, and small helpers for URLs and keys.

pub mod codec;
pub mod config_file;
pub mod dns;
pub mod duration;
pub mod events;
pub mod go_errors;
pub mod net;
pub mod proto;
pub mod signal;
pub mod systemd;
pub mod tls;
pub mod version;

pub use proto::{
    authpb, etcdserverpb, mvccpb, oxetcdpb, oxetcdpeerpb, v3electionpb, v3lockpb,
    FILE_DESCRIPTOR_SET,
};

/// gRPC metadata a client sets on a write it may send again after a failover (oxetcd-proxy
/// does): members apply a request with a given ID once, and answer a repeat with the first
/// result.
pub const REQUEST_ID_HEADER: &str = "oxetcd-request-id";

/// Metadata oxetcd-proxy adds to each request of a client it verified by certificate: that
/// certificate's common name. A member with `--client-cert-auth` takes it as the user only
/// from a connection whose own certificate names a `--trusted-proxy-cn`; the proxy removes
/// it from whatever a client sends.
pub const FORWARDED_CN_HEADER: &str = "oxetcd-forwarded-cn";

/// gRPC metadata on a member's `Status` answer that names oxetcd's own version; a proxy sends
/// writes again after a failover only to members that set it (they honour
/// [`REQUEST_ID_HEADER`]).
pub const OXETCD_VERSION_HEADER: &str = "oxetcd-version";

/// gRPC metadata on every answer of an oxetcd member: the ID of the leader it follows (decimal),
/// and [`RAFT_TERM_HEADER`] the term of that leadership. A proxy learns leader changes from them.
pub const LEADER_HEADER: &str = "oxetcd-leader";
/// See [`LEADER_HEADER`].
pub const RAFT_TERM_HEADER: &str = "oxetcd-raft-term";
