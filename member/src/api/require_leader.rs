//! clientv3's `WithRequireLeader` (gRPC metadata `hasleader: true`): such a request is refused
//! with "etcdserver: no leader" while the member has no leader, and such a stream (watch,
//! keep-alive, observe) is ended with that error once the member has been without a leader
//! for three election timeouts, as etcd's `monitorLeader` does, so a client pinned to a
//! partitioned member moves elsewhere instead of waiting on it. Other streams keep waiting.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::Status;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// The metadata clientv3 sets (`rpctypes.MetadataRequireLeaderKey`, `MetadataHasLeader`).
const KEY: &str = "hasleader";

/// Elections without a leader a stream survives (etcd's `maxNoLeaderCnt`).
const MISSED_ELECTIONS: u32 = 3;

/// Whether the request asks for a leader.
fn requires_leader(headers: &http::HeaderMap) -> bool {
    headers.get(KEY).map(|v| v.as_bytes()) == Some(b"true")
}

/// The refusal of a request that requires a leader, on a member without one, before it
/// reaches its service (`super::grpc_metrics::Observe` asks).
pub(super) fn refusal(
    server: &EtcdServer,
    headers: &http::HeaderMap,
) -> Option<axum::response::Response> {
    if !requires_leader(headers) || server.reported_leader().is_some() {
        return None;
    }
    let status: Status = ServerError::NoLeader.into();
    Some(status.into_http())
}

/// A response stream that, if its request requires a leader, ends with "no leader" once the
/// member has been without one for [`MISSED_ELECTIONS`] election timeouts.
pub(super) fn watched<T: Send + 'static>(
    server: &EtcdServer,
    metadata: &tonic::metadata::MetadataMap,
    stream: Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
    if metadata.get(KEY).map(|v| v.as_bytes()) != Some(b"true") {
        return stream;
    }
    let lost = Box::pin(leader_lost(
        server.elections.leader_changes(),
        server.timing.election_timeout * MISSED_ELECTIONS,
    ));
    let state = (stream, lost, false);
    Box::pin(futures::stream::unfold(
        state,
        |(mut stream, mut lost, ended)| async move {
            if ended {
                return None;
            }
            tokio::select! {
                item = stream.next() => item.map(|i| (i, (stream, lost, false))),
                _ = &mut lost => {
                    let status: Status = ServerError::NoLeader.into();
                    Some((Err(status), (stream, lost, true)))
                }
            }
        },
    ))
}

/// Resolves once the member has had no leader (as etcd reports it) for `grace` on end.
async fn leader_lost(mut rx: tokio::sync::watch::Receiver<Option<u64>>, grace: Duration) {
    loop {
        // (Results turned into plain values at once: the watch guard is not Send.)
        let closed = rx.wait_for(Option::is_none).await.is_err();
        if closed {
            return std::future::pending().await;
        }
        let back = tokio::time::timeout(grace, rx.wait_for(Option::is_some))
            .await
            .map(|r| r.is_ok());
        match back {
            Err(_) => return,
            Ok(true) => continue,
            Ok(false) => return std::future::pending().await,
        }
    }
}
