//! The client-facing API on the client URLs: etcd's gRPC services and the HTTP endpoints
//! (`/health`, `/version`, `/metrics`). Thin: validate, hand on to `server`, shape the answer.

mod auth;
mod cluster;
mod election;
mod error;
mod gateway;
mod grpc_metrics;
mod http;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod range;
mod require_leader;
mod watch;

use std::sync::Arc;

use oxetcd_common::etcdserverpb::auth_server::AuthServer;
use oxetcd_common::etcdserverpb::cluster_server::ClusterServer;
use oxetcd_common::etcdserverpb::lease_server::LeaseServer;
use oxetcd_common::etcdserverpb::maintenance_server::MaintenanceServer;
use oxetcd_common::etcdserverpb::watch_server::WatchServer;
use oxetcd_common::v3electionpb::election_server::ElectionServer;
use oxetcd_common::v3lockpb::lock_server::LockServer;
use tonic::service::Routes;

use crate::server::EtcdServer;

/// The ID a client that may send a write again (oxetcd-proxy, after a failover) gave it, from
/// the `oxetcd-request-id` metadata; empty if none or unusable.
pub(crate) fn request_id<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(oxetcd_common::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= crate::dedup::MAX_ID_LEN)
        .unwrap_or_default()
        .to_string()
}

/// Lock and Election act for the caller on the contender keys `name/...` (etcd's recipes run
/// with the caller's token): with auth enabled the caller needs `access` on the whole prefix.
/// Returns the caller, whose steps are then checked again at apply.
pub(crate) async fn permit_contenders<T>(
    server: &EtcdServer,
    request: &tonic::Request<T>,
    name: &[u8],
    access: &[crate::auth::Access],
) -> Result<Option<crate::auth::AuthInfo>, tonic::Status> {
    let prefix = crate::concurrency::prefix(name);
    let end = oxetcd_common::net::prefix_end(&prefix);
    crate::identity::Credentials::of(server, request)
        .require(server, |auth, who| {
            access
                .iter()
                .try_for_each(|a| auth.check(who, &prefix, &end, *a))
        })
        .await
        .map_err(error::as_plain_error)
}

/// gRPC's framing overhead allowed on top of `--max-request-bytes`, as etcd allows, so that an
/// oversized request gets etcd's "request is too large" rather than a transport error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// What a listener serves: etcd's client URLs serve everything, unless
/// `--listen-client-http-urls` takes the HTTP part to its own URLs; `--listen-metrics-urls`
/// serve the health and metrics endpoints only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serves {
    All,
    Grpc,
    Http,
    Metrics,
}

/// The routes of a client-side listener (see [`Serves`]).
pub(crate) fn routes(server: Arc<EtcdServer>, serves: Serves) -> Routes {
    let http = match serves {
        Serves::Metrics => http::router(server),
        Serves::Http => http::router(server.clone()).merge(gateway_routes(server)),
        Serves::Grpc => grpc_routes(server),
        Serves::All => grpc_routes(server.clone())
            .merge(http::router(server.clone()))
            .merge(gateway_routes(server)),
    };
    Routes::from(http.fallback(http::not_found))
}

/// The gateway (it bounds bodies itself, as etcd's receive limit).
fn gateway_routes(server: Arc<EtcdServer>) -> axum::Router {
    gateway::router(server).layer(axum::extract::DefaultBodyLimit::disable())
}

/// etcd's gRPC services.
fn grpc_routes(server: Arc<EtcdServer>) -> axum::Router {
    // etcd gives every service the same receive limit (grpc.MaxRecvMsgSize).
    let max = server.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(max)
                .max_encoding_message_size(usize::MAX)
        };
    }
    Routes::new(range::KvRoutes::new(
        Arc::new(kv::KvService::new(server.clone())),
        max,
    ))
    .add_service(limited!(WatchServer::new(watch::WatchService::new(
        server.clone()
    ))))
    .add_service(limited!(LeaseServer::new(lease::LeaseService::new(
        server.clone()
    ))))
    .add_service(limited!(LockServer::new(lock::LockService::new(
        server.clone()
    ))))
    .add_service(limited!(ElectionServer::new(
        election::ElectionService::new(server.clone())
    )))
    .add_service(limited!(ClusterServer::new(cluster::ClusterService::new(
        server.clone()
    ))))
    .add_service(limited!(MaintenanceServer::new(
        maintenance::MaintenanceService::new(server.clone())
    )))
    .add_service(limited!(AuthServer::new(auth::AuthService::new(
        server.clone()
    ))))
    .into_axum_router()
    .layer(axum::middleware::map_response(error::oversized_as_grpc_go))
    .layer(axum::middleware::map_response_with_state(
        server.clone(),
        name_the_leader,
    ))
    .layer(grpc_metrics::Observe { server })
}

/// Adds `oxetcd-leader` and `oxetcd-raft-term` to every gRPC response: a proxy in front learns
/// of a new leader from any answer, without waiting for its next `Status` round.
async fn name_the_leader(
    axum::extract::State(server): axum::extract::State<Arc<EtcdServer>>,
    mut resp: axum::response::Response,
) -> axum::response::Response {
    let (leader, term) = {
        let m = server.raft.metrics();
        let m = m.borrow();
        (m.current_leader, m.current_term)
    };
    if let Some(leader) = leader {
        let headers = resp.headers_mut();
        headers.insert(oxetcd_common::LEADER_HEADER, leader.into());
        headers.insert(oxetcd_common::RAFT_TERM_HEADER, term.into());
    }
    resp
}
