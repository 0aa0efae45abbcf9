//! Lease keep-alive coalescing: the proxy answers `LeaseKeepAlive` itself, and every client
//! keep-alive stream of one identity shares one upstream stream on the leader.
//!
//! Each keep-alive a client sends is sent upstream and answered with the leader's answer for
//! that lease. Keep-alives of one lease from several streams while one is in flight wait for
//! the next: every client is answered by a renewal made after it asked, so the TTL it is told
//! starts no earlier than its request, as on a member. When the upstream stream fails the hub
//! opens another on the (new) leader and sends again what was unanswered (a renewal is
//! idempotent); client streams stay open. Failures that are not the member's (a bad token,
//! no leader for a `hasleader` stream) end the client streams as the member would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oxetcd_common::etcdserverpb::lease_client::LeaseClient;
use oxetcd_common::etcdserverpb::lease_server::Lease;
use oxetcd_common::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::upstream::{failover, is_no_leader, Hubs, Identity};

/// How long opening the upstream stream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Between attempts when the leader could not be reached.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

type Answers = mpsc::UnboundedSender<Result<LeaseKeepAliveResponse, Status>>;

enum Cmd {
    Attach { stream: u64, tx: Answers },
    KeepAlive { stream: u64, id: i64 },
    Detach { stream: u64 },
}

/// The hubs, one per identity.
pub(crate) struct KeepAlives {
    hubs: Hubs<Cmd>,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
}

