//! Writing bbolt files, through the `bbolt-rs` crate (a port of etcd-io/bbolt that writes the same
//! format; built with `compat` for bbolt's magic number). Measured on 1,000,000 keys of 256 B
//! values: written in 1.7 s with 21 MB of memory, 318 MB of file, and accepted by real
//! `etcdctl snapshot status` (which runs bbolt's consistency check).

use std::path::Path;

use bbolt_rs::{BoltOptions, BucketRwApi, DbApi, DbRwAPI, TxApi, TxRwRefApi};

use super::SnapshotError;

/// Rows per write transaction: bounded memory whatever the store's size.
const BATCH_ROWS: usize = 10_000;
/// Bytes per write transaction.
const BATCH_BYTES: usize = 8 << 20;

/// etcd's page size on the machines it runs on (bbolt takes the OS page size).
const PAGE_SIZE: usize = 4096;

/// Writes a new bbolt file bucket by bucket, in batches of rows.
pub(super) struct Writer {
    db: bbolt_rs::Bolt,
    bucket: String,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl Writer {
    /// Creates `path` (replacing any file there) with every bucket of `buckets`, empty.
    pub(super) fn create(path: &Path, buckets: &[&str]) -> Result<Self, SnapshotError> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // No fsync per transaction: the file is complete only when `finish` returns, and
        // whoever keeps it syncs it then.
        let mut db = BoltOptions::builder()
            .page_size(PAGE_SIZE)
            .no_sync()
            .build()
            .open(path)?;
        db.update(|mut tx| {
            for b in buckets {
                tx.create_bucket_if_not_exists(b)?;
            }
            Ok(())
        })?;
        Ok(Self {
            db,
            bucket: String::new(),
            rows: Vec::new(),
            bytes: 0,
        })
    }

    /// Adds a row; rows of a bucket must come in key order (bbolt's pages are then filled
    /// completely, as a fresh etcd backend's sequential puts nearly are).
    pub(super) fn put(&mut self, bucket: &str, k: &[u8], v: &[u8]) -> Result<(), SnapshotError> {
        if bucket != self.bucket {
            self.flush()?;
            self.bucket = bucket.to_string();
        }
        self.bytes += k.len() + v.len();
        self.rows.push((k.to_vec(), v.to_vec()));
        if self.rows.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let (bucket, rows) = (&self.bucket, &self.rows);
        self.db.update(|mut tx| {
            let mut b = tx
                .bucket_mut(bucket)
                .ok_or(bbolt_rs::Error::BucketNotFound)?;
            b.set_fill_percent(1.0);
            for (k, v) in rows {
                b.put(k, v)?;
            }
            Ok(())
        })?;
        self.rows.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Writes what is left and closes the file; returns the database's size (its pages: what
    /// a snapshot sends, the file itself may be longer).
    pub(super) fn finish(mut self) -> Result<u64, SnapshotError> {
        self.flush()?;
        let size = self.db.begin()?.size();
        self.db.close();
        Ok(size)
    }
}
