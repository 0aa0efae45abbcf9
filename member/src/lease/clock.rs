//! The lease clock as any member sees it: only the leader's [`super::Lessor`] renews leases
//! and decides expiry, so a follower asks the leader (peer `LeaseClock`), never its own clock.

use tokio::time::Instant;

use crate::error::ServerError;
use crate::peer::PeerError;
use crate::server::{remaining, EtcdServer, REQUEST_TIMEOUT};

impl EtcdServer {
    /// The leader's lease clock, here: renew a lease (its granted TTL) or read its remaining
    /// TTL; `None` if there is no such lease.
    pub(crate) fn lease_clock_here(
        &self,
        id: i64,
        renew: bool,
    ) -> Result<Option<i64>, ServerError> {
        let exists = crate::mvcc::LeaseCheck::exists(&self.read_state()?.leases, id);
        if !exists {
            return Ok(None);
        }
        Ok(if renew {
            self.lessor.renew(id)
        } else {
            self.lessor.remaining(id)
        })
    }

    /// Asks the leader's lease clock about one lease.
    pub(crate) async fn lease_clock(
        &self,
        id: i64,
        renew: bool,
    ) -> Result<Option<i64>, ServerError> {
        Ok(self.lease_clocks(&[id], renew).await?.pop().flatten())
    }

    /// Asks the leader's lease clock (here or over the peer URL) about each lease of `ids`,
    /// answered in their order. Only the leader renews leases and decides expiry, so a
    /// follower's own clock is never the answer. A renewal is idempotent: it is asked again of
    /// the next leader until the request timeout.
    pub(crate) async fn lease_clocks(
        &self,
        ids: &[i64],
        renew: bool,
    ) -> Result<Vec<Option<i64>>, ServerError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let leader = self.leader_id();
            if leader == Some(self.member_id) {
                return ids
                    .iter()
                    .map(|id| self.lease_clock_here(*id, renew))
                    .collect();
            }
            let Some(node) = self.leader_node(leader, None) else {
                self.settle_leadership(deadline).await?;
                continue;
            };
            let ask = self
                .peers
                .lease_clock(&node, ids, renew, remaining(deadline));
            match self.until_leader_changes(leader, deadline, ask).await {
                Some(Ok(ttls)) if ttls.len() == ids.len() => return Ok(ttls),
                Some(Ok(_)) => {
                    return Err(ServerError::Internal(
                        "the leader's lease clock answered for other leases".into(),
                    ))
                }
                Some(Err(PeerError::Server(e))) => return Err(e),
                Some(Err(e)) if Instant::now() >= deadline => return Err(e.into_server()),
                // Neither an answer nor a new leader before the deadline.
                None if Instant::now() >= deadline => return Err(ServerError::TimedOut),
                // Unreachable, not the leader, or a new leader meanwhile: ask again.
                _ => self.wait_for_other_leader(leader, deadline).await,
            }
        }
    }

    /// Renews a lease: its granted TTL, `None` if there is no such lease. The leader renews
    /// it at once; a follower's renewals go to the leader together (`super::renewals`).
    pub(crate) async fn renew_lease(&self, id: i64) -> Result<Option<i64>, ServerError> {
        if self.is_leader() {
            return self.lease_clock_here(id, true);
        }
        self.renewals.renew(id).await
    }
}
