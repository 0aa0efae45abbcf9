//! Raft snapshots of the state machine (what catches up a member that is behind the leader's
//! purged log), as files streamed row by row: memory stays bounded whatever the store's size,
//! no apply waits while one is written, and no second copy of the store stays on disk.
//!
//! openraft asks for a snapshot for two reasons. *Building* one (every `--snapshot-count`
//! entries) only lets it purge the log: the state machine itself, in RocksDB, is the snapshot,
//! so building records the applied point (openraft's `SnapshotMeta`) in `raft_meta` and
//! writes nothing else. *Sending* one to a follower needs the data: `get_current_snapshot`
//! then writes the state as it is now (at least as new as the recorded point) into a scratch
//! file, removed once sent. The file:
//!
//! ```text
//! "oxetcd-snap\x01"  u32 meta length  bincode SnapshotMeta
//! (u8 column family, u32 key length, u32 value length, key, value)*
//! 0xff  u64 row count
//! ```
//!
//! Writing takes the applied point and a RocksDB snapshot under the state lock, then reads
//! the RocksDB snapshot. Installing verifies the received file, renames it `installing.snap`
//! before touching the database, replaces the rows in bounded batches and writes the applied
//! log id last; a member that crashes midway finds `installing.snap` at start-up and installs
//! it again.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use openraft::storage::{Snapshot, SnapshotMeta};
use rocksdb::WriteBatch;

use super::state::{load_state, read_err, restart_lease_clock, stage_applied, write_err};
use super::StateMachine;
use crate::raft::{MemberNode, StorageError, TypeConfig};
use crate::storage::{Storage, CF_AUTH, CF_KV, CF_LEASE, CF_META, CF_RAFT_META};

/// The column families a snapshot carries, by their index in the file.
const SNAPSHOT_CFS: [&str; 4] = [CF_META, CF_KV, CF_LEASE, CF_AUTH];

const MAGIC: &[u8] = b"oxetcd-snap\x01";
const END: u8 = 0xff;
/// Rows per RocksDB batch while installing.
const INSTALL_BATCH: usize = 10_000;

const INSTALLING: &str = "installing.snap";

/// `raft_meta`: the `SnapshotMeta` of the newest snapshot built or installed.
const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";

type Meta = SnapshotMeta<u64, MemberNode>;

/// When openraft should take a snapshot (and purge the log): every `--snapshot-count` applied
/// requests, as etcd counts them. openraft's own policy counts log entries, and an entry of
/// ours carries a whole batch of requests, so with many clients the log would grow to many
/// times the intended size before a purge.
pub(crate) struct SnapshotTrigger {
    every: u64,
    since: std::sync::atomic::AtomicU64,
    due: tokio::sync::Notify,
}

impl SnapshotTrigger {
    pub(crate) fn new(every: u64) -> Self {
        Self {
            every: every.max(1),
            since: Default::default(),
            due: tokio::sync::Notify::new(),
        }
    }

    /// `n` more requests applied.
    pub(super) fn applied(&self, n: u64) {
        use std::sync::atomic::Ordering;
        if self.since.fetch_add(n, Ordering::Relaxed) + n >= self.every {
            self.since.store(0, Ordering::Relaxed);
            self.due.notify_one();
        }
    }

    /// Resolves when a snapshot is due.
    pub(crate) async fn due(&self) {
        self.due.notified().await
    }
}

fn snap_dir(storage: &Storage) -> PathBuf {
    storage.snap_dir()
}

