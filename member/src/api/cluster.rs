//! etcdserverpb.Cluster: the member list comes from the raft membership.

use std::sync::Arc;

use oxetcd_common::etcdserverpb::cluster_server::Cluster;
use oxetcd_common::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::identity::Credentials;
use crate::membership::MembershipOp;
use crate::server::EtcdServer;

pub(super) struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }

    fn members(&self) -> Result<Vec<Member>, Status> {
        let state = self.server.read_state()?;
        Ok(state
            .members()
            .into_iter()
            .map(|m| Member {
                id: m.id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect())
    }
}

impl ClusterService {
    fn header(&self) -> Option<oxetcd_common::etcdserverpb::ResponseHeader> {
        self.server.header(0, self.server.term())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        // Membership changes are root only (etcd checks at the API, before raft).
        Credentials::of(&self.server, &r)
            .require_admin(&self.server)
            .await?;
        let req = r.into_inner();
        let op = MembershipOp::Add {
            peer_urls: req.peer_ur_ls.clone(),
            learner: req.is_learner,
        };
        let id = self.server.change_membership(op).await?;
        // Read the list after the change is applied here.
        self.server.read_barrier().await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(Member {
                id,
                name: String::new(),
                peer_ur_ls: req.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.members()?,
        }))
    }

    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        // Membership changes are root only (etcd checks at the API, before raft).
        Credentials::of(&self.server, &r)
            .require_admin(&self.server)
            .await?;
        let id = r.into_inner().id;
        self.server
            .change_membership(MembershipOp::Remove { id })
            .await?;
        self.server.read_barrier().await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        // Membership changes are root only (etcd checks at the API, before raft).
        Credentials::of(&self.server, &r)
            .require_admin(&self.server)
            .await?;
        let req = r.into_inner();
        let op = MembershipOp::Update {
            id: req.id,
            peer_urls: req.peer_ur_ls,
        };
        self.server.change_membership(op).await?;
        self.server.read_barrier().await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.server.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_promote(
        &self,
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Membership changes are root only (etcd checks at the API, before raft).
        Credentials::of(&self.server, &r)
            .require_admin(&self.server)
            .await?;
        let id = r.into_inner().id;
        self.server
            .change_membership(MembershipOp::Promote { id })
            .await?;
        self.server.read_barrier().await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }
}
