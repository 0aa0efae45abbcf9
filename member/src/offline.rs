//! What `oxetcdutl` does to a stopped member's data dir (etcdutl's offline commands): defragment
//! its database, hash its key space. The member must not be running: RocksDB's lock file
//! refuses a second opener.

use std::path::{Path, PathBuf};

use crate::storage::Storage;

/// Why an offline command failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}")]
    Storage(#[from] rocksdb::Error),
    #[error("{0}")]
    Server(#[from] crate::error::ServerError),
    #[error("{0}")]
    Kv(#[from] crate::mvcc::KvError),
    #[error("{0}")]
    Invalid(String),
}

/// HashKV of a data dir's key space, as a running member answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The revision hashed.
    pub hash_revision: i64,
    /// -1 before any compaction.
    pub compact_revision: i64,
}

fn db_dir(data_dir: &Path) -> Result<PathBuf, OfflineError> {
    let db = data_dir.join("member").join("db");
    if !db.join("CURRENT").exists() {
        return Err(OfflineError::Invalid(format!(
            "{} is not an oxetcd data dir (no member/db)",
            data_dir.display()
        )));
    }
    Ok(db)
}

/// Compacts every column family of the database fully (etcd's offline `defrag --data-dir`).
pub fn defrag(data_dir: &Path) -> Result<(), OfflineError> {
    let storage = Storage::open(&db_dir(data_dir)?)?;
    storage.compact_all();
    Ok(())
}

/// etcd's `HashByRev` of the data dir at `rev` (0: its current revision).
pub fn hash_kv(data_dir: &Path, rev: i64) -> Result<HashKv, OfflineError> {
    let storage = Storage::open(&db_dir(data_dir)?)?;
    let mvcc = crate::mvcc::Mvcc::open(storage.clone())?;
    let plan = mvcc.hash_plan(rev)?;
    let rows = storage.db().iterator_cf(
        storage.cf(crate::storage::CF_KV),
        rocksdb::IteratorMode::Start,
    );
    let hash = crate::mvcc::hash_kv_rows(&plan, &storage, storage.db(), rows)?;
    Ok(HashKv {
        hash,
        hash_revision: plan.at,
        compact_revision: plan.compacted,
    })
}
