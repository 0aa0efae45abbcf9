//! etcdserverpb.Cluster: the member list comes from the raft membership.

use std::sync::Arc;

use oxetcd_common::etcdserverpb::cluster_server::Cluster;
use oxetcd_common::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }

    fn members(&self) -> Result<Vec<Member>, Status> {
        let state = self.server.read_state()?;
        let membership = state.membership.membership();
        let learners: Vec<u64> = membership.learner_ids().collect();
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                // Published attributes win: they are what the member itself announced.
                let (name, client_urls) = state
                    .attributes
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| (node.name.clone(), node.client_urls.clone()));
                Member {
                    id: *id,
                    name,
                    peer_ur_ls: node.peer_urls.clone(),
                    client_ur_ls: client_urls,
                    is_learner: learners.contains(id),
                }
            })
            .collect())
    }

    /// Membership changes arrive with multi-member clusters; until then say so plainly.
    fn not_yet(what: &str) -> Status {
        Status::unimplemented(format!(
            "etcdserver: {what} is not supported by this oxetcd version yet"
        ))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Self::not_yet("member add"))
    }

    async fn member_remove(
        &self,
        _r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Self::not_yet("member remove"))
    }

    async fn member_update(
        &self,
        _r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Self::not_yet("member update"))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.server.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.server.header(0, self.server.term()),
            members: self.members()?,
        }))
    }

    async fn member_promote(
        &self,
        _r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Self::not_yet("member promote"))
    }
}