impl KeepAlives {
    pub(crate) fn new(cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(KeepAlives {
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
        tx: Answers,
    ) -> (mpsc::UnboundedSender<Cmd>, u64) {
        let attach = |stream| Cmd::Attach { stream, tx };
        self.hubs.attach(&identity, attach, || {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(Hub::new(identity.clone(), self.clone(), rx, tx.clone()).run());
            tx
        })
    }
}

struct Upstream {
    addr: String,
    tx: mpsc::UnboundedSender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

struct Hub {
    identity: Identity,
    registry: Arc<KeepAlives>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    /// A sender of its own channel, to recognise itself in the registry.
    me: mpsc::UnboundedSender<Cmd>,
    clients: HashMap<u64, Answers>,
    /// Leases sent upstream, and the streams the answer goes to.
    inflight: HashMap<i64, Vec<u64>>,
    /// Leases asked for again while in flight: sent once the answer comes.
    again: HashMap<i64, Vec<u64>>,
    upstream: Option<Upstream>,
    retry_at: Option<Instant>,
}

impl Hub {
    fn new(
        identity: Identity,
        registry: Arc<KeepAlives>,
        cmds: mpsc::UnboundedReceiver<Cmd>,
        me: mpsc::UnboundedSender<Cmd>,
    ) -> Self {
        Hub {
            identity,
            registry,
            cmds,
            me,
            clients: HashMap::new(),
            inflight: HashMap::new(),
            again: HashMap::new(),
            upstream: None,
            retry_at: None,
        }
    }

    async fn run(mut self) {
        let metrics = self.registry.metrics.clone();
        loop {
            let pause = self.retry_at;
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                msg = next_answer(&mut self.upstream) => match msg {
                    Ok(Some(resp)) => self.answer(resp),
                    Ok(None) => self.upstream_lost(Status::unavailable("upstream keep-alive stream ended")),
                    Err(status) => self.upstream_lost(status),
                },
                _ = sleep_until(pause) => self.retry_at = None,
            }
            if self.clients.is_empty() {
                let cmds = &self.cmds;
                if self
                    .registry
                    .hubs
                    .retire(&self.identity, &self.me, || cmds.is_empty())
                {
                    break;
                }
            }
            if self.upstream.is_none() && !self.inflight.is_empty() && self.retry_at.is_none() {
                self.connect().await;
            }
        }
        if self.upstream.take().is_some() {
            metrics.upstream_keepalive_streams.dec();
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Attach { stream, tx } => {
                self.clients.insert(stream, tx);
            }
            Cmd::Detach { stream } => {
                self.clients.remove(&stream);
                for waiting in self.inflight.values_mut().chain(self.again.values_mut()) {
                    waiting.retain(|s| *s != stream);
                }
                self.again.retain(|_, w| !w.is_empty());
            }
            Cmd::KeepAlive { stream, id } => {
                self.registry.metrics.keepalives.inc();
                if let Some(waiting) = self.inflight.get(&id) {
                    if !waiting.contains(&stream) {
                        let again = self.again.entry(id).or_default();
                        if !again.contains(&stream) {
                            again.push(stream);
                        }
                    }
                    return;
                }
                self.inflight.insert(id, vec![stream]);
                self.send(id);
            }
        }
    }

    fn send(&mut self, id: i64) {
        let Some(up) = &self.upstream else {
            // Sent when the stream opens.
            return;
        };
        if up.tx.send(LeaseKeepAliveRequest { id }).is_ok() {
            self.registry.metrics.upstream_keepalives.inc();
        }
    }

    fn answer(&mut self, resp: LeaseKeepAliveResponse) {
        let Some(waiting) = self.inflight.remove(&resp.id) else {
            return;
        };
        for stream in waiting {
            if let Some(tx) = self.clients.get(&stream) {
                let _ = tx.send(Ok(resp));
            }
        }
        if let Some(again) = self.again.remove(&resp.id) {
            self.inflight.insert(resp.id, again);
            self.send(resp.id);
        }
    }

    async fn connect(&mut self) {
        let cluster = &self.registry.cluster;
        let Some(leader) = cluster.wait_leader(CONNECT_TIMEOUT).await else {
            self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
            return;
        };
        let Some(channel) = cluster.channel(&leader.addr) else {
            self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Queued before the call: a Go server sends its headers with its first answer.
        let mut ids: Vec<i64> = self.inflight.keys().copied().collect();
        ids.sort_unstable();
        for id in &ids {
            let _ = tx.send(LeaseKeepAliveRequest { id: *id });
        }
        let mut request = Request::new(UnboundedReceiverStream::new(rx));
        self.identity.apply(request.metadata_mut());
        let mut client = LeaseClient::new(channel);
        match tokio::time::timeout(CONNECT_TIMEOUT, client.lease_keep_alive(request)).await {
            Ok(Ok(resp)) => {
                info!(member = %leader.label, "upstream keep-alive stream open");
                let metrics = &self.registry.metrics;
                metrics.upstream_keepalive_streams.inc();
                metrics.upstream_keepalives.inc_by(ids.len() as u64);
                self.upstream = Some(Upstream {
                    addr: leader.addr,
                    tx,
                    rx: resp.into_inner(),
                });
            }
            Ok(Err(status)) if !failover(&status) => self.fail_all(status),
            _ => {
                warn!(member = %leader.label, "cannot open upstream keep-alive stream");
                cluster.report_unreachable(&leader.addr);
                self.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
            }
        }
    }

    fn upstream_lost(&mut self, status: Status) {
        let Some(up) = self.upstream.take() else {
            return;
        };
        self.registry.metrics.upstream_keepalive_streams.dec();
        if !failover(&status) || self.identity.require_leader && is_no_leader(&status) {
            self.fail_all(status);
            return;
        }
        warn!(member = %up.addr, "upstream keep-alive stream lost ({}): moving to the leader", status.message());
        self.registry.cluster.report_unreachable(&up.addr);
    }

    /// Ends every client stream with `status`.
    fn fail_all(&mut self, status: Status) {
        for (_, tx) in self.clients.drain() {
            let _ = tx.send(Err(status.clone()));
        }
        self.inflight.clear();
        self.again.clear();
    }
}

async fn next_answer(up: &mut Option<Upstream>) -> Result<Option<LeaseKeepAliveResponse>, Status> {
    match up {
        Some(u) => u.rx.message().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The proxy's Lease service: only `LeaseKeepAlive` is routed here; the data plane sends the
/// other calls to the leader.
pub(crate) struct LeaseService {
    registry: Arc<KeepAlives>,
}

impl LeaseService {
    pub(crate) fn new(registry: Arc<KeepAlives>) -> Self {
        LeaseService { registry }
    }
}

fn not_here() -> Status {
    Status::unimplemented("oxetcd-proxy: sent to members")
}

#[tonic::async_trait]
impl Lease for LeaseService {
    type LeaseKeepAliveStream = Answering;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Answering>, Status> {
        let identity = Identity::of(request.metadata());
        let (tx, rx) = mpsc::unbounded_channel();
        let (hub, stream) = self.registry.attach(identity, tx);
        let mut requests = request.into_inner();
        let to_hub = hub.clone();
        let metrics = self.registry.metrics.clone();
        metrics.keepalive_streams.inc();
        tokio::spawn(async move {
            while let Ok(Some(req)) = requests.message().await {
                if to_hub.send(Cmd::KeepAlive { stream, id: req.id }).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Answering {
            rx: UnboundedReceiverStream::new(rx),
            hub,
            stream,
            metrics,
        }))
    }

    async fn lease_grant(
        &self,
        _: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        Err(not_here())
    }

    async fn lease_revoke(
        &self,
        _: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        Err(not_here())
    }

    async fn lease_time_to_live(
        &self,
        _: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Err(not_here())
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Err(not_here())
    }
}

/// A client stream's answers; dropping it (the client went away) detaches the stream.
pub(crate) struct Answering {
    rx: UnboundedReceiverStream<Result<LeaseKeepAliveResponse, Status>>,
    hub: mpsc::UnboundedSender<Cmd>,
    stream: u64,
    metrics: Arc<Metrics>,
}

impl futures::Stream for Answering {
    type Item = Result<LeaseKeepAliveResponse, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.metrics.keepalive_streams.dec();
        let _ = self.hub.send(Cmd::Detach {
            stream: self.stream,
        });
    }
}
