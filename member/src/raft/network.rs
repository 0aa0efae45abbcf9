//! Raft traffic between members: openraft's RPCs over gRPC on the peer URLs (service
//! `oxetcdpeerpb.RaftPeer`), carried as bincode. A peer that cannot be reached is reported as
//! `Unreachable`, which openraft answers with back-off: a dead peer costs a log line, not a stall.

use std::collections::HashMap;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use oxetcd_common::oxetcdpeerpb::raft_peer_client::RaftPeerClient;
use oxetcd_common::oxetcdpeerpb::PeerMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::{MemberNode, TypeConfig};
use crate::metrics::PeerMetrics;
use crate::peer::Peers;

/// openraft's network: its clients share the member's cached peer channels (openraft asks for
/// a new client for every replication stream and every leadership check).
#[derive(Clone)]
pub(crate) struct Network {
    pub peers: Arc<Peers>,
    pub metrics: PeerMetrics,
    pub heartbeat_failures: prometheus::IntCounter,
    pub idle: IdleStreams,
}

/// Open `AppendStream` calls no client holds, by peer (member ID and peer URLs): a client
/// openraft drops gives its healthy call back, and a new one takes it up. So a leadership check
/// (a new client for one append, once per linearizable read round) is one message on an open
/// call, not a unary call of its own.
/// A peer: its member ID and peer URLs.
type Peer = (u64, Vec<String>);

#[derive(Clone, Default)]
pub(crate) struct IdleStreams(Arc<std::sync::Mutex<HashMap<Peer, Vec<AppendStream>>>>);

/// Idle calls kept per peer: a replication stream's and a leadership check's or two.
const IDLE_PER_PEER: usize = 2;

impl IdleStreams {
    fn take(&self, peer: &Peer) -> Option<AppendStream> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        idle.get_mut(peer)?.pop()
    }

    fn put(&self, peer: Peer, stream: AppendStream) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let streams = idle.entry(peer).or_default();
        if streams.len() < IDLE_PER_PEER {
            streams.push(stream);
        }
    }
}

pub(crate) struct PeerClient {
    target: u64,
    /// `target` and its peer URLs: the key of its idle calls.
    peer: Peer,
    idle: IdleStreams,
    cluster_id: u64,
    client: Option<RaftPeerClient<Channel>>,
    metrics: PeerMetrics,
    heartbeat_failures: prometheus::IntCounter,
    /// Appends sent through this client. openraft makes one client per replication stream
    /// (many appends) and one per leadership check (one append): an append goes over an
    /// `AppendStream` call if an idle one was taken up, and otherwise from the second on.
    appends: u64,
    /// The open `AppendStream` call. Dropped after any failure or time-out, so an answer that
    /// comes late is never taken for the next append's.
    stream: Option<AppendStream>,
    /// False once the peer turned `AppendStream` down (a member of an older version).
    streaming: bool,
}

/// One `AppendStream` call: appends go in one by one, answers come back in order.
pub(crate) struct AppendStream {
    appends: mpsc::Sender<PeerMessage>,
    answers: Streaming<PeerMessage>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    fn unreachable<E: std::error::Error>(
        &self,
        why: impl std::fmt::Display,
    ) -> RPCError<u64, MemberNode, E> {
        let e = std::io::Error::other(format!("member {:x}: {why}", self.target));
        RPCError::Unreachable(Unreachable::new(&e))
    }

    /// One RPC; a `heartbeat` (an append without entries) also times its round trip.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
        heartbeat: bool,
    ) -> Result<Resp, RPCError<u64, MemberNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let to = format!("{:x}", self.target);
        let Some(client) = self.client.as_mut() else {
            self.metrics.sent_failures.with_label_values(&[&to]).inc();
            return Err(self.unreachable("no peer URL"));
        };
        let data = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let size = data.len() as u64;
        let sent = std::time::Instant::now();
        let message = PeerMessage {
            cluster_id: self.cluster_id,
            data,
        };
        let append = matches!(rpc, Rpc::Append) && self.streaming;
        if append && self.stream.is_none() {
            self.stream = self.idle.take(&self.peer);
        }
        let streamed = append && (self.appends > 0 || self.stream.is_some());
        let resp = if streamed {
            let r = append_streamed(client, &mut self.stream, message, option.hard_ttl()).await;
            if matches!(&r, Err(s) if s.code() == tonic::Code::Unimplemented) {
                self.streaming = false;
            }
            r
        } else {
            let mut request = tonic::Request::new(message);
            request.set_timeout(option.hard_ttl());
            let r = match rpc {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
            };
            r.map(tonic::Response::into_inner)
        };
        if matches!(rpc, Rpc::Append) {
            self.appends += 1;
        }
        if resp.is_err() {
            self.metrics.sent_failures.with_label_values(&[&to]).inc();
            if heartbeat {
                self.heartbeat_failures.inc();
            }
        } else {
            self.metrics
                .sent_bytes
                .with_label_values(&[&to])
                .inc_by(size);
            if heartbeat {
                let rtt = sent.elapsed().as_secs_f64();
                self.metrics
                    .round_trip
                    .with_label_values(&[&to])
                    .observe(rtt);
            }
        }
        let resp = match resp {
            Ok(r) => {
                let m = &self.metrics.received_bytes;
                m.with_label_values(&[&to]).inc_by(r.data.len() as u64);
                r
            }
            Err(s) if s.code() == tonic::Code::PermissionDenied => {
                // Another cluster answered: never treat it as a peer.
                return Err(self.unreachable(s.message()));
            }
            Err(s) => return Err(self.unreachable(s.message())),
        };
        let result: Result<Resp, RaftError<u64, E>> = bincode::deserialize(&resp.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// One append over `stream`, the client's `AppendStream` call, opened first if there is none;
/// on any failure, or no answer within `ttl`, the call is dropped.
async fn append_streamed(
    client: &mut RaftPeerClient<Channel>,
    stream: &mut Option<AppendStream>,
    message: PeerMessage,
    ttl: std::time::Duration,
) -> Result<PeerMessage, Status> {
    let answer = tokio::time::timeout(ttl, async {
        let mut open = match stream.take() {
            Some(open) => {
                open.appends
                    .send(message)
                    .await
                    .map_err(|_| Status::unavailable("append stream closed"))?;
                open
            }
            None => {
                let (appends, rx) = mpsc::channel(1);
                // The first append goes with the call.
                appends
                    .try_send(message)
                    .map_err(|_| Status::internal("append stream full"))?;
                let requests = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|m| (m, rx))
                });
                let answers = client.append_stream(requests).await?.into_inner();
                AppendStream { appends, answers }
            }
        };
        let answer = open.answers.message().await?;
        *stream = Some(open);
        answer.ok_or_else(|| Status::unavailable("append stream ended"))
    })
    .await;
    let answer = answer.unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")));
    if answer.is_err() {
        *stream = None;
    }
    answer
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            self.idle.put(self.peer.clone(), stream);
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> Self::Network {
        PeerClient {
            target,
            peer: (target, node.peer_urls.clone()),
            idle: self.idle.clone(),
            cluster_id: self.peers.cluster_id(),
            client: self.peers.client(node).ok(),
            metrics: self.metrics.clone(),
            heartbeat_failures: self.heartbeat_failures.clone(),
            appends: 0,
            stream: None,
            streaming: true,
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        let heartbeat = rpc.entries.is_empty();
        self.call(Rpc::Append, &rpc, &option, heartbeat).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MemberNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option, false).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        self.call(Rpc::Vote, &rpc, &option, false).await
    }
}
