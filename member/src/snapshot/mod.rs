//! Backups in etcd's format: `Maintenance.Snapshot` streams a bbolt file with etcd 3.4's
//! buckets (so `etcdctl snapshot status` reads it and a real etcd can be restored from it),
//! `Maintenance.Hash` hashes the same rows, and `restore` turns such a file, taken from
//! oxetcd or from a real etcd, into a new member's data dir (`oxetcdutl snapshot restore`).
//!
//! - `backend`: our state as etcd's buckets and rows ([`backend::View`]).
//! - `bolt`: writing bbolt files (the `bbolt-rs` crate); `reader`: reading them, etcd's
//!   included (bbolt-rs refuses those: etcd 3.4 stores no freelist).
//! - `save`: the streamed snapshot for a client.
//! - `restore`: a data dir from a snapshot file; `status`: what `snapshot status` prints.
//!
//! (Raft's own snapshots, which catch up a far-behind member, are `apply/snapshot.rs`.)

pub(crate) mod backend;
mod bolt;
mod reader;
pub mod restore;
pub(crate) mod save;
pub mod status;

pub use reader::BoltError;
pub use restore::has_checksum;

use crate::apply::StateLock;
use crate::storage::Storage;

/// Why a snapshot could not be written, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Storage(#[from] rocksdb::Error),
    #[error("{0}")]
    Bolt(#[from] bbolt_rs::Error),
    /// A snapshot file that cannot be read.
    #[error("{0}")]
    File(#[from] BoltError),
    /// A row that does not decode: the store or the file is damaged.
    #[error("snapshot: corrupt data: {0}")]
    Corrupt(String),
    /// The file's trailing sha256 does not match its contents.
    #[error("expected sha256 {expected}, got {actual}")]
    HashMismatch { expected: String, actual: String },
    /// What the caller asked for cannot be done (bad flags, existing data dir).
    #[error("{0}")]
    Invalid(String),
}

/// A consistent view of the state: what it needs from the applied state is taken under the
/// state lock together with a RocksDB snapshot, then the lock is released and the rows are
/// read from the snapshot while applies go on.
pub(crate) fn capture<'a>(
    storage: &'a Storage,
    state: &StateLock,
) -> Result<backend::View<'a>, SnapshotError> {
    let st = state
        .read()
        .map_err(|e| SnapshotError::Corrupt(format!("state lock: {e}")))?;
    let snapshot = storage.db().snapshot();
    let captured = backend::Captured::of(&st);
    drop(st);
    Ok(backend::View {
        storage,
        snapshot,
        captured,
    })
}
