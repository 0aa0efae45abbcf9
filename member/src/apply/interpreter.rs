//! The request interpreter: what one client request does to the applied state. The innermost
//! layer of the apply pipeline (see `layers`); it knows nothing of raft.

use std::sync::Arc;

use oxetcd_common::etcdserverpb::{LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader};
use oxetcd_common::oxetcdpb::internal_raft_request::Request;
use prost::Message;
use rocksdb::WriteBatch;

use super::layers::{Applier, Context};
use super::state::{MemberState, META_MEMBER_ATTRS};
use crate::lease::{LeaseTable, Lessor};
use crate::mvcc::{self, KvError, Mvcc};
use crate::storage::{Storage, CF_META};

/// Applies requests to mvcc, the lease table and the member attributes.
pub(super) struct Interpreter {
    pub(super) storage: Storage,
    pub(super) lessor: Arc<Lessor>,
}

impl Applier for Interpreter {
    /// Stages the request's writes in `cx.batch` and the events it made in `cx.published`
    /// (handed to watchers once the batch is written).
    fn apply(&self, cx: &mut Context<'_>, req: Request) -> Result<Vec<u8>, KvError> {
        let (state, batch, published) = (&mut *cx.state, &mut *cx.batch, &mut *cx.published);
        let MemberState {
            mvcc,
            leases,
            attributes,
            ..
        } = state;
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
                let mut txn = mvcc.write_txn();
                let resp = mvcc::put(mvcc, &mut txn, &r, leases)?;
                commit(mvcc, leases, txn, batch);
                Ok(resp.encode_to_vec())
            }
            Request::DeleteRange(r) => {
                let mut txn = mvcc.write_txn();
                let resp = mvcc::delete_range(mvcc, &mut txn, &r)?;
                commit(mvcc, leases, txn, batch);
                Ok(resp.encode_to_vec())
            }
            Request::Txn(r) => {
                let mut txn = mvcc.write_txn();
                let resp = mvcc::txn(mvcc, &mut txn, &r, leases)?;
                commit(mvcc, leases, txn, batch);
                Ok(resp.encode_to_vec())
            }
            Request::Compaction(r) => {
                mvcc::compact(mvcc, &r, batch)?;
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
                    None => return Err(KvError::LeaseNotFound),
                };
                // Every attached key goes in one revision.
                let mut txn = mvcc.write_txn();
                for key in keys {
                    txn.delete_range(mvcc, &key, &[])?;
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
