//! Plain HTTP on the client URLs, as etcd serves: `/health`, `/version`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use oxetcd_common::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};

use crate::server::EtcdServer;

pub(super) fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// Healthy when a leader exists and a linearizable read goes through, as etcd's /health checks.
async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let healthy = server.raft.metrics().borrow().current_leader.is_some()
        && server.read_barrier().await.is_ok();
    let (code, body) = if healthy {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn version() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            r#"{{"etcdserver":"{ETCD_SERVER_VERSION}","etcdcluster":"{ETCD_CLUSTER_VERSION}"}}"#
        ),
    )
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        server.metrics.render(),
    )
}

/// Anything else: gRPC's "unimplemented" for a gRPC call to an unknown service, etcd's plain
/// 404 for HTTP.
pub(super) async fn not_found(headers: HeaderMap) -> axum::response::Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("unknown service").into_http();
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}
