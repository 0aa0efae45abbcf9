//! The member's core: turns requests into raft proposals or local reads, and owns the member's
//! identity (member ID, cluster ID) and the response headers built from it.
//!
//! Any member serves any request. On a follower a write is forwarded to the leader and a
//! linearizable read asks the leader for a read index (`peer`); every wait is bounded by
//! etcd's request timeout and gives up on a leader as soon as another one is known, so a
//! paused or partitioned leader costs a client at most one election.

use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use oxetcd_common::etcdserverpb::ResponseHeader;
use oxetcd_common::oxetcdpb::{internal_raft_request::Request, InternalRaftRequest, RaftBatch};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::apply::{MemberState, StateLock};
use crate::auth::{AuthInfo, Tokens};
use crate::error::ServerError;
use crate::lease::Lessor;
use crate::metrics::Metrics;
use crate::mvcc::KvError;
use crate::peer::{Forwarded, PeerError, Peers};
use crate::raft::{MemberNode, Proposal, Raft};
use crate::storage::Storage;
use crate::waiters::{answer, refuse_forwarded, Pending, Waiter, Waiters};
use crate::watch::WatchHub;

/// How long a request waits for a leader, for its entry to be applied, or for a read index:
/// etcd's request timeout, 5 s plus two election timeouts (7 s with the default 1 s election
/// timeout), long enough for an election after a leader dies.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Most requests one raft entry carries.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Most bytes one raft entry carries (a single request may still be up to --max-request-bytes).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A read barrier waiting for the next read-index round.
pub(crate) type ReadWaiter = oneshot::Sender<Result<u64, ServerError>>;

/// Limits checked before a request is proposed.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: i64,
}

/// Times the API works by (`--election-timeout`, `--watch-progress-notify-interval`).
pub(crate) struct Timing {
    pub election_timeout: std::time::Duration,
    pub watch_progress_interval: std::time::Duration,
}

pub(crate) struct EtcdServer {
    pub raft: Raft,
    /// The newest compaction revision whose superseded rows are gone (`apply::compaction`):
    /// what a `physical` Compact waits for.
    pub compacted: tokio::sync::watch::Receiver<i64>,
    pub state: Arc<StateLock>,
    pub storage: Storage,
    pub member_id: u64,
    pub cluster_id: u64,
    /// `--initial-cluster-token`: new members' IDs derive from it, as at bootstrap.
    pub cluster_token: String,
    pub limits: Limits,
    pub timing: Timing,
    pub metrics: Metrics,
    pub lessor: Arc<Lessor>,
    /// A follower's keep-alives on their way to the leader (see `lease::run_renewals`).
    pub renewals: crate::lease::Renewals,
    pub watch_hub: WatchHub,
    /// The other members, over their peer URLs.
    pub peers: Arc<Peers>,
    /// Source of lease IDs (etcd's idutil: member ID bits on top, a counter below).
    pub lease_ids: std::sync::atomic::AtomicU64,
    /// Requests on their way to the proposer task (see [`run_proposer`]).
    pub proposals: mpsc::Sender<Pending>,
    /// The proposer's entries in flight, answered by the state machine (shared with it).
    pub waiters: Arc<Waiters>,
    /// Read barriers waiting for the next read-index round (see [`run_read_batcher`]).
    pub reads: mpsc::Sender<ReadWaiter>,
    /// Source of the request IDs a follower gives the requests it forwards (see
    /// `tag_requests`); starts from the time, so IDs differ across restarts.
    pub forward_ids: std::sync::atomic::AtomicU64,
    /// True while this leader hands leadership over: writes wait (see `leadership`).
    pub transferring: tokio::sync::watch::Sender<bool>,
    /// When this member campaigns (raft's pre-vote; held during a leadership transfer).
    pub elections: Arc<crate::raft::election::Elections>,
    /// Set when the leader tells this member it was removed from the cluster: it shuts down.
    pub removed: tokio::sync::watch::Sender<bool>,
    /// This member's auth tokens (simple or JWT).
    pub tokens: Arc<Tokens>,
    /// Settings of authentication at the API (`--bcrypt-cost`, `--client-cert-auth`).
    pub auth_settings: AuthSettings,
}

