//! One task per identity: every client watch stream read as that user, the upstream watch
//! stream to a member they share, and the groups of watchers behind each upstream watch.
//!
//! The rules that keep every client's events complete and in order:
//! - a watcher from now joins a group after a progress answer, at the group's position then,
//!   and its `created` header names that revision;
//! - a watcher from a revision gets an upstream watch of its own, so the member answers for
//!   that revision (etcd's compaction cancel included); once it has caught up, its group
//!   merges into another of the same spec whose history covers what it has not had yet;
//! - a client that reads too slowly does not hold the others up: its watcher leaves the group
//!   ("parked") at the first revision it is owed, and rejoins from there when its client
//!   has drained;
//! - a progress answer to a client names a revision through which every watcher of its
//!   stream has been handed its events (a parked one, or one back from parking whose
//!   upstream watch is still catching up, holds it back);
//! - when the member dies, every upstream watch is created again on another member from the
//!   revision after its position, and events it sends again are dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::{
    watch_request, ResponseHeader, WatchCancelRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use oxetcd_common::mvccpb::Event;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use super::group::{revision_of, Group, Spec, State, Watcher};
use super::{Cmd, Registry};
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::upstream::{failover, is_no_leader, Identity};

/// Responses queued for one client stream before its watchers are parked...
const CLIENT_QUEUE: usize = 1024;
/// ... or bytes of them (encoded), whichever comes first.
const CLIENT_QUEUE_BYTES: usize = 16 << 20;

/// etcd's watch ID for answers that belong to no watcher.
const NO_WATCH_ID: i64 = -1;
/// Largest number of events in one response replayed from a group's history.
const EVENTS_PER_RESPONSE: usize = 1000;
/// A progress request unanswered this long is sent again (etcd answers only once every
/// watcher of the stream is synced).
const PROGRESS_RESEND: Duration = Duration::from_secs(1);
/// A watcher from now that waited this long for a progress answer joins at the group's
/// position.
const FRESH_GIVE_UP: Duration = Duration::from_secs(3);
/// How long opening the upstream stream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Between attempts to reach a member when none answered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// How long a hub with no client streams lives on.
const IDLE_LIFETIME: Duration = Duration::from_secs(30);

/// What a client stream has queued and its client not yet taken (shared with its feed).
#[derive(Default)]
pub(super) struct Backlog {
    responses: AtomicUsize,
    bytes: AtomicUsize,
}

impl Backlog {
    fn add(&self, resp: &WatchResponse) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(resp.encoded_len(), Ordering::Relaxed);
    }

    /// The client took `resp`.
    pub(super) fn take(&self, resp: &WatchResponse) {
        self.responses.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(resp.encoded_len(), Ordering::Relaxed);
    }

    fn full(&self) -> bool {
        self.responses.load(Ordering::Relaxed) >= CLIENT_QUEUE
            || self.bytes.load(Ordering::Relaxed) >= CLIENT_QUEUE_BYTES
    }

    fn drained(&self) -> bool {
        self.responses.load(Ordering::Relaxed) <= CLIENT_QUEUE / 4
            && self.bytes.load(Ordering::Relaxed) <= CLIENT_QUEUE_BYTES / 4
    }
}

/// A client stream as the hub sees it.
pub(super) struct Client {
    tx: mpsc::UnboundedSender<Result<WatchResponse, Status>>,
    backlog: Arc<Backlog>,
    next_id: i64,
    /// Its watchers, and where each one is.
    watchers: HashMap<i64, Place>,
    /// Requests not handled yet: as on a member, one create is answered before the next
    /// request of the stream is looked at, so `created` answers come in request order
    /// (clients match them to their requests in order).
    pending: VecDeque<WatchRequest>,
    /// The watcher whose `created` answer the stream waits for.
    busy: Option<i64>,
}

impl Client {
    pub(super) fn new(
        tx: mpsc::UnboundedSender<Result<WatchResponse, Status>>,
        backlog: Arc<Backlog>,
    ) -> Self {
        Client {
            tx,
            backlog,
            next_id: 0,
            watchers: HashMap::new(),
            pending: VecDeque::new(),
            busy: None,
        }
    }

    fn full(&self) -> bool {
        self.backlog.full()
    }

    fn drained(&self) -> bool {
        self.backlog.drained()
    }

