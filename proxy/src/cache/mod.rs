//! The serializable-read cache: answers to serializable `Range` requests, kept coherent by a
//! watch on the whole key space ([`feed`]).
//!
//! etcd's grpc-proxy cache forgets an answer only when a write passes through the same proxy,
//! so a write made elsewhere stays invisible until the entry is evicted. Here every change the
//! members make reaches the cache through its watch, and an answer is served only while the
//! watch is live. The rules that make a cached answer no older than a member's serializable
//! read:
//!
//! - **Position.** The watch's position `W` is the revision up to which every change has been
//!   applied to the cache. An entry computed at revision `Rr` whose keys did not change in
//!   `(Rr, W]` is the answer at `W`, and is served with header revision `max(Rr, W)`.
//! - **Filling.** A miss is sent to a member and its answer stored only if no change the cache
//!   has seen since `Rr` touched its keys. Recent changes are remembered for that; an answer
//!   older than what they cover is not stored.
//! - **Epochs.** When the watch stops, the cache is emptied and serves nothing; answers to
//!   requests sent before that are dropped when they come back.
//! - **Writes through the proxy** invalidate their keys as soon as their answer passes, before
//!   the client sees it (and count as recent changes).
//! - **Read-your-writes.** A client is answered from the cache only if `W` has reached its own
//!   last write ([`crate::sessions`]).
//! - **Linearizable reads** are answered once `W` has reached a read barrier's revision
//!   ([`barrier`]).
//!
//! Only requests without credentials are served, and only while the cluster runs without auth
//! (the feed checks), because the cache does not check permissions.

pub mod barrier;
pub mod feed;
pub mod keys;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;
use oxetcd_common::etcdserverpb::ResponseHeader;
use tokio::sync::Notify;
use tokio::time::Instant;

use barrier::Barrier;

use crate::grpc::{encode_with_header, split_header};
use crate::metrics::Metrics;

/// Changes remembered to check answers that come back from members against.
const RECENT_CHANGES: usize = 1024;
/// Entries over a range of keys are checked against every change, so they are kept fewer.
const MAX_RANGE_ENTRIES: usize = 1024;
/// A linearizable read waits this long for the watch to reach its barrier before it asks the
/// feed for a progress notification (the revision may have moved by writes the feed does not
/// see: keys outside `--namespace`).
const PROGRESS_AFTER: Duration = Duration::from_millis(5);
/// And this long in all before it goes to a member itself.
const REACH_TIMEOUT: Duration = Duration::from_millis(500);

/// Keys `[start, end)`; no end: every key from `start` on. In the members' key space (with
/// `--namespace`, prefixed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// etcd's `key` and `range_end`: an empty end is the key alone, `"\0"` every key from
    /// `key` on.
    pub fn of(key: &[u8], range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => {
                let mut e = key.to_vec();
                e.push(0);
                Some(e)
            }
            [0] => None,
            e => Some(e.to_vec()),
        };
        Interval {
            start: key.to_vec(),
            end,
        }
    }

    /// Every key: what a write the proxy could not read may have touched.
    pub fn everything() -> Self {
        Interval {
            start: Vec::new(),
            end: None,
        }
    }

    fn overlaps(&self, o: &Interval) -> bool {
        let below = |key: &[u8], end: &Option<Vec<u8>>| end.as_deref().is_none_or(|e| key < e);
        below(&self.start, &o.end) && below(&o.start, &self.end)
    }

    /// The key, if this is one key.
    fn single(&self) -> Option<&[u8]> {
        let end = self.end.as_deref()?;
        (end.len() == self.start.len() + 1 && end.starts_with(&self.start) && end.ends_with(&[0]))
            .then_some(self.start.as_slice())
    }
}

struct Entry {
    interval: Interval,
    /// The revision the member answered at.
    revision: i64,
    header: ResponseHeader,
    /// The answer's fields but its header.
    rest: Bytes,
}

impl Entry {
    fn size(&self, request: &[u8]) -> usize {
        request.len() + self.rest.len() + 2 * self.interval.start.len() + 64
    }
}

/// Proof that a fill began while the cache was live; stale after it stops.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

