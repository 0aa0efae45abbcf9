//! The key index, on disk: for every key, one row per revision at which it changed, in the
//! `key_index` column family (etcd keeps this tree in memory and rebuilds it at start-up by
//! reading every revision; here it is stored, so memory does not grow with the key count and a
//! restart reads nothing).
//!
//! A row's key is the user key, escaped so that keys keep their order and no key's encoding is
//! a prefix of another's (`0x00` becomes `0x00 0xFF`, and `0x00 0x01` ends the key), followed
//! by the revision inverted (`!main`, `!sub`, big-endian), so a key's rows run newest first and
//! one seek finds the newest at or before any revision (TiKV's MVCC layout). The value says
//! whether the revision is a put (with the generation's create revision and the version) or a
//! delete. Values themselves stay in the `kv` column family, under their revision.
//!
//! The row with the empty key (before every encoded key) holds the layout's format and the
//! number of live keys; without it the index is rebuilt from `kv` (see [`rebuild`]).

use std::collections::BTreeMap;
use std::iter::Peekable;

use oxetcd_common::mvccpb::KeyValue;
use prost::Message;
use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, ReadOptions, WriteBatch, DB};

use super::error::KvError;
use super::revision::Revision;
use crate::storage::{Storage, CF_INDEX, CF_KV, CF_LEASE_KEYS};

/// The row holding the format and the live-key count: sorts before every encoded key.
const MARKER: &[u8] = b"";
/// This layout's version, in the marker row.
const FORMAT: u8 = 1;
/// Rows written per batch while rebuilding.
const REBUILD_BATCH: usize = 4096;
/// Rows of one key stepped over one by one before seeking past the key (most keys have few).
const NEXTS_BEFORE_SEEK: usize = 3;

/// Keys with where they stood, in key order (see [`super::Mvcc::range_index`]).
pub(crate) type KeyScan<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, KeyAt), KvError>> + 'a>;

/// A key's staged rows, oldest first.
type Staged = Vec<(Revision, Row)>;

/// Where a key stood at some revision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct KeyAt {
    /// The revision of the value in effect.
    pub modified: Revision,
    /// The generation's create revision.
    pub created: i64,
    pub version: i64,
}

/// What happened to a key at one revision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Row {
    Put { created: i64, version: i64 },
    Tombstone,
}

impl Row {
    pub(super) fn encode(self) -> Vec<u8> {
        match self {
            Row::Tombstone => vec![1],
            Row::Put { created, version } => {
                let mut v = Vec::with_capacity(17);
                v.push(0);
                v.extend_from_slice(&created.to_be_bytes());
                v.extend_from_slice(&version.to_be_bytes());
                v
            }
        }
    }

    fn decode(v: &[u8]) -> Option<Self> {
        match v {
            [1] => Some(Row::Tombstone),
            [0, rest @ ..] if rest.len() == 16 => Some(Row::Put {
                created: i64::from_be_bytes(rest[..8].try_into().ok()?),
                version: i64::from_be_bytes(rest[8..].try_into().ok()?),
            }),
            _ => None,
        }
    }

    fn at(self, modified: Revision) -> Option<KeyAt> {
        match self {
            Row::Tombstone => None,
            Row::Put { created, version } => Some(KeyAt {
                modified,
                created,
                version,
            }),
        }
    }
}

/// Appends the order-keeping, prefix-free encoding of `key`.
fn encode_key(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

fn encoded(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + 16);
    encode_key(key, &mut out);
    out
}

