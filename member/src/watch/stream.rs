//! One client watch stream: its watchers, replay, live events, cancel and progress.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxetcd_common::etcdserverpb::{
    watch_create_request::FilterType, watch_request, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use oxetcd_common::mvccpb::{event::EventType, Event};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::hub::WantsPrevKv;
use crate::auth::AuthError;
use crate::identity::Credentials;
use crate::mvcc;
use crate::server::EtcdServer;

/// Largest number of events sent in one replay response, unless one revision has more: a
/// revision is never split across responses (as etcd batches by revision), so a client that
/// saw an event of a revision has seen all of that revision.
const MAX_EVENTS_PER_RESPONSE: usize = 1000;
/// etcd's watch ID for responses that belong to no watcher (progress of the whole stream).
const NO_WATCH_ID: i64 = -1;
/// A catch-up of at most this many revisions reads them for every key and keeps them for the
/// stream's next watchers (see [`History`]), unless their values pass `HISTORY_BYTES`: kept
/// per stream until the next revision, so small.
const HISTORY_REVS: i64 = 256;
const HISTORY_BYTES: usize = 64 << 10;
/// Bytes of stored rows read at a time by a watcher replaying history.
const REPLAY_BYTES: usize = 1 << 20;

/// The events of a short run of revisions `from..=to`, every key, as a catch-up read them. A
/// watcher created next on the same stream from within the run, while the store is still at
/// `to`, is served from here: creating thousands of watchers reads the store once, not once
/// per watcher (etcd syncs its unsynced watchers in groups, one read per group).
struct History {
    from: i64,
    to: i64,
    events: Vec<Event>,
}

impl History {
    /// The events at or after `from`, if this history holds them all up to `current`.
    fn since(&self, from: i64, current: i64) -> Option<impl Iterator<Item = &Event>> {
        if self.to != current || from < self.from {
            return None;
        }
        Some(
            self.events
                .iter()
                .filter(move |e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= from)),
        )
    }
}

struct Watcher {
    /// Split responses larger than the request limit into fragments (etcd's `fragment`).
    fragment: bool,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The next revision this watcher owes its client.
    next_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    /// Held while `prev_kv`: deletes read the values they remove (see [`super::WatchHub`]).
    _wants_prev: Option<WantsPrevKv>,
    progress_notify: bool,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if !mvcc::in_range(&kv.key, &self.key, &self.range_end) {
            return false;
        }
        let put = ev.r#type == EventType::Put as i32;
        !(put && self.no_put || !put && self.no_delete)
    }

    /// This watcher's events of one committed revision as the hub gave them; `None` when
    /// they must be read from the store instead: the watcher wants previous values and a
    /// delete it wants came without one (it was applied before the watcher was registered).
    fn take(&self, events: &[Event]) -> Option<Vec<Event>> {
        let lacks_prev = |e: &Event| e.r#type == EventType::Delete as i32 && e.prev_kv.is_none();
        let mut out = Vec::new();
        for e in events.iter().filter(|e| self.wants(e)) {
            if self.prev_kv && lacks_prev(e) {
                return None;
            }
            out.push(self.shape(e));
        }
        Some(out)
    }

    fn shape(&self, ev: &Event) -> Event {
        let mut ev = ev.clone();
        if !self.prev_kv {
            ev.prev_kv = None;
        }
        ev
    }
}