struct Inner {
    /// `W`; `None` while the feed is down: nothing is served or stored.
    position: Option<i64>,
    epoch: u64,
    entries: LruCache<Bytes, Entry>,
    bytes: usize,
    /// Requests of one-key entries, by key.
    by_key: BTreeMap<Vec<u8>, Vec<Bytes>>,
    /// Requests of entries over a range, with their range.
    ranges: HashMap<Bytes, Interval>,
    /// Changes seen lately, oldest first: (revision, keys).
    recent: VecDeque<(i64, Interval)>,
    /// An answer from below this revision cannot be checked against `recent`.
    recent_floor: i64,
}

pub struct ReadCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
    metrics: Arc<Metrics>,
    /// The position moved, or the cache went down.
    moved: Notify,
    /// A linearizable read waits for a progress notification.
    progress: Notify,
    barrier: Arc<Barrier>,
}

impl ReadCache {
    pub fn new(max_entries: usize, max_bytes: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(ReadCache {
            inner: Mutex::new(Inner {
                position: None,
                epoch: 0,
                entries: LruCache::unbounded(),
                bytes: 0,
                by_key: BTreeMap::new(),
                ranges: HashMap::new(),
                recent: VecDeque::new(),
                recent_floor: 0,
            }),
            max_entries: max_entries.max(1),
            max_bytes,
            moved: Notify::new(),
            progress: Notify::new(),
            barrier: Barrier::new(metrics.cache_barriers.clone()),
            metrics,
        })
    }

    /// The read barrier of linearizable reads, on the feed's member.
    pub fn barrier(&self) -> &Arc<Barrier> {
        &self.barrier
    }

