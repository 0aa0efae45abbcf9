//! The raft log and hard state in RocksDB.
//!
//! Durability: an appended entry counts towards a quorum only once it is on disk; openraft's flush
//! callback says when. Two paths:
//! - A leader with peers: `append` writes the entries unsynced, which makes them readable at once,
//!   and hands the callback to the log's sync thread, which fsyncs the WAL and only then fires it.
//!   One fsync covers every append queued meanwhile. The raft core (openraft, patched in
//!   `vendor/openraft`) replicates the entries while that fsync is in flight, as etcd does, so the
//!   leader's fsync overlaps the followers' round trip instead of preceding it.
//! - A follower, or a leader alone: the core waits for the callback anyway, so `append` writes
//!   synced and fires it at once (no thread hand-off).
//!
//! `save_vote` and `truncate` are synced inline: a member must never vote twice in a term, even
//! across a crash.
//!
//! The raft log and the state machine share one database, so one WAL: a crash recovers a prefix of
//! it, and an applied entry whose log entry was not yet synced cannot survive without it.

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, RaftLogReader, StorageIOError, Vote};
use rocksdb::{WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{LogId, StorageError, TypeConfig};
use crate::storage::{Storage, CF_RAFT_LOG, CF_RAFT_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Log storage; cheap to clone (it is a handle on the shared database).
#[derive(Clone)]
pub(crate) struct LogStore {
    storage: Storage,
    /// The log's sync thread (see the module doc).
    syncer: std::sync::mpsc::Sender<Flush>,
    /// Log fsync latency (etcd's WAL fsync).
    fsync: prometheus::Histogram,
    /// The committed index (`etcd_server_proposals_committed_total`).
    committed: prometheus::IntGauge,
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub(crate) fn new(
        storage: Storage,
        fsync: prometheus::Histogram,
        committed: prometheus::IntGauge,
    ) -> std::io::Result<Self> {
        let (syncer, pending) = std::sync::mpsc::channel();
        let metric = fsync.clone();
        // The thread ends when the last LogStore is dropped. It holds the database only while it
        // syncs, so a closed member's data dir can be reopened at once.
        std::thread::Builder::new()
            .name("log-sync".into())
            .spawn(move || sync_loop(&pending, &metric))?;
        Ok(Self {
            storage,
            syncer,
            fsync,
            committed,
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        get_meta(&self.storage, key)
    }

    /// Writes a raft meta row, synced (the vote and the purge point must survive a crash).
    fn put_meta<T: Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError> {
        let bytes = bincode::serialize(v).map_err(|e| StorageIOError::write(&e))?;
        let cf = self.storage.cf(CF_RAFT_META);
        self.storage
            .db()
            .put_cf_opt(cf, key, bytes, &synced())
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        last_entry_log_id(&self.storage)
    }
}

/// An unsynced append waiting for the WAL fsync.
struct Flush {
    storage: Storage,
    callback: LogFlushed<TypeConfig>,
}

/// Fsyncs the WAL for every queued append at once, then reports each one, in order.
fn sync_loop(pending: &std::sync::mpsc::Receiver<Flush>, fsync: &prometheus::Histogram) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        group.extend(pending.try_iter());
        let timer = fsync.start_timer();
        let synced = group[0].storage.db().flush_wal(true);
        timer.observe_duration();
        for flush in group {
            let result = match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            flush.callback.log_io_completed(result);
        }
    }
}

/// Reports a failed append both ways openraft listens: to the flush callback, and as the
/// call's error (either stops the raft core).
fn append_failed(
    callback: LogFlushed<TypeConfig>,
    e: impl std::fmt::Display,
) -> Result<(), StorageError> {
    callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
    Err(StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into())
}

fn get_meta<T: DeserializeOwned>(storage: &Storage, key: &[u8]) -> Result<Option<T>, StorageError> {
    let cf = storage.cf(CF_RAFT_META);
    let Some(bytes) = storage
        .db()
        .get_cf(cf, key)
        .map_err(|e| StorageIOError::read(&e))?
    else {
        return Ok(None);
    };
    let v = bincode::deserialize(&bytes).map_err(|e| StorageIOError::read(&e))?;
    Ok(Some(v))
}

fn last_entry_log_id(storage: &Storage) -> Result<Option<LogId>, StorageError> {
    let cf = storage.cf(CF_RAFT_LOG);
    let mut it = storage.db().iterator_cf(cf, rocksdb::IteratorMode::End);
    match it.next() {
        None => Ok(None),
        Some(item) => {
            let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry: Entry<TypeConfig> =
                bincode::deserialize(&v).map_err(|e| StorageIOError::read_logs(&e))?;
            Ok(Some(entry.log_id))
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let cf = self.storage.cf(CF_RAFT_LOG);
        let key = index_key(start);
        let iter = self.storage.db().iterator_cf(
            cf,
            rocksdb::IteratorMode::From(&key, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                StorageIOError::read_logs(&std::io::Error::other("bad raft log key"))
            })?);
            if !range.contains(&idx) {
                break;
            }
            let entry: Entry<TypeConfig> =
                bincode::deserialize(&v).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

/// The newest entry's log ID, or the last purged one (what raft compares logs by).
pub(crate) fn last_log_id(storage: &Storage) -> Option<LogId> {
    let last_purged: Option<LogId> = get_meta(storage, KEY_LAST_PURGED).ok().flatten();
    last_entry_log_id(storage).ok().flatten().or(last_purged)
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    /// Not stored: one RocksDB write per entry on every member, for nothing the state machine
    /// does not already give. At start-up openraft takes the applied log id (written with each
    /// applied batch) when it is newer than the committed one read here, and the entries
    /// committed but not applied before a crash are applied once a leader commits again.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(c) = &committed {
            self.committed.set(c.index as i64);
        }
        Ok(())
    }

    /// What an older version stored (never newer than what it committed); nothing otherwise.
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let cf = self.storage.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = bincode::serialize(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.put_cf(cf, index_key(entry.log_id.index), bytes);
        }
        if callback.core_waits() {
            // A follower (or a lone leader): nothing to overlap, so sync here and save the sync
            // thread's round trip.
            let timer = self.fsync.start_timer();
            let written = self.storage.db().write_opt(batch, &synced());
            timer.observe_duration();
            return match written {
                Ok(()) => {
                    callback.log_io_completed(Ok(()));
                    Ok(())
                }
                Err(e) => append_failed(callback, e),
            };
        }
        // Unsynced: readable now, durable once the sync thread reports it.
        if let Err(e) = self.storage.db().write(batch) {
            return append_failed(callback, e);
        }
        let flush = Flush {
            storage: self.storage.clone(),
            callback,
        };
        match self.syncer.send(flush) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::SendError(flush)) => {
                append_failed(flush.callback, "the log sync thread has stopped")
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove conflicting entries [log_id.index, ..).
        let cf = self.storage.cf(CF_RAFT_LOG);
        let db = self.storage.db();
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        db.write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first, so a crash in between never leaves a gap unexplained.
        self.put_meta(KEY_LAST_PURGED, &log_id)?;
        let cf = self.storage.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(0), index_key(log_id.index + 1));
        self.storage
            .db()
            .write(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
