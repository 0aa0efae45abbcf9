//! etcdserverpb.Watch: one task per stream (see `crate::watch::stream`).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxetcd_common::etcdserverpb::watch_server::Watch;
use oxetcd_common::etcdserverpb::{WatchRequest, WatchResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::identity::Credentials;
use crate::server::EtcdServer;

/// Responses queued per stream before the stream task waits for the client (then the stream
/// lags and catches up from the store: writers never wait for a watcher).
const STREAM_BUFFER: usize = 128;

pub(super) struct WatchService {
    server: Arc<EtcdServer>,
}

impl WatchService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let creds = Credentials::of(&self.server, &request);
        let metadata = request.metadata().clone();
        tokio::spawn(crate::watch::stream::serve(
            self.server.clone(),
            request.into_inner(),
            creds,
            tx,
        ));
        let answers = Box::pin(ReceiverStream::new(rx));
        let answers = super::require_leader::watched(&self.server, &metadata, answers);
        Ok(Response::new(answers))
    }
}
