//! The state machine: applies committed raft entries to the MVCC store.
//!
//! Every call to `apply` writes one RocksDB batch holding all the key-space changes of its
//! entries together with the applied log id and membership, so a crash never half-applies an
//! entry: after a restart openraft replays the log from the applied id. The batch is not synced
//! on its own; the raft log's synced appends make it durable, and anything lost is re-applied.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{Entry, EntryPayload, RaftSnapshotBuilder, StorageIOError, StoredMembership};
use oxetcd_common::oxetcdpb::{internal_raft_request::Request, RaftBatch};
use prost::Message;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use oxetcd_common::etcdserverpb::{LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader};
use oxetcd_common::mvccpb::Event;

use crate::dedup::{self, AppliedRequests};
use crate::lease::{LeaseTable, Lessor};
use crate::mvcc::{self, KvError, Mvcc};
use crate::raft::{LogId, MemberNode, StorageError, TypeConfig};
use crate::storage::{Storage, CF_KV, CF_LEASE, CF_META};
use crate::watch::WatchHub;

const META_APPLIED: &[u8] = b"applied";
const META_MEMBERSHIP: &[u8] = b"membership";
const META_MEMBER_ATTRS: &[u8] = b"member_attrs";

/// The result of applying one entry, handed back to the proposer through openraft: for each
/// request of the batch, the protobuf-encoded response of its kind, or its error.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApplyResult {
    pub responses: Vec<Result<Vec<u8>, KvError>>,
}

/// The member's applied state, shared with the read path.
pub struct MemberState {
    pub mvcc: Mvcc,
    pub leases: LeaseTable,
    pub applied: Option<LogId>,
    pub membership: StoredMembership<u64, MemberNode>,
    /// What each member published about itself: name and client URLs.
    pub attributes: std::collections::BTreeMap<u64, (String, Vec<String>)>,
    /// Request IDs already applied, with their results.
    pub requests: AppliedRequests,
}

#[derive(Clone)]
pub struct StateMachine {
    storage: Storage,
    state: Arc<RwLock<MemberState>>,
    lessor: Arc<Lessor>,
    hub: WatchHub,
}

/// The whole state machine in one blob: small clusters first; a streamed RocksDB checkpoint
/// replaces this when snapshots have to scale.
#[derive(Serialize, Deserialize)]
struct SnapshotBlob {
    meta_rows: Rows,
    kv_rows: Rows,
    lease_rows: Rows,
}

/// The column families a snapshot carries, in `SnapshotBlob` order.
const SNAPSHOT_CFS: [&str; 3] = [CF_META, CF_KV, CF_LEASE];

/// Raw (key, value) rows of a column family.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn load_state(storage: &Storage) -> Result<MemberState, StorageError> {
    let meta = storage.cf(CF_META);
    let get = |k: &[u8]| storage.db().get_cf(meta, k).map_err(read_err);
    let applied = match get(META_APPLIED)? {
        Some(b) => bincode::deserialize(&b).map_err(read_err)?,
        None => None,
    };
    let membership = match get(META_MEMBERSHIP)? {
        Some(b) => bincode::deserialize(&b).map_err(read_err)?,
        None => StoredMembership::default(),
    };
    let attributes = match get(META_MEMBER_ATTRS)? {
        Some(b) => bincode::deserialize(&b).map_err(read_err)?,
        None => Default::default(),
    };
    let mvcc = Mvcc::open(storage.clone()).map_err(read_err)?;
    let mut leases = LeaseTable::open(storage).map_err(read_err)?;
    for (key, lease) in mvcc.leased_keys().map_err(read_err)? {
        leases.attach(lease, &key);
    }
    let requests = AppliedRequests::open(storage).map_err(read_err)?;
    Ok(MemberState {
        mvcc,
        leases,
        applied,
        membership,
        attributes,
        requests,
    })
}

/// Every lease gets a full TTL on the clock (at start-up and after a snapshot install).
fn restart_lease_clock(lessor: &Lessor, leases: &LeaseTable) {
    for l in leases.iter() {
        lessor.start(l.id, l.ttl);
    }
}

impl StateMachine {
    pub fn open(
        storage: Storage,
        lessor: Arc<Lessor>,
        hub: WatchHub,
    ) -> Result<Self, StorageError> {
        let state = load_state(&storage)?;
        restart_lease_clock(&lessor, &state.leases);
        Ok(Self {
            storage,
            state: Arc::new(RwLock::new(state)),
            lessor,
            hub,
        })
    }

    pub fn state(&self) -> Arc<RwLock<MemberState>> {
        self.state.clone()
    }

