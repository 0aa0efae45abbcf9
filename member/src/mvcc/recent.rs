//! Where recently used keys stand now: each one's newest index row (or that it has none), so
//! a put, which needs the key's create revision, version and previous value, and a one-key
//! read find the key without a RocksDB seek. A seek merges the memtables and every level of
//! the index column family; under puts it was a tenth of a member's CPU (`docs/benchmarks.md`,
//! session 13).
//!
//! Only the current revision is cached, and the apply path keeps it so: [`Mvcc::commit`]
//! records every key it writes, under the state lock, together with the index rows. Nothing
//! else changes a key's newest row while a store is open: compaction keeps the newest row of a
//! live key and drops only tombstones (a cached "deleted" means the same as no row), and a
//! snapshot install opens a new store. Bounded by bytes; the least useful entries go first.
//!
//! [`Mvcc::commit`]: super::Mvcc::commit

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use super::index::KeyAt;

/// Bytes the cache may hold (keys and their rows, with a guess at the map's own cost).
const CAPACITY_BYTES: u64 = 16 << 20;
/// What an entry costs beyond its key bytes: the key's `Vec` and allocation rounding, the
/// row, the cache's own bookkeeping. Measured: at 64 a cache full of 1M-key load grew the
/// member's RSS by 36 MB rather than 16 (`bench/scale.sh`).
const ENTRY_OVERHEAD: u64 = 128;
/// About how many keys the cache holds (keys of 32 bytes).
const ITEMS: u64 = CAPACITY_BYTES / (ENTRY_OVERHEAD + 32);

#[derive(Clone)]
struct ByBytes;

impl Weighter<Vec<u8>, Option<KeyAt>> for ByBytes {
    fn weight(&self, key: &Vec<u8>, _: &Option<KeyAt>) -> u64 {
        key.len() as u64 + ENTRY_OVERHEAD
    }
}

pub(super) struct RecentKeys(Cache<Vec<u8>, Option<KeyAt>, ByBytes>);

impl RecentKeys {
    pub(super) fn new() -> Self {
        Self(Cache::with_weighter(
            ITEMS as usize,
            CAPACITY_BYTES,
            ByBytes,
        ))
    }

    /// `Some(None)`: the key is known to have no live value now; `None`: not cached.
    pub(super) fn get(&self, key: &[u8]) -> Option<Option<KeyAt>> {
        self.0.get(key)
    }

    pub(super) fn set(&self, key: &[u8], now: Option<KeyAt>) {
        self.0.insert(key.to_vec(), now);
    }

    /// Whether a write of `changes` keys should be remembered key by key: one that changes
    /// more than a tenth of what the cache holds (a DeleteRange of many keys) would only churn
    /// it, so the cache is emptied instead ([`RecentKeys::forget_all`]).
    pub(super) fn worth_remembering(&self, changes: usize) -> bool {
        changes as u64 <= ITEMS / 10
    }

    /// Forgets every key (an empty cache is never wrong).
    pub(super) fn forget_all(&self) {
        self.0.clear();
    }
}
