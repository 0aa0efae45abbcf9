//! etcd's KV request semantics on top of the MVCC store: Range options, Put flags, DeleteRange,
//! Txn compares and branches, Compact, and the request checks done before proposing.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::encoded::EncodedKvs;
use super::error::KvError;
use super::index::KeyScan;
use super::revision::Revision;
use super::store::{LeaseCheck, Mvcc, WriteTxn};
use oxetcd_common::etcdserverpb::{
    compare, range_request, request_op, response_op, CompactionRequest, Compare,
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use oxetcd_common::mvccpb::KeyValue;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

// ---- Range ---------------------------------------------------------------------------------------

/// What a Range reads from: the store itself, under the state lock, or a [`super::View`] of
/// it, read with no lock held.
pub(crate) trait KvRead {
    /// The revision of the last applied write.
    fn current_rev(&self) -> i64;
    /// The revision a read asking for `requested` (<= 0: the newest) reads at.
    fn read_rev(&self, requested: i64) -> Result<i64, KvError>;
    /// Where every key in `[start, end)` stood at revision `at`, in key order.
    fn range_index<'a>(&'a self, start: &'a [u8], end: &'a [u8], at: i64) -> KeyScan<'a>;
    /// The values of the given revisions (which the index says exist).
    fn fetch(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, KvError>;
    /// [`KvRead::fetch`] left encoded, appended to `out`.
    fn fetch_encoded(&self, revs: &[Revision], out: &mut EncodedKvs) -> Result<(), KvError>;
}

impl KvRead for Mvcc {
    fn current_rev(&self) -> i64 {
        Mvcc::current_rev(self)
    }

    fn read_rev(&self, requested: i64) -> Result<i64, KvError> {
        Mvcc::read_rev(self, requested)
    }

    fn range_index<'a>(&'a self, start: &'a [u8], end: &'a [u8], at: i64) -> KeyScan<'a> {
        Mvcc::range_index(self, start, end, at)
    }

    fn fetch(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, KvError> {
        Mvcc::fetch(self, revs)
    }

    fn fetch_encoded(&self, revs: &[Revision], out: &mut EncodedKvs) -> Result<(), KvError> {
        Mvcc::fetch_encoded(self, revs, out)
    }
}

/// A Range outside any transaction (serializable or after a linearizable barrier).
pub(crate) fn range<S: KvRead + ?Sized>(
    store: &S,
    req: &RangeRequest,
) -> Result<RangeResponse, KvError> {
    read(store, req, true)
}

/// One chunk of a RangeStream (keys in key order, no filters, `limit` > 0): its keys, and
/// `more` if any key is left; the keys past it are not counted (`count` is 0).
pub(crate) fn range_chunk<S: KvRead + ?Sized>(
    store: &S,
    req: &RangeRequest,
) -> Result<RangeResponse, KvError> {
    let mut resp = read(store, req, false)?;
    resp.count = 0;
    Ok(resp)
}

/// A Range outside any transaction, its key-values left encoded (see `encoded`): `None` when
/// the request needs them decoded (a sort, a filter, `keys_only`, `count_only`).
pub(crate) fn range_encoded<S: KvRead + ?Sized>(
    store: &S,
    req: &RangeRequest,
) -> Result<Option<EncodedKvs>, KvError> {
    if !is_default_order(req) || has_filters(req) || req.keys_only || req.count_only {
        return Ok(None);
    }
    let found = find(store, req, true)?;
    let mut out = EncodedKvs::default();
    store.fetch_encoded(&found.revs, &mut out)?;
    out.finish(found.more(req), found.count);
    out.revision = store.current_rev();
    Ok(Some(out))
}

/// What the index says a Range reads.
struct Found {
    /// The revisions whose values are read, in key order.
    revs: Vec<Revision>,
    /// The keys in the range (or past the revisions read, as far as counted).
    count: i64,
    /// Whether only the first `limit` values are read (key order, no filters).
    plain: bool,
}

impl Found {
    /// etcd's `more` for a read in key order without filters: keys left past the limit.
    fn more(&self, req: &RangeRequest) -> bool {
        self.plain && req.limit > 0 && self.count > self.revs.len() as i64
    }
}

