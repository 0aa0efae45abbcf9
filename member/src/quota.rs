//! The backend space quota (`--quota-backend-bytes`, etcd's `etcdserver/quota.go`).
//!
//! Before a put, a txn or a lease grant is proposed, the member checks that its database plus
//! the request's estimated cost stays under the quota; if not it raises the NOSPACE alarm for
//! itself (through raft, so every member caps writes from then on) and refuses the request with
//! "etcdserver: mvcc: database space exceeded". Deletes, reads, compaction and defragment are
//! never checked, so an operator can always free space and then `alarm disarm`.

use oxetcd_common::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmType, PutRequest, TxnRequest,
};
use oxetcd_common::oxetcdpb::internal_raft_request::Request;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// etcd's default quota (2 GiB) when `--quota-backend-bytes` is 0.
pub(crate) const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

/// etcd's estimate of what storing one key costs beyond its key and value.
const KV_OVERHEAD: usize = 256;
/// etcd's estimate of a lease's cost.
pub(crate) const LEASE_COST: usize = 64;

/// The quota in bytes: `None` when disabled (a negative `--quota-backend-bytes`, as etcd).
pub(crate) fn quota_bytes(flag: i64) -> Option<i64> {
    match flag {
        q if q < 0 => None,
        0 => Some(DEFAULT_QUOTA_BYTES),
        q => Some(q),
    }
}

/// What `Status.dbSizeQuota` reports: the quota in force, 0 when disabled.
pub(crate) fn reported_quota(flag: i64) -> i64 {
    quota_bytes(flag).unwrap_or(0)
}

pub(crate) fn put_cost(r: &PutRequest) -> usize {
    KV_OVERHEAD + r.key.len() + r.value.len()
}

/// The larger of the two branches' puts (etcd 3.4 counts the top level only).
pub(crate) fn txn_cost(r: &TxnRequest) -> usize {
    let branch = |ops: &[oxetcd_common::etcdserverpb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

impl EtcdServer {
    /// etcd's quota check before proposing a request of this `cost`: over the quota, raise
    /// NOSPACE (best effort; the refusal does not wait for it) and refuse.
    pub(crate) async fn check_quota(&self, cost: usize) -> Result<(), ServerError> {
        let Some(quota) = quota_bytes(self.limits.quota_backend_bytes) else {
            return Ok(());
        };
        if self.storage.size() + (cost as i64) < quota {
            return Ok(());
        }
        let alarm = Request::Alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.member_id,
            alarm: AlarmType::Nospace as i32,
        });
        if let Err(e) = self.propose(alarm).await {
            tracing::warn!("raising the NOSPACE alarm: {e}");
        }
        Err(ServerError::NoSpace)
    }
}
