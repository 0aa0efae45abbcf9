//! The request interpreter: what one client request does to the applied state. The innermost
//! layer of the apply pipeline (see `layers`); it knows nothing of raft.

use std::sync::Arc;

use oxetcd_common::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse, AuthRoleRevokePermissionResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse, AuthenticateResponse, LeaseGrantResponse, LeaseRevokeResponse,
    ResponseHeader,
};
use oxetcd_common::oxetcdpb::internal_raft_request::Request;
use prost::Message;
use rocksdb::WriteBatch;

use super::layers::{Applier, Context};
use super::state::{MemberState, META_MEMBER_ATTRS};
use crate::auth::Tokens;
use crate::error::{Applied, ServerError};
use crate::lease::{LeaseTable, Lessor};
use crate::mvcc::{self, KvError, Mvcc};
use crate::storage::{Storage, CF_META};
use crate::watch::WatchHub;

/// Applies requests to mvcc, the lease table, the auth store and the member attributes.
pub(super) struct Interpreter {
    pub(super) storage: Storage,
    pub(super) lessor: Arc<Lessor>,
    /// This member's tokens: a login registers one, a deleted user loses theirs.
    pub(super) tokens: Arc<Tokens>,
    /// The background compaction's work list (see `compaction`).
    pub(super) compactions: tokio::sync::watch::Sender<i64>,
    /// Says whether deletes must read the values they remove for watchers.
    pub(super) hub: WatchHub,
}

impl Interpreter {
    fn write_txn(&self, mvcc: &Mvcc) -> mvcc::WriteTxn {
        let mut txn = mvcc.write_txn();
        if !self.hub.prev_kv_wanted() {
            txn.skip_deleted_values();
        }
        txn
    }
}

