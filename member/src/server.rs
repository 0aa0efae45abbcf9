//! The member's core: turns requests into raft proposals or local reads, and owns the member's
//! identity (member ID, cluster ID) and the response headers built from it.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use oxetcd_common::etcdserverpb::ResponseHeader;
use oxetcd_common::oxetcdpb::{internal_raft_request::Request, InternalRaftRequest, RaftBatch};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::apply::MemberState;
use crate::lease::Lessor;
use crate::metrics::Metrics;
use crate::mvcc::KvError;
use crate::raft::{MemberNode, Proposal, Raft};
use crate::storage::Storage;
use crate::watch::WatchHub;
use oxetcd_common::oxetcdpeerpb::raft_peer_client::RaftPeerClient;
use oxetcd_common::oxetcdpeerpb::PeerMessage;
use tonic::transport::Channel;

/// How long a request waits for a leader to be elected before giving up: etcd's request
/// timeout, 5 s plus two election timeouts (7 s with the default 1 s election timeout), long
/// enough for an election after a leader dies.
const LEADER_WAIT: Duration = Duration::from_secs(7);

/// Most requests one raft entry carries.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Most bytes one raft entry carries (a single request may still be up to --max-request-bytes).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The result a proposer hands back: encoded response and the entry's raft term.
type ProposalResult = Result<(Vec<u8>, u64), Status>;

/// A request waiting to be proposed.
pub struct Pending {
    request: InternalRaftRequest,
    size: usize,
    done: oneshot::Sender<ProposalResult>,
}

/// Limits checked before a request is proposed.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: i64,
}

pub struct EtcdServer {
    pub raft: Raft,
    pub state: Arc<RwLock<MemberState>>,
    pub storage: Storage,
    pub member_id: u64,
    pub cluster_id: u64,
    /// `--initial-cluster-token`: new members' IDs derive from it, as at bootstrap.
    pub cluster_token: String,
    pub limits: Limits,
    pub metrics: Metrics,
    pub lessor: Arc<Lessor>,
    pub watch_hub: WatchHub,
    /// Source of lease IDs (etcd's idutil: member ID bits on top, a counter below).
    pub lease_ids: std::sync::atomic::AtomicU64,
    /// Requests on their way to the proposer task (see [`run_proposer`]).
    pub proposals: mpsc::Sender<Pending>,
    /// Read barriers waiting for the next read-index round (see [`run_read_batcher`]).
    pub reads: mpsc::Sender<oneshot::Sender<Result<u64, Status>>>,
    /// Source of the request IDs a follower gives the requests it forwards (see
    /// `tag_requests`); starts from the time, so IDs differ across restarts.
    pub forward_ids: std::sync::atomic::AtomicU64,
    /// True while this leader hands leadership over: writes wait (see `leadership`).
    pub transferring: tokio::sync::watch::Sender<bool>,
    /// Bumped by every election hold a transferring leader asks of this member; a hold lifts
    /// itself only if no later one came.
    pub election_holds: Arc<std::sync::atomic::AtomicU64>,
    /// Set when the leader tells this member it was removed from the cluster: it shuts down.
    pub removed: tokio::sync::watch::Sender<bool>,
}

/// etcd's "no leader" error, returned while no leader can be found in time.
pub fn no_leader() -> Status {
    Status::unavailable("etcdserver: no leader")
}