    /// Queues events a group's history holds for a watcher that joins it.
    fn replay(&self, watch_id: i64, header: Option<ResponseHeader>, events: &[Event]) {
        for chunk in oxetcd_common::events::revision_chunks(events, EVENTS_PER_RESPONSE) {
            self.push(WatchResponse {
                header,
                watch_id,
                events: chunk.to_vec(),
                ..Default::default()
            });
        }
    }

    /// Queues a response whatever the queue's length (answers to the client's own requests).
    fn push(&self, resp: WatchResponse) {
        self.backlog.add(&resp);
        if let Err(mpsc::error::SendError(Ok(resp))) = self.tx.send(Ok(resp)) {
            self.backlog.take(&resp);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Group(i64),
    /// Waiting for a progress answer to join a group from now.
    Fresh,
    /// Out of its group until its client drains.
    Parked,
}

struct Fresh {
    watcher: Watcher,
    spec: Spec,
    since: Instant,
}

struct Parked {
    watcher: Watcher,
    spec: Spec,
}

struct Upstream {
    addr: String,
    tx: mpsc::UnboundedSender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

#[derive(Default)]
struct Progress {
    /// Client streams whose progress request waits for the answer to the request in flight.
    inflight: Vec<u64>,
    sent_at: Option<Instant>,
    /// Waiting for the next request: they came after the one in flight was sent.
    queued: Vec<u64>,
    /// Whether a progress request is wanted for watchers from now.
    fresh_wanted: bool,
    fresh_inflight: bool,
}

pub(super) struct Hub {
    identity: Identity,
    /// Its own command channel: how the registry tells this hub from a later one.
    me: mpsc::UnboundedSender<Cmd>,
    registry: Arc<Registry>,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    clients: HashMap<u64, Client>,
    groups: HashMap<i64, Group>,
    next_group: i64,
    /// Upstream creates sent and not answered, in the order sent.
    pending_creates: VecDeque<i64>,
    upstream: Option<Upstream>,
    retry_at: Option<Instant>,
    /// The newest header from upstream: cluster, member and term for the answers the hub
    /// writes itself.
    header: ResponseHeader,
    progress: Progress,
    fresh: Vec<Fresh>,
    parked: Vec<Parked>,
    idle_since: Option<Instant>,
    /// Client streams whose awaited `created` was answered: their next requests can go on.
    unblocked: Vec<u64>,
    /// What this hub last added to the shared gauges.
    reported: [i64; 3],
}

impl Hub {
    pub(super) fn new(
        identity: Identity,
        registry: Arc<Registry>,
        cmds: mpsc::UnboundedReceiver<Cmd>,
        me: mpsc::UnboundedSender<Cmd>,
    ) -> Hub {
        Hub {
            identity,
            me,
            cluster: registry.cluster.clone(),
            metrics: registry.metrics.clone(),
            registry,
            cmds,
            clients: HashMap::new(),
            groups: HashMap::new(),
            next_group: 1,
            pending_creates: VecDeque::new(),
            upstream: None,
            retry_at: None,
            header: ResponseHeader::default(),
            progress: Progress::default(),
            fresh: Vec::new(),
            parked: Vec::new(),
            idle_since: None,
            unblocked: Vec::new(),
            reported: [0; 3],
        }
    }

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                msg = next_response(&mut self.upstream) => match msg {
                    Ok(Some(resp)) => self.upstream_response(resp),
                    Ok(None) => self.upstream_lost(Status::unavailable("upstream watch stream ended")),
                    Err(status) => self.upstream_lost(status),
                },
                _ = tick.tick() => {
                    self.on_tick();
                    if self.retire() {
                        break;
                    }
                }
            }
            while let Some(stream) = self.unblocked.pop() {
                self.pump(stream);
            }
            if self.upstream.is_none()
                && self.needs_upstream()
                && self.retry_at.is_none_or(|t| Instant::now() >= t)
            {
                self.connect().await;
            }
            self.report();
        }
        self.clients.clear();
        self.groups.clear();
        self.report();
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Attach { stream, client } => {
                self.clients.insert(stream, client);
                self.idle_since = None;
            }
            Cmd::Detach { stream } => {
                if let Some(c) = self.clients.remove(&stream) {
                    for (id, place) in c.watchers {
                        self.unplace(stream, id, place);
                    }
                }
                if self.clients.is_empty() {
                    self.idle_since = Some(Instant::now());
                }
            }
            Cmd::Request { stream, req } => {
                if let Some(c) = self.clients.get_mut(&stream) {
                    c.pending.push_back(req);
                }
                self.pump(stream);
            }
        }
    }

    /// Handles a stream's queued requests until one waits for its `created` answer.
    fn pump(&mut self, stream: u64) {
        loop {
            let Some(c) = self.clients.get_mut(&stream) else {
                return;
            };
            if c.busy.is_some() {
                return;
            }
            let Some(req) = c.pending.pop_front() else {
                return;
            };
            self.request(stream, req);
        }
    }

    /// `created` (or a refusal) went to the watcher its stream waited for.
    fn answered(&mut self, stream: u64, id: i64) {
        if let Some(c) = self.clients.get_mut(&stream) {
            if c.busy == Some(id) {
                c.busy = None;
                self.unblocked.push(stream);
            }
        }
    }

    fn request(&mut self, stream: u64, req: WatchRequest) {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(stream, c),
            Some(watch_request::RequestUnion::CancelRequest(c)) => self.cancel(stream, c.watch_id),
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                self.progress.queued.push(stream);
                self.send_progress();
            }
            None => {}
        }
    }

    fn header_at(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision,
            ..self.header
        })
    }

    /// etcd's answer to a watch it will not create: created and canceled at once.
    fn refuse(&self, stream: u64, reason: &str) {
        if let Some(c) = self.clients.get(&stream) {
            c.push(WatchResponse {
                header: self.header_at(self.header.revision),
                watch_id: NO_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            });
        }
    }

    fn create(&mut self, stream: u64, c: oxetcd_common::etcdserverpb::WatchCreateRequest) {
        let Some(client) = self.clients.get_mut(&stream) else {
            return;
        };
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while client.watchers.contains_key(&client.next_id) {
                client.next_id += 1;
            }
            client.next_id
        };
        if client.watchers.contains_key(&id) || id < 0 {
            self.refuse(
                stream,
                "mvcc: duplicate watch ID provided on the WatchStream",
            );
            return;
        }
        if c.watch_id == 0 {
            client.next_id += 1;
        }
        client.busy = Some(id);
        let spec = Spec::of(&c);
        let watcher = Watcher {
            stream,
            watch_id: id,
            start: c.start_revision,
            progress_notify: c.progress_notify,
            announce: true,
        };
        if c.start_revision < 0 {
            // The member answers this one (etcd refuses it as compacted).
            client.watchers.insert(id, Place::Fresh);
            self.new_group(watcher, spec);
            return;
        }
        client.watchers.insert(id, Place::Fresh);
        self.place(watcher, spec);
    }

    /// Finds a group for a watcher, or makes one.
    fn place(&mut self, w: Watcher, spec: Spec) {
        if w.start == 0 {
            if self
                .groups
                .values()
                .any(|g| g.spec == spec && g.can_join_now())
            {
                self.set_place(w.stream, w.watch_id, Place::Fresh);
                self.fresh.push(Fresh {
                    watcher: w,
                    spec,
                    since: Instant::now(),
                });
                self.progress.fresh_wanted = true;
                self.send_progress();
            } else {
                self.new_group(w, spec);
            }
            return;
        }
        // From a revision: an upstream watch of its own, so the member answers for that
        // revision (compacted or not); it merges into a group of the same spec once it has
        // caught up (`merge`).
        self.new_group(w, spec);
    }

    fn set_place(&mut self, stream: u64, id: i64, place: Place) {
        if let Some(c) = self.clients.get_mut(&stream) {
            if let Some(p) = c.watchers.get_mut(&id) {
                *p = place;
            }
        }
    }

    /// A new upstream watch with `w` as its first member.
    fn new_group(&mut self, w: Watcher, spec: Spec) {
        let gid = self.next_group;
        self.next_group += 1;
        let mut g = Group::new(spec, w.start.max(0));
        if w.start < 0 {
            g.start = w.start;
        }
        self.set_place(w.stream, w.watch_id, Place::Group(gid));
        g.members.push(w);
        let req = g.spec.create(gid, g.start);
        self.groups.insert(gid, g);
        if let Some(up) = &self.upstream {
            self.pending_creates.push_back(gid);
            let _ = up.tx.send(req);
        }
    }

    /// Adds `w` to a live group: it is answered `created` (at `created_at`, or the newest
    /// revision known), handed what the history holds from its start, then live events.
    fn join(&mut self, gid: i64, mut w: Watcher, created_at: Option<i64>) {
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        let revision = created_at.unwrap_or(self.header.revision.max(g.position));
        let header = Some(ResponseHeader {
            revision,
            ..self.header
        });
        let replay = g.history_from(w.start.max(1));
        let Some(client) = self.clients.get_mut(&w.stream) else {
            return;
        };
        if let Some(p) = client.watchers.get_mut(&w.watch_id) {
            *p = Place::Group(gid);
        }
        let announced = w.announce;
        if w.announce {
            client.push(WatchResponse {
                header,
                watch_id: w.watch_id,
                created: true,
                ..Default::default()
            });
            w.announce = false;
        }
        client.replay(w.watch_id, header, &replay);
        if let Some(last) = replay.last() {
            w.start = w.start.max(revision_of(last) + 1);
        }
        w.start = w.start.max(g.position + 1);
        let (stream, id) = (w.stream, w.watch_id);
        g.members.push(w);
        if announced {
            self.answered(stream, id);
        }
    }

    /// A client cancels one of its watchers.
    fn cancel(&mut self, stream: u64, id: i64) {
        let Some(place) = self
            .clients
            .get_mut(&stream)
            .and_then(|c| c.watchers.remove(&id))
        else {
            return;
        };
        self.unplace(stream, id, place);
        if let Some(c) = self.clients.get(&stream) {
            c.push(WatchResponse {
                header: self.header_at(self.header.revision),
                watch_id: id,
                canceled: true,
                ..Default::default()
            });
        }
    }

    /// Takes a watcher out of wherever it is; a group left empty is canceled upstream.
    fn unplace(&mut self, stream: u64, id: i64, place: Place) {
        match place {
            Place::Group(gid) => {
                let empty = match self.groups.get_mut(&gid) {
                    Some(g) => {
                        g.remove(stream, id);
                        g.is_empty()
                    }
                    None => false,
                };
                if empty {
                    self.drop_group(gid);
                }
            }
            Place::Fresh => {
                self.fresh
                    .retain(|f| !(f.watcher.stream == stream && f.watcher.watch_id == id));
                // A watcher placed in a group still being created, waiting there.
                let mut emptied = Vec::new();
                for (gid, g) in self.groups.iter_mut() {
                    if g.remove(stream, id).is_some() && g.is_empty() {
                        emptied.push(*gid);
                    }
                }
                for gid in emptied {
                    self.drop_group(gid);
                }
            }
            Place::Parked => self
                .parked
                .retain(|p| !(p.watcher.stream == stream && p.watcher.watch_id == id)),
        }
    }

    fn drop_group(&mut self, gid: i64) {
        if self.groups.remove(&gid).is_none() {
            return;
        }
        if let Some(up) = &self.upstream {
            let _ = up.tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CancelRequest(
                    WatchCancelRequest { watch_id: gid },
                )),
            });
        }
    }

    /// Sends a progress request upstream if one is wanted and none is in flight.
    fn send_progress(&mut self) {
        let Some(up) = &self.upstream else { return };
        let p = &mut self.progress;
        if p.sent_at.is_some() || (p.queued.is_empty() && !p.fresh_wanted) {
            return;
        }
        p.inflight.append(&mut p.queued);
        p.fresh_inflight = std::mem::take(&mut p.fresh_wanted);
        p.sent_at = Some(Instant::now());
        let _ = up.tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        });
    }

    fn upstream_response(&mut self, resp: WatchResponse) {
        if let Some(h) = &resp.header {
            let revision = self.header.revision.max(h.revision);
            self.header = ResponseHeader { revision, ..*h };
        }
        if resp.created {
            self.created(resp);
        } else if resp.canceled {
            self.canceled(resp);
        } else if resp.watch_id == NO_WATCH_ID && resp.events.is_empty() {
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            self.progress_answer(revision);
        } else {
            self.group_response(resp);
        }
    }

    fn created(&mut self, resp: WatchResponse) {
        let gid = if resp.canceled && resp.watch_id == NO_WATCH_ID {
            self.pending_creates.front().copied()
        } else {
            Some(resp.watch_id)
        };
        let Some(gid) = gid else { return };
        self.pending_creates.retain(|id| *id != gid);
        if resp.canceled {
            let Some(g) = self.groups.remove(&gid) else {
                return;
            };
            self.refused(g, &resp);
            return;
        }
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        g.created(revision);
        let members = std::mem::take(&mut g.members);
        let mut kept = Vec::new();
        let mut answered = Vec::new();
        for mut w in members {
            if w.announce {
                if let Some(c) = self.clients.get(&w.stream) {
                    c.push(WatchResponse {
                        watch_id: w.watch_id,
                        ..resp.clone()
                    });
                }
                w.announce = false;
                answered.push((w.stream, w.watch_id));
            }
            if w.start <= 0 {
                w.start = revision + 1;
            }
            kept.push(w);
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.members = kept;
            if g.start > 0 && g.spec.shareable() && !g.confirmed {
                // Ask the member to confirm it, so it can merge even if nothing happens.
                self.progress.fresh_wanted = true;
                self.send_progress();
            }
        }
        for (stream, id) in answered {
            self.answered(stream, id);
        }
        self.merge(gid);
    }

    /// The member would not create a group's watch: each watcher hears why, as etcd tells it.
    fn refused(&mut self, g: Group, resp: &WatchResponse) {
        for w in g.members {
            self.answered(w.stream, w.watch_id);
            let Some(c) = self.clients.get_mut(&w.stream) else {
                continue;
            };
            c.watchers.remove(&w.watch_id);
            c.push(WatchResponse {
                watch_id: if w.announce { NO_WATCH_ID } else { w.watch_id },
                created: w.announce,
                ..resp.clone()
            });
        }
    }

    /// The member canceled a group's watch (compaction, or the user lost access).
    fn canceled(&mut self, resp: WatchResponse) {
        let Some(g) = self.groups.remove(&resp.watch_id) else {
            return;
        };
        for w in g.members {
            let Some(c) = self.clients.get_mut(&w.stream) else {
                continue;
            };
            c.watchers.remove(&w.watch_id);
            c.push(WatchResponse {
                watch_id: w.watch_id,
                created: false,
                ..resp.clone()
            });
        }
    }

    fn progress_answer(&mut self, revision: i64) {
        if self.progress.sent_at.take().is_none() {
            return;
        }
        // Every upstream watch created before the request has delivered through `revision`
        // (on etcd 3.4 only a watch from now, which is synced from its start, and never past
        // a compaction cancel it may still have coming).
        // An oxetcd member answers a progress request only once every watch of the stream has
        // delivered through the answer's revision (as etcd does since 3.5.8); etcd 3.4 answers
        // at once with its current revision, even while a watch from a revision catches up and
        // with events still queued, so there the answer says only where the store is.
        let synced = self
            .upstream
            .as_ref()
            .is_some_and(|u| self.cluster.is_oxetcd(&u.addr));
        for g in self.groups.values_mut() {
            if g.state == State::Live && (synced || g.start == 0) {
                g.position = g.position.max(revision);
                g.confirmed = true;
            }
        }
        // Watchers waiting for this answer join first, so what they are handed comes before
        // the progress answers on their streams.
        if std::mem::take(&mut self.progress.fresh_inflight) {
            self.join_fresh(|_| true);
        }
        let mut ids: Vec<i64> = self.groups.keys().copied().collect();
        ids.sort_unstable();
        for gid in ids {
            self.merge(gid);
        }
        for stream in std::mem::take(&mut self.progress.inflight) {
            let answer = self.delivered_through(stream, revision);
            if let Some(c) = self.clients.get(&stream) {
                c.push(WatchResponse {
                    header: self.header_at(answer),
                    watch_id: NO_WATCH_ID,
                    ..Default::default()
                });
            }
        }
        self.send_progress();
    }

    /// The revision through which every watcher of `stream` its client has seen created has
    /// been handed its events, at most `revision`: a progress answer must never run ahead of
    /// a watcher that is parked, or back from parking on an upstream watch still being
    /// created or catching up.
    fn delivered_through(&self, stream: u64, revision: i64) -> i64 {
        let Some(c) = self.clients.get(&stream) else {
            return revision;
        };
        let behind = |w: &Watcher| (!w.announce && w.start > 0).then_some(w.start - 1);
        let mut through = revision;
        for (id, place) in &c.watchers {
            let had = match place {
                Place::Group(gid) => self.groups.get(gid).and_then(|g| {
                    let w = g
                        .members
                        .iter()
                        .find(|w| w.stream == stream && w.watch_id == *id)?;
                    // A live group hands on what it receives as it comes: the member's answer
                    // covers it (on etcd 3.4, as far as etcd's own answer would).
                    if g.state == State::Live && !g.in_fragment {
                        None
                    } else {
                        behind(w)
                    }
                }),
                Place::Parked => self
                    .parked
                    .iter()
                    .find(|p| p.watcher.stream == stream && p.watcher.watch_id == *id)
                    .and_then(|p| behind(&p.watcher)),
                // Not created yet as its client sees it (a watcher from now).
                Place::Fresh => None,
            };
            if let Some(had) = had {
                through = through.min(had);
            }
        }
        through
    }

    /// Merges group `gid` with another of the same spec when one can take the other's
    /// members (the older group takes them): each moved watcher is handed what the taker's
    /// history holds beyond where it was, and the emptied upstream watch is canceled.
    fn merge(&mut self, gid: i64) {
        let Some(g) = self.groups.get(&gid) else {
            return;
        };
        if !g.spec.shareable() {
            return;
        }
        let pair = self
            .groups
            .iter()
            .filter(|(id, _)| **id != gid)
            .find_map(|(id, other)| {
                if other.can_take(g) {
                    Some((*id, gid))
                } else if g.can_take(other) {
                    Some((gid, *id))
                } else {
                    None
                }
            });
        let Some((taker, given)) = pair else { return };
        let Some(from) = self.groups.remove(&given) else {
            return;
        };
        if let Some(up) = &self.upstream {
            let _ = up.tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CancelRequest(
                    WatchCancelRequest { watch_id: given },
                )),
            });
        }
        let header = self.header_at(self.header.revision);
        let Some(to) = self.groups.get_mut(&taker) else {
            return;
        };
        for mut w in from.members {
            let replay = to.history_from(w.start);
            if let Some(c) = self.clients.get_mut(&w.stream) {
                if let Some(p) = c.watchers.get_mut(&w.watch_id) {
                    *p = Place::Group(taker);
                }
                c.replay(w.watch_id, header, &replay);
            }
            // Owed what comes after the replay, not after the taker's position: on etcd 3.4
            // a progress answer can put the position past events still on their way.
            if let Some(last) = replay.last() {
                w.start = w.start.max(revision_of(last) + 1);
            }
            to.members.push(w);
        }
        self.metrics.watch_merges.inc();
    }

    /// Watchers from now join their group at its position (`due` picks which).
    fn join_fresh(&mut self, due: impl Fn(&Fresh) -> bool) {
        let (now, later): (Vec<Fresh>, Vec<Fresh>) = std::mem::take(&mut self.fresh)
            .into_iter()
            .partition(|f| due(f));
        self.fresh = later;
        for f in now {
            let gid = self
                .groups
                .iter()
                .find(|(_, g)| g.spec == f.spec && g.can_join_now() && g.state == State::Live)
                .map(|(id, g)| (*id, g.position));
            match gid {
                Some((gid, position)) => {
                    let mut w = f.watcher;
                    w.start = position + 1;
                    self.join(gid, w, Some(position));
                }
                None if self
                    .groups
                    .values()
                    .any(|g| g.spec == f.spec && g.can_join_now()) =>
                {
                    // Its group is still being created: the next answer will do.
                    self.fresh.push(f);
                    self.progress.fresh_wanted = true;
                }
                None => self.new_group(f.watcher, f.spec),
            }
        }
        self.send_progress();
    }

    fn group_response(&mut self, mut resp: WatchResponse) {
        let gid = resp.watch_id;
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.events.is_empty() {
            // A progress notification: the group has everything through this revision.
            if g.state == State::Live && !g.in_fragment {
                g.position = g.position.max(header_rev);
            }
            for w in g.members.iter().filter(|w| w.progress_notify) {
                if let Some(c) = self.clients.get(&w.stream) {
                    if !c.full() {
                        c.push(WatchResponse {
                            watch_id: w.watch_id,
                            ..resp.clone()
                        });
                    }
                }
            }
            return;
        }
        if g.skip_through > 0 {
            let skip = g.skip_through;
            resp.events.retain(|e| revision_of(e) > skip);
            if resp.events.is_empty() {
                return;
            }
        }
        let last = resp.events.iter().map(revision_of).max().unwrap_or(0);
        g.confirmed = true;
        g.in_fragment = resp.fragment;
        if !resp.fragment {
            g.position = g.position.max(last);
        }
        g.remember(&resp.events);
        let mut slow = Vec::new();
        for (i, w) in g.members.iter_mut().enumerate() {
            let Some(c) = self.clients.get(&w.stream) else {
                continue;
            };
            let events: Vec<Event> = if resp.events.iter().all(|e| revision_of(e) >= w.start) {
                resp.events.clone()
            } else {
                resp.events
                    .iter()
                    .filter(|e| revision_of(e) >= w.start)
                    .cloned()
                    .collect()
            };
            if events.is_empty() {
                continue;
            }
            if c.full() && !g.in_fragment && g.spec.shareable() {
                // Parked at the first event it is owed: nothing of its spec came between.
                slow.push((i, events.first().map_or(w.start, revision_of)));
                continue;
            }
            c.push(WatchResponse {
                header: resp.header,
                watch_id: w.watch_id,
                events,
                fragment: resp.fragment,
                ..Default::default()
            });
            if !resp.fragment {
                w.start = w.start.max(last + 1);
            }
        }
        if slow.is_empty() {
            self.merge(gid);
            return;
        }
        let spec = g.spec.clone();
        for (i, owed) in slow.into_iter().rev() {
            let mut w = g.members.remove(i);
            w.start = w.start.max(owed);
            debug!(
                stream = w.stream,
                watch_id = w.watch_id,
                "client reads slowly: parked"
            );
            self.metrics.watchers_parked.inc();
            if let Some(c) = self.clients.get_mut(&w.stream) {
                c.watchers.insert(w.watch_id, Place::Parked);
            }
            self.parked.push(Parked {
                watcher: w,
                spec: spec.clone(),
            });
        }
        if self.groups.get(&gid).is_some_and(|g| g.is_empty()) {
            self.drop_group(gid);
        }
    }

    fn on_tick(&mut self) {
        // Parked watchers whose clients drained rejoin from the revision they are owed.
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) =
            std::mem::take(&mut self.parked).into_iter().partition(|p| {
                self.clients
                    .get(&p.watcher.stream)
                    .is_some_and(|c| c.drained())
            });
        self.parked = waiting;
        for p in ready {
            self.set_place(p.watcher.stream, p.watcher.watch_id, Place::Fresh);
            self.place(p.watcher, p.spec);
        }
        if self
            .progress
            .sent_at
            .is_some_and(|t| t.elapsed() >= PROGRESS_RESEND)
        {
            // Not answered (an etcd member answers only when all its watchers are synced).
            self.progress.sent_at = None;
            self.progress.queued.append(&mut self.progress.inflight);
            self.progress.fresh_wanted |= std::mem::take(&mut self.progress.fresh_inflight);
            self.send_progress();
        }
        if self
            .fresh
            .iter()
            .any(|f| f.since.elapsed() >= FRESH_GIVE_UP)
        {
            self.join_fresh(|f| f.since.elapsed() >= FRESH_GIVE_UP);
        }
    }

    fn needs_upstream(&self) -> bool {
        !self.groups.is_empty() || !self.progress.queued.is_empty()
    }

    /// Opens the upstream stream on a healthy member and (re)creates every group's watch.
    async fn connect(&mut self) {
        let Some(member) = self.cluster.any_member() else {
            self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
            return;
        };
        let Some(channel) = self.cluster.channel(&member.addr) else {
            self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Everything is queued before the call: a Go server sends its headers with the first
        // response, so the call only completes once there is something to answer.
        self.pending_creates.clear();
        let mut ids: Vec<i64> = self.groups.keys().copied().collect();
        ids.sort_unstable();
        for gid in ids {
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            let start = if g.state == State::Live {
                g.skip_through = g.position;
                g.position + 1
            } else {
                g.start
            };
            let _ = tx.send(g.spec.create(gid, start));
            self.pending_creates.push_back(gid);
        }
        let progress_pending = self.progress.sent_at.take().is_some();
        if progress_pending {
            self.progress.queued.append(&mut self.progress.inflight);
            self.progress.fresh_wanted |= std::mem::take(&mut self.progress.fresh_inflight);
        }
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        self.identity.apply(request.metadata_mut());
        // A member's catch-up answer may hold many events; clientv3 takes any size, so must we.
        let mut client = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
        let call = client.watch(request);
        match tokio::time::timeout(CONNECT_TIMEOUT, call).await {
            Ok(Ok(resp)) => {
                info!(member = %member.label, groups = self.groups.len(), "upstream watch stream open");
                self.upstream = Some(Upstream {
                    addr: member.addr,
                    tx,
                    rx: resp.into_inner(),
                });
                self.retry_at = None;
                self.send_progress();
            }
            Ok(Err(status)) if !failover(&status) => self.fail_all(status),
            _ => {
                warn!(member = %member.label, "cannot open upstream watch stream");
                self.cluster.report_unreachable(&member.addr);
                self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
            }
        }
    }

    fn upstream_lost(&mut self, status: Status) {
        let Some(up) = self.upstream.take() else {
            return;
        };
        if !failover(&status) || self.identity.require_leader && is_no_leader(&status) {
            // Not the member's fault (a bad token, no leader for a stream that requires
            // one): each client stream ends as it would have on the member.
            self.fail_all(status);
            return;
        }
        warn!(member = %up.addr, "upstream watch stream lost ({}): moving to another member", status.message());
        self.metrics.watch_resumes.inc();
        self.cluster.report_unreachable(&up.addr);
        // `connect` recreates every group from the revision after its position.
    }

    /// Ends every client stream with `status`; the hub starts over empty.
    fn fail_all(&mut self, status: Status) {
        for (_, c) in self.clients.drain() {
            let _ = c.tx.send(Err(status.clone()));
        }
        self.groups.clear();
        self.fresh.clear();
        self.parked.clear();
        self.pending_creates.clear();
        self.progress = Progress::default();
        self.upstream = None;
        self.idle_since = Some(Instant::now());
    }

    /// Leaves the registry after a while with no client streams.
    fn retire(&mut self) -> bool {
        let idle = self
            .idle_since
            .is_some_and(|t| t.elapsed() >= IDLE_LIFETIME);
        if !idle || !self.clients.is_empty() {
            return false;
        }
        let cmds = &self.cmds;
        self.registry
            .hubs
            .retire(&self.identity, &self.me, || cmds.is_empty())
    }

    /// Brings the shared gauges in line with this hub's counts.
    fn report(&mut self) {
        let watchers: usize = self.clients.values().map(|c| c.watchers.len()).sum();
        let now = [
            watchers as i64,
            self.groups.len() as i64,
            self.clients.len() as i64,
        ];
        let m = &self.metrics;
        m.watchers.add(now[0] - self.reported[0]);
        m.upstream_watchers.add(now[1] - self.reported[1]);
        m.watch_streams.add(now[2] - self.reported[2]);
        self.reported = now;
    }
}

