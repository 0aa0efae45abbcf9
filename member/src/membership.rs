//! Membership changes (etcd's MemberAdd / MemberRemove / MemberPromote / MemberUpdate) as
//! openraft configuration changes. They run on the leader; a follower forwards them.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use oxetcd_common::oxetcdpeerpb::PeerMessage;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::raft::MemberNode;
use crate::server::{member_id_at, no_leader, EtcdServer};

/// A requested membership change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipOp {
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: u64,
    },
    Promote {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
}

/// A learner counts as in sync once it has matched this share of the leader's log (etcd's
/// readyPercent).
const PROMOTE_READY: f64 = 0.9;

fn member_not_found() -> Status {
    Status::not_found("etcdserver: member not found")
}

fn raft_error(e: RaftError<u64, ClientWriteError<u64, MemberNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => no_leader(),
        e => Status::failed_precondition(format!("etcdserver: {e}")),
    }
}

impl EtcdServer {
    /// Applies a membership change on the leader, forwarding it there from a follower.
    /// Returns the ID of the member concerned.
    pub async fn change_membership(&self, op: MembershipOp) -> Result<u64, Status> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let node = loop {
            if self.is_leader() {
                match self.change_membership_here(op.clone()).await {
                    // Leadership still settling (vote not committed yet): retry, bounded.
                    Err(s)
                        if s.message() == no_leader().message()
                            && self.settle_leadership(deadline).await =>
                    {
                        continue
                    }
                    other => return other,
                }
            }
            let leader = self.raft.metrics().borrow().current_leader;
            match self.leader_node_of(leader) {
                Some(node) => break node,
                // Between leaders (a membership change can move leadership): wait, bounded.
                None if self.settle_leadership(deadline).await => {}
                None => return Err(no_leader()),
            }
        };
        let mut client = self.peer_client_of(&node)?;
        let data = bincode::serialize(&op).map_err(|e| Status::internal(e.to_string()))?;
        let resp = client
            .change_membership(PeerMessage {
                cluster_id: self.cluster_id,
                data,
            })
            .await?
            .into_inner();
        bincode::deserialize(&resp.data).map_err(|e| Status::internal(e.to_string()))
    }

    /// The leader's side of a membership change.
    pub async fn change_membership_here(&self, op: MembershipOp) -> Result<u64, Status> {
        let membership = self.read_state()?.membership.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let exists = |id: u64| membership.get_node(&id).is_some();
        match op {
            MembershipOp::Add { peer_urls, learner } => {
                if peer_urls.is_empty() {
                    return Err(Status::invalid_argument(
                        "etcdserver: member has no peer URLs",
                    ));
                }
                let taken = membership
                    .nodes()
                    .any(|(_, n)| n.peer_urls.iter().any(|u| peer_urls.contains(u)));
                if taken {
                    return Err(Status::failed_precondition(
                        "etcdserver: Peer URLs already exists",
                    ));
                }
                // As etcd: the time is part of a runtime-added member's ID, so a member removed
                // and added back on the same peer URLs (say, after losing its data dir) is a
                // new member, never mistaken for the old one.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default();
                let id = member_id_at(&peer_urls, &self.cluster_token, now);
                let node = MemberNode {
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                };
                self.raft
                    .add_learner(id, node, false)
                    .await
                    .map_err(raft_error)?;
                if !learner {
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(raft_error)?;
                }
                Ok(id)
            }
            MembershipOp::Remove { id } => {
                if !exists(id) {
                    return Err(member_not_found());
                }
                let change = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                let node = membership.get_node(&id).cloned();
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(raft_error)?;
                // The removed member may never receive the entry that removes it (the leader
                // stops replicating to it): tell it, best effort, so it shuts down as etcd's does.
                if let Some(node) = node.filter(|_| id != self.member_id) {
                    if let Ok(mut client) = self.peer_client_of(&node) {
                        let msg = PeerMessage {
                            cluster_id: self.cluster_id,
                            data: Vec::new(),
                        };
                        tokio::spawn(async move {
                            let call = client.removed(msg);
                            let _ =
                                tokio::time::timeout(std::time::Duration::from_secs(1), call).await;
                        });
                    }
                }
                Ok(id)
            }
            MembershipOp::Promote { id } => {
                if !exists(id) {
                    return Err(member_not_found());
                }
                if voters.contains(&id) {
                    return Err(Status::failed_precondition(
                        "etcdserver: can only promote a learner member",
                    ));
                }
                let m = self.raft.metrics().borrow().clone();
                let last = m.last_log_index.unwrap_or(0) as f64;
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index as f64)
                    .unwrap_or(0.0);
                if matched < last * PROMOTE_READY {
                    return Err(Status::failed_precondition(
                        "etcdserver: can only promote a learner member which is in sync with leader",
                    ));
                }
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(raft_error)?;
                Ok(id)
            }
            MembershipOp::Update { id, peer_urls } => {
                let Some(node) = membership.get_node(&id) else {
                    return Err(member_not_found());
                };
                let node = MemberNode {
                    peer_urls,
                    ..node.clone()
                };
                self.raft
                    .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), false)
                    .await
                    .map_err(raft_error)?;
                Ok(id)
            }
        }
    }
}