impl EtcdServer {
    /// The read side of the state machine.
    pub fn read_state(&self) -> Result<RwLockReadGuard<'_, MemberState>, Status> {
        self.state
            .read()
            .map_err(|_| Status::internal("etcdserver: state machine lock poisoned"))
    }

    /// The current raft term, as this member sees it.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// A response header for this member at `revision`.
    pub fn header(&self, revision: i64, raft_term: u64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term,
        })
    }

    /// A fresh lease ID: the low 16 bits of the member ID on top, then a counter started from the
    /// clock, masked positive (etcd's scheme, so IDs from different members do not collide).
    pub fn next_lease_id(&self) -> i64 {
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

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.member_id)
    }

    /// The leader's lease clock, here: renew a lease (its granted TTL) or read its remaining
    /// TTL; `None` if there is no such lease.
    pub fn lease_clock_here(&self, id: i64, renew: bool) -> Result<Option<i64>, Status> {
        let exists = crate::mvcc::LeaseCheck::exists(&self.read_state()?.leases, id);
        if !exists {
            return Ok(None);
        }
        Ok(if renew {
            self.lessor.renew(id)
        } else {
            self.lessor.remaining(id)
        })
    }

    /// Asks the leader's lease clock (here or over the peer URL). Only the leader renews leases
    /// and decides expiry, so a follower's own clock is never the answer.
    pub async fn lease_clock(&self, id: i64, renew: bool) -> Result<Option<i64>, Status> {
        let mut waited = false;
        loop {
            let leader = self.raft.metrics().borrow().current_leader;
            if leader == Some(self.member_id) {
                return self.lease_clock_here(id, renew);
            }
            let Some(node) = self.leader_node(leader, None) else {
                if !waited && self.wait_for_leader().await {
                    waited = true;
                    continue;
                }
                return Err(no_leader());
            };
            let mut client = self.peer_client(&node)?;
            let data =
                bincode::serialize(&(id, renew)).map_err(|e| Status::internal(e.to_string()))?;
            let resp = client
                .lease_clock(PeerMessage {
                    cluster_id: self.cluster_id,
                    data,
                })
                .await;
            match resp {
                Ok(r) => {
                    return bincode::deserialize(&r.into_inner().data)
                        .map_err(|e| Status::internal(e.to_string()));
                }
                // A renewal is idempotent: retry once with the next leader.
                Err(_) if !waited && self.wait_for_new_leader(leader.unwrap_or_default()).await => {
                    waited = true;
                }
                Err(s) => return Err(Status::unavailable(format!("etcdserver: {}", s.message()))),
            }
        }
    }

    /// Renews a lease: its granted TTL, `None` if there is no such lease.
    pub async fn renew_lease(&self, id: i64) -> Result<Option<i64>, Status> {
        self.lease_clock(id, true).await
    }

    /// Waits (bounded) until some member is leader. Returns false on timeout.
    async fn wait_for_leader(&self) -> bool {
        self.raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "leader elected")
            .await
            .is_ok()
    }

    /// Proposes a request through raft and waits until it is applied on this member.
    /// Returns the encoded response and the term of the entry.
    pub async fn propose(&self, req: Request) -> Result<(Vec<u8>, u64), Status> {
        self.propose_once(req, String::new()).await
    }

    /// [`EtcdServer::propose`] with a client's request ID: if a request with this ID was
    /// applied already (the client sent it again after a failover), the first result comes
    /// back and nothing is applied twice (see `dedup`).
    pub async fn propose_once(
        &self,
        req: Request,
        request_id: String,
    ) -> Result<(Vec<u8>, u64), Status> {
        let request = InternalRaftRequest {
            request: Some(req),
            request_id,
        };
        let size = request.encoded_len();
        if size > self.limits.max_request_bytes {
            return Err(KvError::RequestTooLarge.into());
        }
        let (done, result) = oneshot::channel();
        self.proposals
            .send(Pending {
                request,
                size,
                done,
            })
            .await
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
        result
            .await
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))?
    }

    /// Linearizable read barrier: confirms leadership with a quorum and waits until this member
    /// has applied everything committed before the read started.
    /// Linearizable read barrier: confirms leadership with a quorum and waits until this member
    /// has applied everything committed before the read started. Concurrent barriers share one
    /// round (see [`run_read_batcher`]), as etcd's read loop coalesces read-index requests.
    pub async fn read_barrier(&self) -> Result<(), Status> {
        self.read_index().await.map(|_| ())
    }

    /// Like [`EtcdServer::read_barrier`], returning the read index (applied here).
    pub async fn read_index(&self) -> Result<u64, Status> {
        let (done, result) = oneshot::channel();
        self.reads
            .send(done)
            .await
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
        result
            .await
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))?
    }

    /// One read-index round: on the leader, openraft's quorum check; on a follower, the
    /// leader's read index, then wait until it is applied here.
    async fn read_index_round(&self) -> Result<u64, Status> {
        use openraft::error::CheckIsLeaderError;
        let mut waited = false;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match self.raft.ensure_linearizable().await {
                Ok(read) => return Ok(read.map(|l| l.index).unwrap_or(0)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    if let Some(node) = self.leader_node(f.leader_id, f.leader_node) {
                        match self.read_index_from(&node).await {
                            // A read is always safe to retry with the next leader.
                            Err(s) if !waited => {
                                waited = true;
                                if self
                                    .wait_for_new_leader(f.leader_id.unwrap_or_default())
                                    .await
                                {
                                    continue;
                                }
                                return Err(s);
                            }
                            other => return other,
                        }
                    }
                    if self.settle_leadership(deadline).await {
                        continue;
                    }
                    return Err(no_leader());
                }
                Err(e) => return Err(Status::unavailable(format!("etcdserver: {e}"))),
            }
        }
    }

    async fn read_index_from(&self, leader: &MemberNode) -> Result<u64, Status> {
        let mut client = self.peer_client(leader)?;
        let data = bincode::serialize(&()).map_err(|e| Status::internal(e.to_string()))?;
        let index = client
            .read_index(PeerMessage {
                cluster_id: self.cluster_id,
                data,
            })
            .await
            .map_err(|s| {
                Status::unavailable(format!(
                    "etcdserver: read index from the leader failed: {}",
                    s.message()
                ))
            })?
            .into_inner()
            .index;
        self.wait_applied(index).await?;
        Ok(index)
    }
}