async fn next_response(up: &mut Option<Upstream>) -> Result<Option<WatchResponse>, Status> {
    match up {
        Some(u) => u.rx.message().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::etcdserverpb::WatchCreateRequest;

    fn hub() -> Hub {
        let metrics = Metrics::new();
        let cluster = Cluster::new(&[], metrics.clone(), None);
        let registry = super::super::Registry::new(cluster, metrics);
        let (me, cmds) = mpsc::unbounded_channel();
        Hub::new(Identity::default(), registry, cmds, me)
    }

    #[test]
    fn a_progress_answer_waits_for_a_watcher_back_from_parking() {
        let mut hub = hub();
        let (tx, mut rx) = mpsc::unbounded_channel();
        hub.command(Cmd::Attach {
            stream: 7,
            client: Client::new(tx, Arc::new(Backlog::default())),
        });
        let spec = Spec::of(&WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        // Watcher 0 was handed everything through revision 49, parked, and is back on an
        // upstream watch from 50 whose create is not answered yet.
        if let Some(c) = hub.clients.get_mut(&7) {
            c.watchers.insert(0, Place::Fresh);
        }
        let back = Watcher {
            stream: 7,
            watch_id: 0,
            start: 50,
            progress_notify: false,
            announce: false,
        };
        hub.new_group(back.clone(), spec.clone());
        // The client asked for progress while the upstream's answer was in flight.
        hub.progress.sent_at = Some(Instant::now());
        hub.progress.inflight.push(7);
        hub.progress_answer(100);
        let answer = rx.try_recv().expect("an answer").expect("ok");
        assert_eq!(answer.watch_id, NO_WATCH_ID);
        assert_eq!(answer.header.map(|h| h.revision), Some(49));

        // Parked, it holds the answer back the same way.
        hub.groups.clear();
        hub.set_place(7, 0, Place::Parked);
        hub.parked.push(Parked {
            watcher: Watcher { start: 61, ..back },
            spec,
        });
        hub.progress.sent_at = Some(Instant::now());
        hub.progress.inflight.push(7);
        hub.progress_answer(100);
        let answer = rx.try_recv().expect("an answer").expect("ok");
        assert_eq!(answer.header.map(|h| h.revision), Some(60));
    }
}