    /// Waits until the position reaches `revision`; false if the cache went down, or it took
    /// too long (the read goes to a member then).
    pub async fn reached(&self, revision: i64) -> bool {
        let started = Instant::now();
        let mut asked = false;
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            match self.lock().position {
                None => return false,
                Some(w) if w >= revision => return true,
                Some(_) => {}
            }
            let until = if asked {
                started + REACH_TIMEOUT
            } else {
                started + PROGRESS_AFTER
            };
            if tokio::time::timeout_at(until, moved).await.is_err() {
                if asked {
                    return false;
                }
                asked = true;
                self.progress.notify_one();
            }
        }
    }

    /// Resolves when a linearizable read asked for a progress notification.
    pub async fn progress_wanted(&self) {
        self.progress.notified().await
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The framed answer to the serializable Range `request` (its protobuf bytes), for a
    /// client whose last write is at `floor`.
    pub fn lookup(&self, request: &[u8], floor: i64) -> Option<Bytes> {
        let mut inner = self.lock();
        let position = inner.position?;
        let found = if position >= floor {
            inner.entries.get(request)
        } else {
            None
        };
        let Some(e) = found else {
            drop(inner);
            self.metrics.cache_misses.inc();
            return None;
        };
        let header = ResponseHeader {
            revision: e.revision.max(position),
            ..e.header
        };
        let rest = e.rest.clone();
        drop(inner);
        self.metrics.cache_hits.inc();
        Some(encode_with_header(&header, &rest))
    }

    /// Counts a read the live cache did not answer without a lookup.
    pub fn missed(&self) {
        if self.is_live() {
            self.metrics.cache_misses.inc();
        }
    }

    /// Whether the live cache holds an answer to `request` (not counted as a use).
    pub fn holds(&self, request: &[u8]) -> bool {
        let inner = self.lock();
        inner.position.is_some() && inner.entries.contains(request)
    }

    /// The largest answer stored.
    pub fn max_answer(&self) -> usize {
        self.max_bytes / 16
    }

    /// Whether the cache is live, and a ticket for filling it if so.
    pub fn ticket(&self) -> Option<Ticket> {
        let inner = self.lock();
        inner.position.map(|_| Ticket(inner.epoch))
    }

    /// Stores a member's answer (one whole unframed `RangeResponse`) to `request`, whose keys
    /// are `interval`, unless a change the cache knows of may be missing from it.
    pub fn store(&self, ticket: Ticket, request: Bytes, interval: Interval, response: &[u8]) {
        if request.len() + response.len() > self.max_answer() {
            return;
        }
        let Some((header, rest)) = split_header(response) else {
            return;
        };
        let revision = header.revision;
        let mut inner = self.lock();
        if inner.position.is_none() || inner.epoch != ticket.0 || revision < inner.recent_floor {
            return;
        }
        if inner
            .recent
            .iter()
            .any(|(r, keys)| *r > revision && keys.overlaps(&interval))
        {
            return;
        }
        let single = interval.single().is_some();
        if !single
            && inner.ranges.len() >= MAX_RANGE_ENTRIES
            && !inner.ranges.contains_key(&request)
        {
            return;
        }
        inner.remove(&request);
        let entry = Entry {
            interval,
            revision,
            header,
            rest,
        };
        inner.bytes += entry.size(&request);
        match entry.interval.single() {
            Some(k) => inner
                .by_key
                .entry(k.to_vec())
                .or_default()
                .push(request.clone()),
            None => {
                inner.ranges.insert(request.clone(), entry.interval.clone());
            }
        }
        inner.entries.put(request, entry);
        let mut evicted = 0;
        while inner.entries.len() > self.max_entries || inner.bytes > self.max_bytes {
            let Some((req, _)) = inner
                .entries
                .peek_lru()
                .map(|(k, v)| (k.clone(), v.revision))
            else {
                break;
            };
            inner.remove(&req);
            evicted += 1;
        }
        self.report(&inner);
        drop(inner);
        self.metrics.cache_evictions.inc_by(evicted);
    }

    /// Changes from the watch, then its new position.
    pub fn apply(&self, changes: impl IntoIterator<Item = (i64, Interval)>, position: i64) {
        let mut inner = self.lock();
        if inner.position.is_none() {
            return;
        }
        let mut gone = 0;
        for (revision, keys) in changes {
            gone += inner.change(revision, keys);
        }
        let mut moved = false;
        if let Some(w) = inner.position.as_mut() {
            moved = position > *w;
            *w = (*w).max(position);
        }
        self.report(&inner);
        drop(inner);
        if moved {
            self.moved.notify_waiters();
        }
        self.metrics.cache_invalidations.inc_by(gone);
    }

    /// A write that passed through the proxy changed `keys` at `revision`: forget them now,
    /// before the watch brings the change.
    pub fn written(&self, keys: impl IntoIterator<Item = Interval>, revision: i64) {
        let mut inner = self.lock();
        if inner.position.is_none() {
            return;
        }
        let mut gone = 0;
        for k in keys {
            gone += inner.change(revision, k);
        }
        self.report(&inner);
        drop(inner);
        self.metrics.cache_invalidations.inc_by(gone);
    }

    /// The watch is live from `position` on: start empty.
    pub fn reset(&self, position: i64) {
        let mut inner = self.lock();
        inner.clear();
        inner.position = Some(position);
        inner.recent_floor = position;
        self.metrics.cache_up.set(1);
        self.report(&inner);
        drop(inner);
        self.moved.notify_waiters();
    }

    /// Whether the cache follows a watch (and may serve).
    pub fn is_live(&self) -> bool {
        self.lock().position.is_some()
    }

    /// The watch stopped: serve nothing until it is live again.
    pub fn disable(&self) {
        let mut inner = self.lock();
        inner.clear();
        inner.position = None;
        self.metrics.cache_up.set(0);
        self.report(&inner);
        drop(inner);
        self.barrier.follow(None);
        self.moved.notify_waiters();
    }

    fn report(&self, inner: &Inner) {
        self.metrics.cache_entries.set(inner.entries.len() as i64);
        self.metrics.cache_bytes.set(inner.bytes as i64);
    }
}

impl Inner {
    fn clear(&mut self) {
        self.epoch += 1;
        self.entries.clear();
        self.bytes = 0;
        self.by_key.clear();
        self.ranges.clear();
        self.recent.clear();
    }

