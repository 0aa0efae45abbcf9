//! Multi-version key space, with etcd's rules: one main revision per write transaction,
//! versions that restart at 1 after a delete, tombstones, and compaction.
//!
//! `store` keeps the key index and revisions and reads values from RocksDB; `kv` turns the
//! etcd requests (Range, Put, DeleteRange, Txn, Compact) into reads and staged writes.

mod encoded;
mod error;
mod index;
mod kv;
mod recent;
mod revision;
mod sorted;
mod store;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use encoded::{EncodedRange, Remainder};
pub(crate) use error::KvError;
pub(crate) use kv::{
    check_delete, check_put, check_range, check_range_stream, check_txn, compact, delete_range,
    may_read_many, put, range, range_chunk, range_encoded, read_txn, txn, txn_may_touch_many,
    KvRead,
};
pub(crate) use store::LeaseCheck;

/// Is `key` in the etcd range `[start, end)`? `end` empty: just `start`; `end` = "\0": every key
/// >= `start`.
pub(crate) fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        _ => key >= start && key < end,
    }
}
pub(crate) use index::{clear_derived, kept_at, KeyAt};
pub(crate) use revision::Revision;
pub(crate) use store::{hash_kv_rows, HashPlan, Mvcc, WriteTxn};
pub(crate) use view::View;