fn find<S: KvRead + ?Sized>(
    store: &S,
    req: &RangeRequest,
    count_all: bool,
) -> Result<Found, KvError> {
    let at = store.read_rev(req.revision)?;
    // In key order and without filters, only the first `limit` values need reading; every
    // key in the range is counted all the same (unless `count_all` is off).
    let plain = is_default_order(req) && !has_filters(req);
    let take = match (req.count_only, plain && req.limit > 0) {
        (true, _) => 0,
        (false, true) => req.limit as usize,
        (false, false) => usize::MAX,
    };
    let mut count = 0usize;
    let mut revs = Vec::new();
    for item in store.range_index(&req.key, &req.range_end, at) {
        let (_, at) = item?;
        if count < take {
            revs.push(at.modified);
        }
        count += 1;
        if !count_all && count > take {
            break;
        }
    }
    Ok(Found {
        revs,
        count: count as i64,
        plain,
    })
}

fn read<S: KvRead + ?Sized>(
    store: &S,
    req: &RangeRequest,
    count_all: bool,
) -> Result<RangeResponse, KvError> {
    let found = find(store, req, count_all)?;
    if req.count_only {
        return Ok(RangeResponse {
            header: header(store.current_rev()),
            count: found.count,
            ..Default::default()
        });
    }
    let kvs = store.fetch(&found.revs)?;
    let mut resp = shape(req, kvs, found.count);
    if found.more(req) {
        resp.more = true;
    }
    resp.header = header(store.current_rev());
    Ok(resp)
}

/// A Range inside a write transaction: it sees the transaction's earlier writes.
fn range_in_txn(
    store: &Mvcc,
    txn: &WriteTxn,
    req: &RangeRequest,
) -> Result<RangeResponse, KvError> {
    if req.revision > 0 {
        if req.revision > txn.rev() {
            return Err(KvError::FutureRev);
        }
        let mut resp = range(store, req)?;
        resp.header = header(txn.rev());
        return Ok(resp);
    }
    let kvs = txn.range(store, &req.key, &req.range_end)?;
    let count = kvs.len() as i64;
    let mut resp = if req.count_only {
        RangeResponse {
            count,
            ..Default::default()
        }
    } else {
        shape(req, kvs, count)
    };
    resp.header = header(txn.rev());
    Ok(resp)
}

/// Ranges past this many keys may take long enough to read that they leave the runtime.
const MANY_KEYS: i64 = 10_000;

/// Whether a Range may read many keys: a range, not one key, without a small limit.
pub(crate) fn may_read_many(req: &RangeRequest) -> bool {
    !req.range_end.is_empty() && !(1..=MANY_KEYS).contains(&req.limit)
}

/// Whether a write may touch many keys: a DeleteRange of a range, or a Txn with one, or
/// with a Range that may read many keys (`may_read_many`).
pub(crate) fn may_write_many(op: &request_op::Request) -> bool {
    match op {
        request_op::Request::RequestRange(r) => may_read_many(r),
        request_op::Request::RequestPut(_) => false,
        request_op::Request::RequestDeleteRange(d) => !d.range_end.is_empty(),
        request_op::Request::RequestTxn(t) => txn_may_touch_many(t),
    }
}

/// Whether a Txn has an operation that may touch many keys (see [`may_write_many`]).
pub(crate) fn txn_may_touch_many(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .filter_map(|op| op.request.as_ref())
        .any(may_write_many)
}

/// Results in key order, as the index yields them (etcd's `IsDefaultOrdering`).
pub(crate) fn is_default_order(req: &RangeRequest) -> bool {
    use range_request::{SortOrder, SortTarget};
    effective_order(req) == SortOrder::None
        || (req.sort_target() == SortTarget::Key && req.sort_order() == SortOrder::Ascend)
}

pub(crate) fn has_filters(req: &RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

/// etcd sorts ascending by default when a non-key sort target is given.
fn effective_order(req: &RangeRequest) -> range_request::SortOrder {
    let order = req.sort_order();
    if order == range_request::SortOrder::None
        && req.sort_target() != range_request::SortTarget::Key
    {
        range_request::SortOrder::Ascend
    } else {
        order
    }
}

/// Applies filters, sort, limit and keys_only to the key-values of a range (in key order).
fn shape(req: &RangeRequest, mut kvs: Vec<KeyValue>, count: i64) -> RangeResponse {
    if has_filters(req) {
        kvs.retain(|kv| {
            !((req.min_mod_revision > 0 && kv.mod_revision < req.min_mod_revision)
                || (req.max_mod_revision > 0 && kv.mod_revision > req.max_mod_revision)
                || (req.min_create_revision > 0 && kv.create_revision < req.min_create_revision)
                || (req.max_create_revision > 0 && kv.create_revision > req.max_create_revision))
        });
    }
    let order = effective_order(req);
    if order != range_request::SortOrder::None {
        use range_request::SortTarget as T;
        let target = req.sort_target();
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                T::Key => a.key.cmp(&b.key),
                T::Version => a.version.cmp(&b.version),
                T::Create => a.create_revision.cmp(&b.create_revision),
                T::Mod => a.mod_revision.cmp(&b.mod_revision),
                T::Value => a.value.cmp(&b.value),
            }
        };
        if order == range_request::SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header: None,
        kvs,
        more,
        count,
    }
}