/// Writes the rows of `snapshot` with `meta` to `path` and syncs it.
fn write_file(
    storage: &Storage,
    snapshot: &rocksdb::SnapshotWithThreadMode<'_, rocksdb::DB>,
    meta: &Meta,
    path: &Path,
) -> Result<(), StorageError> {
    let file = std::fs::File::create(path).map_err(read_err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let meta_bytes = bincode::serialize(meta).map_err(read_err)?;
    out.write_all(MAGIC).map_err(read_err)?;
    out.write_all(&(meta_bytes.len() as u32).to_be_bytes())
        .map_err(read_err)?;
    out.write_all(&meta_bytes).map_err(read_err)?;
    let mut rows = 0u64;
    for (i, cf) in SNAPSHOT_CFS.iter().enumerate() {
        for row in snapshot.iterator_cf(storage.cf(cf), rocksdb::IteratorMode::Start) {
            let (k, v) = row.map_err(read_err)?;
            out.write_all(&[i as u8]).map_err(read_err)?;
            out.write_all(&(k.len() as u32).to_be_bytes())
                .map_err(read_err)?;
            out.write_all(&(v.len() as u32).to_be_bytes())
                .map_err(read_err)?;
            out.write_all(&k).map_err(read_err)?;
            out.write_all(&v).map_err(read_err)?;
            rows += 1;
        }
    }
    out.write_all(&[END]).map_err(read_err)?;
    out.write_all(&rows.to_be_bytes()).map_err(read_err)?;
    let file = out.into_inner().map_err(|e| read_err(e.error()))?;
    file.sync_all().map_err(read_err)?;
    Ok(())
}

/// Reads a snapshot file's header.
fn read_meta(r: &mut impl Read) -> Result<Meta, StorageError> {
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic).map_err(read_err)?;
    if magic != MAGIC {
        return Err(read_err("not an oxetcd snapshot (from an older oxetcd?)"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(read_err)?;
    let mut meta = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut meta).map_err(read_err)?;
    bincode::deserialize(&meta).map_err(read_err)
}

/// What [`read_rows`] hands each row to: (column family index, key, value).
type RowSink<'a> = dyn FnMut(usize, &[u8], &[u8]) -> Result<(), StorageError> + 'a;

/// Reads the rows after the header, calling `row` for each, and checks the trailer's count.
fn read_rows(r: &mut impl Read, row: &mut RowSink<'_>) -> Result<(), StorageError> {
    let mut rows = 0u64;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(write_err)?;
        if tag[0] == END {
            let mut count = [0u8; 8];
            r.read_exact(&mut count).map_err(write_err)?;
            if u64::from_be_bytes(count) != rows {
                return Err(write_err("snapshot file: row count does not match"));
            }
            return Ok(());
        }
        if tag[0] as usize >= SNAPSHOT_CFS.len() {
            return Err(write_err(format!(
                "snapshot file: unknown column family {}",
                tag[0]
            )));
        }
        let mut lens = [0u8; 8];
        r.read_exact(&mut lens).map_err(write_err)?;
        let klen = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let vlen = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        let mut kv = vec![0u8; klen + vlen];
        r.read_exact(&mut kv).map_err(write_err)?;
        row(tag[0] as usize, &kv[..klen], &kv[klen..])?;
        rows += 1;
    }
}

/// Reads a whole snapshot file without using it: a damaged or cut file is refused before the
/// database is touched.
fn verify_file(path: &Path) -> Result<Meta, StorageError> {
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(write_err)?);
    let meta = read_meta(&mut r)?;
    read_rows(&mut r, &mut |_, _, _| Ok(()))?;
    Ok(meta)
}

/// Renames and syncs the directory, so the new name survives a crash.
fn rename_synced(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).map_err(write_err)?;
    if let Some(dir) = to.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
    }
    Ok(())
}

/// Replaces the state machine's rows with the file's (the applied log id and membership last);
/// the file stays `installing.snap` until done. Blocking; the caller holds the state lock.
fn install_file(storage: &Storage, path: &Path) -> Result<Meta, StorageError> {
    let db = storage.db();
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(write_err)?);
    let meta = read_meta(&mut r)?;
    // The key index goes first, so an install cut short rebuilds it from whatever rows it left.
    crate::mvcc::clear_derived(storage).map_err(write_err)?;
    let mut batch = WriteBatch::default();
    let flush = |batch: &mut WriteBatch, force: bool| -> Result<(), StorageError> {
        if force || batch.len() >= INSTALL_BATCH {
            db.write(std::mem::take(batch)).map_err(write_err)?;
        }
        Ok(())
    };
    for cf_name in SNAPSHOT_CFS {
        let cf = storage.cf(cf_name);
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(write_err)?;
            batch.delete_cf(cf, k);
            flush(&mut batch, false)?;
        }
    }
    flush(&mut batch, true)?;
    read_rows(&mut r, &mut |cf, k, v| {
        batch.put_cf(storage.cf(SNAPSHOT_CFS[cf]), k, v);
        flush(&mut batch, false)
    })?;
    stage_applied(
        storage,
        &mut batch,
        &meta.last_log_id,
        &meta.last_membership,
    )?;
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync).map_err(write_err)?;
    Ok(meta)
}

/// Records the newest snapshot's point (synced: openraft purges the log up to it).
fn record_meta(storage: &Storage, meta: &Meta) -> Result<(), StorageError> {
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let bytes = bincode::serialize(meta).map_err(write_err)?;
    storage
        .db()
        .put_cf_opt(storage.cf(CF_RAFT_META), SNAPSHOT_META_KEY, bytes, &sync)
        .map_err(write_err)
}

