//! Keeps the read cache coherent: one watch on the whole key space (the namespace, with
//! `--namespace`) from a healthy member, applied to the cache as it comes.
//!
//! The cache is live only while that watch is: on any failure it is emptied and the feed
//! starts over on a member that answers, from an empty cache. Once a second, and whenever a
//! linearizable read waits for a revision its events did not reach, the feed also asks for a
//! progress notification (so the position moves when keys outside the namespace change); once
//! a second it checks that the cluster still runs without auth. While it is live, the read
//! barrier of linearizable reads goes to its member.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxetcd_common::etcdserverpb::auth_client::AuthClient;
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::{
    watch_request, AuthStatusRequest, RangeRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest,
};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::Code;
use tracing::{info, warn};

use super::{Interval, ReadCache};
use crate::cluster::Cluster;

/// How long opening the watch, or a check, may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Between progress requests and auth checks.
const TICK: Duration = Duration::from_secs(1);
/// Before trying again after the watch failed, or while auth is on.
const PAUSE: Duration = Duration::from_millis(500);

pub struct Feed {
    pub cache: Arc<ReadCache>,
    pub cluster: Arc<Cluster>,
    /// The watched keys: everything, or the namespace's interval.
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// The proxy shows a certificate to members, whose name a member may take for a user.
    pub client_cert: bool,
}

#[async_trait]
impl BackgroundService for Feed {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Feed {
    async fn run(&self) {
        let mut said = String::new();
        loop {
            self.cache.disable();
            let why = match self.cluster.any_member() {
                Some(member) => match self.follow(&member.addr).await {
                    Ok(()) => continue,
                    Err(why) => format!("{}: {why}", member.label),
                },
                None => "no member is known".to_string(),
            };
            // Said once per cause, not once per attempt.
            if why != said {
                warn!("read cache off: {why}");
                said = why;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Feeds the cache from the member at `addr` until something fails.
    async fn follow(&self, addr: &str) -> Result<(), String> {
        let channel = self.cluster.channel(addr).ok_or("no channel")?;
        self.check_auth_off(&channel).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let create = WatchCreateRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            ..Default::default()
        };
        let _ = tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        });
        // A large Txn is one answer: no size limit, as clientv3's.
        let mut client = WatchClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
        let call = client.watch(UnboundedReceiverStream::new(rx));
        let mut stream = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| "watch: timed out")?
            .map_err(|s| format!("watch: {}", s.message()))?
            .into_inner();
        let created = tokio::time::timeout(CALL_TIMEOUT, stream.message())
            .await
            .map_err(|_| "watch: no answer to create")?
            .map_err(|s| format!("watch: {}", s.message()))?
            .ok_or("watch: stream ended")?;
        if !created.created || created.canceled {
            return Err(format!("watch refused: {}", created.cancel_reason));
        }
        let start = created.header.map_or(0, |h| h.revision);
        self.cache.reset(start);
        self.cache
            .barrier()
            .follow(Some((channel.clone(), self.key.clone())));
        info!(member = %addr, revision = start, "read cache live");
        let mut tick = tokio::time::interval(TICK);
        tick.reset();
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let resp = msg
                        .map_err(|s| format!("watch: {}", s.message()))?
                        .ok_or("watch: stream ended")?;
                    if resp.canceled {
                        return Err(format!("watch canceled: {}", resp.cancel_reason));
                    }
                    let header = resp.header.map_or(0, |h| h.revision);
                    // A progress notification: every change up to its revision was sent.
                    let mut position = if resp.events.is_empty() { header } else { 0 };
                    let changes: Vec<(i64, Interval)> = resp
                        .events
                        .iter()
                        .filter_map(|e| e.kv.as_ref())
                        .map(|kv| {
                            position = position.max(kv.mod_revision);
                            (kv.mod_revision, Interval::of(&kv.key, b""))
                        })
                        .collect();
                    self.cache.apply(changes, position);
                }
                // A linearizable read waits for a revision the feed's events did not reach.
                _ = self.cache.progress_wanted() => {
                    tx.send(progress_request()).map_err(|_| "watch: stream closed")?;
                }
                _ = tick.tick() => {
                    if !self.cluster.is_healthy(addr) {
                        return Err("member failed its health check".into());
                    }
                    if !self.cache.is_live() {
                        // Turned off by an AuthEnable passing through: start over, which
                        // checks auth first.
                        return Err("auth may have been enabled".into());
                    }
                    self.check_auth_off(&channel).await?;
                    tx.send(progress_request()).map_err(|_| "watch: stream closed")?;
                }
            }
        }
    }
}

fn progress_request() -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    }
}

impl Feed {
    /// The cache does not check permissions, so it serves only a cluster without auth.
    async fn check_auth_off(&self, channel: &Channel) -> Result<(), String> {
        let mut auth = AuthClient::new(channel.clone());
        let status = auth.auth_status(AuthStatusRequest {});
        match tokio::time::timeout(CALL_TIMEOUT, status).await {
            Ok(Ok(s)) if !s.get_ref().enabled => return Ok(()),
            Ok(Ok(_)) => return Err("auth is enabled".into()),
            // etcd 3.4 has no AuthStatus: try a read without a token below.
            Ok(Err(s)) if s.code() == Code::Unimplemented => {}
            Ok(Err(s)) => return Err(format!("auth status: {}", s.message())),
            Err(_) => return Err("auth status: timed out".into()),
        }
        if self.client_cert {
            return Err(
                "cannot tell whether auth is on (etcd 3.4 behind a client certificate)".into(),
            );
        }
        let mut kv = KvClient::new(channel.clone());
        let probe = kv.range(RangeRequest {
            key: self.key.clone(),
            count_only: true,
            serializable: true,
            ..Default::default()
        });
        match tokio::time::timeout(CALL_TIMEOUT, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(format!(
                "a read without a token was refused: {}",
                s.message()
            )),
            Err(_) => Err("read: timed out".into()),
        }
    }
}
