//! Applied request IDs, so a write retried after a failover is applied once.
//!
//! When a leader dies with a write in flight, the sender cannot know whether it was committed.
//! `oxetcd-proxy` tags each write with an `oxetcd-request-id` and may send it again to the new
//! leader; the member proposes the ID with the request. Applying an entry whose ID was already
//! applied returns the first result instead of applying again. The record is part of the
//! replicated state (rows in the meta column family, written in the apply batch, carried by
//! snapshots), so every member makes the same decision. The newest [`CAPACITY`] IDs are kept;
//! a retry comes within seconds, long before its ID is dropped.

use std::collections::{HashMap, VecDeque};

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::error::Applied;
use crate::storage::{Storage, CF_META};

/// How many request IDs are remembered (oldest dropped first).
pub(crate) const CAPACITY: usize = 100_000;

/// Longest ID accepted; a longer one is ignored (the request is applied without dedup).
pub(crate) const MAX_ID_LEN: usize = 64;

/// Rows of this version (`reqid/` rows of older versions hold another record shape and are
/// ignored: a retry comes within seconds, not across an upgrade).
const PREFIX: &[u8] = b"reqid2/";

/// One remembered request: where it was applied (its order), who sent it, and what it
/// answered.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Record {
    pub(crate) log_index: u64,
    pub(crate) position: u32,
    /// The sender's user name (empty without credentials): another user's request with the
    /// same ID is not answered with this one's result.
    pub(crate) username: String,
    pub(crate) result: Applied,
}

#[derive(Default)]
pub(crate) struct AppliedRequests {
    by_id: HashMap<String, Record>,
    /// IDs in apply order, oldest first.
    order: VecDeque<String>,
}

fn row_key(id: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl AppliedRequests {
    /// Loads the remembered IDs from the meta column family.
    pub(crate) fn open(storage: &Storage) -> Result<Self, String> {
        let db = storage.db();
        let mut records: Vec<(String, Record)> = Vec::new();
        let iter = db.iterator_cf(
            storage.cf(CF_META),
            rocksdb::IteratorMode::From(PREFIX, rocksdb::Direction::Forward),
        );
        for row in iter {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let Some(id) = k.strip_prefix(PREFIX) else {
                break;
            };
            let id = String::from_utf8_lossy(id).into_owned();
            let rec: Record = bincode::deserialize(&v).map_err(|e| e.to_string())?;
            records.push((id, rec));
        }
        records.sort_by_key(|(_, r)| (r.log_index, r.position));
        let mut me = Self::default();
        for (id, rec) in records {
            me.order.push_back(id.clone());
            me.by_id.insert(id, rec);
        }
        Ok(me)
    }

    /// The result of `id` if it was applied already, and who sent it.
    pub(crate) fn get(&self, id: &str) -> Option<(&str, Applied)> {
        self.by_id
            .get(id)
            .map(|r| (r.username.as_str(), r.result.clone()))
    }

    /// Remembers `id`'s result, staging the row (and the removal of the oldest beyond
    /// [`CAPACITY`]) in `batch`.
    pub(crate) fn record(
        &mut self,
        storage: &Storage,
        id: String,
        rec: Record,
        batch: &mut WriteBatch,
    ) {
        let Ok(bytes) = bincode::serialize(&rec) else {
            return;
        };
        let cf = storage.cf(CF_META);
        batch.put_cf(cf, row_key(&id), bytes);
        self.order.push_back(id.clone());
        self.by_id.insert(id, rec);
        while self.order.len() > CAPACITY {
            if let Some(old) = self.order.pop_front() {
                batch.delete_cf(cf, row_key(&old));
                self.by_id.remove(&old);
            }
        }
    }
}
