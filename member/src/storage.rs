//! The member's one RocksDB database and its column families.
//!
//! One database (one WAL) for the raft log and the state machine: a synced raft-log write also
//! makes every earlier state-machine write durable, and a state-machine batch commits its changes
//! together with the applied index, so a crash never half-applies an entry.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};

/// Raft log entries: index (u64 big-endian) -> entry.
pub(crate) const CF_RAFT_LOG: &str = "raft_log";
/// Raft hard state: vote, committed, last purged log id.
pub(crate) const CF_RAFT_META: &str = "raft_meta";
/// MVCC key space: revision (main, sub, big-endian; + 't' for a tombstone) -> mvccpb.KeyValue.
pub(crate) const CF_KV: &str = "kv";
/// State-machine metadata: applied log id, membership, current and compacted revision, identity.
pub(crate) const CF_META: &str = "meta";
/// The key index, derived from `kv`: key (escaped) + revision (inverted) -> put or delete (see
/// `mvcc::index`).
pub(crate) const CF_INDEX: &str = "key_index";
/// Which live keys carry a lease, derived from `kv`: lease id (i64 big-endian) + key -> empty.
pub(crate) const CF_LEASE_KEYS: &str = "lease_keys";

/// Leases: id (i64 big-endian) -> granted TTL (i64 big-endian). Attached keys are derived from
/// the key space at start-up.
pub(crate) const CF_LEASE: &str = "lease";

/// Auth: users, roles, the enabled flag and the auth revision (see `auth::AuthStore`).
pub(crate) const CF_AUTH: &str = "auth";

/// `raft_meta`: the member and cluster IDs, bincode `(u64, u64)`, fixed at bootstrap (not in
/// the state machine, so a snapshot from another member never overwrites them).
pub(crate) const IDENTITY_KEY: &[u8] = b"identity";
/// `raft_meta`: the initial cluster of a data dir restored from a snapshot, bincode
/// `Vec<(member ID, name, peer URLs)>`; the member bootstraps raft with it at its first start.
pub(crate) const RESTORED_CLUSTER_KEY: &[u8] = b"restored_cluster";

/// The WAL's size limit (see [`Storage::open`]).
const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;

/// RocksDB's block cache, shared by every column family: what the member keeps of the data in
/// memory (etcd maps its whole bbolt file; here memory stays flat as the store grows).
const BLOCK_CACHE_BYTES: usize = 64 << 20;
/// All memtables together (RocksDB flushes the largest when over); each column family's own
/// is smaller than RocksDB's 64 MiB default, so six of them cannot hold hundreds of MiB.
const WRITE_BUFFERS_BYTES: usize = 96 << 20;
const WRITE_BUFFER_BYTES: usize = 32 << 20;

const ALL_CFS: [&str; 8] = [
    CF_RAFT_LOG,
    CF_RAFT_META,
    CF_KV,
    CF_META,
    CF_LEASE,
    CF_AUTH,
    CF_INDEX,
    CF_LEASE_KEYS,
];

/// The state machine's column families: etcd's backend.
const STATE_CFS: [&str; 4] = [CF_KV, CF_META, CF_LEASE, CF_AUTH];

/// Shared handle to the member's database.
/// The revision at the end of every `key_index` row (`mvcc/index.rs`): what is left of a row
/// key without it, the encoded user key, is the row's prefix.
pub(crate) const INDEX_REV_BYTES: usize = 16;

/// Bloom filters on the `key_index` rows' user keys, in the memtable and in the tables: a put
/// of a new key looks the key up before writing it, and a seek through a large memtable was
/// most of what a put cost the index (`docs/benchmarks.md`, session 13). The filters answer
/// "no such key" without it. Only iterators that stay within one key use them
/// (`mvcc::index::Scan` for one key); every other iterator of the index reads in total order.
fn index_prefix_filters(table: &mut rocksdb::BlockBasedOptions, cf: &mut Options) {
    fn user_key(row: &[u8]) -> &[u8] {
        &row[..row.len().saturating_sub(INDEX_REV_BYTES)]
    }
    // The encoded user key is at least its 2-byte terminator (the marker row, empty, is out).
    fn has_user_key(row: &[u8]) -> bool {
        row.len() >= INDEX_REV_BYTES + 2
    }
    cf.set_prefix_extractor(rocksdb::SliceTransform::create(
        "oxetcd.index_user_key",
        user_key,
        Some(has_user_key),
    ));
    cf.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(false);
}

/// The memtable's share given to its prefix Bloom filter.
const MEMTABLE_BLOOM_RATIO: f64 = 0.05;

