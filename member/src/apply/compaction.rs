//! The physical part of compaction, in the background (etcd's `scheduleCompaction`). Applying
//! a Compact only moves the compaction revision (reads below it fail from then on); this task
//! then walks the key index a batch of keys at a time, each batch under the state lock for a
//! millisecond or so, dropping superseded revisions and deleting their rows. So neither
//! applies nor reads wait for a whole key space's compaction.
//!
//! Rows deleted here are not tied to the applied log id: after a crash midway, the member
//! finds the compaction revision at start-up and runs the walk again (it is idempotent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;
use tokio::sync::watch;

use super::state::StateLock;
use crate::storage::Storage;

/// Keys per step (etcd's default `--experimental-compaction-batch-limit`).
const KEYS_PER_STEP: usize = 1000;
/// Pause between steps, so a long compaction leaves room to everything else.
const PAUSE: Duration = Duration::from_millis(1);

/// Runs every compaction asked for on `targets` (the newest revision compacted at apply);
/// `done` tells the newest one whose rows are gone (what `physical` compactions wait for).
pub(crate) async fn run(
    storage: Storage,
    state: Arc<StateLock>,
    mut targets: watch::Receiver<i64>,
    done: watch::Sender<i64>,
) {
    loop {
        let rev = *targets.borrow_and_update();
        if rev > 0 && rev != *done.borrow() {
            let started = Instant::now();
            match compact(&storage, &state, rev).await {
                Ok(()) => {
                    tracing::info!(revision = rev, took = ?started.elapsed(), "finished compaction");
                    done.send_replace(rev);
                }
                // The state lock is poisoned or the disk failed: raft stops on the same error.
                Err(e) => {
                    tracing::error!(revision = rev, "compaction stopped: {e}");
                    return;
                }
            }
            continue;
        }
        if targets.changed().await.is_err() {
            return;
        }
    }
}

async fn compact(storage: &Storage, state: &Arc<StateLock>, rev: i64) -> Result<(), String> {
    let mut from: Option<Vec<u8>> = None;
    loop {
        let (storage, state) = (storage.clone(), state.clone());
        from = tokio::task::spawn_blocking(move || {
            let mut st = state.write().map_err(|e| e.to_string())?;
            let mut batch = WriteBatch::default();
            let next = st
                .mvcc
                .compact_some(rev, from.as_deref(), KEYS_PER_STEP, &mut batch)
                .map_err(|e| e.to_string())?;
            storage.db().write(batch).map_err(|e| e.to_string())?;
            Ok::<_, String>(next)
        })
        .await
        .map_err(|e| e.to_string())??;
        if from.is_none() {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
}