/// The user key of an encoded key (the row key without its revision).
fn decode_key(enc: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(enc.len().saturating_sub(2));
    let mut i = 0;
    while i < enc.len() {
        match (enc[i], enc.get(i + 1)) {
            (0, Some(0xFF)) => out.push(0),
            (0, Some(1)) if i + 2 == enc.len() => return Some(out),
            (0, _) => return None,
            (b, _) => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    None
}

fn push_rev(out: &mut Vec<u8>, rev: Revision) {
    out.extend_from_slice(&(!(rev.main as u64)).to_be_bytes());
    out.extend_from_slice(&(!(rev.sub as u64)).to_be_bytes());
}

/// The row key of `key` at `rev`.
pub(super) fn row_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut k = encoded(key);
    push_rev(&mut k, rev);
    k
}

/// Splits a row key into the encoded user key and the revision.
fn split_row_key(k: &[u8]) -> Option<(&[u8], Revision)> {
    let cut = k.len().checked_sub(16)?;
    let (enc, rev) = k.split_at(cut);
    let main = !u64::from_be_bytes(rev[..8].try_into().ok()?);
    let sub = !u64::from_be_bytes(rev[8..].try_into().ok()?);
    Some((enc, Revision::new(main as i64, sub as i64)))
}

/// The seek target for the newest row of an encoded key at or before revision `at`.
fn seek_at(enc: &[u8], at: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(enc.len() + 16);
    k.extend_from_slice(enc);
    push_rev(&mut k, Revision::new(at, i64::MAX));
    k
}

/// A key past every row of an encoded key.
fn past(enc: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(enc.len() + 17);
    k.extend_from_slice(enc);
    k.extend_from_slice(&[0xFF; 17]);
    k
}

fn corrupt(what: &str, k: &[u8]) -> KvError {
    KvError::Corrupt(format!("bad key index {what} {k:?}"))
}

/// Read options for iterating the index across keys: in key order, past the Bloom filters
/// of one key's rows (`storage.rs`).
fn total_order() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    opts
}

/// Something the index can be read from: the database, or a RocksDB snapshot of it.
pub(crate) trait Source {
    fn raw_iter(&self, cf: &ColumnFamily, opts: ReadOptions)
        -> DBRawIteratorWithThreadMode<'_, DB>;
}

impl Source for DB {
    fn raw_iter(
        &self,
        cf: &ColumnFamily,
        opts: ReadOptions,
    ) -> DBRawIteratorWithThreadMode<'_, DB> {
        self.raw_iterator_cf_opt(cf, opts)
    }
}

impl Source for rocksdb::SnapshotWithThreadMode<'_, DB> {
    fn raw_iter(
        &self,
        cf: &ColumnFamily,
        opts: ReadOptions,
    ) -> DBRawIteratorWithThreadMode<'_, DB> {
        self.raw_iterator_cf_opt(cf, opts)
    }
}

/// The live keys of an etcd range `[start, end)` at revision `at`, in key order, read from
/// the stored rows.
pub(super) struct Scan<'a> {
    it: DBRawIteratorWithThreadMode<'a, DB>,
    at: i64,
    done: bool,
}

impl<'a> Scan<'a> {
    pub(super) fn new<S: Source + ?Sized>(
        src: &'a S,
        cf: &ColumnFamily,
        start: &[u8],
        end: &[u8],
        at: i64,
    ) -> Self {
        let first = encoded(start);
        let mut opts = total_order();
        let empty = match end {
            [] => {
                // One key: every row of it sorts below its encoding with the last byte raised.
                let mut upper = first.clone();
                if let Some(last) = upper.last_mut() {
                    *last += 1;
                }
                opts.set_iterate_upper_bound(upper);
                // The seek target is a whole row key, whose prefix (the encoded key) the
                // Bloom filters know: a key with no rows costs no seek.
                opts.set_total_order_seek(false);
                opts.set_prefix_same_as_start(true);
                let mut it = src.raw_iter(cf, opts);
                it.seek(seek_at(&first, at));
                return Self {
                    it,
                    at,
                    done: false,
                };
            }
            [0] => false,
            _ if end <= start => true,
            _ => {
                opts.set_iterate_upper_bound(encoded(end));
                false
            }
        };
        let mut it = src.raw_iter(cf, opts);
        if !empty {
            it.seek(&first);
        }
        Self {
            it,
            at,
            done: empty,
        }
    }

    /// Moves to the first row of the next key.
    fn skip_key(&mut self, enc: &[u8]) {
        for _ in 0..NEXTS_BEFORE_SEEK {
            self.it.next();
            match self.it.key() {
                Some(k) if k.starts_with(enc) => {}
                _ => return,
            }
        }
        self.it.seek(past(enc));
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, KeyAt), KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Invariant: the iterator is at a key's first row, or at its newest row <= at.
        while !self.done {
            let Some(k) = self.it.key() else {
                self.done = true;
                return self.it.status().err().map(|e| Err(e.into()));
            };
            let Some((enc, rev)) = split_row_key(k) else {
                self.done = true;
                return Some(Err(corrupt("row", k)));
            };
            if rev.main > self.at {
                let target = seek_at(enc, self.at);
                self.it.seek(target);
                continue;
            }
            let enc = enc.to_vec();
            let row = self.it.value().and_then(Row::decode);
            let (Some(row), Some(key)) = (row, decode_key(&enc)) else {
                self.done = true;
                return Some(Err(corrupt("row", &enc)));
            };
            self.skip_key(&enc);
            if let Some(at) = row.at(rev) {
                return Some(Ok((key, at)));
            }
        }
        None
    }
}

