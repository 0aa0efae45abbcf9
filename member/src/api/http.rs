//! Plain HTTP on the client URLs, as etcd serves: `/health`, `/version`, `/metrics`, and
//! etcd 3.6's `/livez` and `/readyz` (each check also at `/livez/<check>`, `?verbose` lists
//! them, `?exclude=<check>` leaves one out).

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oxetcd_common::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};

use crate::server::EtcdServer;

pub(super) fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/livez", get(livez).fallback(get_only))
        .route("/livez/{check}", get(livez_one).fallback(get_only))
        .route("/readyz", get(readyz).fallback(get_only))
        .route("/readyz/{check}", get(readyz_one).fallback(get_only))
        .with_state(server)
}

/// Healthy when no alarm is raised (but those named by `?exclude=NOSPACE`, repeatable), a
/// leader exists and a linearizable read goes through, as etcd's /health checks; with
/// `?serializable=true` (etcd ≥ 3.5) a local read suffices, leader or not.
async fn health(State(server): State<Arc<EtcdServer>>, uri: axum::http::Uri) -> impl IntoResponse {
    let pairs: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|p| p.split_once('=').or(Some((p, ""))))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let serializable = pairs
        .iter()
        .any(|(k, v)| k == "serializable" && v == "true");
    let excluded: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let alarmed = server.read_state().map(|s| {
        s.alarms.get(0).iter().any(|a| {
            let name = oxetcd_common::etcdserverpb::AlarmType::try_from(a.alarm)
                .map(|t| t.as_str_name())
                .unwrap_or("UNKNOWN");
            !excluded.contains(&name)
        })
    });
    let healthy = if alarmed.unwrap_or(true) {
        false
    } else if serializable {
        server.read_state().is_ok()
    } else {
        server.reported_leader().is_some() && server.read_barrier().await.is_ok()
    };
    match healthy {
        true => server.metrics.health_success.inc(),
        false => server.metrics.health_failures.inc(),
    }
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
    // As of now, not as of the leadership watcher's last wake-up (`member::watch_leadership`):
    // a client that saw a leader elsewhere must not scrape `has_leader 0` here.
    let now = server.elections.leadership(&server.raft, server.member_id);
    server
        .metrics
        .set_leadership(now.leader, now.leading, now.learner);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        server.metrics.render(),
    )
}

/// The checks of `/livez` and `/readyz`, by name (etcd 3.6's `CheckRegistry`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    DataCorruption,
    LinearizableRead,
    NonLearner,
    SerializableRead,
}

const LIVEZ: &[Check] = &[Check::SerializableRead];
const READYZ: &[Check] = &[
    Check::DataCorruption,
    Check::LinearizableRead,
    Check::NonLearner,
    Check::SerializableRead,
];

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::LinearizableRead => "linearizable_read",
            Check::NonLearner => "non_learner",
            Check::SerializableRead => "serializable_read",
        }
    }

    async fn run(self, server: &EtcdServer) -> Result<(), String> {
        match self {
            Check::DataCorruption => {
                let state = server.read_state().map_err(|e| e.to_string())?;
                match state
                    .alarms
                    .is_raised(oxetcd_common::etcdserverpb::AlarmType::Corrupt)
                {
                    true => Err("alarm activated: CORRUPT".into()),
                    false => Ok(()),
                }
            }
            Check::SerializableRead => server.read_state().map(|_| ()).map_err(|e| e.to_string()),
            Check::LinearizableRead => server.read_barrier().await.map_err(|e| e.to_string()),
            Check::NonLearner => {
                let learner = server
                    .read_state()
                    .map_err(|e| e.to_string())?
                    .membership
                    .membership()
                    .learner_ids()
                    .any(|id| id == server.member_id);
                match learner {
                    true => Err("not supported for learner".into()),
                    false => Ok(()),
                }
            }
        }
    }
}

async fn livez(
    State(server): State<Arc<EtcdServer>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    run_checks(&server, LIVEZ, &q).await
}

async fn readyz(
    State(server): State<Arc<EtcdServer>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    run_checks(&server, READYZ, &q).await
}

async fn livez_one(
    State(server): State<Arc<EtcdServer>>,
    Path(check): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    one_check(&server, LIVEZ, &check, &q).await
}

async fn readyz_one(
    State(server): State<Arc<EtcdServer>>,
    Path(check): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    one_check(&server, READYZ, &check, &q).await
}

async fn one_check(
    server: &EtcdServer,
    of: &[Check],
    name: &str,
    q: &HashMap<String, String>,
) -> Response {
    match of.iter().find(|c| c.name() == name) {
        Some(c) => run_checks(server, &[*c], q).await,
        None => not_found(HeaderMap::new()).await,
    }
}

/// etcd's health handler: `ok` (with each check's line under `?verbose`), or 503 with every
/// check's line. `?exclude=a,b` (or repeated) leaves checks out; unknown names are ignored.
async fn run_checks(
    server: &EtcdServer,
    checks: &[Check],
    q: &HashMap<String, String>,
) -> Response {
    let excluded: Vec<&str> = q
        .get("exclude")
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut report = String::new();
    let mut failed = false;
    for c in checks.iter().filter(|c| !excluded.contains(&c.name())) {
        match c.run(server).await {
            Ok(()) => report.push_str(&format!("[+]{} ok\n", c.name())),
            Err(e) => {
                failed = true;
                report.push_str(&format!("[-]{} failed: {e}\n", c.name()));
            }
        }
    }
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let nosniff = [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")];
    if failed {
        // Go's http.Error: the reason and a newline.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            nosniff,
            format!("{report}\n"),
        )
            .into_response();
    }
    let verbose = q.contains_key("verbose");
    let body = if verbose {
        format!("{report}ok\n")
    } else {
        "ok\n".into()
    };
    (StatusCode::OK, text, nosniff, body).into_response()
}

/// The health endpoints answer GET only (Go's http.Error text).
async fn get_only() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        [(header::ALLOW, "GET")],
        "Method Not Allowed\n",
    )
        .into_response()
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