/// How the API authenticates clients.
#[derive(Clone, Debug)]
pub(crate) struct AuthSettings {
    /// bcrypt cost of new password hashes (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
    /// `--client-cert-auth`: a request without a token is the user its certificate names.
    pub client_cert_auth: bool,
    /// `--trusted-proxy-cn`: from connections with these names, the forwarded name counts.
    pub trusted_proxy_cns: Vec<String>,
}

impl EtcdServer {
    /// The read side of the state machine.
    pub(crate) fn read_state(&self) -> Result<RwLockReadGuard<'_, MemberState>, ServerError> {
        self.state
            .read()
            .map_err(|_| ServerError::Internal("state machine lock poisoned".into()))
    }

    /// The current raft term, as this member sees it.
    pub(crate) fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The leader as this member knows it.
    pub(crate) fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The leader as etcd reports it (health, status, metrics, `hasleader`): none once this
    /// follower has not heard from one for an election timeout (`raft::election`).
    pub(crate) fn reported_leader(&self) -> Option<u64> {
        self.elections.leader(&self.raft, self.member_id)
    }

    /// A response header for this member at `revision`.
    pub(crate) fn header(&self, revision: i64, raft_term: u64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term,
        })
    }

    /// A fresh lease ID: the low 16 bits of the member ID on top, then a counter started from the
    /// clock, masked positive (etcd's scheme, so IDs from different members do not collide).
    pub(crate) fn next_lease_id(&self) -> i64 {
        loop {
            let n = self
                .lease_ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = (((self.member_id & 0xffff) << 48) | (n & 0xffff_ffff_ffff)) as i64 & i64::MAX;
            let taken = self
                .read_state()
                .map(|s| crate::mvcc::LeaseCheck::exists(&s.leases, id))
                .unwrap_or(false);
            if id != 0 && !taken {
                return id;
            }
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.member_id)
    }

    /// Whether the membership has a member (voter or learner) other than this one.
    ///
    /// Membership lookups read raft's effective membership (its metrics), never the state
    /// lock: the proposer and replication ask on every entry, and an apply that holds the
    /// lock for seconds (a DeleteRange of 1M keys) would block them, heartbeats included.
    fn has_peers(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .any(|(id, _)| *id != self.member_id)
    }

    /// Proposes a member's own request (lease expiry, its attributes, the steps of a Lock
    /// or Election the API has permitted) through raft and waits until it is applied on this
    /// member; no permission check applies. Returns the encoded response and the entry's term.
    pub(crate) async fn propose(&self, req: Request) -> Result<(Vec<u8>, u64), ServerError> {
        self.submit(InternalRaftRequest {
            request: Some(req),
            from_member: true,
            ..Default::default()
        })
        .await
    }

    /// Proposes a client's request, checked at apply against `who` (`None`: the client gave
    /// no credentials). With a request ID, a request applied already (the client sent it again
    /// after a failover) answers its first result and nothing is applied twice (see `dedup`).
    pub(crate) async fn propose_for(
        &self,
        req: Request,
        request_id: String,
        who: Option<&AuthInfo>,
    ) -> Result<(Vec<u8>, u64), ServerError> {
        let (username, auth_revision) = who
            .map(|w| (w.username.clone(), w.revision))
            .unwrap_or_default();
        self.submit(InternalRaftRequest {
            request: Some(req),
            request_id,
            username,
            auth_revision,
            from_member: false,
        })
        .await
    }

    async fn submit(&self, request: InternalRaftRequest) -> Result<(Vec<u8>, u64), ServerError> {
        let size = request.encoded_len();
        if size > self.limits.max_request_bytes {
            return Err(KvError::RequestTooLarge.into());
        }
        let (done, result) = oneshot::channel();
        self.proposals
            .send(Pending {
                requests: vec![request],
                size,
                waiter: Waiter::Local(done),
            })
            .await
            .map_err(|_| ServerError::Stopped)?;
        result.await.map_err(|_| ServerError::Stopped)?
    }

    /// The leader's side of a batch a follower forwarded: its requests join the next entry
    /// this member's proposer writes, with this member's own and other followers' requests
    /// (openraft 0.9 writes and syncs each entry on its own, so one entry per round is one
    /// fsync per round on the leader, not one per member that sent writes). Written here or
    /// refused (`NotLeader`: nothing was done), never forwarded again.
    pub(crate) async fn write_forwarded(&self, payload: Vec<u8>) -> Result<Forwarded, PeerError> {
        if !self.is_leader() {
            return Err(PeerError::NotLeader);
        }
        let batch = RaftBatch::decode(payload.as_slice())
            .map_err(|e| ServerError::Internal(format!("undecodable forwarded batch: {e}")))?;
        let (done, result) = oneshot::channel();
        self.proposals
            .send(Pending {
                requests: batch.requests,
                size: payload.len(),
                waiter: Waiter::Forwarded(done),
            })
            .await
            .map_err(|_| ServerError::Stopped)?;
        result.await.map_err(|_| ServerError::Stopped)?
    }

    /// Linearizable read barrier: confirms leadership with a quorum and waits until this member
    /// has applied everything committed before the read started. Concurrent barriers share one
    /// round (see [`run_read_batcher`]), as etcd's read loop coalesces read-index requests.
    pub(crate) async fn read_barrier(&self) -> Result<(), ServerError> {
        self.read_index().await.map(|_| ())
    }

    /// Like [`EtcdServer::read_barrier`], returning the read index (applied here).
    pub(crate) async fn read_index(&self) -> Result<u64, ServerError> {
        let (done, result) = oneshot::channel();
        self.reads
            .send(done)
            .await
            .map_err(|_| ServerError::Stopped)?;
        result.await.map_err(|_| ServerError::Stopped)?
    }

    /// One read-index round: on the leader, openraft's quorum check; on a follower, the
    /// leader's read index, then wait until it is applied here. A read is always safe to ask
    /// again, so a stale or unreachable leader is left for the next one until the deadline.
    async fn read_index_round(&self) -> Result<u64, ServerError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let named = match self.confirm_leadership(deadline).await {
                Ok(index) => return Ok(index),
                Err(named) => named,
            };
            let Some((leader, node)) = self.leader_to_ask(named, deadline).await? else {
                continue;
            };
            let ask = self.peers.read_index(&node, remaining(deadline));
            match self.until_leader_changes(Some(leader), deadline, ask).await {
                Some(Ok(index)) => {
                    self.wait_applied(index, deadline).await?;
                    return Ok(index);
                }
                // The leader is stopping (a storage failure, a signal): ask its successor.
                Some(Err(PeerError::Server(ServerError::Stopped))) if Instant::now() < deadline => {
                    self.wait_for_other_leader(Some(leader), deadline).await
                }
                Some(Err(PeerError::Server(e))) => return Err(e),
                Some(Err(e)) if Instant::now() >= deadline => return Err(e.into_server()),
                // Neither an answer nor a new leader before the deadline.
                None if Instant::now() >= deadline => return Err(ServerError::TimedOut),
                _ => self.wait_for_other_leader(Some(leader), deadline).await,
            }
        }
    }

    /// openraft's read index on this member, if it is the leader: `Err(Some(leader))` names
    /// the leader to ask instead, `Err(None)` means none is known yet.
    async fn confirm_leadership(&self, deadline: Instant) -> Result<u64, Option<u64>> {
        match tokio::time::timeout_at(deadline, self.raft.ensure_linearizable()).await {
            Ok(Ok(read)) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(f.leader_id.filter(|l| *l != self.member_id))
            }
            // No quorum answered in time (a partition, a paused voter), or the deadline.
            _ => Err(None),
        }
    }

    /// The leader's side of a follower's read index: confirmed here, never passed on (a member
    /// that is no longer the leader says so, and the follower asks the new one itself).
    pub(crate) async fn read_index_here(&self) -> Result<u64, PeerError> {
        if !self.is_leader() {
            return Err(PeerError::NotLeader);
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        match self.confirm_leadership(deadline).await {
            Ok(index) => Ok(index),
            Err(_) if Instant::now() >= deadline => Err(ServerError::TimedOut.into()),
            Err(_) => Err(PeerError::NotLeader),
        }
    }
}

