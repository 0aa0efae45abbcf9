//! Whole-request permission checks, as etcd's `authApplierV3`: what a Put, DeleteRange, Txn or
//! lease operation must be allowed to read and write. Writes are checked at apply (in log
//! order), reads and read-only txns at the API before they are served.

use oxetcd_common::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};

use super::{Access, AuthError, AuthInfo, AuthStore};

impl AuthStore {
    pub(crate) fn check_range(&self, who: &AuthInfo, r: &RangeRequest) -> Result<(), AuthError> {
        self.check(who, &r.key, &r.range_end, Access::Read)
    }

    /// Write on the key; read too with `prev_kv`. A put that attaches a lease must also be
    /// allowed to write every key the lease holds already (`lease_keys`): otherwise the user
    /// could revoke it later, deleting keys they cannot write.
    pub(crate) fn check_put(
        &self,
        who: &AuthInfo,
        r: &PutRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), AuthError> {
        if !self.is_enabled() {
            return Ok(());
        }
        self.check(who, &r.key, &[], Access::Write)?;
        if r.lease != 0 {
            self.check_lease_keys(who, &lease_keys(r.lease))?;
        }
        if r.prev_kv {
            self.check(who, &r.key, &[], Access::Read)?;
        }
        Ok(())
    }

    pub(crate) fn check_delete(
        &self,
        who: &AuthInfo,
        r: &DeleteRangeRequest,
    ) -> Result<(), AuthError> {
        self.check(who, &r.key, &r.range_end, Access::Write)?;
        if r.prev_kv {
            self.check(who, &r.key, &r.range_end, Access::Read)?;
        }
        Ok(())
    }

    /// Every compare reads; every operation of both branches is checked, nested txns too
    /// (whichever branch runs, the check does not depend on the data).
    pub(crate) fn check_txn(
        &self,
        who: &AuthInfo,
        t: &TxnRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), AuthError> {
        if !self.is_enabled() {
            return Ok(());
        }
        for c in &t.compare {
            self.check(who, &c.key, &c.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => self.check_range(who, r)?,
                Some(request_op::Request::RequestPut(p)) => self.check_put(who, p, lease_keys)?,
                Some(request_op::Request::RequestDeleteRange(d)) => self.check_delete(who, d)?,
                Some(request_op::Request::RequestTxn(n)) => self.check_txn(who, n, lease_keys)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Revoking a lease deletes its keys: the user must be allowed to write each.
    pub(crate) fn check_lease_keys(
        &self,
        who: &AuthInfo,
        keys: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        for key in keys {
            self.check(who, key, &[], Access::Write)?;
        }
        Ok(())
    }

    /// Reading a lease's keys (TimeToLive with `keys`) needs read on each, as etcd ≥ 3.5.8.
    pub(crate) fn check_read_keys(
        &self,
        who: &AuthInfo,
        keys: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        for key in keys {
            self.check(who, key, &[], Access::Read)?;
        }
        Ok(())
    }
}