// ---- Writes (apply path) -------------------------------------------------------------------------

/// Stages a Put in `txn`.
pub(crate) fn put(
    store: &Mvcc,
    txn: &mut WriteTxn,
    req: &PutRequest,
    leases: &dyn LeaseCheck,
) -> Result<PutResponse, KvError> {
    let prev = txn.get(store, &req.key)?;
    let mut value = req.value.clone();
    let mut lease = req.lease;
    if req.ignore_value || req.ignore_lease {
        let Some(p) = &prev else {
            return Err(KvError::KeyNotFound);
        };
        if req.ignore_value {
            value = p.value.clone();
        }
        if req.ignore_lease {
            lease = p.lease;
        }
    }
    if lease != 0 && !leases.exists(lease) {
        return Err(KvError::LeaseNotFound);
    }
    let prev_kv = if req.prev_kv { prev.clone() } else { None };
    txn.put(req.key.clone(), value, lease, prev);
    Ok(PutResponse {
        header: header(txn.rev()),
        prev_kv,
    })
}

/// Stages a DeleteRange in `txn`.
pub(crate) fn delete_range(
    store: &Mvcc,
    txn: &mut WriteTxn,
    req: &DeleteRangeRequest,
    leases: &dyn LeaseCheck,
) -> Result<DeleteRangeResponse, KvError> {
    let (deleted, prev_kvs) =
        txn.delete_range(store, leases, &req.key, &req.range_end, req.prev_kv)?;
    Ok(DeleteRangeResponse {
        header: header(txn.rev()),
        deleted,
        prev_kvs,
    })
}

/// Evaluates a Txn's compares and runs the chosen branch in `txn`.
pub(crate) fn txn(
    store: &Mvcc,
    txn: &mut WriteTxn,
    req: &TxnRequest,
    leases: &dyn LeaseCheck,
) -> Result<TxnResponse, KvError> {
    let (succeeded, ops) = choose(req, |c| compare_holds(store, txn, c))?;
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                response_op::Response::ResponseRange(range_in_txn(store, txn, r)?)
            }
            Some(request_op::Request::RequestPut(r)) => {
                response_op::Response::ResponsePut(put(store, txn, r, leases)?)
            }
            Some(request_op::Request::RequestDeleteRange(r)) => {
                response_op::Response::ResponseDeleteRange(delete_range(store, txn, r, leases)?)
            }
            Some(request_op::Request::RequestTxn(r)) => {
                response_op::Response::ResponseTxn(self::txn(store, txn, r, leases)?)
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: header(txn.rev()),
        succeeded,
        responses,
    })
}

/// A Txn without writes (no put or delete in any branch, the caller's check), read from
/// `store` at its current revision: what [`txn`] answers for it, without a write
/// transaction, so it can be read from a [`super::View`] too.
pub(crate) fn read_txn<S: KvRead + ?Sized>(
    store: &S,
    req: &TxnRequest,
) -> Result<TxnResponse, KvError> {
    let now = store.current_rev();
    let (succeeded, ops) = choose(req, |c| {
        let mut revs = Vec::new();
        for item in store.range_index(&c.key, &c.range_end, now) {
            revs.push(item?.1.modified);
        }
        Ok(compare_all(&store.fetch(&revs)?, c))
    })?;
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                let mut resp = range(store, r)?;
                resp.header = header(now);
                response_op::Response::ResponseRange(resp)
            }
            Some(request_op::Request::RequestTxn(t)) => {
                response_op::Response::ResponseTxn(read_txn(store, t)?)
            }
            Some(_) => return Err(KvError::Storage("a write in a read-only txn".into())),
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: header(now),
        succeeded,
        responses,
    })
}

/// Evaluates a Txn's compares with `holds`, in order until one fails: whether all held, and
/// the branch to run.
fn choose(
    req: &TxnRequest,
    mut holds: impl FnMut(&Compare) -> Result<bool, KvError>,
) -> Result<(bool, &[RequestOp]), KvError> {
    for c in &req.compare {
        if !holds(c)? {
            return Ok((false, &req.failure));
        }
    }
    Ok((true, &req.success))
}

fn compare_holds(store: &Mvcc, txn: &WriteTxn, c: &Compare) -> Result<bool, KvError> {
    Ok(compare_all(&txn.range(store, &c.key, &c.range_end)?, c))
}

