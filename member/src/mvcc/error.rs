//! The key space's errors.

use serde::{Deserialize, Serialize};

/// Why a KV request failed. Each maps to one etcd error (gRPC code and message) in `api`.
/// Serializable because apply results travel back through openraft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("RangeStream does not support custom sort orders")]
    StreamSortUnsupported,
    #[error("RangeStream does not support revision filters")]
    StreamFiltersUnsupported,
    #[error("storage: {0}")]
    Storage(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

impl From<rocksdb::Error> for KvError {
    fn from(e: rocksdb::Error) -> Self {
        KvError::Storage(e.to_string())
    }
}
