//! Watch coalescing: the proxy answers `Watch` itself, and client watchers of the same key or
//! range share one upstream watch on a member.
//!
//! The data plane hands `Watch` streams to [`WatchService`] (on the loopback listener of
//! `crate::local`), after TLS, namespaces and the certificate's name are dealt with. Client
//! streams read as the same user (same token, certificate name and `hasleader`) share a
//! [`hub::Hub`]: one task, one upstream watch stream, and one upstream watch per group of
//! watchers asking for the same thing (`group`). See `hub` for how every client still gets
//! every event once and in order, through slow clients and member failures.

mod group;
mod hub;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use oxetcd_common::etcdserverpb::watch_server::Watch;
use oxetcd_common::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::upstream::{Hubs, Identity};

/// What a hub hears from its client streams.
enum Cmd {
    Attach { stream: u64, client: hub::Client },
    Request { stream: u64, req: WatchRequest },
    Detach { stream: u64 },
}

/// The hubs, one per identity.
pub(crate) struct Registry {
    hubs: Hubs<Cmd>,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub(crate) fn new(cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> Arc<Registry> {
        Arc::new(Registry {
            hubs: Hubs::default(),
            cluster,
            metrics,
        })
    }

    /// Attaches a client stream to its identity's hub, starting one if there is none (or the
    /// last one ended).
    fn attach(
        self: &Arc<Self>,
        identity: Identity,
        client: hub::Client,
    ) -> (mpsc::UnboundedSender<Cmd>, u64) {
        let attach = |stream| Cmd::Attach { stream, client };
        self.hubs.attach(&identity, attach, || {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(hub::Hub::new(identity.clone(), self.clone(), rx, tx.clone()).run());
            tx
        })
    }
}

pub(crate) struct WatchService {
    registry: Arc<Registry>,
}

impl WatchService {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        WatchService { registry }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Feed;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Feed>, Status> {
        let identity = Identity::of(request.metadata());
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(hub::Backlog::default());
        let (hub, stream) = self
            .registry
            .attach(identity, hub::Client::new(tx, backlog.clone()));
        let mut requests = request.into_inner();
        let to_hub = hub.clone();
        tokio::spawn(async move {
            // A client may close its sending side and keep receiving: the stream lives until
            // its feed is dropped.
            while let Ok(Some(req)) = requests.message().await {
                if to_hub.send(Cmd::Request { stream, req }).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Feed {
            rx,
            backlog,
            hub,
            stream,
        }))
    }
}

/// A client stream's responses; dropping it (the client went away) detaches the stream.
pub(crate) struct Feed {
    rx: mpsc::UnboundedReceiver<Result<WatchResponse, Status>>,
    backlog: Arc<hub::Backlog>,
    hub: mpsc::UnboundedSender<Cmd>,
    stream: u64,
}

impl Stream for Feed {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(Ok(resp))) = &polled {
            self.backlog.take(resp);
        }
        polled
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let _ = self.hub.send(Cmd::Detach {
            stream: self.stream,
        });
    }
}
