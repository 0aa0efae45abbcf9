//! The member-to-member protocol on the peer URLs (gRPC service `oxetcdpeerpb.RaftPeer`):
//! openraft's own RPCs (sent by `raft::Network`) and the calls a member makes of its leader or
//! of another member: forward a batch of writes, read index, lease clock, membership change,
//! leadership transfer, "you were removed", cluster members.
//!
//! `client` is the calling half (`Peers`: cached channels, deadlines, typed methods), `service`
//! the answering half. Both speak bincode in `PeerMessage.data`: a request value, and an
//! answer `Result<T, PeerError>`, so a refusal crosses the link as a typed error, never as text
//! to match. Members only ever talk to members of the same version.

mod client;
mod service;

use serde::{Deserialize, Serialize};

pub(crate) use client::Peers;
pub(crate) use service::PeerService;

use crate::error::Applied;
use crate::error::ServerError;

/// The calls besides openraft's.
#[derive(Clone, Copy, Debug)]
enum Call {
    Forward,
    ReadIndex,
    LeaseClock,
    ChangeMembership,
    Transfer,
    Removed,
    ClusterMembers,
    HashKv,
    PreVote,
}

/// How a peer call failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum PeerError {
    /// The call did not complete: not connected, timed out, or the connection broke. The peer
    /// may or may not have acted on it (a forwarded write carries request IDs, so it is safe to
    /// send again).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The member asked is not the leader; it did nothing.
    #[error("the member asked is not the leader")]
    NotLeader,
    /// The member belongs to another cluster.
    #[error("member of another cluster: {0}")]
    WrongCluster(String),
    /// The peer does not know the call (a member of an older version).
    #[error("the peer does not know this call")]
    Unimplemented,
    /// A message that does not decode (a member of another version).
    #[error("bad peer message: {0}")]
    Encoding(String),
    /// The peer answered with an error: final.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl PeerError {
    /// A gRPC status from a peer call: transport trouble, or another cluster's refusal.
    fn from_status(s: &tonic::Status, to: &crate::raft::MemberNode) -> Self {
        match s.code() {
            tonic::Code::PermissionDenied => PeerError::WrongCluster(s.message().to_string()),
            tonic::Code::Unimplemented => PeerError::Unimplemented,
            _ => PeerError::Unreachable(format!("{to}: {}", s.message())),
        }
    }

    /// As the core reports it: a failure to reach the leader is etcd's "unavailable".
    pub(crate) fn into_server(self) -> ServerError {
        match self {
            PeerError::Server(e) => e,
            PeerError::NotLeader => ServerError::NoLeader,
            e => ServerError::Unavailable(e.to_string()),
        }
    }
}

/// The leader's answer to a forwarded batch: each request's result, and the entry's term and
/// log index (the follower answers once it has applied that index itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Forwarded {
    pub results: Vec<Applied>,
    pub term: u64,
    pub log_index: u64,
}
