//! The member's applied state and how it is loaded from RocksDB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::{StorageIOError, StoredMembership};

use crate::alarm::AlarmStore;
use crate::auth::AuthStore;
use crate::dedup::AppliedRequests;
use crate::lease::{LeaseTable, Lessor};
use crate::mvcc::Mvcc;
use crate::raft::{LogId, MemberNode, StorageError};
use crate::storage::{Storage, CF_META};

const META_APPLIED: &[u8] = b"applied";
const META_MEMBERSHIP: &[u8] = b"membership";
pub(super) const META_MEMBER_ATTRS: &[u8] = b"member_attrs";

/// The applied state behind its lock, shared with the read path.
///
/// An apply that may hold the lock for long (a DeleteRange of many keys: seconds at 1M)
/// says so with [`StateLock::set_long`]; it then runs off the runtime's workers, and so do
/// the readers that wait for it ([`off_runtime`]). Otherwise every worker could end up
/// blocked on the lock, the raft heartbeats with them, and the leader would lose its term.
pub(crate) struct StateLock {
    lock: RwLock<MemberState>,
    long_write: AtomicBool,
}

impl StateLock {
    pub(crate) fn new(state: MemberState) -> Self {
        Self {
            lock: RwLock::new(state),
            long_write: AtomicBool::new(false),
        }
    }

    pub(crate) fn read(&self) -> LockResult<RwLockReadGuard<'_, MemberState>> {
        if self.long_write.load(Ordering::Acquire) {
            return off_runtime(|| self.lock.read());
        }
        self.lock.read()
    }

    pub(crate) fn write(&self) -> LockResult<RwLockWriteGuard<'_, MemberState>> {
        self.lock.write()
    }

    /// Says whether the write in progress may hold the lock for long.
    pub(crate) fn set_long(&self, long: bool) {
        self.long_write.store(long, Ordering::Release);
    }
}

/// Runs `f`, which may block for long, without holding up the other tasks of this runtime
/// worker (`block_in_place` moves them to another thread); outside a multi-threaded runtime
/// it just runs `f`.
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The member's applied state, shared with the read path.
pub(crate) struct MemberState {
    pub mvcc: Mvcc,
    pub leases: LeaseTable,
    pub applied: Option<LogId>,
    pub membership: StoredMembership<u64, MemberNode>,
    /// What each member published about itself: name and client URLs.
    pub attributes: std::collections::BTreeMap<u64, (String, Vec<String>)>,
    /// Request IDs already applied, with their results.
    pub requests: AppliedRequests,
    /// Users, roles and whether auth is enabled.
    pub auth: AuthStore,
    /// The raised alarms (NOSPACE, CORRUPT).
    pub alarms: AlarmStore,
}

/// A member as the cluster lists it: from the applied membership, with the name and client
/// URLs it published itself when it has.
pub(crate) struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl MemberState {
    /// Every member, voters and learners, in ID order.
    pub(crate) fn members(&self) -> Vec<MemberInfo> {
        let membership = self.membership.membership();
        let learners: Vec<u64> = membership.learner_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| {
                // Published attributes win: they are what the member itself announced.
                let (name, client_urls) = self
                    .attributes
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| (node.name.clone(), node.client_urls.clone()));
                MemberInfo {
                    id: *id,
                    name,
                    peer_urls: node.peer_urls.clone(),
                    client_urls,
                    is_learner: learners.contains(id),
                }
            })
            .collect()
    }
}

pub(super) fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_state_machine(&std::io::Error::other(e.to_string())).into()
}

pub(super) fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

pub(super) fn load_state(storage: &Storage) -> Result<MemberState, StorageError> {
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
    let auth = AuthStore::open(storage).map_err(read_err)?;
    let alarms = AlarmStore::open(storage).map_err(read_err)?;
    Ok(MemberState {
        auth,
        alarms,
        mvcc,
        leases,
        applied,
        membership,
        attributes,
        requests,
    })
}

/// Every lease gets a full TTL on the clock (at start-up and after a snapshot install).
pub(super) fn restart_lease_clock(lessor: &Lessor, leases: &LeaseTable) {
    for l in leases.iter() {
        lessor.start(l.id, l.ttl);
    }
}

/// Stages the applied log id and membership in `batch`: written with the changes they
/// describe, so the state on disk always says how far it got.
pub(super) fn stage_applied(
    storage: &Storage,
    batch: &mut rocksdb::WriteBatch,
    applied: &Option<LogId>,
    membership: &StoredMembership<u64, MemberNode>,
) -> Result<(), StorageError> {
    let meta = storage.cf(CF_META);
    batch.put_cf(
        meta,
        META_APPLIED,
        bincode::serialize(applied).map_err(write_err)?,
    );
    batch.put_cf(
        meta,
        META_MEMBERSHIP,
        bincode::serialize(membership).map_err(write_err)?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// While a write flagged long holds the lock, a task waiting to read does not hold up the
    /// other tasks of its worker (here the runtime's only one), as raft's heartbeats must go on.
    #[test]
    fn a_reader_waiting_for_a_long_write_leaves_the_worker_to_other_tasks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path()).expect("storage");
        let lock = Arc::new(StateLock::new(load_state(&storage).expect("state")));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let writing = lock.write().expect("write lock");
        lock.set_long(true);
        // Spawned from outside the runtime, the tasks start in this order: the other one
        // runs on the only worker once the reader waits.
        let reader = {
            let lock = lock.clone();
            rt.spawn(async move { lock.read().expect("read lock").applied.is_none() })
        };
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(());
        });
        // Bounds a worker held by the reader: the test fails rather than hangs.
        let other_ran = rx.recv_timeout(Duration::from_secs(10));
        lock.set_long(false);
        drop(writing);
        assert!(other_ran.is_ok(), "the reader held the only worker");
        assert!(
            rt.block_on(reader).expect("reader"),
            "a fresh state has applied nothing"
        );
    }
}