/// Whether a compare holds for the key-values in its range, as etcd 3.4 decides it.
fn compare_all(kvs: &[KeyValue], c: &Compare) -> bool {
    if kvs.is_empty() {
        // A missing key has no value to compare (nil == empty in gRPC), so a value compare
        // fails; every other target compares as zero.
        if c.target() == compare::CompareTarget::Value {
            return false;
        }
        return compare_kv(&KeyValue::default(), c);
    }
    kvs.iter().all(|kv| compare_kv(kv, c))
}

fn compare_kv(kv: &KeyValue, c: &Compare) -> bool {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let int = |want: Option<i64>, have: i64| have.cmp(&want.unwrap_or(0));
    let ord = match c.target() {
        T::Value => {
            let want: &[u8] = match &c.target_union {
                Some(U::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        T::Version => int(
            match c.target_union {
                Some(U::Version(v)) => Some(v),
                _ => None,
            },
            kv.version,
        ),
        T::Create => int(
            match c.target_union {
                Some(U::CreateRevision(v)) => Some(v),
                _ => None,
            },
            kv.create_revision,
        ),
        T::Mod => int(
            match c.target_union {
                Some(U::ModRevision(v)) => Some(v),
                _ => None,
            },
            kv.mod_revision,
        ),
        T::Lease => int(
            match c.target_union {
                Some(U::Lease(v)) => Some(v),
                _ => None,
            },
            kv.lease,
        ),
    };
    match c.result() {
        R::Equal => ord == Ordering::Equal,
        R::NotEqual => ord != Ordering::Equal,
        R::Greater => ord == Ordering::Greater,
        R::Less => ord == Ordering::Less,
    }
}

/// Checks a Compact against the store, then compacts.
pub(crate) fn compact(
    store: &mut Mvcc,
    req: &CompactionRequest,
    batch: &mut rocksdb::WriteBatch,
) -> Result<(), KvError> {
    if req.revision <= store.compaction_floor() {
        return Err(KvError::Compacted);
    }
    if req.revision > store.current_rev() {
        return Err(KvError::FutureRev);
    }
    store.compact(req.revision, batch);
    Ok(())
}

// ---- Checks before proposing ---------------------------------------------------------------------

pub(crate) fn check_range(req: &RangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkRangeStreamRequest`: RangeStream streams in key order, without filters.
pub(crate) fn check_range_stream(req: &RangeRequest) -> Result<(), KvError> {
    check_range(req)?;
    let default = req.sort_order() == range_request::SortOrder::None
        || (req.sort_target() == range_request::SortTarget::Key
            && req.sort_order() == range_request::SortOrder::Ascend);
    if !default {
        return Err(KvError::StreamSortUnsupported);
    }
    if has_filters(req) {
        return Err(KvError::StreamFiltersUnsupported);
    }
    Ok(())
}

pub(crate) fn check_put(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

pub(crate) fn check_delete(req: &DeleteRangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// etcd's checkTxnRequest: op counts, each op's own checks, and no key written twice in a branch.
pub(crate) fn check_txn(req: &TxnRequest, max_ops: usize) -> Result<(), KvError> {
    check_txn_ops(req, max_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_ops: usize) -> Result<(), KvError> {
    if req.compare.len() > max_ops || req.success.len() > max_ops || req.failure.len() > max_ops {
        return Err(KvError::TooManyOps);
    }
    for c in &req.compare {
        if c.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => check_range(r)?,
            Some(request_op::Request::RequestPut(r)) => check_put(r)?,
            Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r)?,
            Some(request_op::Request::RequestTxn(r)) => check_txn_ops(r, max_ops)?,
            // etcd's checkRequestOp: an empty op is refused before it reaches raft.
            None => return Err(KvError::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted interval: `[start, end)`, `end` empty for a single key, `None` for "to the end".
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of(key: &[u8], range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => Some(Vec::new()),
            [0] => None,
            e => Some(e.to_vec()),
        };
        Self {
            start: key.to_vec(),
            end,
        }
    }

    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            Some(e) if e.is_empty() => k == self.start.as_slice(),
            Some(e) => k >= self.start.as_slice() && k < e.as_slice(),
            None => k >= self.start.as_slice(),
        }
    }
}

/// Returns the keys put and intervals deleted by `ops`, failing on a key written twice (a put
/// twice, or a put inside a deleted range). The two branches of a nested txn exclude each other,
/// so the same put in both is fine.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Interval>), KvError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Some(Interval::of(&d.key, &d.range_end))
            }
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|d| d.contains(k));
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || deleted(&dels, &k) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}
