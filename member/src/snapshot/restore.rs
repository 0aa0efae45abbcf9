//! A new member's data dir from a snapshot file (`oxetcdutl snapshot restore`, etcd's
//! `snapshot restore`).
//!
//! The file may come from oxetcd or from a real etcd (3.4 or later): both are bbolt files with
//! etcd's buckets (see `backend`), usually followed by their sha256. As etcd's restore does, the
//! key space, leases, auth and alarms are kept and the member list is replaced by
//! `--initial-cluster`; each member of the new cluster restores the same file with its own
//! `--name`. The data dir then holds the state machine and the new cluster's membership; the
//! member bootstraps raft with it at its first start.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use oxetcd_common::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmRequest};
use prost::Message;
use rocksdb::WriteBatch;
use sha2::{Digest, Sha256};

use super::backend::{self, LeaseRow};
use super::reader::Bolt;
use super::SnapshotError;
use crate::alarm::AlarmStore;
use crate::mvcc::{Mvcc, Revision};
use crate::server::{cluster_id, member_id};
use crate::storage::{
    Storage, CF_AUTH, CF_KV, CF_LEASE, CF_RAFT_META, IDENTITY_KEY, RESTORED_CLUSTER_KEY,
};

/// What `snapshot restore` is told (etcd 3.4's flags, and etcdutl 3.5's revision bump).
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    pub snapshot: PathBuf,
    pub name: String,
    /// `--data-dir`; empty: `<name>.oxetcd`.
    pub data_dir: PathBuf,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    pub skip_hash_check: bool,
    /// etcdutl 3.5's `--bump-revision`: added to the restored revision, so that clients
    /// watching from a revision of before the backup never miss newer events.
    pub bump_revision: u64,
    /// etcdutl 3.5's `--mark-compacted`: compact at the bumped revision, so those watches
    /// are told their history is gone instead of silently skipping.
    pub mark_compacted: bool,
}

/// The 32 trailing sha256 bytes a snapshot may end with: present when the size is a whole
/// number of 512-byte sectors plus 32 (etcd's `hasChecksum`: 512 is the smallest disk sector,
/// dividing most OS page sizes).
pub fn has_checksum(size: u64) -> bool {
    size % 512 == 32
}

/// Formats bytes as Go's `%v` of a `[]byte` does, for etcd's hash-mismatch message.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