#[derive(Clone)]
pub(crate) struct Storage {
    db: Arc<DB>,
    /// The database's directory (`<data-dir>/member/db`).
    dir: Arc<std::path::PathBuf>,
    /// The last [`Storage::size_on_disk`] and when it was measured (see [`Storage::size`]).
    size: Arc<std::sync::Mutex<Option<(std::time::Instant, i64)>>>,
}

/// How old a cached database size may be: the quota check runs on every write, and a
/// measurement asks RocksDB for a dozen properties.
const SIZE_CACHE: std::time::Duration = std::time::Duration::from_millis(100);

impl Storage {
    /// Opens (creating if needed) the database under `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, rocksdb::Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        // Compactions (background, and a defragment's) run niced: on a small machine they
        // would otherwise take the cores from the requests (flushes keep their priority).
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        env.lower_thread_pool_io_priority();
        opts.set_env(&env);
        // RocksDB keeps a WAL file until every column family has flushed what it holds; rarely
        // written ones (raft_meta, auth) would pin gigabytes of WAL behind them (the default
        // limit is 4× all write buffers). Past this, it flushes the ones holding the oldest.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Index and filter blocks count against the cache instead of growing beside it.
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            let mut cf = Options::default();
            if *name == CF_INDEX {
                index_prefix_filters(&mut table, &mut cf);
            }
            cf.set_block_based_table_factory(&table);
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf.set_write_buffer_size(WRITE_BUFFER_BYTES);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Self {
            db: Arc::new(db),
            dir: Arc::new(dir.to_path_buf()),
            size: Default::default(),
        })
    }

    /// Where scratch files of this member go (`<data-dir>/member/tmp`): snapshots being
    /// written for a client. Emptied at start-up.
    pub(crate) fn scratch_dir(&self) -> std::path::PathBuf {
        match self.dir.parent() {
            Some(member) => member.join("tmp"),
            None => self.dir.join("tmp"),
        }
    }

    /// Where raft snapshots are kept (`<data-dir>/member/snap`).
    pub(crate) fn snap_dir(&self) -> std::path::PathBuf {
        match self.dir.parent() {
            Some(member) => member.join("snap"),
            None => self.dir.join("snap"),
        }
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// A column family handle; the names are fixed at open, so a missing one is a bug.
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is opened with the database"))
    }

    /// RocksDB's counterpart of a bbolt defragment: a full manual compaction of every column
    /// family, the bottommost level included, so deleted and compacted-away rows leave the
    /// disk. Blocking; reads and writes go on meanwhile.
    pub(crate) fn compact_all(&self) {
        let mut o = rocksdb::CompactOptions::default();
        o.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in ALL_CFS {
            self.db
                .compact_range_cf_opt(self.cf(name), None::<&[u8]>, None::<&[u8]>, &o);
        }
    }

    /// The database size as of at most 100 ms ago (etcd's backend size is likewise updated at
    /// each backend commit): what the space quota is checked against.
    pub(crate) fn size(&self) -> i64 {
        let now = std::time::Instant::now();
        let mut cached = self.size.lock().unwrap_or_else(|p| p.into_inner());
        match *cached {
            Some((at, size)) if now.duration_since(at) < SIZE_CACHE => size,
            _ => {
                let size = self.size_on_disk();
                *cached = Some((now, size));
                size
            }
        }
    }

    /// The part of [`Storage::size_on_disk`] that holds live data (RocksDB's estimate; the
    /// rest is overwritten and deleted rows not compacted away yet): etcd's size in use.
    pub(crate) fn size_in_use(&self) -> i64 {
        let mut total = 0u64;
        for name in STATE_CFS {
            for property in [
                "rocksdb.estimate-live-data-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                if let Ok(Some(v)) = self.db.property_int_value_cf(self.cf(name), property) {
                    total += v;
                }
            }
        }
        total as i64
    }

    /// Approximate size of the backend (the state machine's column families, as etcd's
    /// `dbSize` is its bbolt file without the WAL): `Status.dbSize` and the space quota.
    pub(crate) fn size_on_disk(&self) -> i64 {
        let mut total = 0u64;
        for name in STATE_CFS {
            if let Ok(Some(v)) = self
                .db
                .property_int_value_cf(self.cf(name), "rocksdb.total-sst-files-size")
            {
                total += v;
            }
            if let Ok(Some(v)) = self
                .db
                .property_int_value_cf(self.cf(name), "rocksdb.cur-size-all-mem-tables")
            {
                total += v;
            }
        }
        total as i64
    }
}