fn recorded_meta(storage: &Storage) -> Result<Option<Meta>, StorageError> {
    match storage
        .db()
        .get_cf(storage.cf(CF_RAFT_META), SNAPSHOT_META_KEY)
        .map_err(read_err)?
    {
        Some(b) => Ok(Some(bincode::deserialize(&b).map_err(read_err)?)),
        None => Ok(None),
    }
}

/// The applied point, and a RocksDB snapshot of the same moment.
fn capture<'a>(
    storage: &'a Storage,
    state: &super::StateLock,
) -> Result<(Meta, rocksdb::SnapshotWithThreadMode<'a, rocksdb::DB>), StorageError> {
    let st = state.read().map_err(read_err)?;
    let last = st.applied;
    let meta = Meta {
        last_log_id: last,
        last_membership: st.membership.clone(),
        snapshot_id: format!(
            "{}-{}",
            last.map(|l| l.leader_id.term).unwrap_or(0),
            last.map(|l| l.index).unwrap_or(0)
        ),
    };
    Ok((meta, storage.db().snapshot()))
}

/// An open scratch file whose name is already gone: the data goes away when it is dropped.
async fn anonymous_file(
    storage: &Storage,
    write: impl FnOnce(&Path) -> Result<(), StorageError> + Send + 'static,
) -> Result<tokio::fs::File, StorageError> {
    let dir = storage.scratch_dir();
    std::fs::create_dir_all(&dir).map_err(read_err)?;
    let path = dir.join(format!(
        "raft-snapshot-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let p = path.clone();
    tokio::task::spawn_blocking(move || write(&p))
        .await
        .map_err(read_err)??;
    let file = tokio::fs::File::open(&path).await.map_err(read_err)?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// At start-up, before the state is loaded: finishes an install a crash interrupted, and
/// removes a half-built snapshot.
pub(super) fn recover(storage: &Storage) -> Result<(), StorageError> {
    let dir = snap_dir(storage);
    let installing = dir.join(INSTALLING);
    if installing.exists() {
        let meta = install_file(storage, &installing)?;
        record_meta(storage, &meta)?;
        tracing::warn!(last_log_id = ?meta.last_log_id, "finished installing a snapshot a crash had interrupted");
        std::fs::remove_file(&installing).map_err(write_err)?;
    }
    // Snapshots of earlier versions, kept whole on disk.
    let _ = std::fs::remove_file(dir.join("current.snap"));
    Ok(())
}

impl StateMachine {
    /// openraft's periodic snapshot: records the applied point, so the log can be purged up
    /// to it (the data stays where it is; see the module doc).
    pub(super) async fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = capture(&self.storage, &self.state)?.0;
        record_meta(&self.storage, &meta)?;
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot point recorded");
        // openraft keeps only the meta of a built snapshot.
        let empty = anonymous_file(&self.storage, |p| {
            std::fs::File::create(p).map(|_| ()).map_err(read_err)
        })
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(empty),
        })
    }

    /// openraft asks at start-up (it keeps only the meta then: the recorded point is
    /// answered, with no data) and when a follower needs a snapshot (the state as it is now,
    /// written to a scratch file).
    pub(super) async fn current(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        if !self
            .asked_for_snapshot
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let Some(meta) = recorded_meta(&self.storage)? else {
                return Ok(None);
            };
            let empty = anonymous_file(&self.storage, |p| {
                std::fs::File::create(p).map(|_| ()).map_err(read_err)
            })
            .await?;
            return Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(empty),
            }));
        }
        let (storage, state) = (self.storage.clone(), self.state.clone());
        let (meta_tx, meta_rx) = std::sync::mpsc::channel();
        let file = anonymous_file(&self.storage, move |path| {
            let (meta, snapshot) = capture(&storage, &state)?;
            write_file(&storage, &snapshot, &meta, path)?;
            let _ = meta_tx.send(meta);
            Ok(())
        })
        .await?;
        let meta = meta_rx.recv().map_err(read_err)?;
        tracing::info!(last_log_id = ?meta.last_log_id, "wrote a snapshot to send");
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }

    /// A new file for a snapshot a leader is about to send.
    pub(super) async fn receiving(&self) -> Result<Box<tokio::fs::File>, StorageError> {
        let dir = snap_dir(&self.storage);
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let path = dir.join(format!(
            "receiving-{}.snap",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .await
            .map_err(write_err)?;
        *self.receiving.lock().map_err(write_err)? = Some(path);
        Ok(Box::new(file))
    }

    /// Replaces the whole state with a leader's snapshot, received into the file
    /// [`StateMachine::receiving`] made.
    pub(super) async fn install(
        &self,
        meta: &Meta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        snapshot.flush().await.map_err(write_err)?;
        snapshot.sync_all().await.map_err(write_err)?;
        drop(snapshot);
        let received = self
            .receiving
            .lock()
            .map_err(write_err)?
            .take()
            .ok_or_else(|| write_err("install_snapshot without a received file"))?;
        let (storage, state) = (self.storage.clone(), self.state.clone());
        let expected = meta.last_log_id;
        let installed = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let dir = snap_dir(&storage);
            let installing = dir.join(INSTALLING);
            if verify_file(&received)?.last_log_id != expected {
                return Err(write_err("snapshot file does not match its meta"));
            }
            rename_synced(&received, &installing)?;
            // Readers wait for the whole install: they never see half the rows.
            let mut state = state.write().map_err(write_err)?;
            let meta = install_file(&storage, &installing)?;
            record_meta(&storage, &meta)?;
            *state = load_state(&storage)?;
            std::fs::remove_file(&installing).map_err(write_err)?;
            Ok(state.mvcc.current_rev())
        })
        .await
        .map_err(write_err)??;
        tracing::info!(last_log_id = ?meta.last_log_id, revision = installed, "installed snapshot");
        self.lessor.clear();
        {
            let st = self.state.read().map_err(read_err)?;
            if let Some(applied) = &st.applied {
                self.metrics.applied.set(applied.index as i64);
            }
            restart_lease_clock(&self.lessor, &st.leases);
            super::resume_compaction(&self.compactions, &st);
        }
        // Users, passwords and auth may all have changed in what the snapshot skipped: tokens
        // issued before are not known to be valid any more (clients log in again).
        self.tokens.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(storage: &Storage) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for cf in SNAPSHOT_CFS {
            for row in storage
                .db()
                .iterator_cf(storage.cf(cf), rocksdb::IteratorMode::Start)
            {
                let (k, v) = row.expect("row");
                out.push((cf.to_string(), k.to_vec(), v.to_vec()));
            }
        }
        out
    }

    fn open(dir: &Path) -> Storage {
        Storage::open(&dir.join("member").join("db")).expect("open")
    }

    /// A member that crashed while installing finds `installing.snap` at start-up and ends
    /// with exactly the snapshot's rows, whatever it held before.
    #[test]
    fn an_interrupted_install_is_finished_at_start_up() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(a_dir.path());
        for i in 0..25_000u32 {
            a.db()
                .put_cf(a.cf(CF_KV), i.to_be_bytes(), format!("value {i}"))
                .unwrap();
        }
        a.db()
            .put_cf(a.cf(CF_LEASE), 7i64.to_be_bytes(), 60i64.to_be_bytes())
            .unwrap();
        a.db().put_cf(a.cf(CF_AUTH), b"enabled", [1]).unwrap();
        let meta = Meta::default();
        let file = a_dir.path().join("a.snap");
        write_file(&a, &a.db().snapshot(), &meta, &file).unwrap();

        let b = open(b_dir.path());
        b.db().put_cf(b.cf(CF_KV), b"stale", b"row").unwrap();
        b.db().put_cf(b.cf(CF_META), b"stale", b"meta").unwrap();
        std::fs::create_dir_all(b.snap_dir()).unwrap();
        std::fs::copy(&file, b.snap_dir().join(INSTALLING)).unwrap();
        recover(&b).unwrap();

        let mut want = rows(&a);
        let applied = rows(&b)
            .into_iter()
            .filter(|(cf, k, _)| cf == CF_META && (k == b"applied" || k == b"membership"));
        want.extend(applied);
        want.sort();
        let mut got = rows(&b);
        got.sort();
        assert_eq!(got, want);
        assert!(!b.snap_dir().join(INSTALLING).exists());
        assert!(recorded_meta(&b).unwrap().is_some());
    }

    #[test]
    fn a_truncated_snapshot_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for i in 0..100u32 {
            s.db().put_cf(s.cf(CF_KV), i.to_be_bytes(), b"v").unwrap();
        }
        let file = dir.path().join("s.snap");
        write_file(&s, &s.db().snapshot(), &Meta::default(), &file).unwrap();
        assert!(verify_file(&file).is_ok());
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 20]).unwrap();
        assert!(verify_file(&file).is_err());
    }
}
