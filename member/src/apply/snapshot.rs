//! Raft snapshots of the state machine: today the whole key space, lease table, auth and meta
//! rows in one blob (fine for small stores; a streamed RocksDB checkpoint replaces it when
//! snapshots have to scale).

use std::io::Cursor;

use openraft::storage::{Snapshot, SnapshotMeta};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::state::{load_state, read_err, restart_lease_clock, stage_applied, write_err};
use super::StateMachine;
use crate::raft::{MemberNode, StorageError, TypeConfig};
use crate::storage::{CF_AUTH, CF_KV, CF_LEASE, CF_META};

/// The whole state machine in one blob: the rows of each column family it carries.
#[derive(Serialize, Deserialize)]
struct SnapshotBlob {
    column_families: Vec<(String, Rows)>,
}

/// The column families a snapshot carries.
const SNAPSHOT_CFS: [&str; 4] = [CF_META, CF_KV, CF_LEASE, CF_AUTH];

/// Raw (key, value) rows of a column family.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

impl StateMachine {
    /// A snapshot of everything applied so far.
    pub(super) fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Hold the read lock: no apply can run while the rows are copied.
        let state = self.state.read().map_err(read_err)?;
        let db = self.storage.db();
        let rows = |cf| -> Result<Rows, StorageError> {
            db.iterator_cf(self.storage.cf(cf), rocksdb::IteratorMode::Start)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(read_err))
                .collect()
        };
        let blob = SnapshotBlob {
            column_families: SNAPSHOT_CFS
                .iter()
                .map(|cf| Ok((cf.to_string(), rows(cf)?)))
                .collect::<Result<_, StorageError>>()?,
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

    /// Replaces the whole state with a leader's snapshot.
    pub(super) fn install(
        &self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: &Cursor<Vec<u8>>,
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
        for (cf_name, rows) in blob.column_families {
            let Some(cf_name) = SNAPSHOT_CFS.into_iter().find(|cf| *cf == cf_name) else {
                return Err(write_err(format!(
                    "snapshot has an unknown column family {cf_name}"
                )));
            };
            for (k, v) in rows {
                batch.put_cf(self.storage.cf(cf_name), k, v);
            }
        }
        stage_applied(
            &self.storage,
            &mut batch,
            &meta.last_log_id,
            &meta.last_membership,
        )?;
        db.write(batch).map_err(write_err)?;
        *state = load_state(&self.storage)?;
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            revision = state.mvcc.current_rev(),
            "installed snapshot"
        );
        self.lessor.clear();
        restart_lease_clock(&self.lessor, &state.leases);
        // Users, passwords and auth may all have changed in what the snapshot skipped: tokens
        // issued before are not known to be valid any more (clients log in again).
        self.tokens.clear();
        Ok(())
    }
}
