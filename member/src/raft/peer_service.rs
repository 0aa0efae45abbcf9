//! The peer URL's gRPC service: openraft's RPCs from other members, and the leader's side of
//! forwarded writes and read-index requests from followers.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use oxetcd_common::oxetcdpeerpb::raft_peer_server::RaftPeer;
use oxetcd_common::oxetcdpeerpb::{ForwardResponse, PeerMessage, ReadIndexResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::TypeConfig;
use crate::server::EtcdServer;

pub struct PeerService {
    server: Arc<EtcdServer>,
}

impl PeerService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
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

    fn reply<T: Serialize>(&self, v: &T) -> Result<Response<PeerMessage>, Status> {
        let data = bincode::serialize(v).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PeerMessage {
            cluster_id: self.server.cluster_id,
            data,
        }))
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.open(r)?;
        let res = self.server.raft.append_entries(req).await;
        self.reply(&res)
    }

    async fn vote(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let req: VoteRequest<u64> = self.open(r)?;
        let res = self.server.raft.vote(req).await;
        self.reply(&res)
    }

    async fn install_snapshot(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = self.open(r)?;
        let res = self.server.raft.install_snapshot(req).await;
        self.reply(&res)
    }

    async fn forward(&self, r: Request<PeerMessage>) -> Result<Response<ForwardResponse>, Status> {
        let payload: Vec<u8> = self.open(r)?;
        // Only the leader writes; a follower that forwarded to a stale leader retries.
        let (results, term, log_index) = self.server.write_entry_here(payload).await?;
        let results = bincode::serialize(&results).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardResponse {
            results,
            term,
            log_index,
        }))
    }

    async fn lease_clock(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let (id, renew): (i64, bool) = self.open(r)?;
        if !self.server.is_leader() {
            return Err(crate::server::no_leader());
        }
        let ttl = self.server.lease_clock_here(id, renew)?;
        self.reply(&ttl)
    }

    async fn change_membership(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let op: crate::membership::MembershipOp = self.open(r)?;
        let id = self.server.change_membership_here(op).await?;
        self.reply(&id)
    }

    async fn transfer(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let step: crate::leadership::TransferStep = self.open(r)?;
        self.server.transfer_step_here(step).await?;
        self.reply(&())
    }

    async fn removed(&self, r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let m = r.into_inner();
        if m.cluster_id != self.server.cluster_id {
            return Err(Status::permission_denied("member of another cluster"));
        }
        self.server.removed.send_replace(true);
        self.reply(&())
    }

    /// The cluster's ID and its members (ID, peer URLs) as applied here: a member joining
    /// with `--initial-cluster-state existing` finds its own ID (chosen by `member add`) by
    /// its peer URLs.
    async fn cluster_id(&self, _r: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let members: Vec<(u64, Vec<String>)> = self
            .server
            .read_state()?
            .membership
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.peer_urls.clone()))
            .collect();
        let data = bincode::serialize(&members).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PeerMessage {
            cluster_id: self.server.cluster_id,
            data,
        }))
    }

    async fn read_index(
        &self,
        r: Request<PeerMessage>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let () = self.open(r)?;
        let index = self.server.leader_read_index().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }
}