/// Splits events into pieces of at most `limit` encoded bytes (a single larger event is a piece
/// of its own), in order.
fn fragments(events: Vec<Event>, limit: usize) -> Vec<Vec<Event>> {
    let mut pieces = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut size = 0;
    for ev in events {
        let n = prost::Message::encoded_len(&ev) + 2;
        if !cur.is_empty() && size + n > limit {
            pieces.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.push(ev);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// Why a watch the user may not read is canceled: etcd puts the text of the gRPC error there
/// (`serverWatchStream.recvLoop`), with every other auth error as "permission denied".
fn cancel_reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::InvalidAuthToken => {
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
        }
        AuthError::AuthOldRevision => {
            "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old"
        }
        AuthError::UserEmpty => {
            "rpc error: code = InvalidArgument desc = etcdserver: user name is empty"
        }
        _ => "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    }
}

/// Serves one watch stream until the client goes away. `requests` is a gRPC stream's
/// messages, or the HTTP gateway's JSON objects.
pub(crate) async fn serve(
    server: Arc<EtcdServer>,
    mut requests: impl futures::Stream<Item = Result<WatchRequest, Status>> + Unpin + Send,
    creds: Credentials,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
) {
    server.metrics.watch_streams.inc();
    let mut s = StreamState {
        server: server.clone(),
        creds,
        out,
        watchers: BTreeMap::new(),
        next_id: 0,
        progress_wanted: None,
        history: None,
    };
    let mut feed = server.watch_hub.subscribe();
    let mut progress = tokio::time::interval(server.timing.watch_progress_interval);
    progress.tick().await;
    // A client may close its sending side and keep receiving (etcd serves such a stream until
    // the client goes away).
    let mut receiving = true;
    loop {
        let ok = tokio::select! {
            req = futures::StreamExt::next(&mut requests), if receiving => match req {
                Some(Ok(req)) => s.handle(req).await,
                None => {
                    receiving = false;
                    true
                }
                // The connection broke: the stream is over.
                Some(Err(_)) => return,
            },
            _ = s.out.closed() => return,
            batch = feed.recv() => match batch {
                Ok(batch) => s.live(&batch.revision, &batch.events).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    server.metrics.watch_lagged.inc();
                    s.catch_up_all().await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = progress.tick() => s.progress_notify().await,
        };
        if !ok || !s.answer_progress(feed.is_empty()).await {
            return;
        }
    }
}

struct StreamState {
    server: Arc<EtcdServer>,
    /// What the stream was opened with: each watch must be readable by its user.
    creds: Credentials,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// A progress request not answered yet: the store's revision when it came. It is
    /// answered once every watcher of the stream has been sent all events up to there
    /// (etcd #15220: a progress revision must never run ahead of the stream's events).
    progress_wanted: Option<i64>,
    /// What the last catch-up read, for the next watchers (see [`History`]).
    history: Option<History>,
}

impl Drop for StreamState {
    /// The stream's watchers end with it, however it ends.
    fn drop(&mut self) {
        let m = &self.server.metrics;
        m.watchers.sub(self.watchers.len() as i64);
        m.watch_streams.dec();
    }
}

impl StreamState {
    fn header(&self, revision: i64) -> Option<oxetcd_common::etcdserverpb::ResponseHeader> {
        self.server.header(revision, self.server.term())
    }

    /// Sends one response; false once the client is gone.
    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    /// Sends events to one watcher, split into fragments when it asked for them and the
    /// response would be larger than the request limit.
    async fn send_events(&self, id: i64, revision: i64, events: Vec<Event>) -> bool {
        let limit = self.server.limits.max_request_bytes;
        let fragment = self.watchers.get(&id).is_some_and(|w| w.fragment);
        let resp = WatchResponse {
            header: self.header(revision),
            watch_id: id,
            events,
            ..Default::default()
        };
        if !fragment || prost::Message::encoded_len(&resp) <= limit {
            return self.send(resp).await;
        }
        let pieces = fragments(resp.events, limit);
        let n = pieces.len();
        for (i, events) in pieces.into_iter().enumerate() {
            let sent = self
                .send(WatchResponse {
                    header: self.header(revision),
                    watch_id: id,
                    events,
                    fragment: i + 1 < n,
                    ..Default::default()
                })
                .await;
            if !sent {
                return false;
            }
        }
        true
    }

    fn revisions(&self) -> Result<(i64, i64), crate::error::ServerError> {
        let st = self.server.read_state()?;
        Ok((st.mvcc.current_rev(), st.mvcc.compact_rev()))
    }

    async fn handle(&mut self, req: WatchRequest) -> bool {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_none() {
                    return true;
                }
                self.server.metrics.watchers.dec();
                let (rev, _) = match self.revisions() {
                    Ok(r) => r,
                    Err(e) => return self.out.send(Err(e.into())).await.is_ok(),
                };
                self.send(WatchResponse {
                    header: self.header(rev),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                let (rev, _) = match self.revisions() {
                    Ok(r) => r,
                    Err(e) => return self.out.send(Err(e.into())).await.is_ok(),
                };
                self.progress_wanted = Some(self.progress_wanted.map_or(rev, |r| r.min(rev)));
                true
            }
            None => true,
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        let (current, compacted) = match self.revisions() {
            Ok(r) => r,
            Err(e) => return self.out.send(Err(e.into())).await.is_ok(),
        };
        // etcd: an empty key is the smallest key, "\0" as range end means every key from it.
        let key = if c.key.is_empty() {
            vec![0]
        } else {
            c.key.clone()
        };
        if !c.range_end.is_empty() && c.range_end != [0] && key >= c.range_end {
            return self.refuse(current, "mvcc: watcher range is empty").await;
        }
        if let Err(e) = self.permitted(&key, &c.range_end).await {
            return self.refuse(current, cancel_reason(&e)).await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watchers.contains_key(&id) || id < 0 {
            // etcd: a watch ID already in use on this stream is refused.
            return self
                .refuse(
                    current,
                    "mvcc: duplicate watch ID provided on the WatchStream",
                )
                .await;
        }
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        if !self
            .send(WatchResponse {
                header: self.header(current),
                watch_id: id,
                created: true,
                ..Default::default()
            })
            .await
        {
            return false;
        }
        let start = if c.start_revision > 0 {
            c.start_revision
        } else {
            current + 1
        };
        if start < compacted {
            return self.send_compacted(id, compacted).await;
        }
        let filters = c
            .filters
            .iter()
            .filter_map(|f| FilterType::try_from(*f).ok());
        let (mut no_put, mut no_delete) = (false, false);
        for f in filters {
            match f {
                FilterType::Noput => no_put = true,
                FilterType::Nodelete => no_delete = true,
            }
        }
        self.server.metrics.watchers.inc();
        self.watchers.insert(
            id,
            Watcher {
                fragment: c.fragment,
                key,
                range_end: c.range_end,
                next_rev: start,
                no_put,
                no_delete,
                prev_kv: c.prev_kv,
                _wants_prev: c.prev_kv.then(|| self.server.watch_hub.want_prev_kv()),
                progress_notify: c.progress_notify,
            },
        );
        self.catch_up(id).await
    }

    /// May the stream's user read the whole watched range? (Checked at each create, with
    /// the credentials the stream was opened with, as etcd does.)
    async fn permitted(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        let who = match self.creds.who(&self.server).await {
            Ok(w) => w.unwrap_or_default(),
            Err(crate::error::ServerError::Auth(e)) => return Err(e),
            Err(_) => return Err(AuthError::PermissionDenied),
        };
        let st = self
            .server
            .read_state()
            .map_err(|_| AuthError::PermissionDenied)?;
        st.auth
            .check(&who, key, range_end, crate::auth::Access::Read)
    }

    /// etcd's answer to a watch it cannot create: created and canceled at once, with the reason,
    /// under no watch ID; the stream goes on.
    async fn refuse(&self, current: i64, reason: &str) -> bool {
        self.send(WatchResponse {
            header: self.header(current),
            watch_id: NO_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.into(),
            ..Default::default()
        })
        .await
    }

    /// A watcher owed revisions compaction removed is canceled as etcd's store cancels it:
    /// the compaction revision, no reason, and a header of revision 0 (etcd's compacted
    /// response carries no revision).
    async fn send_compacted(&mut self, id: i64, compacted: i64) -> bool {
        if self.watchers.remove(&id).is_some() {
            self.server.metrics.watchers.dec();
        }
        self.send(WatchResponse {
            header: self.header(0),
            watch_id: id,
            canceled: true,
            compact_revision: compacted,
            ..Default::default()
        })
        .await
    }

    /// Replays, from the store, everything a watcher is owed up to the current revision: a
    /// few [`REPLAY_BYTES`] of history at a time, each read under the state lock and sent
    /// after releasing it, so a watcher starting far back holds neither the lock nor memory
    /// for all of its history at once.
    async fn catch_up(&mut self, id: i64) -> bool {
        loop {
            let read = self.read_owed(id);
            let (current, compacted, owed) = match read {
                Ok(Some(r)) => r,
                Ok(None) => return true,
                Err(e) => return self.out.send(Err(e.into())).await.is_ok(),
            };
            let Some((events, through)) = owed else {
                return self.send_compacted(id, compacted).await;
            };
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = w.next_rev.max(through + 1);
            }
            for chunk in oxetcd_common::events::revision_chunks(&events, MAX_EVENTS_PER_RESPONSE) {
                if !self.send_events(id, current, chunk.to_vec()).await {
                    return false;
                }
            }
            if through >= current {
                break;
            }
        }
        // A store read per watcher, and sends that rarely wait: without a yield a stream
        // creating thousands of watchers holds a runtime thread for ~128 of them (tokio's
        // budget) while gets queue behind it (etcd benchmark's watch-get).
        tokio::task::yield_now().await;
        true
    }

    /// The next events watcher `id` is owed, read under the state lock: with the store's
    /// current and compacted revisions, the events and the revision they run through (`None`
    /// if the watcher's next revision is compacted). `None` if there is no such watcher.
    #[allow(clippy::type_complexity)]
    fn read_owed(
        &mut self,
        id: i64,
    ) -> Result<Option<(i64, i64, Option<(Vec<Event>, i64)>)>, crate::error::ServerError> {
        let Some(w) = self.watchers.get(&id) else {
            return Ok(None);
        };
        let st = self.server.read_state()?;
        let (current, compacted) = (st.mvcc.current_rev(), st.mvcc.compact_rev());
        if w.next_rev < compacted {
            return Ok(Some((current, compacted, None)));
        }
        if w.next_rev > current {
            return Ok(Some((current, compacted, Some((Vec::new(), current)))));
        }
        let pick = |evs: &mut dyn Iterator<Item = &Event>| -> Vec<Event> {
            evs.filter(|e| w.wants(e)).map(|e| w.shape(e)).collect()
        };
        // History kept for the stream holds no previous values.
        if !w.prev_kv {
            if let Some(mut evs) = self
                .history
                .as_ref()
                .and_then(|h| h.since(w.next_rev, current))
            {
                return Ok(Some((current, compacted, Some((pick(&mut evs), current)))));
            }
            if current - w.next_rev < HISTORY_REVS {
                let all = st
                    .mvcc
                    .events(w.next_rev, current, &[0], &[0], false, HISTORY_BYTES)?;
                if all.through == current {
                    let evs = pick(&mut all.events.iter());
                    self.history = Some(History {
                        from: w.next_rev,
                        to: current,
                        events: all.events,
                    });
                    return Ok(Some((current, compacted, Some((evs, current)))));
                }
            }
        }
        let owed = st.mvcc.events(
            w.next_rev,
            current,
            &w.key,
            &w.range_end,
            w.prev_kv,
            REPLAY_BYTES,
        )?;
        let evs = pick(&mut owed.events.iter());
        Ok(Some((current, compacted, Some((evs, owed.through)))))
    }

    async fn catch_up_all(&mut self) -> bool {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            if !self.catch_up(id).await {
                return false;
            }
        }
        true
    }

    /// Hands one committed revision to every watcher that has not seen it yet.
    async fn live(&mut self, revision: &i64, events: &[Event]) -> bool {
        let revision = *revision;
        // The store moved on: the kept history no longer ends at its current revision.
        self.history = None;
        let mut out = Vec::new();
        for (id, w) in self.watchers.iter_mut() {
            if w.next_rev > revision {
                continue;
            }
            if w.next_rev < revision {
                // A gap (revisions the feed never showed this watcher): the store fills it.
                out.push((*id, None));
                continue;
            }
            let Some(evs) = w.take(events) else {
                out.push((*id, None));
                continue;
            };
            w.next_rev = revision + 1;
            if !evs.is_empty() {
                out.push((*id, Some(evs)));
            }
        }
        for (id, evs) in out {
            let sent = match evs {
                Some(events) => self.send_events(id, revision, events).await,
                None => self.catch_up(id).await,
            };
            if !sent {
                return false;
            }
        }
        true
    }

    /// The newest revision up to which every watcher of the stream has been sent its
    /// events (the store's revision if none is behind it).
    fn delivered(&self, current: i64) -> i64 {
        let behind = self.watchers.values().map(|w| w.next_rev - 1).min();
        behind.map_or(current, |b| b.min(current))
    }

    /// Answers a pending progress request once the stream has delivered every event up to
    /// the revision it asked at; the answer names what has been delivered. Watchers still
    /// behind with nothing left in the feed (`feed_drained`) catch up from the store first.
    /// False once the client is gone.
    async fn answer_progress(&mut self, feed_drained: bool) -> bool {
        let Some(wanted) = self.progress_wanted else {
            return true;
        };
        let Ok((current, _)) = self.revisions() else {
            return true;
        };
        let mut delivered = self.delivered(current);
        if delivered < wanted && feed_drained {
            if !self.catch_up_all().await {
                return false;
            }
            let Ok((current, _)) = self.revisions() else {
                return true;
            };
            delivered = self.delivered(current);
        }
        if delivered < wanted {
            return true;
        }
        self.progress_wanted = None;
        self.send(WatchResponse {
            header: self.header(delivered),
            watch_id: NO_WATCH_ID,
            ..Default::default()
        })
        .await
    }

    async fn progress_notify(&mut self) -> bool {
        let (current, _) = match self.revisions() {
            Ok(r) => r,
            Err(_) => return true,
        };
        // Each watcher hears the revision it has been sent everything up to.
        let due: Vec<(i64, i64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify)
            .map(|(id, w)| (*id, (w.next_rev - 1).min(current)))
            .collect();
        for (id, rev) in due {
            let sent = self
                .send(WatchResponse {
                    header: self.header(rev),
                    watch_id: id,
                    ..Default::default()
                })
                .await;
            if !sent {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::mvccpb::KeyValue;

    fn ev(value_len: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![b'v'; value_len],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fragments_keep_order_and_bound_size() {
        let events: Vec<Event> = (0..10).map(|i| ev(100 + i)).collect();
        let pieces = fragments(events.clone(), 350);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), events);
        for p in &pieces {
            let size: usize = p.iter().map(|e| prost::Message::encoded_len(e) + 2).sum();
            assert!(size <= 350 || p.len() == 1);
        }
        // One event larger than the limit still goes, alone.
        assert_eq!(fragments(vec![ev(1000)], 100).len(), 1);
    }

    #[test]
    fn a_watcher_wanting_previous_values_reads_a_delete_without_one_from_the_store() {
        let watcher = |prev_kv| Watcher {
            fragment: false,
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            next_rev: 5,
            no_put: false,
            no_delete: false,
            prev_kv,
            _wants_prev: None,
            progress_notify: false,
        };
        let kv = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        let delete = |key: &str, prev: Option<&str>| Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv(key, "")),
            prev_kv: prev.map(|v| kv(key, v)),
        };
        let put = Event {
            kv: Some(kv("a", "new")),
            ..Default::default()
        };
        let (with, lean, elsewhere) = (
            [put.clone(), delete("b", Some("old"))],
            [put.clone(), delete("b", None)],
            [put.clone(), delete("x", None)],
        );
        // Without prev_kv: the hub's events, previous values stripped.
        let plain = watcher(false);
        let stripped = vec![put.clone(), delete("b", None)];
        assert_eq!(plain.take(&with), Some(stripped.clone()));
        assert_eq!(plain.take(&lean), Some(stripped));
        // With prev_kv: the hub's events when they are whole, else the store.
        let prev = watcher(true);
        assert_eq!(prev.take(&with), Some(with.to_vec()));
        assert_eq!(prev.take(&lean), None);
        // A delete outside the watched range does not matter.
        assert_eq!(prev.take(&elsewhere), Some(vec![put]));
    }

    #[test]
    fn kept_history_serves_only_watchers_it_covers() {
        let at = |key: &str, rev: i64| Event {
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = History {
            from: 5,
            to: 8,
            events: vec![at("a", 5), at("b", 6), at("c", 6), at("a", 8)],
        };
        let revs = |from| -> Option<Vec<i64>> {
            let evs = h.since(from, 8)?;
            Some(evs.map(|e| e.kv.as_ref().unwrap().mod_revision).collect())
        };
        assert_eq!(revs(5), Some(vec![5, 6, 6, 8]));
        assert_eq!(revs(6), Some(vec![6, 6, 8]));
        assert_eq!(revs(9), Some(vec![]));
        // Older than what was read, or the store has moved on: read the store.
        assert!(h.since(4, 8).is_none());
        assert!(h.since(6, 9).is_none());
    }
}
