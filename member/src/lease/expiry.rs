//! The lease expiry loop: on the leader, proposes the revoke of every expired lease, so that
//! all members delete its keys at the same revision (etcd's lessor `revokeExpiredLeases`).

use std::sync::Weak;
use std::time::Duration;

use oxetcd_common::etcdserverpb::LeaseRevokeRequest;
use oxetcd_common::oxetcdpb::internal_raft_request::Request;

use crate::error::ServerError;
use crate::mvcc::KvError;
use crate::server::EtcdServer;

/// How often the leader looks for expired leases (etcd checks every 500 ms).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Runs for the member's life. A member that becomes leader first gives every lease a full
/// TTL (it cannot know how long the old leader last saw each keep-alive).
pub(crate) async fn run_expiry(server: Weak<EtcdServer>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    let mut was_leader = false;
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        let leader = server.is_leader();
        if leader && !was_leader {
            server.lessor.refresh_all();
        }
        was_leader = leader;
        if !leader {
            continue;
        }
        for id in server.lessor.expired() {
            match server
                .propose(Request::LeaseRevoke(LeaseRevokeRequest { id }))
                .await
            {
                Ok(_) => tracing::info!(lease = format!("{id:x}"), "lease expired, revoked"),
                // Already revoked by a client meanwhile: nothing left to do.
                Err(ServerError::Kv(KvError::LeaseNotFound)) => server.lessor.forget(id),
                Err(e) => tracing::warn!(
                    lease = format!("{id:x}"),
                    "cannot revoke expired lease: {e}"
                ),
            }
        }
    }
}