/// The index rows staged by the apply in progress, not yet in RocksDB: later requests of the
/// same apply read them over the stored rows.
#[derive(Default)]
pub(super) struct Pending {
    /// Per key, oldest first.
    rows: BTreeMap<Vec<u8>, Staged>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.rows.clear();
    }

    /// Stages one transaction's rows (in revision order).
    pub(super) fn extend(&mut self, rows: Vec<(Vec<u8>, Staged)>) {
        super::sorted::insert_all(&mut self.rows, rows, |held, more| held.extend(more));
    }

    fn range<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Staged)> + 'a> {
        use std::ops::Bound;
        match end {
            [] => Box::new(self.rows.get_key_value(start).into_iter()),
            [0] => Box::new(
                self.rows
                    .range::<[u8], _>((Bound::Included(start), Bound::Unbounded)),
            ),
            _ if end <= start => Box::new(std::iter::empty()),
            _ => Box::new(
                self.rows
                    .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))),
            ),
        }
    }

    /// Merges the staged rows of `[start, end)` over `stored` (the stored rows' answer).
    pub(super) fn over<'a>(
        &'a self,
        stored: Scan<'a>,
        start: &'a [u8],
        end: &'a [u8],
        at: i64,
    ) -> impl Iterator<Item = Result<(Vec<u8>, KeyAt), KvError>> + 'a {
        Merge {
            stored: stored.peekable(),
            staged: self.range(start, end).peekable(),
            at,
        }
    }
}

/// What the staged rows of one key say at `at`: `None` if none is that old (the stored rows
/// decide), else the key's state.
fn staged_at(rows: &[(Revision, Row)], at: i64) -> Option<Option<KeyAt>> {
    rows.iter()
        .rev()
        .find(|(rev, _)| rev.main <= at)
        .map(|(rev, row)| row.at(*rev))
}

struct Merge<A: Iterator, B: Iterator> {
    stored: Peekable<A>,
    staged: Peekable<B>,
    at: i64,
}

impl<'a, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = Result<(Vec<u8>, KeyAt), KvError>>,
    B: Iterator<Item = (&'a Vec<u8>, &'a Staged)>,
{
    type Item = Result<(Vec<u8>, KeyAt), KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.stored.peek(), self.staged.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(Ok(_)), None) => return self.stored.next(),
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(Ok((a, _))), Some((b, _))) => a.as_slice().cmp(b.as_slice()),
            };
            if order == std::cmp::Ordering::Less {
                return self.stored.next();
            }
            let (key, rows) = self.staged.next()?;
            let stored = match order {
                std::cmp::Ordering::Equal => self.stored.next(),
                _ => None,
            };
            match staged_at(rows, self.at) {
                Some(Some(at)) => return Some(Ok((key.clone(), at))),
                Some(None) => {}
                None => {
                    if let Some(s) = stored {
                        return Some(s);
                    }
                }
            }
        }
    }
}

/// The key's state at `at`, read from `src`.
pub(super) fn get<S: Source + ?Sized>(
    src: &S,
    cf: &ColumnFamily,
    key: &[u8],
    at: i64,
) -> Result<Option<KeyAt>, KvError> {
    Ok(Scan::new(src, cf, key, &[], at)
        .next()
        .transpose()?
        .map(|(_, at)| at))
}

/// Whether the row of `key` at `rev` is one a compaction at `at` keeps (etcd's `keep`): the
/// key's newest revision at or before `at`, and not a delete.
pub(crate) fn kept_at<S: Source + ?Sized>(
    src: &S,
    storage: &Storage,
    key: &[u8],
    rev: Revision,
    at: i64,
) -> Result<bool, KvError> {
    Ok(get(src, storage.cf(CF_INDEX), key, at)?.is_some_and(|k| k.modified == rev))
}

/// Whether any key is live at `at` (etcd's `keep` set is not empty).
pub(crate) fn any_live_at<S: Source + ?Sized>(
    src: &S,
    storage: &Storage,
    at: i64,
) -> Result<bool, KvError> {
    Ok(Scan::new(src, storage.cf(CF_INDEX), &[0], &[0], at)
        .next()
        .transpose()?
        .is_some())
}

