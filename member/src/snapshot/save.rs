//! `Maintenance.Snapshot`: the state as an etcd backend file, streamed as etcd 3.4 streams
//! its own: 32 KiB chunks with the bytes still to come, then one last message holding the
//! sha256 of everything sent (which `etcdctl snapshot restore` checks).
//!
//! The file is written first, from a RocksDB snapshot (applies go on meanwhile), into the
//! member's scratch dir, then read back chunk by chunk: memory stays bounded whatever the
//! store's size, and the file is removed once sent or when the client goes away.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oxetcd_common::etcdserverpb::SnapshotResponse;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{backend, bolt, capture, SnapshotError};
use crate::apply::StateLock;
use crate::storage::Storage;

/// etcd's `snapshotSendBufferSize`.
const CHUNK: usize = 32 * 1024;

/// Distinguishes concurrent snapshots' scratch files.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes scratch files a previous run left behind (it was killed while sending).
pub(crate) fn clear_scratch(storage: &Storage) {
    let _ = std::fs::remove_dir_all(storage.scratch_dir());
}

/// Writes the state as a bbolt file at `path`; returns its size in bytes.
pub(crate) fn write_file(
    storage: &Storage,
    state: &StateLock,
    path: &Path,
) -> Result<u64, SnapshotError> {
    let view = capture(storage, state)?;
    let mut out = bolt::Writer::create(path, &backend::BUCKETS)?;
    view.visit(&mut |bucket, k, v| out.put(bucket, k, v))?;
    out.finish()
}

/// Starts writing and sending a snapshot; the receiver yields etcd's messages, or one error.
pub(crate) fn stream(
    storage: Storage,
    state: Arc<StateLock>,
) -> mpsc::Receiver<Result<SnapshotResponse, SnapshotError>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send(&storage, &state, &tx) {
            tracing::warn!("sending a snapshot: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

fn send(
    storage: &Storage,
    state: &StateLock,
    tx: &mpsc::Sender<Result<SnapshotResponse, SnapshotError>>,
) -> Result<(), SnapshotError> {
    let dir = storage.scratch_dir();
    std::fs::create_dir_all(&dir)?;
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let scratch = Scratch(dir.join(format!("snapshot-{n}.db")));
    let started = std::time::Instant::now();
    let total = write_file(storage, state, &scratch.0)?;
    tracing::info!(
        total_bytes = total,
        took = ?started.elapsed(),
        "sending database snapshot to client"
    );
    let mut file = std::fs::File::open(&scratch.0)?.take(total);
    let mut sha = Sha256::new();
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while sent < total {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            return Err(SnapshotError::Corrupt(format!(
                "snapshot file ended after {sent} of {total} bytes"
            )));
        }
        sent += n as u64;
        sha.update(&buf[..n]);
        let msg = SnapshotResponse {
            header: None,
            remaining_bytes: total - sent,
            blob: buf[..n].to_vec(),
            version: String::new(),
        };
        if tx.blocking_send(Ok(msg)).is_err() {
            // The client went away.
            return Ok(());
        }
    }
    let last = SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: sha.finalize().to_vec(),
        version: String::new(),
    };
    let _ = tx.blocking_send(Ok(last));
    tracing::info!(total_bytes = total, took = ?started.elapsed(), "sent database snapshot to client");
    Ok(())
}

/// Fills `buf` unless the file ends first; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}
