//! The calling half of the peer protocol: one cached channel per peer URL (HTTP/2 multiplexes
//! every call over it), and one typed method per call. Every call has a deadline: a paused or
//! partitioned peer keeps its TCP connection open and answers nothing, and a call without a
//! deadline would wait for it for as long as the pause lasts.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use oxetcd_common::oxetcdpeerpb::raft_peer_client::RaftPeerClient;
use oxetcd_common::oxetcdpeerpb::PeerMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::{Call, Forwarded, PeerError};
use crate::leadership::TransferStep;
use crate::membership::MembershipOp;
use crate::raft::MemberNode;

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 pings find a peer that vanished without closing its connection (power loss, a
/// partition); a paused peer's connection is kept, the per-call deadlines cover it.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The member's client of its peers, shared by the raft network and the server.
pub(crate) struct Peers {
    cluster_id: u64,
    channels: Mutex<HashMap<String, Channel>>,
    /// How `https://` peer URLs are dialed (`--peer-cert-file` and friends); `None`: they
    /// cannot be.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Peers {
    pub(crate) fn new(cluster_id: u64, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self {
            cluster_id,
            channels: Mutex::default(),
            tls,
        }
    }

    /// The channel to a peer URL, created (lazily connecting) on first use and kept: tonic
    /// reconnects it by itself after the peer restarts.
    pub(crate) fn channel(&self, url: &str) -> Result<Channel, PeerError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(url) {
            return Ok(ch.clone());
        }
        let https = url.starts_with("https://");
        // tonic speaks plain HTTP/2 to the connector's stream; TLS is the connector's.
        let plain = match url.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => url.to_string(),
        };
        let endpoint = Endpoint::from_shared(plain)
            .map_err(|e| PeerError::Unreachable(format!("peer URL {url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let ch = if https {
            let tls = self.tls.clone().ok_or_else(|| {
                PeerError::Unreachable(format!(
                    "{url}: https peer URLs need --peer-cert-file, --peer-key-file and \
                     --peer-trusted-ca-file (or --peer-auto-tls)"
                ))
            })?;
            endpoint.connect_with_connector_lazy(TlsConnector(tls))
        } else {
            endpoint.connect_lazy()
        };
        channels.insert(url.to_string(), ch.clone());
        Ok(ch)
    }

    /// A gRPC client of a member's first peer URL.
    pub(crate) fn client(&self, node: &MemberNode) -> Result<RaftPeerClient<Channel>, PeerError> {
        let url = node
            .peer_urls
            .first()
            .ok_or_else(|| PeerError::Unreachable(format!("member {node} has no peer URL")))?;
        Ok(RaftPeerClient::new(self.channel(url)?).max_decoding_message_size(usize::MAX))
    }

    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// One call: `req` as bincode, the answer a bincode `Result<Resp, PeerError>`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &MemberNode,
        call: Call,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let mut client = self.client(node)?;
        let data = bincode::serialize(req).map_err(|e| PeerError::Encoding(e.to_string()))?;
        let mut request = tonic::Request::new(PeerMessage {
            cluster_id: self.cluster_id,
            data,
        });
        request.set_timeout(timeout);
        let what = call;
        let call = async {
            match what {
                Call::Forward => client.forward(request).await,
                Call::ReadIndex => client.read_index(request).await,
                Call::LeaseClock => client.lease_clock(request).await,
                Call::ChangeMembership => client.change_membership(request).await,
                Call::Transfer => client.transfer(request).await,
                Call::Removed => client.removed(request).await,
                Call::ClusterMembers => client.cluster_id(request).await,
                Call::HashKv => client.hash_kv(request).await,
                Call::PreVote => client.pre_vote(request).await,
            }
        };
        // The gRPC timeout travels to the peer; this one also covers a peer that never reads.
        let answer = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| PeerError::Unreachable(format!("{what:?} to {node}: timed out")))?
            .map_err(|s| PeerError::from_status(&s, node))?
            .into_inner();
        let result: Result<Resp, PeerError> = bincode::deserialize(&answer.data)
            .map_err(|e| PeerError::Encoding(format!("{what:?} answer from {node}: {e}")))?;
        result
    }

    /// Hands an encoded `RaftBatch` to the leader, which writes it as one entry.
    pub(crate) async fn forward(
        &self,
        leader: &MemberNode,
        batch: Vec<u8>,
        timeout: Duration,
    ) -> Result<Forwarded, PeerError> {
        self.call(leader, Call::Forward, &batch, timeout).await
    }

    /// The leader's read index, confirmed with a quorum.
    pub(crate) async fn read_index(
        &self,
        leader: &MemberNode,
        timeout: Duration,
    ) -> Result<u64, PeerError> {
        self.call(leader, Call::ReadIndex, &(), timeout).await
    }

    /// The leader's lease clock: renew each lease of `ids` (its granted TTL) or read its
    /// remaining TTL, in their order; `None` for a lease the leader does not know.
    pub(crate) async fn lease_clock(
        &self,
        leader: &MemberNode,
        ids: &[i64],
        renew: bool,
        timeout: Duration,
    ) -> Result<Vec<Option<i64>>, PeerError> {
        self.call(leader, Call::LeaseClock, &(ids, renew), timeout)
            .await
    }

    /// A membership change, run by the leader; the ID of the member concerned.
    pub(crate) async fn change_membership(
        &self,
        leader: &MemberNode,
        op: &MembershipOp,
        timeout: Duration,
    ) -> Result<u64, PeerError> {
        self.call(leader, Call::ChangeMembership, op, timeout).await
    }

    /// A step of a leadership transfer, asked of another member.
    pub(crate) async fn transfer(
        &self,
        member: &MemberNode,
        step: &TransferStep,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        self.call(member, Call::Transfer, step, timeout).await
    }

    /// Tells a member it was removed from the cluster.
    pub(crate) async fn removed(
        &self,
        member: &MemberNode,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        self.call(member, Call::Removed, &(), timeout).await
    }

    /// A member's hash of its key space at `rev` (corruption checks).
    pub(crate) async fn hash_kv(
        &self,
        member: &MemberNode,
        rev: i64,
        timeout: Duration,
    ) -> Result<crate::corrupt::PeerHash, PeerError> {
        self.call(member, Call::HashKv, &rev, timeout).await
    }

    /// Would the member vote for this candidate? (raft's pre-vote)
    pub(crate) async fn pre_vote(
        &self,
        member: &MemberNode,
        req: &crate::raft::election::PreVoteRequest,
        timeout: Duration,
    ) -> Result<bool, PeerError> {
        self.call(member, Call::PreVote, req, timeout).await
    }

    /// The cluster ID and the members (ID, peer URLs) as a peer has applied them; asked by a
    /// member joining an existing cluster, before it knows the cluster ID.
    pub(crate) async fn cluster_members(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<(u64, Vec<(u64, Vec<String>)>), PeerError> {
        let peers = Peers::new(0, tls);
        let node = MemberNode {
            peer_urls: vec![url.to_string()],
            ..Default::default()
        };
        peers.call(&node, Call::ClusterMembers, &(), timeout).await
    }
}

/// Dials a peer with TLS: TCP to the URI's host and port, then the handshake, with the host
/// as the server name (an IP address is checked against the certificate's IP addresses).
#[derive(Clone)]
struct TlsConnector(Arc<rustls::ClientConfig>);

type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsIo, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.0.clone();
        Box::pin(async move {
            let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let host = uri.host().ok_or_else(|| bad("peer URL without a host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| bad("peer URL without a port"))?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| bad("peer URL host is not a valid server name"))?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}