impl Applier for Interpreter {
    /// Stages the request's writes in `cx.batch` and the events it made in `cx.published`
    /// (handed to watchers once the batch is written).
    fn apply(&self, cx: &mut Context<'_>, req: Request) -> Applied {
        let (state, batch, published) = (&mut *cx.state, &mut *cx.batch, &mut *cx.published);
        let MemberState {
            mvcc,
            leases,
            attributes,
            auth,
            alarms,
            ..
        } = state;
        let st = &self.storage;
        let header = |rev: i64| {
            Some(ResponseHeader {
                revision: rev,
                ..Default::default()
            })
        };
        let mut commit = |mvcc: &mut Mvcc,
                          leases: &mut LeaseTable,
                          txn: mvcc::WriteTxn,
                          batch: &mut WriteBatch| {
            let events = mvcc.commit(txn, batch);
            if !events.is_empty() {
                leases.observe(&events);
                published.push((mvcc.current_rev(), events));
            }
        };
        match req {
            Request::Put(r) => {
                let mut txn = self.write_txn(mvcc);
                let resp = mvcc::put(mvcc, &mut txn, &r, leases)?;
                commit(mvcc, leases, txn, batch);
                Ok(resp.encode_to_vec())
            }
            Request::DeleteRange(r) => {
                let mut txn = self.write_txn(mvcc);
                let resp = mvcc::delete_range(mvcc, &mut txn, &r, leases)?;
                commit(mvcc, leases, txn, batch);
                Ok(resp.encode_to_vec())
            }
            Request::Txn(r) => {
                let mut txn = self.write_txn(mvcc);
                let resp = mvcc::txn(mvcc, &mut txn, &r, leases)?;
                commit(mvcc, leases, txn, batch);
                Ok(resp.encode_to_vec())
            }
            Request::Compaction(r) => {
                mvcc::compact(mvcc, &r, batch)?;
                self.compactions.send_replace(r.revision);
                let resp = oxetcd_common::etcdserverpb::CompactionResponse {
                    header: header(mvcc.current_rev()),
                };
                Ok(resp.encode_to_vec())
            }
            Request::LeaseGrant(r) => {
                leases.grant(&self.storage, r.id, r.ttl, batch)?;
                self.lessor.start(r.id, r.ttl);
                let resp = LeaseGrantResponse {
                    header: header(mvcc.current_rev()),
                    id: r.id,
                    ttl: r.ttl,
                    error: String::new(),
                };
                Ok(resp.encode_to_vec())
            }
            Request::AuthEnable(_) => {
                auth.enable(st, batch)?;
                let header = header(mvcc.current_rev());
                Ok(AuthEnableResponse { header }.encode_to_vec())
            }
            Request::AuthDisable(_) => {
                auth.disable(st, batch);
                self.tokens.clear();
                let header = header(mvcc.current_rev());
                Ok(AuthDisableResponse { header }.encode_to_vec())
            }
            Request::Authenticate(a) => {
                auth.authenticate(&a.name, a.checked_revision)?;
                let token = self
                    .tokens
                    .assign(&a.name, &a.simple_token, cx.log_index, auth.revision())
                    .map_err(ServerError::Internal)?;
                let header = header(mvcc.current_rev());
                Ok(AuthenticateResponse { header, token }.encode_to_vec())
            }
            Request::UserAdd(r) => {
                auth.user_add(st, batch, &r)?;
                let header = header(mvcc.current_rev());
                Ok(AuthUserAddResponse { header }.encode_to_vec())
            }
            Request::UserDelete(r) => {
                auth.user_delete(st, batch, &r.name)?;
                self.tokens.invalidate_user(&r.name);
                let header = header(mvcc.current_rev());
                Ok(AuthUserDeleteResponse { header }.encode_to_vec())
            }
            Request::UserChangePassword(r) => {
                auth.user_change_password(st, batch, &r.name, &r.hashed_password)?;
                self.tokens.invalidate_user(&r.name);
                let header = header(mvcc.current_rev());
                Ok(AuthUserChangePasswordResponse { header }.encode_to_vec())
            }
            Request::UserGrantRole(r) => {
                auth.user_grant_role(st, batch, &r.user, &r.role)?;
                let header = header(mvcc.current_rev());
                Ok(AuthUserGrantRoleResponse { header }.encode_to_vec())
            }
            Request::UserRevokeRole(r) => {
                auth.user_revoke_role(st, batch, &r.name, &r.role)?;
                let header = header(mvcc.current_rev());
                Ok(AuthUserRevokeRoleResponse { header }.encode_to_vec())
            }
            Request::RoleAdd(r) => {
                auth.role_add(st, batch, &r.name)?;
                let header = header(mvcc.current_rev());
                Ok(AuthRoleAddResponse { header }.encode_to_vec())
            }
            Request::RoleDelete(r) => {
                auth.role_delete(st, batch, &r.role)?;
                let header = header(mvcc.current_rev());
                Ok(AuthRoleDeleteResponse { header }.encode_to_vec())
            }
            Request::RoleGrantPermission(r) => {
                auth.role_grant_permission(st, batch, &r)?;
                let header = header(mvcc.current_rev());
                Ok(AuthRoleGrantPermissionResponse { header }.encode_to_vec())
            }
            Request::RoleRevokePermission(r) => {
                auth.role_revoke_permission(st, batch, &r)?;
                let header = header(mvcc.current_rev());
                Ok(AuthRoleRevokePermissionResponse { header }.encode_to_vec())
            }
            Request::Alarm(r) => Ok(alarms.apply(st, batch, &r).encode_to_vec()),
            Request::MemberAttributes(a) => {
                attributes.insert(a.id, (a.name, a.client_urls));
                let bytes = bincode::serialize(&*attributes)
                    .map_err(|e| KvError::Storage(e.to_string()))?;
                batch.put_cf(self.storage.cf(CF_META), META_MEMBER_ATTRS, bytes);
                Ok(Vec::new())
            }
            Request::LeaseRevoke(r) => {
                let keys = match leases.get(r.id) {
                    Some(l) => l.keys.clone(),
                    None => return Err(KvError::LeaseNotFound.into()),
                };
                // Every attached key goes in one revision.
                let mut txn = self.write_txn(mvcc);
                for key in keys {
                    txn.delete_range(mvcc, leases, &key, &[], false)?;
                }
                commit(mvcc, leases, txn, batch);
                leases.remove(&self.storage, r.id, batch);
                self.lessor.forget(r.id);
                let resp = LeaseRevokeResponse {
                    header: header(mvcc.current_rev()),
                };
                Ok(resp.encode_to_vec())
            }
        }
    }
}