/// Time left until `deadline`.
pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The read batcher: each round serves every barrier queued before it started, so a burst of
/// linearizable reads costs one quorum round (or one ReadIndex call from a follower), not one
/// each. A barrier queued during a round waits for the next round, which starts after it.
pub(crate) async fn run_read_batcher(
    server: std::sync::Weak<EtcdServer>,
    mut rx: mpsc::Receiver<ReadWaiter>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let Some(server) = server.upgrade() else {
            return;
        };
        let result = server.read_index_round().await;
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Entries the proposer keeps in flight with peers: the next entry is appended and sent while
/// the previous one is on its way to a quorum. A member alone gains nothing from overlapping
/// its entries (its round is its own fsync and apply, and smaller batches cost more), so it
/// keeps one.
const IN_FLIGHT_WITH_PEERS: usize = 2;

/// The proposer task: turns queued requests into raft entries. It takes every request queued
/// while the previous entries were in flight (bounded by count and bytes) and proposes them as
/// one entry, applied in order; on the leader that includes the batches followers forwarded.
/// openraft 0.9 writes one entry's log I/O before starting the next, so this is where write
/// throughput comes from: one log write per batch, not per request. With two entries in
/// flight, the order they reach raft is normally the order their batches were taken
/// (`FuturesUnordered` first polls futures in the order they were pushed), but nothing depends
/// on it: requests in different entries in flight together were concurrent (a client waits for
/// its answer before its next request), and etcd does not order concurrent requests either.
pub(crate) async fn run_proposer(
    server: std::sync::Weak<EtcdServer>,
    mut rx: mpsc::Receiver<Pending>,
) {
    use futures::StreamExt;
    // A batch that did not fit the previous entry starts the next one.
    let mut held: Option<Pending> = None;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    loop {
        let Some(s) = server.upgrade() else {
            return;
        };
        let most = if s.has_peers() {
            IN_FLIGHT_WITH_PEERS
        } else {
            1
        };
        drop(s);
        let first = if in_flight.len() >= most {
            in_flight.next().await;
            entry_done(
                &server,
                in_flight.is_empty() && held.is_none() && rx.is_empty(),
            )
            .await;
            continue;
        } else if let Some(p) = held.take() {
            p
        } else {
            tokio::select! {
                // Entries in flight are driven while the proposer waits for requests.
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {
                    entry_done(&server, in_flight.is_empty() && rx.is_empty()).await;
                    continue;
                }
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
            }
        };
        let mut count = first.requests.len();
        let mut bytes = first.size;
        let mut batch = vec![first];
        while count < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
            let Ok(p) = rx.try_recv() else {
                break;
            };
            if count + p.requests.len() > MAX_BATCH_REQUESTS || bytes + p.size > MAX_BATCH_BYTES {
                held = Some(p);
                break;
            }
            count += p.requests.len();
            bytes += p.size;
            batch.push(p);
        }
        let Some(server) = server.upgrade() else {
            return;
        };
        server.metrics.proposals_pending.add(count as i64);
        in_flight.push(async move {
            server.write_batch(batch).await;
            server.metrics.proposals_pending.sub(count as i64);
        });
    }
}

