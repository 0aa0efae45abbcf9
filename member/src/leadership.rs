//! Leadership transfer: `Maintenance.MoveLeader` (`etcdctl move-leader`).
//!
//! openraft 0.9 has no transfer, and its followers refuse to vote while their leader's lease
//! (`election_timeout_max` since they last heard from it) runs, which protects reads. So the
//! leader makes room for the transferee step by step:
//! 1. it stops appending: new writes wait at the gate ([`EtcdServer::wait_transfer_gate`]);
//! 2. it waits until the transferee has every entry it has (else no one would vote for it);
//! 3. it asks the other voters to hold their own elections for a while, so the transferee
//!    is the only candidate;
//! 4. it stops its heartbeats and waits out the lease, so the voters will listen;
//! 5. it asks the transferee to campaign, and waits for the transferee to lead.
//!
//! Whatever happens, heartbeats resume, the gate opens and the voters' elections come back
//! (they also come back by themselves when the hold expires, should this member die midway).
//! Writes that waited at the gate then find the new leader and are forwarded there.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::peer::PeerError;
use crate::server::EtcdServer;

/// How long `MoveLeader` may take before etcd's timeout error.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the leader asks of another member during a transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum TransferStep {
    /// Do not start an election for this long (a voter that is not the transferee).
    HoldElections { millis: u64 },
    /// Elections are allowed again.
    ResumeElections,
    /// Start an election now (the transferee).
    Campaign,
}

/// How long a member may take to answer a transfer step.
const STEP_TIMEOUT: Duration = Duration::from_secs(1);

impl EtcdServer {
    /// Waits while a leadership transfer holds writes back (bounded by the transfer timeout).
    pub(crate) async fn wait_transfer_gate(&self) {
        let mut rx = self.transferring.subscribe();
        let _ = tokio::time::timeout(TRANSFER_TIMEOUT, rx.wait_for(|t| !*t)).await;
    }

    /// The leader's side of `MoveLeader`: hands leadership to `target`.
    pub(crate) async fn move_leader(&self, target: u64) -> Result<(), ServerError> {
        if !self.is_leader() {
            return Err(ServerError::NotLeader);
        }
        if target == self.member_id {
            return Ok(());
        }
        let membership = self.read_state()?.membership.membership().clone();
        if !membership.voter_ids().any(|id| id == target) {
            return Err(ServerError::BadTransferee);
        }
        let others: Vec<u64> = membership
            .voter_ids()
            .filter(|id| *id != target && *id != self.member_id)
            .collect();
        if self.transferring.send_replace(true) {
            // Another transfer is under way; it keeps the gate.
            return Err(ServerError::TransferInProgress);
        }
        tracing::info!(
            target = format!("{target:x}"),
            "leadership transfer starting"
        );
        let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
        let result = self.transfer(target, &others, deadline).await;
        self.raft.runtime_config().heartbeat(true);
        for id in &others {
            let _ = self
                .send_transfer_step(*id, TransferStep::ResumeElections)
                .await;
        }
        self.transferring.send_replace(false);
        match &result {
            Ok(()) => tracing::info!(target = format!("{target:x}"), "leadership transferred"),
            Err(e) => tracing::warn!(
                target = format!("{target:x}"),
                "leadership transfer failed: {e}"
            ),
        }
        result
    }

    async fn transfer(
        &self,
        target: u64,
        others: &[u64],
        deadline: tokio::time::Instant,
    ) -> Result<(), ServerError> {
        let election_max = Duration::from_millis(self.raft.config().election_timeout_max);
        // 2. The transferee catches up with everything this leader has.
        let caught_up = self
            .raft
            .wait(Some(deadline - tokio::time::Instant::now()))
            .metrics(
                |m| {
                    let last = m.last_log_index;
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&target))
                        .is_some_and(|matched| matched.as_ref().map(|l| l.index) == last)
                },
                "transferee caught up",
            )
            .await;
        if caught_up.is_err() {
            return Err(ServerError::TransferTimedOut);
        }
        // 3. Only the transferee may campaign.
        let hold = (deadline - tokio::time::Instant::now()).as_millis() as u64;
        for id in others {
            // A voter that cannot be told can still vote; at worst it campaigns too.
            if let Err(e) = self
                .send_transfer_step(*id, TransferStep::HoldElections { millis: hold })
                .await
            {
                tracing::warn!(member = format!("{id:x}"), "cannot hold its elections: {e}");
            }
        }
        // 4. Silence, until the voters' leases on this leader have run out.
        self.raft.runtime_config().heartbeat(false);
        tokio::time::sleep(election_max + Duration::from_millis(50)).await;
        // 5. The transferee campaigns; wait for it to lead.
        self.send_transfer_step(target, TransferStep::Campaign)
            .await?;
        self.raft
            .wait(Some(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            ))
            .metrics(|m| m.current_leader == Some(target), "transferee leads")
            .await
            .map(|_| ())
            .map_err(|_| ServerError::TransferTimedOut)
    }

    async fn send_transfer_step(&self, id: u64, step: TransferStep) -> Result<(), ServerError> {
        let node = self.member_node(id).ok_or(ServerError::BadTransferee)?;
        self.peers
            .transfer(&node, &step, STEP_TIMEOUT)
            .await
            .map_err(PeerError::into_server)
    }

    /// A member's side of a transfer step from the leader.
    pub(crate) async fn transfer_step_here(&self, step: TransferStep) -> Result<(), ServerError> {
        match step {
            // The hold ends by itself after `millis` (`raft::election`).
            TransferStep::HoldElections { millis } => {
                self.elections.hold(Duration::from_millis(millis));
            }
            TransferStep::ResumeElections => self.elections.lift(None),
            TransferStep::Campaign => {
                self.raft
                    .trigger()
                    .elect()
                    .await
                    .map_err(|e| ServerError::Unavailable(e.to_string()))?;
            }
        }
        Ok(())
    }
}
