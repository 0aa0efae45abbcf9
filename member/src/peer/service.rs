//! The answering half of the peer protocol: openraft's RPCs from other members, and the
//! leader's side of what followers ask of it. A leader never passes a peer's request on to
//! another member: a follower that asked a stale leader hears `NotLeader` and asks the new one
//! itself, so no two members can end up waiting on each other.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use oxetcd_common::oxetcdpeerpb::raft_peer_server::RaftPeer;
use oxetcd_common::oxetcdpeerpb::PeerMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::PeerError;
use crate::leadership::TransferStep;
use crate::membership::MembershipOp;
use crate::raft::TypeConfig;
use crate::server::EtcdServer;

pub(crate) struct PeerService {
    server: Arc<EtcdServer>,
}

impl PeerService {
    pub(crate) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }

    /// Decodes a peer message, refusing members of another cluster.
    fn open<T: DeserializeOwned>(&self, r: Request<PeerMessage>) -> Result<T, Status> {
        let m = r.into_inner();
        if m.cluster_id != self.server.cluster_id {
            return Err(Status::permission_denied(format!(
                "member of cluster {:x} refused by cluster {:x}",
                m.cluster_id, self.server.cluster_id
            )));
        }
        bincode::deserialize(&m.data)
            .map_err(|e| Status::invalid_argument(format!("bad peer message: {e}")))
    }

    /// Counts a raft message from the member that sent it (`vote` names it: the leader of an
    /// append or snapshot, the candidate of a vote), and returns that member's label.
    fn received(&self, vote: &openraft::Vote<u64>, size: usize) -> String {
        let from = format!("{:x}", vote.leader_id().voted_for().unwrap_or_default());
        let m = &self.server.metrics.peer.received_bytes;
        m.with_label_values(&[&from]).inc_by(size as u64);
        from
    }

    /// A raft answer to `to`, counted as sent to it.
    fn reply_to<T: Serialize>(&self, to: &str, v: &T) -> Result<Response<PeerMessage>, Status> {
        let resp = self.reply(v)?;
        let m = &self.server.metrics.peer.sent_bytes;
        m.with_label_values(&[to])
            .inc_by(resp.get_ref().data.len() as u64);
        Ok(resp)
    }

    fn reply<T: Serialize>(&self, v: &T) -> Result<Response<PeerMessage>, Status> {
        let data = bincode::serialize(v).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PeerMessage {
            cluster_id: self.server.cluster_id,
            data,
        }))
    }

    /// An answer to one of our own calls: `Result<T, PeerError>`.
    fn answer<T: Serialize>(
        &self,
        result: Result<T, PeerError>,
    ) -> Result<Response<PeerMessage>, Status> {
        self.reply(&result)
    }
}

/// The answers of one `AppendStream` call.
type Appends = Pin<Box<dyn Stream<Item = Result<PeerMessage, Status>> + Send>>;

impl PeerService {
    async fn append(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let size = r.get_ref().data.len();
        let req: AppendEntriesRequest<TypeConfig> = self.open(r)?;
        let from = self.received(&req.vote, size);
        let res = self.server.raft.append_entries(req).await;
        if matches!(&res, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
        {
            self.server.elections.heard_from_leader();
        }
        self.reply_to(&from, &res)
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        self.append(r).await
    }

    type AppendStreamStream = Appends;

    /// Each append is handled as the answer stream is polled for its answer, in the call's
    /// own task: no task of its own, and the next message is read only once the previous one
    /// is answered.
    async fn append_stream(
        &self,
        r: Request<Streaming<PeerMessage>>,
    ) -> Result<Response<Appends>, Status> {
        let this = PeerService::new(self.server.clone());
        let appends = r.into_inner();
        let answers = futures::stream::unfold(Some((this, appends)), |state| async move {
            let (this, mut appends) = state?;
            let m = appends.message().await.ok().flatten()?;
            match this.append(Request::new(m)).await {
                Ok(answer) => Some((Ok(answer.into_inner()), Some((this, appends)))),
                // An error status ends the call: nothing more is read.
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn vote(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let size = r.get_ref().data.len();
        let req: VoteRequest<u64> = self.open(r)?;
        let from = self.received(&req.vote, size);
        let res = self.server.raft.vote(req).await;
        self.reply_to(&from, &res)
    }

    async fn install_snapshot(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let size = r.get_ref().data.len();
        let req: InstallSnapshotRequest<TypeConfig> = self.open(r)?;
        let from = self.received(&req.vote, size);
        let res = self.server.raft.install_snapshot(req).await;
        if res.is_ok() {
            self.server.elections.heard_from_leader();
        }
        self.reply_to(&from, &res)
    }

    async fn forward(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let payload: Vec<u8> = self.open(r)?;
        self.answer(self.server.write_forwarded(payload).await)
    }

    async fn read_index(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let () = self.open(r)?;
        self.answer(self.server.read_index_here().await)
    }

    async fn lease_clock(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let (ids, renew): (Vec<i64>, bool) = self.open(r)?;
        let result = if self.server.is_leader() {
            ids.iter()
                .map(|id| self.server.lease_clock_here(*id, renew))
                .collect::<Result<Vec<_>, _>>()
                .map_err(PeerError::Server)
        } else {
            Err(PeerError::NotLeader)
        };
        self.answer(result)
    }

    async fn change_membership(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let op: MembershipOp = self.open(r)?;
        self.answer(self.server.change_membership_here(op).await)
    }

    async fn transfer(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let step: TransferStep = self.open(r)?;
        let result = self.server.transfer_step_here(step).await;
        self.answer(result.map_err(PeerError::Server))
    }

    async fn pre_vote(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let req: crate::raft::election::PreVoteRequest = self.open(r)?;
        let yes = self.server.elections.grants(&self.server, &req);
        self.answer(Ok(yes))
    }

    async fn removed(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let () = self.open(r)?;
        self.server.removed.send_replace(true);
        self.answer(Ok(()))
    }

    /// This member's HashKV at the asker's revision, once it has applied that far (a
    /// moment at most: a follower is rarely far behind the leader asking).
    async fn hash_kv(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let rev: i64 = self.open(r)?;
        let result = crate::corrupt::answer_peer(&self.server, rev)
            .await
            .map_err(PeerError::Server);
        self.answer(result)
    }

    /// The cluster's ID and its members (ID, peer URLs) as applied here: a member joining
    /// with `--initial-cluster-state existing` finds its own ID (chosen by `member add`) by
    /// its peer URLs. Answered to anyone: the asker does not know the cluster ID yet.
    async fn cluster_id(&self, _r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let members = self.server.read_state().map(|s| {
            s.membership
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.peer_urls.clone()))
                .collect::<Vec<_>>()
        });
        let result = members
            .map(|m| (self.server.cluster_id, m))
            .map_err(PeerError::Server);
        self.answer(result)
    }
}