/// After an entry: the leader sends a new commit index with its next entry, or alone after
/// `raft::COMMIT_DELAY`; when the proposer is `idle` (nothing in flight or queued, so no entry
/// is about to follow), it sends it to the followers now (they answer forwarded requests, and
/// their watchers hear of writes, once they apply).
async fn entry_done(server: &std::sync::Weak<EtcdServer>, idle: bool) {
    let Some(server) = server.upgrade().filter(|_| idle) else {
        return;
    };
    if server.is_leader() && server.has_peers() {
        let _ = server.raft.trigger().heartbeat().await;
    }
}

impl EtcdServer {
    /// Writes one proposer batch as one entry. Its waiters are registered under the entry's
    /// number, and the state machine answers them once it has applied the entry here
    /// (`waiters`); those still registered when the write returns are answered here.
    async fn write_batch(&self, batch: Vec<Pending>) {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let local = if batch
            .iter()
            .any(|p| matches!(p.waiter, Waiter::Forwarded(_)))
        {
            self.wait_transfer_gate().await;
            let (payload, number) = self.waiters.register(batch);
            let written = self.write_here(payload, deadline).await;
            let Some(batch) = self.waiters.take_own(number) else {
                return;
            };
            match written {
                Ok(f) => return answer(batch, Ok(f)),
                Err(_) => refuse_forwarded(batch, Instant::now() >= deadline),
            }
        } else {
            batch
        };
        if local.is_empty() {
            return;
        }
        let (payload, number) = self.waiters.register(local);
        let written = self.write_entry(payload, deadline).await;
        let Some(local) = self.waiters.take_own(number) else {
            return;
        };
        if written.is_err() {
            self.metrics.proposals_failed.inc();
        }
        answer(local, written);
    }