    /// Applies one client request, staging its writes in `batch` and the events it made in
    /// `published` (handed to watchers once the batch is written).
    fn apply_request(
        &self,
        state: &mut MemberState,
        req: Request,
        batch: &mut WriteBatch,
        published: &mut Vec<(i64, Vec<Event>)>,
    ) -> Result<Vec<u8>, KvError> {
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

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Hold the read lock: no apply can run while the rows are copied.
        let state = self.state.read().map_err(read_err)?;
        let db = self.storage.db();
        let rows = |cf| -> Result<Rows, StorageError> {
            db.iterator_cf(self.storage.cf(cf), rocksdb::IteratorMode::Start)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(read_err))
                .collect()
        };
        let blob = SnapshotBlob {
            meta_rows: rows(CF_META)?,
            kv_rows: rows(CF_KV)?,
            lease_rows: rows(CF_LEASE)?,
        };
        let data = bincode::serialize(&blob).map_err(read_err)?;
        let last = state.applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: state.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                last.map(|l| l.leader_id.term).unwrap_or(0),
                last.map(|l| l.index).unwrap_or(0)
            ),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, MemberNode>), StorageError> {
        let state = self.state.read().map_err(read_err)?;
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write().map_err(write_err)?;
        let mut batch = WriteBatch::default();
        let mut results = Vec::new();
        let mut published = Vec::new();
        for entry in entries {
            state.applied = Some(entry.log_id);
            let responses = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
                EntryPayload::Normal(proposal) => match RaftBatch::decode(proposal.0.as_slice()) {
                    Ok(b) => {
                        let mut out = Vec::with_capacity(b.requests.len());
                        for (position, r) in b.requests.into_iter().enumerate() {
                            let id = Some(r.request_id)
                                .filter(|id| !id.is_empty() && id.len() <= dedup::MAX_ID_LEN);
                            if let Some(first) = id.as_deref().and_then(|id| state.requests.get(id))
                            {
                                out.push(first);
                                continue;
                            }
                            let result = match r.request {
                                Some(req) => {
                                    self.apply_request(&mut state, req, &mut batch, &mut published)
                                }
                                // A request kind this member does not know (a newer member
                                // proposed it): every member of this version skips it the same way.
                                None => Err(KvError::Corrupt("unknown request kind".into())),
                            };
                            if let Some(id) = id {
                                state.requests.record(
                                    &self.storage,
                                    id,
                                    entry.log_id.index,
                                    position as u32,
                                    &result,
                                    &mut batch,
                                );
                            }
                            out.push(result);
                        }
                        out
                    }
                    Err(e) => {
                        tracing::error!(
                            index = entry.log_id.index,
                            "undecodable proposal skipped: {e}"
                        );
                        Vec::new()
                    }
                },
            };
            results.push(ApplyResult { responses });
        }
        let meta = self.storage.cf(CF_META);
        batch.put_cf(
            meta,
            META_APPLIED,
            bincode::serialize(&state.applied).map_err(write_err)?,
        );
        batch.put_cf(
            meta,
            META_MEMBERSHIP,
            bincode::serialize(&state.membership).map_err(write_err)?,
        );
        self.storage.db().write(batch).map_err(write_err)?;
        state.mvcc.batch_written();
        // Watchers hear of a revision only once it is readable from the store.
        for (rev, events) in published {
            self.hub.publish(rev, events);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let blob: SnapshotBlob = bincode::deserialize(snapshot.get_ref()).map_err(write_err)?;
        let mut state = self.state.write().map_err(write_err)?;
        let db = self.storage.db();
        let mut batch = WriteBatch::default();
        for cf_name in SNAPSHOT_CFS {
            let cf = self.storage.cf(cf_name);
            for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, _) = item.map_err(write_err)?;
                batch.delete_cf(cf, k);
            }
        }
        let blob_rows = [blob.meta_rows, blob.kv_rows, blob.lease_rows];
        for (cf_name, rows) in SNAPSHOT_CFS.into_iter().zip(blob_rows) {
            for (k, v) in rows {
                batch.put_cf(self.storage.cf(cf_name), k, v);
            }
        }
        let meta_cf = self.storage.cf(CF_META);
        batch.put_cf(
            meta_cf,
            META_APPLIED,
            bincode::serialize(&meta.last_log_id).map_err(write_err)?,
        );
        batch.put_cf(
            meta_cf,
            META_MEMBERSHIP,
            bincode::serialize(&meta.last_membership).map_err(write_err)?,
        );
        db.write(batch).map_err(write_err)?;
        *state = load_state(&self.storage)?;
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            revision = state.mvcc.current_rev(),
            "installed snapshot"
        );
        self.lessor.clear();
        restart_lease_clock(&self.lessor, &state.leases);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Built on demand: the state machine itself is the snapshot.
        let mut builder = self.clone();
        Ok(Some(builder.build_snapshot().await?))
    }
}
