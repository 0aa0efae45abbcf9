//! v3electionpb.Election: campaign, proclaim, leader, observe, resign.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxetcd_common::v3electionpb::election_server::Election;
use oxetcd_common::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::error::from_recipe;
use crate::auth::Access::{Read, Write};
use crate::concurrency::{self, Abandon, Actor};
use crate::server::EtcdServer;

// etcd returns its concurrency package's plain errors, which gRPC reports as code Unknown.
fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn no_leader() -> Status {
    Status::unknown("election: no leader")
}

fn missing_leader_key() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

pub(super) struct ElectionService {
    server: Arc<EtcdServer>,
}

impl ElectionService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let name = &request.get_ref().name;
        let who = super::permit_contenders(&self.server, &request, name, &[Read, Write]).await?;
        let actor = Actor::Client(who.as_ref());
        let req = request.into_inner();
        let key = concurrency::contender_key(&req.name, req.lease);
        let (rev, existing) =
            concurrency::create_or_get(&self.server, actor, &key, &req.value, req.lease)
                .await
                .map_err(from_recipe)?;
        let guard = Abandon::new(self.server.clone(), key.clone(), rev);
        if let Some(kv) = existing {
            if kv.value != req.value {
                concurrency::put_if_owner(&self.server, actor, &key, rev, &req.value, req.lease)
                    .await
                    .map_err(from_recipe)?;
            }
        }
        let current =
            concurrency::wait_until_owner(&self.server, &concurrency::prefix(&req.name), &key, rev)
                .await?;
        guard.keep();
        Ok(Response::new(CampaignResponse {
            header: self.server.header(current, self.server.term()),
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev,
                lease: req.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let name = request.get_ref().leader.as_ref().map(|l| l.name.clone());
        let name = name.ok_or_else(missing_leader_key)?;
        let who = super::permit_contenders(&self.server, &request, &name, &[Write]).await?;
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(missing_leader_key)?;
        let (ok, header) = concurrency::put_if_owner(
            &self.server,
            Actor::Client(who.as_ref()),
            &leader.key,
            leader.rev,
            &req.value,
            leader.lease,
        )
        .await
        .map_err(from_recipe)?;
        if !ok {
            return Err(not_leader());
        }
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let name = &request.get_ref().name;
        super::permit_contenders(&self.server, &request, name, &[Read]).await?;
        let req = request.into_inner();
        self.server.read_barrier().await?;
        let (kv, current) = concurrency::owner(&self.server, &concurrency::prefix(&req.name))?;
        let kv = kv.ok_or_else(no_leader)?;
        Ok(Response::new(LeaderResponse {
            header: self.server.header(current, self.server.term()),
            kv: Some(kv),
        }))
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let name = &request.get_ref().name;
        super::permit_contenders(&self.server, &request, name, &[Read]).await?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        let server = self.server.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let prefix = concurrency::prefix(&req.name);
            let mut feed = server.watch_hub.subscribe();
            // Sent: (key, mod revision) of the last leader value the observer saw.
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                let resp = match concurrency::owner(&server, &prefix) {
                    Ok((Some(kv), current)) => {
                        let seen = (kv.key.clone(), kv.mod_revision);
                        if last.as_ref() == Some(&seen) {
                            None
                        } else {
                            last = Some(seen);
                            Some(Ok(LeaderResponse {
                                header: server.header(current, server.term()),
                                kv: Some(kv),
                            }))
                        }
                    }
                    Ok((None, _)) => None,
                    Err(e) => Some(Err(e.into())),
                };
                if let Some(resp) = resp {
                    let failed = resp.is_err();
                    if tx.send(resp).await.is_err() || failed {
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    msg = feed.recv() => if let Err(RecvError::Closed) = msg { return },
                }
            }
        });
        let answers = Box::pin(ReceiverStream::new(rx));
        let answers = super::require_leader::watched(&self.server, &metadata, answers);
        Ok(Response::new(answers))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let name = request.get_ref().leader.as_ref().map(|l| l.name.clone());
        let name = name.ok_or_else(missing_leader_key)?;
        let who = super::permit_contenders(&self.server, &request, &name, &[Write]).await?;
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(missing_leader_key)?;
        // Only while it still holds the leadership it was given (etcd's Resign compares).
        let actor = Actor::Client(who.as_ref());
        let header =
            concurrency::delete_if_owner(&self.server, actor, &leader.key, Some(leader.rev))
                .await
                .map_err(from_recipe)?;
        Ok(Response::new(ResignResponse { header }))
    }
}