    /// Writes one raft entry and waits until it is applied here; returns the per-request results.
    /// On a follower the entry goes to the leader over the peer URL (clients never see
    /// "not leader"), and the answer waits until this member has applied it too.
    async fn write_entry(
        &self,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> Result<Forwarded, ServerError> {
        // The payload as forwarded: with request IDs, the same on every attempt.
        let mut forwarded: Option<Vec<u8>> = None;
        loop {
            self.wait_transfer_gate().await;
            // Once forwarded, every attempt uses the tagged payload, also here: this member may
            // have become the leader with the forwarded entry already in its log.
            let attempt = forwarded.as_ref().unwrap_or(&payload).clone();
            let named = match self.write_here(attempt, deadline).await {
                Ok(f) => return Ok(f),
                Err(named) => named,
            };
            let Some((leader, node)) = self.leader_to_ask(named, deadline).await? else {
                continue;
            };
            let tagged = forwarded.get_or_insert_with(|| self.tag_requests(&payload));
            let send = self
                .peers
                .forward(&node, tagged.clone(), remaining(deadline));
            match self
                .until_leader_changes(Some(leader), deadline, send)
                .await
            {
                Some(Ok(f)) => {
                    self.wait_applied(f.log_index, deadline).await?;
                    return Ok(f);
                }
                // The leader is stopping (a storage failure, a signal) and dropped the batch
                // unanswered: nothing it said is final. Its successor gets the same tagged
                // payload, applied at most once thanks to the request IDs.
                Some(Err(PeerError::Server(ServerError::Stopped))) if Instant::now() < deadline => {
                    self.wait_for_other_leader(Some(leader), deadline).await
                }
                Some(Err(PeerError::Server(e))) => return Err(e),
                Some(Err(e)) if Instant::now() >= deadline => return Err(e.into_server()),
                // Neither an answer nor a new leader before the deadline.
                None if Instant::now() >= deadline => return Err(ServerError::TimedOut),
                // Not applied, or applied at most once whatever happens (the requests carry
                // IDs): send it again once a leader is known, usually a new one.
                _ => self.wait_for_other_leader(Some(leader), deadline).await,
            }
        }
    }

    /// Writes an entry if this member is the leader. `Err(Some(leader))` names the leader to
    /// forward to; `Err(None)` means none is known yet. openraft only ever answers "forward to
    /// the leader" for an entry it did not append, or one a new leader's log replaced.
    async fn write_here(
        &self,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> Result<Forwarded, Option<u64>> {
        let write = self.raft.client_write(Proposal(payload));
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(resp)) => Ok(Forwarded {
                results: resp.data.responses,
                term: resp.log_id.leader_id.term,
                log_index: resp.log_id.index,
            }),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(f.leader_id.filter(|l| *l != self.member_id))
            }
            Ok(Err(e)) => {
                tracing::warn!("raft refused a write: {e}");
                Err(None)
            }
            Err(_) => Err(None),
        }
    }

    /// Gives every request of an encoded batch that has none a request ID, unique to this
    /// member's life, so the batch can be forwarded again after a failure without being
    /// applied twice (see `dedup`). An undecodable batch is returned as it is.
    fn tag_requests(&self, payload: &[u8]) -> Vec<u8> {
        let Ok(mut batch) = RaftBatch::decode(payload) else {
            return payload.to_vec();
        };
        for r in batch
            .requests
            .iter_mut()
            .filter(|r| r.request_id.is_empty())
        {
            let n = self
                .forward_ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r.request_id = format!("fwd-{:x}-{n:x}", self.member_id);
        }
        batch.encode_to_vec()
    }

    /// Where to send what this member could not do itself: the leader openraft named, with its
    /// node; or `None`, after waiting a moment for a leader to be known, to try again here.
    async fn leader_to_ask(
        &self,
        named: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<(u64, MemberNode)>, ServerError> {
        if let Some(found) = named.and_then(|l| self.leader_node(Some(l), None).map(|n| (l, n))) {
            return Ok(Some(found));
        }
        self.settle_leadership(deadline).await?;
        Ok(None)
    }

    /// Runs a call to `leader` until it answers, the deadline passes, or another leader is
    /// known (`None`): a call to a paused or partitioned old leader is then abandoned at once,
    /// as everything sent to the leader is safe to send again.
    pub(crate) async fn until_leader_changes<T>(
        &self,
        leader: Option<u64>,
        deadline: Instant,
        call: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let mut metrics = self.raft.server_metrics();
        let changed =
            metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != leader);
        tokio::select! {
            r = tokio::time::timeout_at(deadline, call) => r.ok(),
            _ = changed => None,
        }
    }

    /// Waits until a leader other than `old` is known, for at most a leader lease (a failed
    /// call to a live leader is tried again after that), or until `deadline`.
    pub(crate) async fn wait_for_other_leader(&self, old: Option<u64>, deadline: Instant) {
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let until = deadline.min(Instant::now() + lease);
        let mut metrics = self.raft.server_metrics();
        let changed = metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != old);
        let _ = tokio::time::timeout_at(until, changed).await;
    }

    /// The leader's node, from openraft's hint or else from the membership.
    pub(crate) fn leader_node(
        &self,
        id: Option<u64>,
        node: Option<MemberNode>,
    ) -> Option<MemberNode> {
        let id = id?;
        if id == self.member_id {
            return None;
        }
        node.or_else(|| self.member_node(id))
    }

    /// A member's node from the membership (see [`EtcdServer::has_peers`]).
    pub(crate) fn member_node(&self, id: u64) -> Option<MemberNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// The leader's node by ID, from the membership (for other modules).
    pub(crate) fn leader_node_of(&self, id: Option<u64>) -> Option<MemberNode> {
        self.leader_node(id, None)
    }

    /// When no leader is known (an election in progress, or a new leader whose vote is not
    /// committed yet): wait for one, or a moment if one is named, until `deadline`; etcd's
    /// "no leader" once it has passed.
    pub(crate) async fn settle_leadership(&self, deadline: Instant) -> Result<(), ServerError> {
        if Instant::now() >= deadline {
            return Err(match self.leader_id() {
                Some(_) => ServerError::TimedOut,
                None => ServerError::NoLeader,
            });
        }
        if self.leader_id().is_none() {
            let mut metrics = self.raft.server_metrics();
            let known = metrics.wait_for(|m| m.current_leader.is_some());
            let _ = tokio::time::timeout_at(deadline, known).await;
        } else {
            tokio::time::sleep(Duration::from_millis(20).min(remaining(deadline))).await;
        }
        Ok(())
    }

    /// Waits until this member has applied `index`. Raft's data metrics change with the log
    /// and the applied index only (its whole metrics after every command of the core).
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ServerError> {
        let mut data = self.raft.data_metrics();
        let applied = data.wait_for(|m| m.last_applied.is_some_and(|l| l.index >= index));
        let result = match tokio::time::timeout_at(deadline, applied).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::TimedOut),
        };
        result
    }
}