    fn remove(&mut self, request: &Bytes) {
        let Some(e) = self.entries.pop(request) else {
            return;
        };
        self.bytes -= e.size(request);
        match e.interval.single() {
            Some(k) => {
                if let Some(reqs) = self.by_key.get_mut(k) {
                    reqs.retain(|r| r != request);
                    if reqs.is_empty() {
                        self.by_key.remove(k);
                    }
                }
            }
            None => {
                self.ranges.remove(request);
            }
        }
    }

    /// Forgets the entries over `keys` and remembers the change; returns how many went.
    fn change(&mut self, revision: i64, keys: Interval) -> u64 {
        let mut doomed: Vec<Bytes> = match keys.single() {
            Some(k) => self.by_key.get(k).cloned().unwrap_or_default(),
            None => {
                let upper = match &keys.end {
                    Some(e) => std::ops::Bound::Excluded(e.clone()),
                    None => std::ops::Bound::Unbounded,
                };
                self.by_key
                    .range((std::ops::Bound::Included(keys.start.clone()), upper))
                    .flat_map(|(_, reqs)| reqs.iter().cloned())
                    .collect()
            }
        };
        doomed.extend(
            self.ranges
                .iter()
                .filter(|(_, r)| r.overlaps(&keys))
                .map(|(req, _)| req.clone()),
        );
        let n = doomed.len() as u64;
        for req in &doomed {
            self.remove(req);
        }
        if self.recent.len() >= RECENT_CHANGES {
            if let Some((r, _)) = self.recent.pop_front() {
                self.recent_floor = self.recent_floor.max(r);
            }
        }
        self.recent.push_back((revision, keys));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::grpc_message;
    use oxetcd_common::etcdserverpb::RangeResponse;
    use oxetcd_common::mvccpb::KeyValue;
    use prost::Message;

    fn answer(revision: i64, value: &[u8]) -> Vec<u8> {
        RangeResponse {
            header: Some(ResponseHeader {
                revision,
                member_id: 1,
                ..Default::default()
            }),
            kvs: vec![KeyValue {
                key: b"a".to_vec(),
                value: value.to_vec(),
                ..Default::default()
            }],
            count: 1,
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn served(c: &ReadCache, req: &[u8], floor: i64) -> Option<(i64, Vec<u8>)> {
        let framed = c.lookup(req, floor)?;
        let r = RangeResponse::decode(grpc_message(&framed).unwrap()).unwrap();
        Some((r.header.unwrap().revision, r.kvs[0].value.clone()))
    }

    fn cache() -> Arc<ReadCache> {
        ReadCache::new(100, 1 << 20, Metrics::new())
    }

    #[test]
    fn intervals_follow_etcds_key_and_range_end() {
        let one = Interval::of(b"a", b"");
        assert_eq!(one.single(), Some(&b"a"[..]));
        assert!(one.overlaps(&Interval::of(b"a", b"")));
        assert!(!one.overlaps(&Interval::of(b"a\0", b"")));
        assert!(!one.overlaps(&Interval::of(b"b", b"")));
        let prefix = Interval::of(b"a", b"b");
        assert!(prefix.overlaps(&Interval::of(b"az", b"")));
        assert!(!prefix.overlaps(&Interval::of(b"b", b"")));
        let from = Interval::of(b"m", b"\0");
        assert!(from.overlaps(&Interval::of(b"zzz", b"")));
        assert!(!from.overlaps(&Interval::of(b"a", b"m")));
        assert!(Interval::everything().overlaps(&one));
    }

    #[test]
    fn nothing_is_served_or_stored_while_the_watch_is_down() {
        let c = cache();
        assert!(c.ticket().is_none());
        c.reset(10);
        let t = c.ticket().unwrap();
        c.disable();
        c.reset(11);
        // The fill began before the watch restarted: dropped.
        c.store(
            t,
            Bytes::from_static(b"r"),
            Interval::of(b"a", b""),
            &answer(11, b"v"),
        );
        assert!(c.lookup(b"r", 0).is_none());
        let t = c.ticket().unwrap();
        c.store(
            t,
            Bytes::from_static(b"r"),
            Interval::of(b"a", b""),
            &answer(11, b"v"),
        );
        assert_eq!(served(&c, b"r", 0), Some((11, b"v".to_vec())));
        c.disable();
        assert!(c.lookup(b"r", 0).is_none());
    }

    #[test]
    fn a_change_forgets_the_entries_over_its_keys_and_the_position_names_the_answer() {
        let c = cache();
        c.reset(10);
        let t = c.ticket().unwrap();
        c.store(
            t,
            Bytes::from_static(b"one"),
            Interval::of(b"a", b""),
            &answer(10, b"1"),
        );
        c.store(
            t,
            Bytes::from_static(b"pre"),
            Interval::of(b"a", b"b"),
            &answer(10, b"2"),
        );
        c.store(
            t,
            Bytes::from_static(b"other"),
            Interval::of(b"x", b""),
            &answer(10, b"3"),
        );
        // A change elsewhere moves the position: answers name it.
        c.apply([(11, Interval::of(b"q", b""))], 11);
        assert_eq!(served(&c, b"one", 0), Some((11, b"1".to_vec())));
        // A client whose write the watch has not brought yet is not answered from the cache.
        assert!(c.lookup(b"one", 12).is_none());
        c.apply([(12, Interval::of(b"a", b""))], 12);
        assert!(c.lookup(b"one", 0).is_none());
        assert!(c.lookup(b"pre", 0).is_none());
        assert_eq!(served(&c, b"other", 12), Some((12, b"3".to_vec())));
        // A write through the proxy that deletes a range forgets what is in it.
        c.written([Interval::of(b"w", b"y")], 13);
        assert!(c.lookup(b"other", 0).is_none());
    }

    #[test]
    fn an_answer_missing_a_known_change_is_not_stored() {
        let c = cache();
        c.reset(10);
        let t = c.ticket().unwrap();
        c.apply([(12, Interval::of(b"a", b""))], 12);
        // Computed at 11, before the change at 12 to its key: stale.
        c.store(
            t,
            Bytes::from_static(b"r"),
            Interval::of(b"a", b""),
            &answer(11, b"old"),
        );
        assert!(c.lookup(b"r", 0).is_none());
        // The same for a write through the proxy the watch has not brought.
        c.written([Interval::of(b"b", b"")], 14);
        c.store(
            t,
            Bytes::from_static(b"s"),
            Interval::of(b"a", b"c"),
            &answer(13, b"old"),
        );
        assert!(c.lookup(b"s", 0).is_none());
        // Computed after both changes: stored.
        c.store(
            t,
            Bytes::from_static(b"s"),
            Interval::of(b"a", b"c"),
            &answer(14, b"new"),
        );
        assert_eq!(served(&c, b"s", 0), Some((14, b"new".to_vec())));
        // Older than the watch's start: cannot be checked.
        c.store(
            t,
            Bytes::from_static(b"z"),
            Interval::of(b"z", b""),
            &answer(9, b"x"),
        );
        assert!(c.lookup(b"z", 0).is_none());
    }

    #[test]
    fn entries_and_bytes_are_bounded() {
        let c = ReadCache::new(3, 1 << 20, Metrics::new());
        c.reset(1);
        let t = c.ticket().unwrap();
        for i in 0..5u8 {
            let key = [b'k', i];
            c.store(
                t,
                Bytes::copy_from_slice(&key),
                Interval::of(&key, b""),
                &answer(1, b"v"),
            );
        }
        assert!(
            c.lookup(&[b'k', 0], 0).is_none(),
            "least recently used went first"
        );
        assert!(c.lookup(&[b'k', 4], 0).is_some());
        assert_eq!(c.lock().entries.len(), 3);
        let c = ReadCache::new(100, 16 * 1024, Metrics::new());
        c.reset(1);
        let t = c.ticket().unwrap();
        for i in 0..40u8 {
            let key = [b'k', i];
            c.store(
                t,
                Bytes::copy_from_slice(&key),
                Interval::of(&key, b""),
                &answer(1, &[7; 600]),
            );
        }
        let inner = c.lock();
        assert!(inner.bytes <= 16 * 1024 && inner.entries.len() < 40);
        assert_eq!(
            inner.by_key.values().map(Vec::len).sum::<usize>(),
            inner.entries.len()
        );
    }
}
