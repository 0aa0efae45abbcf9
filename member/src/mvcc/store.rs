//! The MVCC store: the key index in the `key_index` column family (`index`), values in `kv`.

use std::collections::BTreeMap;
use std::ops::Bound;

use oxetcd_common::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;
use rocksdb::{ReadOptions, WriteBatch};

use super::error::KvError;
use super::index::{self, KeyAt, Row};
use super::recent::RecentKeys;
use super::revision::Revision;
use super::sorted;
use crate::storage::{Storage, CF_INDEX, CF_KV, CF_LEASE_KEYS, CF_META};

const META_CURRENT_REV: &[u8] = b"current_rev";
const META_COMPACT_REV: &[u8] = b"compact_rev";
/// Values read from RocksDB per batch when walking the rows.
const FETCH_CHUNK: usize = 256;
/// From this many revisions on, values are read by walking the rows (see [`walk_rows`]).
const WALK_FROM: usize = 64;
/// Rows stepped over before seeking instead.
const STEPS_BEFORE_SEEK: usize = 8;

/// A RocksDB snapshot of the store's database.
pub(super) type Snapshot<'a> = rocksdb::SnapshotWithThreadMode<'a, rocksdb::DB>;

/// The key space. Mutated only by the apply path (under the state machine's write lock);
/// read concurrently by serializable and linearizable Range.
pub(crate) struct Mvcc {
    storage: Storage,
    current_rev: i64,
    compact_rev: i64,
    /// Whether any compaction ever ran: etcd's compacted revision starts at -1, so a first
    /// `Compact(0)` succeeds and a second one finds revision 0 compacted.
    ever_compacted: bool,
    /// The compaction revision whose superseded rows are all gone (`compact_some` finished
    /// a walk); below `compact_rev` while the background walk runs.
    swept: i64,
    /// How many keys are live now (kept in the index's marker row).
    live_keys: i64,
    /// Values committed by the apply call in progress, still in the caller's unwritten
    /// RocksDB batch. Later requests of the same apply read them from here; `batch_written`
    /// empties it.
    pending: std::collections::HashMap<Revision, KeyValue>,
    /// The index rows of the same writes.
    pending_index: index::Pending,
    /// The newest row of recently used keys (written or read at the current revision).
    recent: RecentKeys,
    /// What the last [`Mvcc::seal`] staged (or the store held when opened).
    sealed: Sealed,
}

#[derive(Clone, Copy)]
struct Sealed {
    current_rev: i64,
    live_keys: i64,
}

impl Mvcc {
    /// Opens the store; builds the key index from the `kv` rows if it is not stored yet.
    pub(crate) fn open(storage: Storage) -> Result<Self, KvError> {
        let db = storage.db();
        let meta = storage.cf(CF_META);
        let read_i64 = |k: &[u8]| -> Result<Option<i64>, KvError> {
            Ok(db
                .get_cf(meta, k)?
                .and_then(|v| v.as_slice().try_into().ok().map(i64::from_be_bytes)))
        };
        // A fresh store is at revision 1, as etcd's is.
        let current_rev = read_i64(META_CURRENT_REV)?.unwrap_or(1);
        let compacted = read_i64(META_COMPACT_REV)?;
        let (compact_rev, ever_compacted) = (compacted.unwrap_or(0), compacted.is_some());
        let live_keys = match index::live_keys(&storage)? {
            Some(n) => n,
            None => index::rebuild(&storage)?,
        };
        Ok(Self {
            storage,
            current_rev,
            compact_rev,
            ever_compacted,
            swept: 0,
            live_keys,
            pending: Default::default(),
            pending_index: Default::default(),
            recent: RecentKeys::new(),
            sealed: Sealed {
                current_rev,
                live_keys,
            },
        })
    }

    pub(crate) fn current_rev(&self) -> i64 {
        self.current_rev
    }

    pub(crate) fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    /// The revision a compaction must be above: etcd's `compactMainRev`, -1 before the first.
    pub(crate) fn compaction_floor(&self) -> i64 {
        if self.ever_compacted {
            self.compact_rev
        } else {
            -1
        }
    }

    pub(crate) fn key_count(&self) -> i64 {
        self.live_keys
    }

    /// Resolves a requested read revision (<= 0: the newest) and checks it against the
    /// compaction point and the current revision.
    pub(crate) fn read_rev(&self, requested: i64) -> Result<i64, KvError> {
        read_rev(requested, self.current_rev, self.compact_rev)
    }

