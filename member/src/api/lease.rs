//! etcdserverpb.Lease: grant and revoke go through raft; keep-alive, time-to-live and the list
//! are answered from the leader's lease clock and the applied lease table.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxetcd_common::etcdserverpb::lease_server::Lease;
use oxetcd_common::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use oxetcd_common::oxetcdpb::internal_raft_request::Request as Proposal;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::request_id;
use crate::identity::Credentials;
use crate::lease::MAX_LEASE_TTL;
use crate::mvcc::KvError;
use crate::server::EtcdServer;

pub(super) struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let id = request_id(&request);
        let who = Credentials::of(&self.server, &request)
            .who(&self.server)
            .await?;
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge.into());
        }
        req.ttl = req.ttl.max(self.server.lessor.min_ttl);
        if req.id == 0 {
            req.id = self.server.next_lease_id();
        }
        self.server.check_quota(crate::quota::LEASE_COST).await?;
        let (bytes, term) = self
            .server
            .propose_for(Proposal::LeaseGrant(req), id, who.as_ref())
            .await?;
        let mut resp = LeaseGrantResponse::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("etcdserver: bad apply result: {e}")))?;
        resp.header = self
            .server
            .header(resp.header.map(|h| h.revision).unwrap_or_default(), term);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let id = request_id(&request);
        let who = Credentials::of(&self.server, &request)
            .who(&self.server)
            .await?;
        let req = request.into_inner();
        let (bytes, term) = self
            .server
            .propose_for(Proposal::LeaseRevoke(req), id, who.as_ref())
            .await?;
        let mut resp = LeaseRevokeResponse::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("etcdserver: bad apply result: {e}")))?;
        resp.header = self
            .server
            .header(resp.header.map(|h| h.revision).unwrap_or_default(), term);
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let metadata = request.metadata().clone();
        let answers = Box::pin(keep_alive(self.server.clone(), request.into_inner()));
        let answers = super::require_leader::watched(&self.server, &metadata, answers);
        Ok(Response::new(answers))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let creds = Credentials::of(&self.server, &request);
        let req = request.into_inner();
        self.server.read_barrier().await?;
        let who = creds.who(&self.server).await?.unwrap_or_default();
        let (rev, lease) = {
            let st = self.server.read_state()?;
            let lease = st.leases.get(req.id).cloned();
            if let (Some(l), true) = (&lease, req.keys) {
                let keys: Vec<Vec<u8>> = l.keys.iter().cloned().collect();
                st.auth.check_read_keys(&who, &keys)?;
            }
            (st.mvcc.current_rev(), lease)
        };
        let header = self.server.header(rev, self.server.term());
        let Some(lease) = lease else {
            // etcd answers an unknown (expired) lease with TTL -1, not an error.
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let remaining = self
            .server
            .lease_clock(req.id, false)
            .await?
            .unwrap_or(lease.ttl);
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: remaining,
            granted_ttl: lease.ttl,
            keys: if req.keys {
                lease.keys.into_iter().collect()
            } else {
                Vec::new()
            },
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.server.read_barrier().await?;
        let (rev, leases) = {
            let st = self.server.read_state()?;
            (
                st.mvcc.current_rev(),
                st.leases.ids().map(|id| LeaseStatus { id }).collect(),
            )
        };
        Ok(Response::new(LeaseLeasesResponse {
            header: self.server.header(rev, self.server.term()),
            leases,
        }))
    }
}

/// A keep-alive stream: each request renews its lease (on the leader's clock) and is answered
/// with the TTL. `requests` is a gRPC stream's messages or the HTTP gateway's JSON objects.
///
/// The answers are computed as the response stream is polled, in the connection's task: on the
/// leader a renewal is a clock update, and a task and channel per stream cost a wake-up per
/// keep-alive. The stream ends after its first error.
pub(super) fn keep_alive(
    server: Arc<EtcdServer>,
    requests: impl Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Unpin + Send + 'static,
) -> impl Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static {
    futures::stream::unfold(Some(requests), move |requests| {
        let server = server.clone();
        async move {
            let mut requests = requests?;
            let Some(Ok(req)) = futures::StreamExt::next(&mut requests).await else {
                return None;
            };
            match server.renew_lease(req.id).await {
                Ok(ttl) => {
                    let rev = server
                        .read_state()
                        .map(|s| s.mvcc.current_rev())
                        .unwrap_or_default();
                    let resp = LeaseKeepAliveResponse {
                        header: server.header(rev, server.term()),
                        id: req.id,
                        // An unknown lease answers TTL 0, as etcd does.
                        ttl: ttl.unwrap_or(0),
                    };
                    Some((Ok(resp), Some(requests)))
                }
                Err(e) => Some((Err(e.into()), None)),
            }
        }
    })
}
