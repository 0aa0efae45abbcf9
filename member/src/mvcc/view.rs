//! A read of the store with no lock held: what a Range needs from the applied state (the
//! current and compacted revisions) is taken under the state lock together with a RocksDB
//! snapshot, and the index and values are then read from the snapshot while applies go on.
//! Used for Ranges that may read many keys: read under the lock, a full Range of 1M keys
//! held every apply (and, behind the waiting apply, every other read) for about a second.

use std::convert::Infallible;

use oxetcd_common::mvccpb::KeyValue;

use super::encoded::EncodedKvs;
use super::error::KvError;
use super::index::{self, KeyScan};
use super::kv::KvRead;
use super::revision::Revision;
use super::store::{self, fetch_rows, Fetched, Mvcc, Snapshot};
use crate::storage::{Storage, CF_INDEX};

/// The store as of one applied revision.
pub(crate) struct View<'a> {
    storage: &'a Storage,
    snapshot: Snapshot<'a>,
    current_rev: i64,
    compact_rev: i64,
}

impl<'a> View<'a> {
    /// The store as it is now. `storage` is the store's database; call between applies
    /// (under the state lock), which the lock may then be released after.
    pub(crate) fn of(store: &Mvcc, storage: &'a Storage) -> Self {
        debug_assert!(
            !store.mid_apply(),
            "a view taken during an apply would miss its writes"
        );
        Self {
            storage,
            snapshot: storage.db().snapshot(),
            current_rev: store.current_rev(),
            compact_rev: store.compact_rev(),
        }
    }

    fn fetch_each(
        &self,
        revs: &[Revision],
        each: impl FnMut(&Revision, Fetched<'_, Infallible>) -> Result<(), KvError>,
    ) -> Result<(), KvError> {
        fetch_rows(
            self.storage,
            Some(&self.snapshot),
            revs,
            |_| None,
            |rev| KvError::Corrupt(format!("revision {rev:?} in the index but not stored")),
            each,
        )
    }
}

impl KvRead for View<'_> {
    fn current_rev(&self) -> i64 {
        self.current_rev
    }

    fn read_rev(&self, requested: i64) -> Result<i64, KvError> {
        store::read_rev(requested, self.current_rev, self.compact_rev)
    }

    fn range_index<'b>(&'b self, start: &'b [u8], end: &'b [u8], at: i64) -> KeyScan<'b> {
        Box::new(index::Scan::new(
            &self.snapshot,
            self.storage.cf(CF_INDEX),
            start,
            end,
            at,
        ))
    }

    fn fetch(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, KvError> {
        let mut out = Vec::with_capacity(revs.len());
        self.fetch_each(revs, |rev, row| {
            let bytes = match row {
                Fetched::Stored(bytes) => bytes,
                Fetched::Pending(none) => match none {},
            };
            out.push(rev.decode_value(bytes)?);
            Ok(())
        })?;
        Ok(out)
    }

    fn fetch_encoded(&self, revs: &[Revision], out: &mut EncodedKvs) -> Result<(), KvError> {
        out.read_from(self.storage);
        self.fetch_each(revs, |rev, row| {
            let bytes = match row {
                Fetched::Stored(bytes) => bytes,
                Fetched::Pending(none) => match none {},
            };
            out.push_kv(*rev, bytes);
            Ok(())
        })
    }
}