/// Copies the snapshot's database to `dst` (without the sha256) and checks that sha256
/// unless told not to (etcd's `saveDB`).
fn copy_checked(src: &Path, dst: &Path, skip_hash_check: bool) -> Result<(), SnapshotError> {
    let mut f = std::fs::File::open(src)?;
    let size = f.metadata()?.len();
    let hashed = has_checksum(size);
    if !hashed && !skip_hash_check {
        return Err(SnapshotError::Invalid(
            "snapshot missing hash but --skip-hash-check=false".into(),
        ));
    }
    let db_len = if hashed { size - 32 } else { size };
    let mut expected = [0u8; 32];
    if hashed {
        f.seek(SeekFrom::Start(db_len))?;
        f.read_exact(&mut expected)?;
        f.seek(SeekFrom::Start(0))?;
    }
    let mut out = std::fs::File::create(dst)?;
    let mut sha = Sha256::new();
    let mut left = (&mut f).take(db_len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = left.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let actual = sha.finalize();
    if hashed && !skip_hash_check && actual.as_slice() != expected {
        return Err(SnapshotError::HashMismatch {
            expected: go_bytes(&expected),
            actual: go_bytes(&actual),
        });
    }
    Ok(())
}

/// Restores `cfg.snapshot` into a new data dir.
pub fn restore(cfg: &RestoreConfig) -> Result<(), SnapshotError> {
    if (cfg.bump_revision == 0) == cfg.mark_compacted {
        // etcdutl's message, naming the flag by another name.
        return Err(SnapshotError::Invalid(
            "--mark-compacted required if --revision-bump > 0".into(),
        ));
    }
    let members = crate::config::parse_initial_cluster(&cfg.initial_cluster, &cfg.name)
        .map_err(|e| SnapshotError::Invalid(e.to_string()))?;
    let mut mine = crate::config::split_urls(&cfg.initial_advertise_peer_urls);
    mine.sort();
    let listed = members
        .iter()
        .find(|(n, _)| *n == cfg.name)
        .map(|(_, urls)| {
            let mut u = urls.clone();
            u.sort();
            u
        })
        .unwrap_or_default();
    if listed != mine {
        return Err(SnapshotError::Invalid(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != {:?})",
            cfg.name,
            listed.join(","),
            cfg.initial_advertise_peer_urls,
            mine.join(","),
            mine,
            listed,
        )));
    }
    let data_dir = match cfg.data_dir.as_os_str().is_empty() {
        true => PathBuf::from(format!("{}.oxetcd", cfg.name)),
        false => cfg.data_dir.clone(),
    };
    if data_dir.exists() {
        return Err(SnapshotError::Invalid(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }
    let tmp_dir = data_dir.join("member").join("tmp");
    std::fs::create_dir_all(&tmp_dir)?;
    let db_copy = tmp_dir.join("restore.db");
    let result = (|| {
        copy_checked(&cfg.snapshot, &db_copy, cfg.skip_hash_check)?;
        let storage = Storage::open(&data_dir.join("member").join("db"))?;
        load(&storage, &db_copy, cfg)?;
        let ids: Vec<(u64, String, Vec<String>)> = members
            .iter()
            .map(|(name, urls)| {
                (
                    member_id(urls, &cfg.initial_cluster_token),
                    name.clone(),
                    urls.clone(),
                )
            })
            .collect();
        let me = member_id(&mine, &cfg.initial_cluster_token);
        let cid = cluster_id(
            &ids.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
            &cfg.initial_cluster_token,
        );
        let raft_meta = storage.cf(CF_RAFT_META);
        let mut batch = WriteBatch::default();
        batch.put_cf(raft_meta, IDENTITY_KEY, encode(&(me, cid))?);
        batch.put_cf(raft_meta, RESTORED_CLUSTER_KEY, encode(&ids)?);
        let mut o = rocksdb::WriteOptions::default();
        o.set_sync(true);
        storage.db().write_opt(batch, &o)?;
        storage.db().flush_wal(true)?;
        Ok::<_, SnapshotError>(())
    })();
    let _ = std::fs::remove_dir_all(&tmp_dir);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, SnapshotError> {
    bincode::serialize(v).map_err(|e| SnapshotError::Corrupt(e.to_string()))
}

/// Rows per RocksDB batch while loading.
const LOAD_BATCH: usize = 10_000;

/// What loading has found so far besides the rows.
#[derive(Default)]
struct Loaded {
    /// The newest main revision of the `key` bucket.
    latest: i64,
    /// etcd's compaction revision (scheduled or finished: an unfinished one is finished here).
    compact: i64,
    alarms: AlarmStore,
}

/// One row of the snapshot's `bucket`, staged into our column families.
fn load_row(
    storage: &Storage,
    batch: &mut WriteBatch,
    found: &mut Loaded,
    bucket: &str,
    k: &[u8],
    v: &[u8],
) -> Result<(), SnapshotError> {
    match bucket {
        backend::KEY => {
            let Some((rev, tombstone)) = Revision::from_etcd_key(k) else {
                return Err(SnapshotError::Corrupt(format!("key bucket row {k:?}")));
            };
            found.latest = found.latest.max(rev.main);
            batch.put_cf(storage.cf(CF_KV), rev.to_key(tombstone), v);
        }
        backend::META if k == backend::FINISHED_COMPACT || k == backend::SCHEDULED_COMPACT => {
            let Some((rev, _)) = Revision::from_etcd_key(v) else {
                return Err(SnapshotError::Corrupt(format!("compaction revision {v:?}")));
            };
            found.compact = found.compact.max(rev.main);
        }
        backend::LEASE => {
            let lease = LeaseRow::decode(v)
                .map_err(|e| SnapshotError::Corrupt(format!("lease {k:?}: {e}")))?;
            let (id, ttl) = (lease.id.to_be_bytes(), lease.ttl.to_be_bytes());
            batch.put_cf(storage.cf(CF_LEASE), id, ttl);
        }
        backend::AUTH if k == backend::AUTH_ENABLED => {
            batch.put_cf(storage.cf(CF_AUTH), b"enabled", [u8::from(v == [1])]);
        }
        backend::AUTH if k == backend::AUTH_REVISION => {
            batch.put_cf(storage.cf(CF_AUTH), b"revision", v);
        }
        backend::AUTH_USERS => batch.put_cf(storage.cf(CF_AUTH), [&b"user/"[..], k].concat(), v),
        backend::AUTH_ROLES => batch.put_cf(storage.cf(CF_AUTH), [&b"role/"[..], k].concat(), v),
        backend::ALARM => {
            let m = AlarmMember::decode(k)
                .map_err(|e| SnapshotError::Corrupt(format!("alarm {k:?}: {e}")))?;
            let req = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: m.member_id,
                alarm: m.alarm,
            };
            found.alarms.apply(storage, batch, &req);
        }
        // The member list comes from --initial-cluster; anything else is etcd's own.
        _ => {}
    }
    Ok(())
}

/// Moves the rows of the bbolt file at `db` into the state machine's column families, then
/// sets the revision (bumped if asked) and compacts where the snapshot says (or at the bumped
/// revision with `--mark-compacted`).
fn load(storage: &Storage, db: &Path, cfg: &RestoreConfig) -> Result<(), SnapshotError> {
    let rocks = storage.db();
    let mut batch = WriteBatch::default();
    let mut found = Loaded::default();
    let file = Bolt::open(&db.to_string_lossy())?;
    for (name, root) in file.buckets()? {
        let Some(root) = root else { continue };
        let bucket = String::from_utf8_lossy(&name).into_owned();
        let mut failed = None;
        file.for_each(&root, &mut |k, v| {
            let (None, Some(v)) = (&failed, v) else {
                return;
            };
            let staged = load_row(storage, &mut batch, &mut found, &bucket, k, v);
            let written = match staged {
                Ok(()) if batch.len() >= LOAD_BATCH => rocks
                    .write(std::mem::take(&mut batch))
                    .map_err(SnapshotError::from),
                other => other,
            };
            failed = written.err();
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    // etcd's restored store starts at the newest revision found, or the compacted one.
    let mut current = found.latest.max(found.compact).max(1);
    if cfg.bump_revision > 0 {
        current += cfg.bump_revision as i64;
    }
    Mvcc::stage_current_rev(storage, &mut batch, current);
    rocks.write(std::mem::take(&mut batch))?;
    let target = match cfg.mark_compacted {
        true => current,
        false => found.compact,
    };
    if target > 0 {
        let mut mvcc =
            Mvcc::open(storage.clone()).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        mvcc.compact(target, &mut batch);
        let mut from = None;
        loop {
            from = mvcc
                .compact_some(target, from.as_deref(), LOAD_BATCH, &mut batch)
                .map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
            rocks.write(std::mem::take(&mut batch))?;
            if from.is_none() {
                break;
            }
        }
    }
    Ok(())
}
