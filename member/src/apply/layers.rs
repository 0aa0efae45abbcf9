//! The apply pipeline: every committed client request passes through a chain of small layers
//! around the interpreter, as in etcd's applier (auth, quota, capped, corrupt check around
//! one interpreter). A layer may answer by itself (a request applied before), refuse the
//! request (a permission or quota check) or pass it on; what it stages goes into the same
//! RocksDB batch as the request's own writes, so a layer's record and the request it guards
//! are durable together.
//!
//! [`Dedup`] (request IDs applied once), then [`Permissions`] (etcd's auth applier: may the
//! request's user do this, at this point of the log?), then [`Alarms`] (etcd's capped and
//! corrupt appliers: what a raised NOSPACE or CORRUPT alarm refuses) around
//! [`super::interpreter::Interpreter`].

use oxetcd_common::etcdserverpb::AlarmType;
use oxetcd_common::mvccpb::Event;
use oxetcd_common::oxetcdpb::internal_raft_request::Request;
use oxetcd_common::oxetcdpb::InternalRaftRequest;
use rocksdb::WriteBatch;

use super::state::MemberState;
use crate::auth::AuthInfo;
use crate::dedup;
use crate::error::{Applied, ServerError};
use crate::mvcc::KvError;
use crate::quota;
use crate::storage::Storage;

/// What a layer applies a request to: the state, the batch its writes are staged in, the
/// events it made (published once the batch is written), and where the request sits in the log.
pub(super) struct Context<'a> {
    pub(super) state: &'a mut MemberState,
    pub(super) batch: &'a mut WriteBatch,
    pub(super) published: &'a mut Vec<(i64, Vec<Event>)>,
    pub(super) log_index: u64,
    pub(super) position: u32,
    /// Who proposed the request; `None` for a member's own requests (never checked).
    pub(super) who: Option<AuthInfo>,
}

/// One layer of the pipeline.
pub(super) trait Applier {
    fn apply(&self, cx: &mut Context<'_>, req: Request) -> Applied;
}

/// Answers a request whose ID was applied before with its first result, and records the
/// result of a new one (see `dedup`): a client that sends a write again after a failover gets
/// it applied once.
pub(super) struct Dedup<A> {
    pub(super) storage: Storage,
    pub(super) inner: A,
}

impl<A: Applier> Dedup<A> {
    /// The pipeline's entry: a request as proposed, with its optional ID.
    pub(super) fn apply_request(
        &self,
        cx: &mut Context<'_>,
        mut req: InternalRaftRequest,
    ) -> Applied {
        // A login's answer holds a token: never stored, never answered twice.
        let login = matches!(req.request, Some(Request::Authenticate(_)));
        let id = Some(std::mem::take(&mut req.request_id))
            .filter(|id| !id.is_empty() && id.len() <= dedup::MAX_ID_LEN && !login);
        let username = std::mem::take(&mut req.username);
        let seen = id.as_deref().and_then(|id| {
            let (by, first) = cx.state.requests.get(id)?;
            Some((by == username, first))
        });
        match seen {
            Some((true, first)) => return first,
            // Someone else's ID: applied as a request without one.
            Some((false, _)) => return self.apply_unrecorded(cx, req, username),
            None => {}
        }
        let result = self.apply_unrecorded(cx, req, username.clone());
        if let Some(id) = id {
            let rec = dedup::Record {
                log_index: cx.log_index,
                position: cx.position,
                username,
                result: result.clone(),
            };
            cx.state.requests.record(&self.storage, id, rec, cx.batch);
        }
        result
    }

    /// The request through the inner layers, as `username` sent it.
    fn apply_unrecorded(
        &self,
        cx: &mut Context<'_>,
        req: InternalRaftRequest,
        username: String,
    ) -> Applied {
        cx.who = (!req.from_member).then_some(AuthInfo {
            username,
            revision: req.auth_revision,
        });
        match req.request {
            Some(r) => self.inner.apply(cx, r),
            // A request kind this member does not know (a newer member proposed it): every
            // member of this version skips it the same way.
            None => Err(KvError::Corrupt("unknown request kind".into()).into()),
        }
    }
}

/// etcd's auth applier: checks the request's user against the auth state as of this point of
/// the log, so a permission revoked by an earlier entry is never used by a later one. Member
/// requests (`who` is `None`) pass.
pub(super) struct Permissions<A> {
    pub(super) inner: A,
}

impl<A: Applier> Applier for Permissions<A> {
    fn apply(&self, cx: &mut Context<'_>, req: Request) -> Applied {
        if let Some(who) = &cx.who {
            check(cx.state, who, &req)?;
        }
        self.inner.apply(cx, req)
    }
}

/// etcd's `applierV3Capped` (NOSPACE: no puts, no txn with puts, no lease grants) and
/// `applierV3Corrupt` (CORRUPT: no writes, no lease changes). Reads are served outside the
/// apply path and keep working, as in etcd; so do deletes under NOSPACE, to free space.
pub(super) struct Alarms<A> {
    pub(super) inner: A,
}

impl<A: Applier> Applier for Alarms<A> {
    fn apply(&self, cx: &mut Context<'_>, req: Request) -> Applied {
        let alarms = &cx.state.alarms;
        if alarms.is_raised(AlarmType::Corrupt)
            && matches!(
                req,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
            )
        {
            return Err(ServerError::CorruptCluster);
        }
        if alarms.is_raised(AlarmType::Nospace) {
            let capped = match &req {
                Request::Put(_) | Request::LeaseGrant(_) => true,
                Request::Txn(t) => quota::txn_cost(t) > 0,
                _ => false,
            };
            if capped {
                return Err(ServerError::NoSpace);
            }
        }
        self.inner.apply(cx, req)
    }
}

fn check(state: &MemberState, who: &AuthInfo, req: &Request) -> Result<(), ServerError> {
    let auth = &state.auth;
    if !auth.is_enabled() {
        return Ok(());
    }
    let lease_keys = |id: i64| -> Vec<Vec<u8>> {
        state
            .leases
            .get(id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    };
    match req {
        Request::Put(r) => auth.check_put(who, r, &lease_keys)?,
        Request::DeleteRange(r) => auth.check_delete(who, r)?,
        Request::Txn(t) => auth.check_txn(who, t, &lease_keys)?,
        Request::LeaseRevoke(r) => auth.check_lease_keys(who, &lease_keys(r.id))?,
        // etcd checks neither a lease grant nor a login's permissions, nor alarms.
        Request::LeaseGrant(_)
        | Request::Authenticate(_)
        | Request::MemberAttributes(_)
        | Request::Alarm(_) => {}
        // Compaction is cluster-wide and destroys history: root only (etcd lets any user).
        Request::Compaction(_)
        | Request::AuthEnable(_)
        | Request::AuthDisable(_)
        | Request::UserAdd(_)
        | Request::UserDelete(_)
        | Request::UserChangePassword(_)
        | Request::UserGrantRole(_)
        | Request::UserRevokeRole(_)
        | Request::RoleAdd(_)
        | Request::RoleDelete(_)
        | Request::RoleGrantPermission(_)
        | Request::RoleRevokePermission(_) => auth.check_admin(who)?,
    }
    Ok(())
}
