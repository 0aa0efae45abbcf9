//! openraft glue: the type configuration, the RocksDB log store and the network that carries
//! openraft's RPCs over the peer protocol (`crate::peer`).
//!
//! The state machine that applies committed entries lives in `crate::apply`.

pub(crate) mod election;
mod log_store;
mod network;

use std::fmt;

use serde::{Deserialize, Serialize};

pub(crate) use log_store::LogStore;
pub(crate) use network::Network;

use crate::error::Applied;

/// How long a leader's new commit index may wait for the next entry to carry it to the
/// followers before a heartbeat carries it alone (openraft's `commit_delay_us`, our patch, see
/// `vendor/openraft/README.oxetcd.md`). Upstream sends each commit at once, so every entry cost
/// each follower two RPCs, even when the next entry was about to go. The proposer sends the
/// commit at once when no entry follows (`server::run_proposer`); this delay only bounds the
/// rest (membership entries, a leader's first entry). tokio's timer rounds it up to its 1 ms
/// tick.
pub(crate) const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// The result of applying one entry, handed back through openraft to whoever wrote it: for
/// each request of the batch, the protobuf-encoded response of its kind, or its error. Empty
/// when the state machine answered the entry's waiters itself (`crate::waiters`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ApplyResult {
    pub responses: Vec<Applied>,
}

/// What a member knows of another: enough to reach its peer URL and to list it in MemberList.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.peer_urls.join(","))
    }
}

/// A raft log entry's payload: a protobuf-encoded `oxetcdpb.InternalRaftRequest`. Kept as bytes
/// so the log stores exactly what was proposed, and decoding happens once, at apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proposal(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proposal({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// oxetcd's raft types: member IDs are etcd member IDs (u64).
    pub(crate) TypeConfig:
        D = Proposal,
        R = ApplyResult,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type LogId = openraft::LogId<u64>;
pub(crate) type StorageError = openraft::StorageError<u64>;