    /// Whether an apply is in progress: values committed but not in RocksDB yet.
    pub(super) fn mid_apply(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Where every key in `[start, end)` stood at revision `at`, in key order (with the
    /// writes of the apply in progress).
    pub(crate) fn range_index<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        at: i64,
    ) -> index::KeyScan<'a> {
        if end.is_empty() && at >= self.current_rev {
            let now = self.newest(start).transpose();
            return Box::new(
                now.into_iter()
                    .map(move |r| r.map(|at| (start.to_vec(), at))),
            );
        }
        self.scan_index(start, end, at)
    }

    /// Where `key` stands at the current revision: from the recent keys, or from the index
    /// (and then remembered).
    fn newest(&self, key: &[u8]) -> Result<Option<KeyAt>, KvError> {
        if let Some(now) = self.recent.get(key) {
            return Ok(now);
        }
        let now = match self.scan_index(key, &[], self.current_rev).next() {
            Some(found) => Some(found?.1),
            None => None,
        };
        self.recent.set(key, now);
        Ok(now)
    }

    /// [`Mvcc::range_index`] read from the stored rows and the apply in progress.
    fn scan_index<'a>(&'a self, start: &'a [u8], end: &'a [u8], at: i64) -> index::KeyScan<'a> {
        let stored = index::Scan::new(self.storage.db(), self.storage.cf(CF_INDEX), start, end, at);
        if self.pending_index.is_empty() {
            Box::new(stored)
        } else {
            Box::new(self.pending_index.over(stored, start, end, at))
        }
    }

    /// Reads the values of the given revisions (which the index says exist): from the apply in
    /// progress if it wrote them, else from RocksDB.
    pub(crate) fn fetch(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, KvError> {
        let mut out = Vec::with_capacity(revs.len());
        self.fetch_each(revs, |rev, row| {
            out.push(match row {
                Fetched::Pending(kv) => kv.clone(),
                Fetched::Stored(bytes) => rev.decode_value(bytes)?,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Mvcc::fetch`] left encoded: appends each value to `out` as the bytes of an encoded
    /// `mvccpb.KeyValue` (a stored row as it is).
    pub(crate) fn fetch_encoded(
        &self,
        revs: &[Revision],
        out: &mut super::encoded::EncodedKvs,
    ) -> Result<(), KvError> {
        out.read_from(&self.storage);
        self.fetch_each(revs, |rev, row| {
            match row {
                Fetched::Pending(kv) => out.push_pending(*rev, kv.encode_to_vec().into()),
                Fetched::Stored(bytes) => out.push_kv(*rev, bytes),
            }
            Ok(())
        })
    }

    fn fetch_each(
        &self,
        revs: &[Revision],
        each: impl FnMut(&Revision, Fetched<'_, &KeyValue>) -> Result<(), KvError>,
    ) -> Result<(), KvError> {
        fetch_rows(
            &self.storage,
            None,
            revs,
            |rev| self.pending.get(rev),
            |rev| KvError::Corrupt(format!("revision {rev:?} in the index but not stored")),
            each,
        )
    }

    /// The caller wrote the batch of this apply: its values are readable from RocksDB now.
    pub(crate) fn batch_written(&mut self) {
        debug_assert!(
            self.sealed.current_rev == self.current_rev && self.sealed.live_keys == self.live_keys,
            "a batch with commits was written unsealed"
        );
        self.pending.clear();
        self.pending_index.clear();
    }

    /// The events of revisions `from..=to` on keys in `[start, end)`, in revision order, as a
    /// watcher replaying history sees them. With `prev_kv`, each event carries the key's value
    /// before it (when that is not compacted away). Once the rows read pass `max_bytes`, the
    /// read ends with the revision it is in (a revision is never split): the events returned
    /// are those of `from..=through`.
    pub(crate) fn events(
        &self,
        from: i64,
        to: i64,
        start: &[u8],
        end: &[u8],
        prev_kv: bool,
        max_bytes: usize,
    ) -> Result<Events, KvError> {
        let cf = self.storage.cf(CF_KV);
        let first = Revision::new(from, 0).to_key(false);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(Revision::new(to.saturating_add(1), 0).to_key(false));
        let iter = self.storage.db().iterator_cf_opt(
            cf,
            opts,
            rocksdb::IteratorMode::From(&first, rocksdb::Direction::Forward),
        );
        let mut events = Vec::new();
        let mut bytes = 0usize;
        // The revision whose rows are being read: every one before it is read whole.
        let mut reading = None;
        for item in iter {
            let (k, v) = item?;
            let Some((rev, tombstone)) = Revision::from_key(&k) else {
                return Err(KvError::Corrupt(format!("bad revision key {k:?}")));
            };
            if rev.main > to {
                break;
            }
            if reading != Some(rev.main) {
                if bytes > max_bytes {
                    return Ok(Events {
                        events,
                        through: rev.main - 1,
                    });
                }
                reading = Some(rev.main);
            }
            bytes = bytes.saturating_add(v.len());
            let mut kv = rev.decode_value(v.as_ref())?;
            if !super::in_range(&kv.key, start, end) {
                continue;
            }
            if tombstone {
                // A tombstone row holds the key alone (etcd's layout); its event carries the
                // revision of the delete, as etcd patches it in.
                kv.mod_revision = rev.main;
            }
            let prev = if prev_kv {
                self.value_at(&kv.key, rev.main - 1)?
            } else {
                None
            };
            let kind = if tombstone {
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: prev,
            });
        }
        Ok(Events {
            events,
            through: to,
        })
    }

    /// The value of one key at revision `at`, if it existed then and is not compacted away.
    pub(crate) fn value_at(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>, KvError> {
        let Some((_, k)) = self.range_index(key, &[], at).next().transpose()? else {
            return Ok(None);
        };
        Ok(self.fetch(&[k.modified])?.pop())
    }

    /// Live keys that carry a lease, to attach them to their leases at start-up.
    pub(crate) fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>, KvError> {
        index::leased_keys(&self.storage)
    }

    /// Starts a write transaction on top of the current revision.
    pub(crate) fn write_txn(&self) -> WriteTxn {
        WriteTxn {
            begin_rev: self.current_rev,
            changes: Vec::new(),
            overlay: BTreeMap::new(),
            deleted_values: true,
        }
    }

    /// Commits a write transaction's changes into `batch` and the index, and returns them as
    /// watch events (each with the key's previous value, but for deletes that did not read
    /// it: see [`WriteTxn::delete_range`]). The batch is written by the caller
    /// together with the applied index; the in-memory state is updated now, which is safe because
    /// only the apply path writes and it writes the batch before answering anyone.
    pub(crate) fn commit(&mut self, txn: WriteTxn, batch: &mut WriteBatch) -> Vec<Event> {
        if txn.changes.is_empty() {
            return Vec::new();
        }
        let main = txn.begin_rev + 1;
        let (cf, index_cf, leases) = (
            self.storage.cf(CF_KV),
            self.storage.cf(CF_INDEX),
            self.storage.cf(CF_LEASE_KEYS),
        );
        let mut events = Vec::with_capacity(txn.changes.len());
        let remember = self.recent.worth_remembering(txn.changes.len());
        if !remember {
            self.recent.forget_all();
        }
        let mut index_rows = Vec::with_capacity(txn.changes.len());
        for (sub, change) in txn.changes.into_iter().enumerate() {
            let rev = Revision::new(main, sub as i64);
            match change {
                Change::Put { kv, prev } => {
                    let row = Row::Put {
                        created: kv.create_revision,
                        version: kv.version,
                    };
                    batch.put_cf(index_cf, index::row_key(&kv.key, rev), row.encode());
                    index_rows.push((kv.key.clone(), vec![(rev, row)]));
                    if remember {
                        self.recent.set(
                            &kv.key,
                            Some(KeyAt {
                                modified: rev,
                                created: kv.create_revision,
                                version: kv.version,
                            }),
                        );
                    }
                    match &prev {
                        None => self.live_keys += 1,
                        Some(p) if p.lease != 0 && p.lease != kv.lease => {
                            batch.delete_cf(leases, index::lease_row(p.lease, &kv.key))
                        }
                        Some(_) => {}
                    }
                    if kv.lease != 0 {
                        batch.put_cf(leases, index::lease_row(kv.lease, &kv.key), []);
                    }
                    batch.put_cf(cf, rev.to_key(false), kv.encode_to_vec());
                    self.pending.insert(rev, kv.clone());
                    events.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    });
                }
                Change::Delete { key, lease, prev } => {
                    batch.put_cf(index_cf, index::row_key(&key, rev), Row::Tombstone.encode());
                    index_rows.push((key.clone(), vec![(rev, Row::Tombstone)]));
                    if remember {
                        self.recent.set(&key, None);
                    }
                    self.live_keys -= 1;
                    if lease != 0 {
                        batch.delete_cf(leases, index::lease_row(lease, &key));
                    }
                    // The row holds the key alone, as etcd's (HashKV hashes the rows).
                    let row = KeyValue {
                        key,
                        ..Default::default()
                    };
                    batch.put_cf(cf, rev.to_key(true), row.encode_to_vec());
                    let tomb = KeyValue {
                        mod_revision: main,
                        ..row
                    };
                    events.push(Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(tomb),
                        prev_kv: prev,
                    });
                }
            }
        }
        self.pending_index.extend(index_rows);
        self.current_rev = main;
        events
    }

    /// Stages what the commits since the last seal changed about the whole store (the current
    /// revision, the live-key count) into `batch`, once per batch rather than once per
    /// transaction: a batch holds many, and each repeat was one more memtable insert on every
    /// member. The caller seals every batch that carries commits before writing it.
    pub(crate) fn seal(&mut self, batch: &mut WriteBatch) {
        if self.current_rev != self.sealed.current_rev {
            batch.put_cf(
                self.storage.cf(CF_META),
                META_CURRENT_REV,
                self.current_rev.to_be_bytes(),
            );
        }
        if self.live_keys != self.sealed.live_keys {
            index::stage_live_keys(&self.storage, batch, self.live_keys);
        }
        self.sealed = Sealed {
            current_rev: self.current_rev,
            live_keys: self.live_keys,
        };
    }

    /// What hashing the key space at `rev` (0: the current revision) needs from the store,
    /// taken under the state lock; the rows and the index are then read from a RocksDB snapshot
    /// taken with it (see [`hash_kv_rows`]), so no apply waits for the scan.
    pub(crate) fn hash_plan(&self, rev: i64) -> Result<HashPlan, KvError> {
        if rev > 0 && self.ever_compacted && rev <= self.compact_rev {
            return Err(KvError::Compacted);
        }
        if rev > self.current_rev {
            return Err(KvError::FutureRev);
        }
        let at = if rev == 0 { self.current_rev } else { rev };
        Ok(HashPlan {
            at,
            current: self.current_rev,
            // etcd's compacted revision is -1 before any compaction.
            compacted: if self.ever_compacted {
                self.compact_rev
            } else {
                -1
            },
        })
    }

    /// Stages the current revision of a key space written row by row (a restored snapshot),
    /// for [`Mvcc::open`] to find.
    pub(crate) fn stage_current_rev(storage: &Storage, batch: &mut WriteBatch, rev: i64) {
        batch.put_cf(storage.cf(CF_META), META_CURRENT_REV, rev.to_be_bytes());
    }

    /// Compacts history up to `rev` (checked by the caller): from here on reads below `rev`
    /// fail (etcd's scheduled compaction). The superseded revisions are removed afterwards,
    /// a batch of keys at a time, by [`Mvcc::compact_some`], so no apply or read waits for a
    /// whole key space's compaction; until then they are only unreachable.
    pub(crate) fn compact(&mut self, rev: i64, batch: &mut WriteBatch) {
        self.compact_rev = rev;
        self.ever_compacted = true;
        batch.put_cf(
            self.storage.cf(CF_META),
            META_COMPACT_REV,
            rev.to_be_bytes(),
        );
    }

    /// One step of the physical compaction at `rev`: up to `limit` keys from `from` on lose
    /// their superseded revisions, whose rows are deleted in `batch`. Returns where the next
    /// step starts, `None` when done. Reads the stored index: call with no apply in progress.
    pub(crate) fn compact_some(
        &mut self,
        rev: i64,
        from: Option<&[u8]>,
        limit: usize,
        batch: &mut WriteBatch,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let next = index::compact_some(&self.storage, rev, from, limit, batch)?;
        if next.is_none() {
            self.swept = self.swept.max(rev);
        }
        Ok(next)
    }

    /// While superseded rows may still be stored (a compaction's walk has not finished): the
    /// compaction revision, so a reader of the raw rows (a backup, `Hash`) skips the rows at or
    /// below it that a finished walk would have removed ([`index::kept_at`] says which).
    pub(crate) fn unswept(&self) -> Option<i64> {
        (self.ever_compacted && self.swept < self.compact_rev).then_some(self.compact_rev)
    }
}

/// One change staged by a write transaction, with the value it replaces.
enum Change {
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    Delete {
        key: Vec<u8>,
        /// The lease the key was attached to (0 for none).
        lease: i64,
        /// The deleted value, when the delete read it (see [`WriteTxn::delete_range`]).
        prev: Option<KeyValue>,
    },
}

/// What [`Mvcc::events`] read: the events of revisions `from..=through`.
pub(crate) struct Events {
    pub(crate) events: Vec<Event>,
    pub(crate) through: i64,
}

/// A read revision for a request asking for `requested` (<= 0: the newest), checked against
/// the compaction point and the current revision.
pub(super) fn read_rev(requested: i64, current: i64, compacted: i64) -> Result<i64, KvError> {
    if requested <= 0 {
        return Ok(current);
    }
    if requested > current {
        return Err(KvError::FutureRev);
    }
    if requested < compacted {
        return Err(KvError::Compacted);
    }
    Ok(requested)
}

/// A value [`fetch_rows`] found: `pending` had it, or it is stored.
pub(super) enum Fetched<'a, P> {
    Pending(P),
    Stored(&'a [u8]),
}

/// Calls `each` with every revision's value, in order: what `pending` has (the apply in
/// progress), else the stored row (`missing` is the error when there is none).
pub(super) fn fetch_rows<P>(
    storage: &Storage,
    snapshot: Option<&Snapshot<'_>>,
    revs: &[Revision],
    pending: impl Fn(&Revision) -> Option<P>,
    missing: impl Fn(&Revision) -> KvError,
    mut each: impl FnMut(&Revision, Fetched<'_, P>) -> Result<(), KvError>,
) -> Result<(), KvError> {
    let cf = storage.cf(CF_KV);
    let mut opts = ReadOptions::default();
    if let Some(snapshot) = snapshot {
        opts.set_snapshot(snapshot);
    }
    if revs.len() >= WALK_FROM {
        return walk_rows(storage, opts, revs, pending, missing, each);
    }
    let keys: Vec<_> = revs
        .iter()
        .filter(|r| pending(r).is_none())
        .map(|r| r.to_key(false))
        .collect();
    let mut from_db = storage
        .db()
        .batched_multi_get_cf_opt(cf, &keys, false, &opts)
        .into_iter();
    for rev in revs {
        if let Some(p) = pending(rev) {
            each(rev, Fetched::Pending(p))?;
            continue;
        }
        let bytes = from_db
            .next()
            .ok_or_else(|| KvError::Corrupt("multi_get returned too few values".into()))??
            .ok_or_else(|| missing(rev))?;
        each(rev, Fetched::Stored(bytes.as_ref()))?;
    }
    Ok(())
}

/// [`fetch_rows`] for many revisions: one iterator walks the `kv` rows in revision order,
/// stepping to the next wanted row when it is near and seeking when it is not. The values of a
/// range's keys often sit close together (keys written together), and a step costs a fraction
/// of a point lookup (a full Range of 1M keys spent 70% of its time in RocksDB's MultiGet).
fn walk_rows<P>(
    storage: &Storage,
    opts: ReadOptions,
    revs: &[Revision],
    pending: impl Fn(&Revision) -> Option<P>,
    missing: impl Fn(&Revision) -> KvError,
    mut each: impl FnMut(&Revision, Fetched<'_, P>) -> Result<(), KvError>,
) -> Result<(), KvError> {
    let mut iter = storage.db().raw_iterator_cf_opt(storage.cf(CF_KV), opts);
    // A chunk at a time: the stored bytes of a whole large range are never held beside what
    // is made of them.
    for chunk in revs.chunks(FETCH_CHUNK) {
        let mut wanted: Vec<(Vec<u8>, usize)> = chunk
            .iter()
            .enumerate()
            .filter(|(_, r)| pending(r).is_none())
            .map(|(i, r)| (r.to_key(false), i))
            .collect();
        // Row keys sort as revisions do.
        wanted.sort_unstable();
        let mut values: Vec<Option<Vec<u8>>> = vec![None; chunk.len()];
        for (key, i) in &wanted {
            seek_forward(&mut iter, key);
            iter.status()?;
            if iter.key() == Some(key.as_slice()) {
                values[*i] = iter.value().map(<[u8]>::to_vec);
            }
        }
        for (rev, value) in chunk.iter().zip(values) {
            if let Some(p) = pending(rev) {
                each(rev, Fetched::Pending(p))?;
                continue;
            }
            let bytes = value.ok_or_else(|| missing(rev))?;
            each(rev, Fetched::Stored(&bytes))?;
        }
    }
    Ok(())
}

/// Moves `iter` to `key` or the first row after it: a few steps forward if it is just behind,
/// else a seek.
fn seek_forward(iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>, key: &[u8]) {
    for _ in 0..STEPS_BEFORE_SEEK {
        match iter.key() {
            Some(k) if k < key => iter.next(),
            Some(k) if k == key => return,
            _ => break,
        }
    }
    if iter.key() != Some(key) {
        iter.seek(key);
    }
}

/// Which leases exist and which keys they hold, as the apply path sees them (the lease module
/// owns them).
pub(crate) trait LeaseCheck {
    fn exists(&self, id: i64) -> bool;
    /// The lease `key` is attached to; 0 for none.
    fn attached(&self, key: &[u8]) -> i64;
}

/// A write transaction being built: its changes are staged here and are visible to its own later
/// reads (etcd's txn semantics), and reach the store only on [`Mvcc::commit`].
pub(crate) struct WriteTxn {
    begin_rev: i64,
    changes: Vec<Change>,
    /// Newest staged state per key: `Some(kv)` put, `None` deleted.
    overlay: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Whether deletes read the values they remove for their events (see
    /// [`WriteTxn::delete_range`]).
    deleted_values: bool,
}

impl WriteTxn {
    /// The revision the transaction's reads see and, with changes, writes at.
    pub(crate) fn rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.begin_rev + 1
        }
    }

    /// Current values of the keys in `[start, end)`, including this transaction's own writes,
    /// in key order.
    pub(crate) fn range(
        &self,
        store: &Mvcc,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<KeyValue>, KvError> {
        let mut revs = Vec::new();
        for item in store.range_index(start, end, self.begin_rev) {
            let (k, at) = item?;
            if !self.overlay.contains_key(&k) {
                revs.push(at.modified);
            }
        }
        // Both in key order, and no key in both: the staged ones replace the stored ones.
        let stored = store.fetch(&revs)?;
        let mut staged = self
            .overlay
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| super::in_range(k, start, end))
            .filter_map(|(_, v)| v.as_ref())
            .peekable();
        if staged.peek().is_none() {
            return Ok(stored);
        }
        let mut merged = Vec::with_capacity(stored.len());
        for kv in stored {
            while let Some(s) = staged.next_if(|s| s.key < kv.key) {
                merged.push(s.clone());
            }
            merged.push(kv);
        }
        merged.extend(staged.cloned());
        Ok(merged)
    }

    /// The current value of one key.
    pub(crate) fn get(&self, store: &Mvcc, key: &[u8]) -> Result<Option<KeyValue>, KvError> {
        Ok(self.range(store, key, &[])?.pop())
    }

    /// Stages a put over `prev`, the key's current value as [`WriteTxn::get`] gave it (the
    /// caller has read it already: one index seek per put, not two); returns the stored
    /// key-value (with its revisions and version).
    pub(crate) fn put(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
        prev: Option<KeyValue>,
    ) -> KeyValue {
        let main = self.begin_rev + 1;
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (main, 1),
        };
        let kv = KeyValue {
            key: key.clone(),
            create_revision,
            mod_revision: main,
            version,
            value,
            lease,
        };
        self.changes.push(Change::Put {
            kv: kv.clone(),
            prev,
        });
        self.overlay.insert(key, Some(kv.clone()));
        kv
    }

    /// Lets deletes skip reading the values they remove, unless a request asks for them
    /// (`prev_kv`): their events then carry no previous value, and a watcher that wants one
    /// reads it from the store. For when no watcher asks for previous values, so a large
    /// DeleteRange is a scan of the key index, as in etcd, not a read of every value.
    pub(crate) fn skip_deleted_values(&mut self) {
        self.deleted_values = false;
    }

    /// Stages deletes of every live key in the range; returns how many, and with `prev_kvs`
    /// the deleted key-values (a copy: the staged deletes keep theirs for the watch events).
    /// `leases` says which lease each stored key is attached to.
    pub(crate) fn delete_range(
        &mut self,
        store: &Mvcc,
        leases: &dyn LeaseCheck,
        start: &[u8],
        end: &[u8],
        prev_kvs: bool,
    ) -> Result<(i64, Vec<KeyValue>), KvError> {
        // (key, lease, the value if read)
        let doomed: Vec<(Vec<u8>, i64, Option<KeyValue>)> = if prev_kvs || self.deleted_values {
            let kvs = self.range(store, start, end)?.into_iter();
            kvs.map(|kv| (kv.key.clone(), kv.lease, Some(kv))).collect()
        } else {
            let keys = self.live_keys(store, leases, start, end)?.into_iter();
            keys.map(|(key, lease)| (key, lease, None)).collect()
        };
        let deleted = doomed.len() as i64;
        let kept = if prev_kvs {
            doomed.iter().filter_map(|d| d.2.clone()).collect()
        } else {
            Vec::new()
        };
        self.changes.reserve(doomed.len());
        let mut gone = Vec::with_capacity(doomed.len());
        for (key, lease, prev) in doomed {
            gone.push((key.clone(), None));
            self.changes.push(Change::Delete { key, lease, prev });
        }
        sorted::insert_all(&mut self.overlay, gone, |held, v| *held = v);
        Ok((deleted, kept))
    }

    /// The live keys of `[start, end)` with their leases, including this transaction's own
    /// writes, in key order: from the key index, without reading values.
    fn live_keys(
        &self,
        store: &Mvcc,
        leases: &dyn LeaseCheck,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<(Vec<u8>, i64)>, KvError> {
        let mut staged = self
            .overlay
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| super::in_range(k, start, end))
            .peekable();
        let mut live = Vec::new();
        for item in store.range_index(start, end, self.begin_rev) {
            let (key, _) = item?;
            // Staged keys before this one, and this one's staged state if it has one.
            while let Some((k, v)) = staged.next_if(|(k, _)| **k <= key) {
                if let Some(kv) = v {
                    live.push((k.clone(), kv.lease));
                }
            }
            if !self.overlay.contains_key(&key) {
                let lease = leases.attached(&key);
                live.push((key, lease));
            }
        }
        live.extend(staged.filter_map(|(k, v)| v.as_ref().map(|kv| (k.clone(), kv.lease))));
        Ok(live)
    }
}

/// See [`Mvcc::hash_plan`].
pub(crate) struct HashPlan {
    /// The revision hashed.
    pub at: i64,
    pub current: i64,
    pub compacted: i64,
}

/// etcd's `HashByRev`: CRC-32C over "key" and then every revision row up to `plan.at`, in
/// revision order, with etcd's bbolt key encoding (main, `_`, sub, and `t` for a tombstone)
/// and the `mvccpb.KeyValue` value; rows at or before the compaction are counted only if a
/// compaction at `plan.at` would keep them (etcd's `keep`; all of them when it keeps none).
/// `src` is the database or snapshot the rows come from. The same history gives the same
/// hash as etcd's.
pub(crate) fn hash_kv_rows<S: index::Source + ?Sized>(
    plan: &HashPlan,
    storage: &Storage,
    src: &S,
    rows: impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>>,
) -> Result<u32, KvError> {
    let mut crc = crc32c::crc32c(b"key");
    // Whether etcd's keep set is empty, found out at the first row that needs it.
    let mut keeps_any = None;
    for row in rows {
        let (k, v) = row?;
        let Some((rev, tombstone)) = Revision::from_key(&k) else {
            continue;
        };
        if rev.main > plan.at {
            break;
        }
        if rev.main <= plan.compacted {
            let any = match keeps_any {
                Some(any) => any,
                None => *keeps_any.insert(index::any_live_at(src, storage, plan.at)?),
            };
            if any {
                let kv = rev.decode_value(v.as_ref())?;
                if tombstone || !index::kept_at(src, storage, &kv.key, rev, plan.at)? {
                    continue;
                }
            }
        }
        crc = crc32c::crc32c_append(crc, &rev.to_etcd_key(tombstone));
        crc = crc32c::crc32c_append(crc, &v);
    }
    Ok(crc)
}
