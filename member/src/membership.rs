//! Membership changes (etcd's MemberAdd / MemberRemove / MemberPromote / MemberUpdate) as
//! openraft configuration changes. They run on the leader; a follower forwards them.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::peer::PeerError;
use crate::raft::MemberNode;
use crate::server::{member_id_at, EtcdServer, REQUEST_TIMEOUT};

/// A requested membership change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum MembershipOp {
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

/// How long the removed member is given to hear that it was removed.
const REMOVED_NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn raft_error(e: RaftError<u64, ClientWriteError<u64, MemberNode>>) -> PeerError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => PeerError::NotLeader,
        e => ServerError::Unavailable(e.to_string()).into(),
    }
}

/// etcd's `types.NewURLs`: at least one URL, each `http` or `https`, with a host and a port
/// and nothing else. A member that cannot be reached would cost the cluster a voter for good.
pub(crate) fn check_peer_urls(urls: &[String]) -> Result<(), ServerError> {
    let valid = |u: &String| -> bool {
        let Some((scheme, rest)) = u.split_once("://") else {
            return false;
        };
        if scheme != "http" && scheme != "https" {
            return false;
        }
        oxetcd_common::net::split_host_port(rest).is_some_and(|(host, _)| !host.is_empty())
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(ServerError::InvalidPeerUrls);
    }
    Ok(())
}

/// etcd's strict reconfiguration check: a change must leave at least a quorum of the voters
/// started (a member counts as started once it has published its name). `voters` are the
/// voters after the change, `started` those of them that are started.
fn enough_started(voters: usize, started: usize) -> Result<(), ServerError> {
    // Going from one voter to two is allowed (etcd's exception): the second must start.
    if voters == 2 && started == 1 {
        return Ok(());
    }
    if started < voters / 2 + 1 {
        return Err(ServerError::NotEnoughStartedMembers);
    }
    Ok(())
}

impl EtcdServer {
    /// Applies a membership change on the leader, forwarding it there from a follower.
    /// Returns the ID of the member concerned.
    pub(crate) async fn change_membership(&self, op: MembershipOp) -> Result<u64, ServerError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let leader = self.leader_id();
            let result = if leader == Some(self.member_id) {
                self.change_membership_here(op.clone()).await
            } else if let Some(node) = self.leader_node_of(leader) {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                self.peers.change_membership(&node, &op, remaining).await
            } else {
                // Between leaders (a membership change can move leadership): wait, bounded.
                self.settle_leadership(deadline).await?;
                continue;
            };
            match result {
                Ok(id) => return Ok(id),
                // Leadership still settling (vote not committed yet): retry, bounded. A change
                // that did not reach the leader was not made.
                Err(PeerError::NotLeader) => self.settle_leadership(deadline).await?,
                Err(e) => return Err(e.into_server()),
            }
        }
    }

    /// The leader's side of a membership change.
    pub(crate) async fn change_membership_here(&self, op: MembershipOp) -> Result<u64, PeerError> {
        if !self.is_leader() {
            return Err(PeerError::NotLeader);
        }
        let (membership, started) = {
            let st = self.read_state()?;
            let started: BTreeSet<u64> = st.attributes.keys().copied().collect();
            (st.membership.membership().clone(), started)
        };
        let started_voters = |voters: &BTreeSet<u64>| voters.intersection(&started).count();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let exists = |id: u64| membership.get_node(&id).is_some();
        match op {
            MembershipOp::Add { peer_urls, learner } => {
                check_peer_urls(&peer_urls)?;
                let taken = membership
                    .nodes()
                    .any(|(_, n)| n.peer_urls.iter().any(|u| peer_urls.contains(u)));
                if taken {
                    return Err(ServerError::PeerUrlExists.into());
                }
                if !learner {
                    enough_started(voters.len() + 1, started_voters(&voters))?;
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
                    return Err(ServerError::MemberNotFound.into());
                }
                if voters.contains(&id) {
                    let mut after = voters.clone();
                    after.remove(&id);
                    enough_started(after.len(), started_voters(&after))?;
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
                    let peers = self.peers.clone();
                    tokio::spawn(async move {
                        let _ = peers.removed(&node, REMOVED_NOTICE_TIMEOUT).await;
                    });
                }
                Ok(id)
            }
            MembershipOp::Promote { id } => {
                if !exists(id) {
                    return Err(ServerError::MemberNotFound.into());
                }
                if voters.contains(&id) {
                    return Err(ServerError::NotALearner.into());
                }
                // The learner counts as started: it is being replicated to.
                enough_started(voters.len() + 1, started_voters(&voters) + 1)?;
                let m = self.raft.metrics().borrow().clone();
                let last = m.last_log_index.unwrap_or(0) as f64;
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index as f64)
                    .unwrap_or(0.0);
                if matched < last * PROMOTE_READY {
                    return Err(ServerError::LearnerNotReady.into());
                }
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(raft_error)?;
                Ok(id)
            }
            MembershipOp::Update { id, peer_urls } => {
                check_peer_urls(&peer_urls)?;
                let Some(node) = membership.get_node(&id) else {
                    return Err(ServerError::MemberNotFound.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_as_etcd_checks_them() {
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_peer_urls(&urls(&["http://127.0.0.1:2380"])).is_ok());
        assert!(check_peer_urls(&urls(&["https://[::1]:2380", "http://h:1"])).is_ok());
        for bad in [
            &[][..],
            &["not a url"],
            &["http://"],
            &["ftp://h:1"],
            &["http://h"],
        ] {
            assert_eq!(
                check_peer_urls(&urls(bad)),
                Err(ServerError::InvalidPeerUrls),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn strict_reconfiguration_keeps_a_started_quorum() {
        // 1 -> 2 voters is allowed (the new one must start), 2 -> 3 with one started is not.
        assert!(enough_started(2, 1).is_ok());
        assert_eq!(
            enough_started(3, 1),
            Err(ServerError::NotEnoughStartedMembers)
        );
        assert!(enough_started(4, 3).is_ok());
        assert_eq!(
            enough_started(6, 3),
            Err(ServerError::NotEnoughStartedMembers)
        );
        // Removing a started voter from three leaves two of two.
        assert!(enough_started(2, 2).is_ok());
        assert_eq!(
            enough_started(2, 0),
            Err(ServerError::NotEnoughStartedMembers)
        );
    }
}