/// FNV-1a, 64 bit: a stable hash for deriving member and cluster IDs.
fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A member's ID, derived (as etcd does) from its peer URLs and the cluster token, so that every
/// member of a new cluster computes the same IDs for everyone. Never zero.
pub(crate) fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv64(&[joined.as_bytes(), token.as_bytes()]).max(1)
}

/// The ID of a member added at runtime (`member add`): its peer URLs, the cluster token and
/// the time (etcd's `NewMember` uses seconds; nanoseconds here, so a remove and add back within
/// a second still gets a new ID). The new member learns it from the cluster when it joins.
pub(crate) fn member_id_at(peer_urls: &[String], token: &str, unix_nanos: u64) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv64(&[
        joined.as_bytes(),
        token.as_bytes(),
        &unix_nanos.to_be_bytes(),
    ])
    .max(1)
}

/// The cluster ID, derived from the sorted member IDs of the initial cluster and its token.
pub(crate) fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    fnv64(&[&bytes, token.as_bytes()]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waiters::ProposalResult;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = member_id(&["http://127.0.0.1:2380".into()], "etcd-cluster");
        assert_eq!(
            a,
            member_id(&["http://127.0.0.1:2380".into()], "etcd-cluster")
        );
        assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "other"));
        assert_ne!(
            a,
            member_id(&["http://127.0.0.1:2381".into()], "etcd-cluster")
        );
        assert_eq!(cluster_id(&[2, 1], "t"), cluster_id(&[1, 2], "t"));
    }

    fn request(id: &str) -> InternalRaftRequest {
        InternalRaftRequest {
            request_id: id.into(),
            ..Default::default()
        }
    }

    type ForwardRx = oneshot::Receiver<Result<Forwarded, PeerError>>;

    /// Two local requests around a forwarded batch of three, as the leader's proposer takes
    /// them from its queue.
    fn mixed() -> (
        Vec<Pending>,
        oneshot::Receiver<ProposalResult>,
        ForwardRx,
        oneshot::Receiver<ProposalResult>,
    ) {
        let (a, a_rx) = oneshot::channel();
        let (f, f_rx) = oneshot::channel();
        let (b, b_rx) = oneshot::channel();
        let batch = vec![
            Pending {
                requests: vec![request("a")],
                size: 1,
                waiter: Waiter::Local(a),
            },
            Pending {
                requests: vec![request("f1"), request("f2"), request("f3")],
                size: 3,
                waiter: Waiter::Forwarded(f),
            },
            Pending {
                requests: vec![request("b")],
                size: 1,
                waiter: Waiter::Local(b),
            },
        ];
        (batch, a_rx, f_rx, b_rx)
    }

    #[test]
    fn one_entry_carries_local_and_forwarded_requests_in_queue_order() {
        let (batch, ..) = mixed();
        let waiters = Waiters::new(9, 1);
        let (payload, number) = waiters.register(batch);
        let decoded = RaftBatch::decode(payload.as_slice()).unwrap();
        let ids: Vec<_> = decoded
            .requests
            .iter()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "f1", "f2", "f3", "b"]);
        assert_eq!((decoded.proposer, decoded.proposal), (9, number));
        // Another member's entry with the same number is not this member's to answer.
        assert!(waiters.take(8, number).is_none());
        assert_eq!(waiters.take(9, number).map(|b| b.len()), Some(3));
        assert!(waiters.take_own(number).is_none());
    }

    #[test]
    fn each_waiter_gets_its_own_results() {
        let (batch, mut a, mut f, mut b) = mixed();
        let results = (0..5u8)
            .map(|i| {
                if i == 2 {
                    Err(ServerError::TimedOut)
                } else {
                    Ok(vec![i])
                }
            })
            .collect();
        answer(
            batch,
            Ok(Forwarded {
                results,
                term: 7,
                log_index: 42,
            }),
        );
        assert_eq!(a.try_recv().unwrap().unwrap(), (vec![0], 7));
        let f = f.try_recv().unwrap().unwrap();
        assert_eq!(
            f.results,
            vec![Ok(vec![1]), Err(ServerError::TimedOut), Ok(vec![3])]
        );
        assert_eq!((f.term, f.log_index), (7, 42));
        assert_eq!(b.try_recv().unwrap().unwrap(), (vec![4], 7));
    }

    #[test]
    fn a_failed_entry_refuses_forwarded_batches_and_keeps_local_requests() {
        let (batch, mut a, mut f, mut b) = mixed();
        let local = refuse_forwarded(batch, false);
        assert!(matches!(f.try_recv().unwrap(), Err(PeerError::NotLeader)));
        let ids: Vec<_> = local
            .iter()
            .flat_map(|p| &p.requests)
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        // Still waiting: they are proposed again.
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
        drop(local);

        // Past the deadline the entry may still be applied: nobody proposes it again.
        let (batch, mut a, mut f, _b) = mixed();
        assert!(refuse_forwarded(batch, true).is_empty());
        assert!(matches!(a.try_recv().unwrap(), Err(ServerError::TimedOut)));
        assert!(matches!(
            f.try_recv().unwrap(),
            Err(PeerError::Server(ServerError::TimedOut))
        ));
    }
}
