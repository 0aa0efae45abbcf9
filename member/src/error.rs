//! The member core's errors: why a request could not be served, in domain terms. The core
//! never builds a `tonic::Status`; `api::error` turns each of these into etcd's gRPC code and
//! message in one table, as etcd's `v3rpc/util.go` does.
//!
//! They are serde types so a leader's answer to a forwarded request crosses the peer link as
//! the same typed error (see `peer`): no code ever matches an error's text.

use serde::{Deserialize, Serialize};

pub(crate) use crate::auth::AuthError;
pub(crate) use crate::mvcc::KvError;

/// What applying one request answered: its encoded response, or why it was refused. Stored
/// with the request ID (`dedup`) and sent back to a forwarding follower.
pub(crate) type Applied = Result<Vec<u8>, ServerError>;

/// Errors of the server, raft, membership and leadership layers; key-space and lease errors
/// found at apply time come through as [`ServerError::Kv`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServerError {
    /// An mvcc or lease rule refused the request.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// Authentication failed, or the user may not do this.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No leader could be found within the request timeout.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request was not finished within the request timeout; it may still be applied.
    #[error("etcdserver: request timed out")]
    TimedOut,
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A leader-only operation (move-leader) reached a follower.
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadTransferee,
    #[error("etcdserver: a leader transfer is already in progress")]
    TransferInProgress,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TransferTimedOut,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    InvalidPeerUrls,
    /// etcd's strict reconfiguration check: the change would leave too few started voters.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: can only promote a learner member")]
    NotALearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Raft or a peer failed in a way a retry may fix (the detail is for the operator).
    #[error("etcdserver: {0}")]
    Unavailable(String),
    /// A bug or a corrupt store: never the client's fault.
    #[error("etcdserver: {0}")]
    Internal(String),
    /// Over `--quota-backend-bytes`, or the NOSPACE alarm is raised: no puts, no lease grants.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: no writes until an operator disarms it.
    #[error("etcdserver: corrupt cluster")]
    CorruptCluster,
    /// Lock and Election: the contender key went away while waiting.
    #[error("etcdserver: contender key was deleted while waiting")]
    ContenderDeleted,
}

impl ServerError {
    /// A response from the apply path that does not decode: a bug, never the client's fault.
    pub fn bad_apply_result(e: impl std::fmt::Display) -> Self {
        ServerError::Internal(format!("bad apply result: {e}"))
    }
}