/// One step of a compaction at `at`: the keys from `from` on (`None`: the first), up to
/// `limit` of them, lose every row no read at `at` or later can see — all rows older than the
/// newest at or before `at`, and that one too if it is a delete — in `batch`, index and value
/// rows alike. Returns where the next step starts, `None` when every key is done.
pub(super) fn compact_some(
    storage: &Storage,
    at: i64,
    from: Option<&[u8]>,
    limit: usize,
    batch: &mut WriteBatch,
) -> Result<Option<Vec<u8>>, KvError> {
    let (cf, kv) = (storage.cf(CF_INDEX), storage.cf(CF_KV));
    let mut it = storage.db().raw_iter(cf, total_order());
    it.seek(encoded(from.unwrap_or_default()));
    let mut current: Vec<u8> = Vec::new();
    let mut keys = 0;
    // Whether the current key's newest row at or before `at` was seen.
    let mut seen = false;
    while let Some(k) = it.key() {
        let Some((enc, rev)) = split_row_key(k) else {
            return Err(corrupt("row", k));
        };
        if enc != current.as_slice() {
            keys += 1;
            if keys > limit {
                return decode_key(enc).map(Some).ok_or_else(|| corrupt("key", enc));
            }
            current = enc.to_vec();
            seen = false;
            if rev.main > at {
                // Rows newer than `at` all stay: go to the first one that may not.
                it.seek(seek_at(&current, at));
                continue;
            }
        }
        if rev.main <= at {
            let tombstone = match it.value().and_then(Row::decode) {
                Some(row) => row == Row::Tombstone,
                None => return Err(corrupt("row", k)),
            };
            if seen || tombstone {
                batch.delete_cf(cf, k);
                batch.delete_cf(kv, rev.to_key(tombstone));
            }
            seen = true;
        }
        it.next();
    }
    it.status()?;
    Ok(None)
}

/// The live-key count the marker row holds; `None` when there is no marker (the index must
/// be rebuilt).
pub(super) fn live_keys(storage: &Storage) -> Result<Option<i64>, KvError> {
    let Some(v) = storage.db().get_cf(storage.cf(CF_INDEX), MARKER)? else {
        return Ok(None);
    };
    match v.as_slice() {
        [FORMAT, count @ ..] if count.len() == 8 => Ok(Some(i64::from_be_bytes(
            count.try_into().map_err(|_| corrupt("marker", &v))?,
        ))),
        _ => Ok(None),
    }
}

/// Stages the marker row with the live-key count.
pub(super) fn stage_live_keys(storage: &Storage, batch: &mut WriteBatch, count: i64) {
    let mut v = vec![FORMAT];
    v.extend_from_slice(&count.to_be_bytes());
    batch.put_cf(storage.cf(CF_INDEX), MARKER, v);
}