/// The read batcher: each round serves every barrier queued before it started, so a burst of
/// linearizable reads costs one quorum round (or one ReadIndex call from a follower), not one
/// each. A barrier queued during a round waits for the next round, which starts after it.
pub async fn run_read_batcher(
    server: std::sync::Weak<EtcdServer>,
    mut rx: mpsc::Receiver<oneshot::Sender<Result<u64, Status>>>,
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

/// How forwarding a write to the leader failed.
pub enum Forward {
    /// The leader was never reached, or it answered it is not the leader: nothing was applied,
    /// retrying is safe.
    NotSent(Status),
    /// The connection broke with the request in flight: it may have been applied. Every
    /// forwarded request carries a request ID the cluster applies once, so sending it again
    /// (to the new leader) is safe too.
    Lost(Status),
    /// The leader answered with an error, or this member could not catch up: final.
    Failed(Status),
}

/// What a member that is not (or no longer) the leader answers a forwarded entry: nothing was
/// written, the follower tries the new leader.
pub const NOT_LEADER_FORWARD: &str = "etcdserver: forwarded to a member that is not the leader";

/// Did a peer call fail before the request could leave this member?
fn never_connected(s: &Status) -> bool {
    let msg = s.message();
    s.code() == tonic::Code::Unavailable
        && (msg.contains("tcp connect error")
            || msg.contains("Connection refused")
            || msg.contains("client error (Connect)"))
}

/// The proposer task: turns queued requests into raft entries. It takes every request queued
/// while the previous entry was in flight (bounded by count and bytes) and proposes them as one
/// entry, applied in order. openraft 0.9 writes and syncs one entry's log I/O before starting
/// the next, so this is where write throughput comes from: one fsync per batch, not per request.
pub async fn run_proposer(server: std::sync::Weak<EtcdServer>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let Some(server) = server.upgrade() else {
            return;
        };
        let (requests, waiters): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.request, p.done)).unzip();
        let payload = RaftBatch { requests }.encode_to_vec();
        match server.write_entry(payload).await {
            Ok((responses, term)) => {
                let mut responses = responses.into_iter();
                for w in waiters {
                    let r = match responses.next() {
                        Some(Ok(b)) => Ok((b, term)),
                        Some(Err(e)) => Err(e.into()),
                        None => Err(Status::internal(
                            "etcdserver: entry applied without a result",
                        )),
                    };
                    let _ = w.send(r);
                }
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    }
}

