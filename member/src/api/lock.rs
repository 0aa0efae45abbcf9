//! v3lockpb.Lock: a mutex per name, held by a lease.

use std::sync::Arc;

use oxetcd_common::v3lockpb::lock_server::Lock;
use oxetcd_common::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::error::from_recipe;
use crate::auth::Access::{Read, Write};
use crate::concurrency::{self, Abandon, Actor};
use crate::identity::Credentials;
use crate::server::EtcdServer;

pub(super) struct LockService {
    server: Arc<EtcdServer>,
}

impl LockService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let name = &request.get_ref().name;
        let who = super::permit_contenders(&self.server, &request, name, &[Read, Write]).await?;
        let actor = Actor::Client(who.as_ref());
        let req = request.into_inner();
        let key = concurrency::contender_key(&req.name, req.lease);
        let (rev, _) = concurrency::create_or_get(&self.server, actor, &key, b"", req.lease)
            .await
            .map_err(from_recipe)?;
        let guard = Abandon::new(self.server.clone(), key.clone(), rev);
        let current =
            concurrency::wait_until_owner(&self.server, &concurrency::prefix(&req.name), &key, rev)
                .await?;
        guard.keep();
        Ok(Response::new(LockResponse {
            header: self.server.header(current, self.server.term()),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let who = Credentials::of(&self.server, &request)
            .require(&self.server, |auth, who| {
                auth.check(who, &request.get_ref().key, &[], Write)
            })
            .await
            .map_err(super::error::as_plain_error)?;
        let req = request.into_inner();
        let actor = Actor::Client(who.as_ref());
        let header = concurrency::delete_if_owner(&self.server, actor, &req.key, None)
            .await
            .map_err(from_recipe)?;
        Ok(Response::new(UnlockResponse { header }))
    }
}