/// The row of `lease_keys` attaching `key` to `lease`.
pub(super) fn lease_row(lease: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&lease.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Empties the column families derived from `kv` (the index and the lease attachments), so
/// the next [`super::Mvcc::open`] rebuilds them: the key space was replaced row by row.
pub(crate) fn clear_derived(storage: &Storage) -> Result<(), KvError> {
    let db = storage.db();
    for name in [CF_INDEX, CF_LEASE_KEYS] {
        let cf = storage.cf(name);
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf_opt(cf, total_order(), rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            batch.delete_cf(cf, k);
            if batch.len() >= REBUILD_BATCH {
                db.write(std::mem::take(&mut batch))?;
            }
        }
        db.write(batch)?;
    }
    Ok(())
}

/// Builds the index and the lease attachments from the `kv` rows (a data dir written before
/// the index was stored, a restored snapshot, a raft snapshot installed).
pub(super) fn rebuild(storage: &Storage) -> Result<i64, KvError> {
    clear_derived(storage)?;
    let db = storage.db();
    let (cf, kv_cf) = (storage.cf(CF_INDEX), storage.cf(CF_KV));
    let mut batch = WriteBatch::default();
    for item in db.iterator_cf(kv_cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let Some((rev, tombstone)) = Revision::from_key(&k) else {
            return Err(KvError::Corrupt(format!("bad revision key {k:?}")));
        };
        let kv = rev.decode_value(v.as_ref())?;
        let row = match tombstone {
            true => Row::Tombstone,
            false => Row::Put {
                created: kv.create_revision,
                version: kv.version,
            },
        };
        batch.put_cf(cf, row_key(&kv.key, rev), row.encode());
        if batch.len() >= REBUILD_BATCH {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    db.write(std::mem::take(&mut batch))?;
    // The live keys, and the leases their values carry.
    let mut count = 0;
    let mut revs = Vec::with_capacity(REBUILD_BATCH);
    let attach = |revs: &mut Vec<Revision>, batch: &mut WriteBatch| -> Result<(), KvError> {
        let keys: Vec<_> = revs.drain(..).map(|r| (kv_cf, r.to_key(false))).collect();
        for value in db.multi_get_cf(keys) {
            let Some(bytes) = value? else { continue };
            let kv = KeyValue::decode(bytes.as_slice())
                .map_err(|e| KvError::Corrupt(format!("bad value: {e}")))?;
            if kv.lease != 0 {
                batch.put_cf(storage.cf(CF_LEASE_KEYS), lease_row(kv.lease, &kv.key), []);
            }
        }
        Ok(())
    };
    for item in Scan::new(db, cf, &[0], &[0], i64::MAX) {
        let (_, at) = item?;
        count += 1;
        revs.push(at.modified);
        if revs.len() >= REBUILD_BATCH {
            attach(&mut revs, &mut batch)?;
            db.write(std::mem::take(&mut batch))?;
        }
    }
    attach(&mut revs, &mut batch)?;
    stage_live_keys(storage, &mut batch, count);
    db.write(batch)?;
    Ok(count)
}

/// The keys attached to leases, as the `lease_keys` rows say.
pub(super) fn leased_keys(storage: &Storage) -> Result<Vec<(Vec<u8>, i64)>, KvError> {
    let mut out = Vec::new();
    for item in storage
        .db()
        .iterator_cf(storage.cf(CF_LEASE_KEYS), rocksdb::IteratorMode::Start)
    {
        let (k, _) = item?;
        if k.len() < 8 {
            return Err(corrupt("lease row", &k));
        }
        let (id, key) = k.split_at(8);
        let id = i64::from_be_bytes(id.try_into().map_err(|_| corrupt("lease row", &k))?);
        out.push((key.to_vec(), id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn encoding_keeps_key_order_and_is_prefix_free() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\0",
            b"\0\0",
            b"\0\x01",
            b"a",
            b"a\0",
            b"a\0b",
            b"a\x01",
            b"ab",
            b"b",
            b"\xff",
            b"\xff\xff",
        ];
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(decode_key(&encoded(a)).as_deref(), Some(*a));
            for b in &keys[i + 1..] {
                // Any revision of a sorts before any revision of a later key.
                assert!(row_key(a, Revision::new(0, 0)) < row_key(b, Revision::new(i64::MAX, 9)));
                assert!(!encoded(b).starts_with(&encoded(a)));
            }
        }
        assert!(row_key(b"k", r(9)) < row_key(b"k", r(3)), "newest first");
        assert_eq!(
            split_row_key(&row_key(b"k\0", Revision::new(7, 2))),
            Some((encoded(b"k\0").as_slice(), Revision::new(7, 2)))
        );
    }

    fn store() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        (dir, storage)
    }

    fn write(storage: &Storage, rows: &[(&[u8], i64, Row)]) {
        let mut batch = WriteBatch::default();
        for (k, main, row) in rows {
            batch.put_cf(storage.cf(CF_INDEX), row_key(k, r(*main)), row.encode());
        }
        storage.db().write(batch).unwrap();
    }

    fn scan(storage: &Storage, start: &[u8], end: &[u8], at: i64) -> Vec<(Vec<u8>, i64)> {
        Scan::new(storage.db(), storage.cf(CF_INDEX), start, end, at)
            .map(|x| x.map(|(k, at)| (k, at.modified.main)).unwrap())
            .collect()
    }

    fn put(created: i64, version: i64) -> Row {
        Row::Put { created, version }
    }

    #[test]
    fn scans_see_each_key_as_of_the_revision() {
        let (_d, s) = store();
        // "a": put 2, put 3, deleted 5, put 7. "a\0": put 4. "b": put 2..=9 (many rows).
        write(
            &s,
            &[
                (b"a", 2, put(2, 1)),
                (b"a", 3, put(2, 2)),
                (b"a", 5, Row::Tombstone),
                (b"a", 7, put(7, 1)),
                (b"a\0", 4, put(4, 1)),
            ],
        );
        for m in 2..=9 {
            write(&s, &[(b"b", m, put(2, m - 1))]);
        }
        assert_eq!(scan(&s, b"\0", b"\0", 1), vec![]);
        assert_eq!(
            scan(&s, b"\0", b"\0", 4),
            vec![(b"a".to_vec(), 3), (b"a\0".to_vec(), 4), (b"b".to_vec(), 4)]
        );
        assert_eq!(
            scan(&s, b"\0", b"\0", 6),
            vec![(b"a\0".to_vec(), 4), (b"b".to_vec(), 6)]
        );
        assert_eq!(
            scan(&s, b"a", b"b", 100),
            vec![(b"a".to_vec(), 7), (b"a\0".to_vec(), 4)]
        );
        assert_eq!(scan(&s, b"a", b"", 100), vec![(b"a".to_vec(), 7)]);
        assert_eq!(scan(&s, b"a", b"", 6), vec![]);
        assert_eq!(scan(&s, b"b", b"a", 100), vec![]);
        assert_eq!(scan(&s, b"b", b"\0", 3), vec![(b"b".to_vec(), 3)]);
        let at = get(s.db(), s.cf(CF_INDEX), b"b", 5).unwrap().unwrap();
        assert_eq!((at.created, at.version), (2, 4));
    }

    #[test]
    fn compaction_keeps_what_later_reads_see() {
        let (_d, s) = store();
        write(
            &s,
            &[
                (b"a", 2, put(2, 1)),
                (b"a", 3, put(2, 2)),
                (b"a", 5, Row::Tombstone),
                (b"a", 7, put(7, 1)),
                (b"a", 8, put(7, 2)),
                (b"b", 2, put(2, 1)),
                (b"b", 4, Row::Tombstone),
                (b"c", 6, put(6, 1)),
            ],
        );
        let before: Vec<_> = (7..10).map(|at| scan(&s, b"\0", b"\0", at)).collect();
        let mut from = None;
        loop {
            let mut batch = WriteBatch::default();
            from = compact_some(&s, 7, from.as_deref(), 1, &mut batch).unwrap();
            s.db().write(batch).unwrap();
            if from.is_none() {
                break;
            }
        }
        let after: Vec<_> = (7..10).map(|at| scan(&s, b"\0", b"\0", at)).collect();
        assert_eq!(before, after);
        let rows = s
            .db()
            .iterator_cf(s.cf(CF_INDEX), rocksdb::IteratorMode::Start)
            .filter_map(|x| {
                let (k, _) = x.unwrap();
                split_row_key(&k).map(|(e, rev)| (decode_key(e).unwrap(), rev.main))
            })
            .collect::<Vec<_>>();
        assert_eq!(
            rows,
            vec![(b"a".to_vec(), 8), (b"a".to_vec(), 7), (b"c".to_vec(), 6)]
        );
    }

    #[test]
    fn staged_rows_win_over_stored_ones() {
        let (_d, s) = store();
        write(
            &s,
            &[
                (b"a", 2, put(2, 1)),
                (b"b", 2, put(2, 1)),
                (b"c", 2, put(2, 1)),
            ],
        );
        let mut p = Pending::default();
        p.extend(vec![
            (b"a".to_vec(), vec![(r(3), Row::Tombstone)]),
            (b"b".to_vec(), vec![(r(3), put(2, 2))]),
            (b"bb".to_vec(), vec![(r(3), put(3, 1))]),
        ]);
        let merged = |at| -> Vec<(Vec<u8>, i64)> {
            let stored = Scan::new(s.db(), s.cf(CF_INDEX), b"\0", b"\0", at);
            p.over(stored, b"\0", b"\0", at)
                .map(|x| x.map(|(k, at)| (k, at.modified.main)).unwrap())
                .collect()
        };
        assert_eq!(
            merged(3),
            vec![(b"b".to_vec(), 3), (b"bb".to_vec(), 3), (b"c".to_vec(), 2)]
        );
        assert_eq!(
            merged(2),
            vec![(b"a".to_vec(), 2), (b"b".to_vec(), 2), (b"c".to_vec(), 2)]
        );
    }
}