impl EtcdServer {
    /// Writes one raft entry and waits until it is applied here; returns the per-request results.
    /// On a follower the entry goes to the leader over the peer URL (clients never see
    /// "not leader"), and the answer waits until this member has applied it too.
    async fn write_entry(
        &self,
        payload: Vec<u8>,
    ) -> Result<(Vec<Result<Vec<u8>, KvError>>, u64), Status> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        // A lost forward is sent again once a leader change had time to show.
        let retry_wait = Duration::from_millis(self.raft.config().election_timeout_max);
        // The payload as forwarded: with request IDs, the same on every attempt.
        let mut forwarded: Option<Vec<u8>> = None;
        loop {
            self.wait_transfer_gate().await;
            // Once forwarded, every attempt uses the tagged payload, also here: this member may
            // have become the leader with the forwarded entry already in its log.
            let attempt = forwarded.as_ref().unwrap_or(&payload).clone();
            match self.raft.client_write(Proposal(attempt)).await {
                Ok(resp) => {
                    self.metrics.proposals_committed.inc();
                    return Ok((resp.data.responses, resp.log_id.leader_id.term));
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let Some(node) = self.leader_node(f.leader_id, f.leader_node) {
                        let tagged = forwarded.get_or_insert_with(|| self.tag_requests(&payload));
                        match self.forward_to_leader(&node, tagged.clone()).await {
                            // Not applied, or applied at most once whatever happens (the
                            // requests carry IDs): try again once a leader is known, which after
                            // a failure is usually a new one.
                            Err(Forward::NotSent(s) | Forward::Lost(s)) => {
                                let old = f.leader_id.unwrap_or_default();
                                let now = tokio::time::Instant::now();
                                if now < deadline {
                                    let _ = self
                                        .wait_for_new_leader_until(
                                            old,
                                            deadline.min(now + retry_wait),
                                        )
                                        .await;
                                    continue;
                                }
                                self.metrics.proposals_failed.inc();
                                return Err(s);
                            }
                            Err(Forward::Failed(s)) => return Err(s),
                            Ok(r) => return Ok(r),
                        }
                    }
                    if self.settle_leadership(deadline).await {
                        continue;
                    }
                    self.metrics.proposals_failed.inc();
                    return Err(no_leader());
                }
                Err(e) => {
                    self.metrics.proposals_failed.inc();
                    return Err(Status::unavailable(format!("etcdserver: {e}")));
                }
            }
        }
    }

    /// The leader's side of a forwarded entry: write it here (never forward again).
    pub async fn write_entry_here(
        &self,
        payload: Vec<u8>,
    ) -> Result<(Vec<Result<Vec<u8>, KvError>>, u64, u64), Status> {
        self.wait_transfer_gate().await;
        match self.raft.client_write(Proposal(payload)).await {
            Ok(resp) => {
                self.metrics.proposals_committed.inc();
                Ok((
                    resp.data.responses,
                    resp.log_id.leader_id.term,
                    resp.log_id.index,
                ))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(Status::failed_precondition(NOT_LEADER_FORWARD))
            }
            Err(e) => Err(Status::unavailable(format!("etcdserver: {e}"))),
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

    async fn forward_to_leader(
        &self,
        leader: &MemberNode,
        payload: Vec<u8>,
    ) -> Result<(Vec<Result<Vec<u8>, KvError>>, u64), Forward> {
        let mut client = self.peer_client(leader).map_err(Forward::NotSent)?;
        let data = bincode::serialize(&payload)
            .map_err(|e| Forward::NotSent(Status::internal(e.to_string())))?;
        let resp = client
            .forward(PeerMessage {
                cluster_id: self.cluster_id,
                data,
            })
            .await
            .map_err(|s| {
                let status = Status::unavailable(format!(
                    "etcdserver: forwarding to the leader failed: {}",
                    s.message()
                ));
                if never_connected(&s) || s.message() == NOT_LEADER_FORWARD {
                    Forward::NotSent(status)
                } else if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) {
                    Forward::Lost(status)
                } else {
                    self.metrics.proposals_failed.inc();
                    Forward::Failed(status)
                }
            })?
            .into_inner();
        let results: Vec<Result<Vec<u8>, KvError>> = bincode::deserialize(&resp.results)
            .map_err(|e| Forward::Failed(Status::internal(e.to_string())))?;
        self.wait_applied(resp.log_index)
            .await
            .map_err(Forward::Failed)?;
        Ok((results, resp.term))
    }

    /// Waits (bounded) until a leader other than `old` is known.
    async fn wait_for_new_leader(&self, old: u64) -> bool {
        self.wait_for_new_leader_until(old, tokio::time::Instant::now() + LEADER_WAIT)
            .await
    }

    /// Waits until a leader other than `old` is known, or `until`.
    async fn wait_for_new_leader_until(&self, old: u64, until: tokio::time::Instant) -> bool {
        self.raft
            .wait(Some(
                until.saturating_duration_since(tokio::time::Instant::now()),
            ))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != Some(old),
                "new leader elected",
            )
            .await
            .is_ok()
    }

    /// The leader's node, from openraft's hint or else from the applied membership.
    fn leader_node(&self, id: Option<u64>, node: Option<MemberNode>) -> Option<MemberNode> {
        let id = id?;
        if id == self.member_id {
            return None;
        }
        node.or_else(|| {
            self.read_state()
                .ok()?
                .membership
                .membership()
                .get_node(&id)
                .cloned()
        })
    }

    /// When openraft says "not leader" but names no other member (an election in progress, or a
    /// new leader whose vote is not committed yet): wait for a leader or a moment, until
    /// `deadline`. False once the deadline has passed.
    pub async fn settle_leadership(&self, deadline: tokio::time::Instant) -> bool {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        if self.raft.metrics().borrow().current_leader.is_none() {
            let _ = tokio::time::timeout_at(deadline, self.wait_for_leader()).await;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The leader's node by ID, from the applied membership (for other modules).
    pub fn leader_node_of(&self, id: Option<u64>) -> Option<MemberNode> {
        self.leader_node(id, None)
    }

    pub fn peer_client_of(&self, node: &MemberNode) -> Result<RaftPeerClient<Channel>, Status> {
        self.peer_client(node)
    }

    /// A gRPC client for a member's peer URL.
    fn peer_client(&self, node: &MemberNode) -> Result<RaftPeerClient<Channel>, Status> {
        let url = node
            .peer_urls
            .first()
            .ok_or_else(|| Status::unavailable("etcdserver: leader has no peer URL"))?;
        let ch = crate::raft::peer_channel(url).map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(RaftPeerClient::new(ch).max_decoding_message_size(usize::MAX))
    }

    /// Waits (bounded) until this member has applied `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), Status> {
        self.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(Some(index), "applied forwarded entry")
            .await
            .map(|_| ())
            .map_err(|_| {
                Status::unavailable("etcdserver: request timed out, waiting for the applied index")
            })
    }

    /// On the leader: a read index (confirmed with a quorum, applied here), for a follower.
    pub async fn leader_read_index(&self) -> Result<u64, Status> {
        if !self.is_leader() {
            return Err(no_leader());
        }
        self.read_index().await
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
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv64(&[joined.as_bytes(), token.as_bytes()]).max(1)
}

/// The ID of a member added at runtime (`member add`): its peer URLs, the cluster token and
/// the time (etcd's `NewMember` uses seconds; nanoseconds here, so a remove and add back within
/// a second still gets a new ID). The new member learns it from the cluster when it joins.
pub fn member_id_at(peer_urls: &[String], token: &str, unix_nanos: u64) -> u64 {
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
pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    fnv64(&[&bytes, token.as_bytes()]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
