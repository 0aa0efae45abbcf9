//! etcd's HTTP+JSON gateway on the client URLs (etcd 3.4 embeds grpc-gateway v1): every unary
//! RPC at etcd's path under `/v3/` and `/v3beta/` (`/v3alpha/` is 404, as in 3.4), as a POST
//! with the request message as JSON, answered with the response message as JSON.
//!
//! Answers are written as grpc-gateway with etcd's marshaler writes them (`pbjson` code
//! generated from the same protos, see `common/build.rs`): proto field names, 64-bit integers
//! as strings, bytes as base64, enums by name, zero values left out. Requests are read as
//! etcd 3.4's gateway reads them, Go's decoder and jsonpb with their error texts
//! ([`gojson`], [`jsonpb`]). A request goes to the same service the gRPC call would
//! (validation, auth, headers: all the same code), with the `Authorization` header as its
//! token. Errors are grpc-gateway's body `{"error":…,"message":…,"code":N}` with its HTTP
//! status for the gRPC code.
//!
//! `/v3/watch` streams: the request body is a sequence of JSON `WatchRequest`s (read as they
//! arrive), the answer one `{"result": WatchResponse}` line per message, each written as it
//! comes, for as long as the client stays; `/v3/lease/keepalive` likewise, and
//! `/v3/election/observe` streams its answers to one request, `/v3/maintenance/snapshot` the
//! backup's chunks (base64 `blob`s, then the sha256).

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use futures::StreamExt;
use oxetcd_common::etcdserverpb::auth_server::Auth;
use oxetcd_common::etcdserverpb::cluster_server::Cluster;
use oxetcd_common::etcdserverpb::kv_server::Kv;
use oxetcd_common::etcdserverpb::lease_server::Lease;
use oxetcd_common::etcdserverpb::maintenance_server::Maintenance;
use oxetcd_common::etcdserverpb::{LeaseKeepAliveRequest, WatchRequest};
use oxetcd_common::v3electionpb::election_server::Election;
use oxetcd_common::v3electionpb::LeaderRequest;
use oxetcd_common::v3lockpb::lock_server::Lock;
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

mod gojson;
mod jsonpb;
mod openapi;

/// Where the gateway serves its OpenAPI (Swagger 2.0) document.
pub(super) const OPENAPI_PATH: &str = "/openapi.json";

use super::{auth, cluster, election, kv, lease, lock, maintenance};
use crate::identity::Credentials;
use crate::server::EtcdServer;

/// The gateway's routes, for both API prefixes etcd 3.4 serves.
pub(super) fn router(server: Arc<EtcdServer>) -> Router {
    // The receive limit of etcd's gRPC server, which its gateway calls through.
    let max = server.limits.max_request_bytes + super::GRPC_OVERHEAD_BYTES;
    let kv = Arc::new(kv::KvService::new(server.clone()));
    let lease = Arc::new(lease::LeaseService::new(server.clone()));
    let cluster = Arc::new(cluster::ClusterService::new(server.clone()));
    let maintenance = Arc::new(maintenance::MaintenanceService::new(server.clone()));
    let auth = Arc::new(auth::AuthService::new(server.clone()));
    let lock = Arc::new(lock::LockService::new(server.clone()));
    let election = Arc::new(election::ElectionService::new(server.clone()));
    let streams = server;

    /// A POST route calling `$svc.$method` with the JSON body.
    macro_rules! rpc {
        ($svc:expr, $trait:ident :: $method:ident) => {{
            let svc = $svc.clone();
            post(move |headers: HeaderMap, body: Body| {
                let svc = svc.clone();
                async move {
                    unary(max, headers, body, move |req| async move {
                        $trait::$method(&*svc, req).await
                    })
                    .await
                }
            })
            .fallback(method_not_allowed)
        }};
    }
    let routes: Vec<(&str, &str, MethodRouter)> = vec![
        ("kv/range", "etcdserverpb.KV.Range", rpc!(kv, Kv::range)),
        ("kv/put", "etcdserverpb.KV.Put", rpc!(kv, Kv::put)),
        (
            "kv/deleterange",
            "etcdserverpb.KV.DeleteRange",
            rpc!(kv, Kv::delete_range),
        ),
        ("kv/txn", "etcdserverpb.KV.Txn", rpc!(kv, Kv::txn)),
        (
            "kv/compaction",
            "etcdserverpb.KV.Compact",
            rpc!(kv, Kv::compact),
        ),
        (
            "lease/grant",
            "etcdserverpb.Lease.LeaseGrant",
            rpc!(lease, Lease::lease_grant),
        ),
        (
            "lease/revoke",
            "etcdserverpb.Lease.LeaseRevoke",
            rpc!(lease, Lease::lease_revoke),
        ),
        (
            "kv/lease/revoke",
            "etcdserverpb.Lease.LeaseRevoke",
            rpc!(lease, Lease::lease_revoke),
        ),
        (
            "lease/timetolive",
            "etcdserverpb.Lease.LeaseTimeToLive",
            rpc!(lease, Lease::lease_time_to_live),
        ),
        (
            "kv/lease/timetolive",
            "etcdserverpb.Lease.LeaseTimeToLive",
            rpc!(lease, Lease::lease_time_to_live),
        ),
        (
            "lease/leases",
            "etcdserverpb.Lease.LeaseLeases",
            rpc!(lease, Lease::lease_leases),
        ),
        (
            "kv/lease/leases",
            "etcdserverpb.Lease.LeaseLeases",
            rpc!(lease, Lease::lease_leases),
        ),
        (
            "cluster/member/add",
            "etcdserverpb.Cluster.MemberAdd",
            rpc!(cluster, Cluster::member_add),
        ),
        (
            "cluster/member/remove",
            "etcdserverpb.Cluster.MemberRemove",
            rpc!(cluster, Cluster::member_remove),
        ),
        (
            "cluster/member/update",
            "etcdserverpb.Cluster.MemberUpdate",
            rpc!(cluster, Cluster::member_update),
        ),
        (
            "cluster/member/list",
            "etcdserverpb.Cluster.MemberList",
            rpc!(cluster, Cluster::member_list),
        ),
        (
            "cluster/member/promote",
            "etcdserverpb.Cluster.MemberPromote",
            rpc!(cluster, Cluster::member_promote),
        ),
        (
            "maintenance/alarm",
            "etcdserverpb.Maintenance.Alarm",
            rpc!(maintenance, Maintenance::alarm),
        ),
        (
            "maintenance/status",
            "etcdserverpb.Maintenance.Status",
            rpc!(maintenance, Maintenance::status),
        ),
        (
            "maintenance/defragment",
            "etcdserverpb.Maintenance.Defragment",
            rpc!(maintenance, Maintenance::defragment),
        ),
        // etcd 3.4 maps Hash and HashKV both to this path; grpc-gateway takes the first.
        (
            "maintenance/hash",
            "etcdserverpb.Maintenance.Hash",
            rpc!(maintenance, Maintenance::hash),
        ),
        (
            "maintenance/transfer-leadership",
            "etcdserverpb.Maintenance.MoveLeader",
            rpc!(maintenance, Maintenance::move_leader),
        ),
        (
            "auth/enable",
            "etcdserverpb.Auth.AuthEnable",
            rpc!(auth, Auth::auth_enable),
        ),
        (
            "auth/disable",
            "etcdserverpb.Auth.AuthDisable",
            rpc!(auth, Auth::auth_disable),
        ),
        (
            "auth/status",
            "etcdserverpb.Auth.AuthStatus",
            rpc!(auth, Auth::auth_status),
        ),
        (
            "auth/authenticate",
            "etcdserverpb.Auth.Authenticate",
            rpc!(auth, Auth::authenticate),
        ),
        (
            "auth/user/add",
            "etcdserverpb.Auth.UserAdd",
            rpc!(auth, Auth::user_add),
        ),
        (
            "auth/user/get",
            "etcdserverpb.Auth.UserGet",
            rpc!(auth, Auth::user_get),
        ),
        (
            "auth/user/list",
            "etcdserverpb.Auth.UserList",
            rpc!(auth, Auth::user_list),
        ),
        (
            "auth/user/delete",
            "etcdserverpb.Auth.UserDelete",
            rpc!(auth, Auth::user_delete),
        ),
        (
            "auth/user/changepw",
            "etcdserverpb.Auth.UserChangePassword",
            rpc!(auth, Auth::user_change_password),
        ),
        (
            "auth/user/grant",
            "etcdserverpb.Auth.UserGrantRole",
            rpc!(auth, Auth::user_grant_role),
        ),
        (
            "auth/user/revoke",
            "etcdserverpb.Auth.UserRevokeRole",
            rpc!(auth, Auth::user_revoke_role),
        ),
        (
            "auth/role/add",
            "etcdserverpb.Auth.RoleAdd",
            rpc!(auth, Auth::role_add),
        ),
        (
            "auth/role/get",
            "etcdserverpb.Auth.RoleGet",
            rpc!(auth, Auth::role_get),
        ),
        (
            "auth/role/list",
            "etcdserverpb.Auth.RoleList",
            rpc!(auth, Auth::role_list),
        ),
        (
            "auth/role/delete",
            "etcdserverpb.Auth.RoleDelete",
            rpc!(auth, Auth::role_delete),
        ),
        (
            "auth/role/grant",
            "etcdserverpb.Auth.RoleGrantPermission",
            rpc!(auth, Auth::role_grant_permission),
        ),
        (
            "auth/role/revoke",
            "etcdserverpb.Auth.RoleRevokePermission",
            rpc!(auth, Auth::role_revoke_permission),
        ),
        ("lock/lock", "v3lockpb.Lock.Lock", rpc!(lock, Lock::lock)),
        (
            "lock/unlock",
            "v3lockpb.Lock.Unlock",
            rpc!(lock, Lock::unlock),
        ),
        (
            "election/campaign",
            "v3electionpb.Election.Campaign",
            rpc!(election, Election::campaign),
        ),
        (
            "election/proclaim",
            "v3electionpb.Election.Proclaim",
            rpc!(election, Election::proclaim),
        ),
        (
            "election/leader",
            "v3electionpb.Election.Leader",
            rpc!(election, Election::leader),
        ),
        (
            "election/resign",
            "v3electionpb.Election.Resign",
            rpc!(election, Election::resign),
        ),
        (
            "watch",
            "etcdserverpb.Watch.Watch",
            post({
                let server = streams.clone();
                move |headers: HeaderMap, body: Body| watch(server.clone(), headers, body)
            })
            .fallback(method_not_allowed),
        ),
        (
            "lease/keepalive",
            "etcdserverpb.Lease.LeaseKeepAlive",
            post({
                let server = streams.clone();
                move |body: Body| keep_alive(server.clone(), body)
            })
            .fallback(method_not_allowed),
        ),
        (
            "election/observe",
            "v3electionpb.Election.Observe",
            post({
                let svc = election.clone();
                move |headers: HeaderMap, body: Body| observe(svc.clone(), max, headers, body)
            })
            .fallback(method_not_allowed),
        ),
        (
            "maintenance/snapshot",
            "etcdserverpb.Maintenance.Snapshot",
            post({
                let svc = maintenance.clone();
                move |headers: HeaderMap| snapshot(svc.clone(), headers)
            })
            .fallback(method_not_allowed),
        ),
    ];
    let operations: Vec<openapi::Operation> = routes
        .iter()
        .map(|(path, rpc, _)| openapi::Operation { path, rpc })
        .collect();
    let document = Bytes::from(openapi::document(&operations).to_string());
    let mut router = Router::new().route(
        OPENAPI_PATH,
        get(move || async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                document.clone(),
            )
        }),
    );
    for (path, _, route) in routes {
        for prefix in ["/v3", "/v3beta"] {
            router = router.route(&format!("{prefix}/{path}"), route.clone());
        }
    }
    // Any other path under the gateway's prefixes: its mux's 404, not Go's.
    for prefix in ["/v3", "/v3beta"] {
        router = router.route(&format!("{prefix}/{{*rest}}"), any(not_found));
    }
    router
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not Found\n",
    )
        .into_response()
}

/// `/v3/watch`: the watch stream of `crate::watch::stream`, fed by the body's JSON requests.
async fn watch(server: Arc<EtcdServer>, headers: HeaderMap, body: Body) -> Response {
    let creds = Credentials::of(&server, &with_token(&headers, ()));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let max = server.limits.max_request_bytes + super::GRPC_OVERHEAD_BYTES;
    let requests = match first_and_rest(Box::pin(json_values::<WatchRequest>(body, max))).await {
        Ok(requests) => requests,
        Err(answer) => return answer,
    };
    tokio::spawn(crate::watch::stream::serve(server, requests, creds, tx));
    json_lines(ReceiverStream::new(rx))
}

/// `/v3/lease/keepalive`: each JSON request in the body renews its lease.
async fn keep_alive(server: Arc<EtcdServer>, body: Body) -> Response {
    let max = server.limits.max_request_bytes + super::GRPC_OVERHEAD_BYTES;
    let requests = Box::pin(json_values::<LeaseKeepAliveRequest>(body, max));
    match first_and_rest(requests).await {
        Ok(requests) => json_lines(lease::keep_alive(server, requests)),
        Err(answer) => answer,
    }
}

/// `/v3/election/observe`: one JSON request, the leader's changes as they come.
async fn observe(
    svc: Arc<election::ElectionService>,
    max: usize,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(body) = axum::body::to_bytes(body, max).await else {
        return error(&Status::resource_exhausted(format!(
            "grpc: received message larger than max (? vs. {max})"
        )));
    };
    let msg: LeaderRequest = match parse(&body) {
        Ok(m) => m,
        Err(status) => return error(&status),
    };
    match Election::observe(&*svc, with_token(&headers, msg)).await {
        Ok(resp) => json_lines(resp.into_inner()),
        Err(status) => error(&status),
    }
}

/// `/v3/maintenance/snapshot`: the backup as a stream of chunks.
async fn snapshot(svc: Arc<maintenance::MaintenanceService>, headers: HeaderMap) -> Response {
    let req = with_token(&headers, oxetcd_common::etcdserverpb::SnapshotRequest {});
    match Maintenance::snapshot(&*svc, req).await {
        Ok(resp) => json_lines(resp.into_inner()),
        Err(status) => error(&status),
    }
}

/// A streaming answer as grpc-gateway writes it: one `{"result": message}` line per message,
/// written as it comes; an error as `{"error": {...}}`, which ends it.
fn json_lines<T: Serialize + Send + 'static>(
    messages: impl futures::Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response {
    let lines = messages.map(|msg| {
        let line = match msg {
            Ok(resp) => serde_json::json!({ "result": resp }),
            Err(status) => serde_json::json!({ "error": {
                "grpc_code": status.code() as i32,
                "http_code": http_status(status.code()).as_u16(),
                "message": status.message(),
                "http_status": http_status(status.code()).canonical_reason().unwrap_or_default(),
            }}),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{line}\n")))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// A unary request's JSON body, read as grpc-gateway reads it: the first JSON value by Go's
/// decoder (what follows is ignored; an empty body is the default message), then the message
/// by `jsonpb`'s rules, each failure InvalidArgument with Go's words.
fn parse<Req: prost::Message + prost::Name + Default>(body: &[u8]) -> Result<Req, Status> {
    match gojson::first_value(body, true) {
        gojson::First::Value(range) => {
            jsonpb::decode(&body[range]).map_err(Status::invalid_argument)
        }
        gojson::First::Nothing | gojson::First::More => Ok(Req::default()),
        gojson::First::Error(e) => Err(Status::invalid_argument(e)),
    }
}

/// The JSON messages of a streaming request body, one by one as their bytes arrive
/// (grpc-gateway's streaming decoder). A message that does not decode ends the stream with
/// InvalidArgument, one longer than `max` bytes with ResourceExhausted.
fn json_values<T: prost::Message + prost::Name + Default + 'static>(
    body: Body,
    max: usize,
) -> impl futures::Stream<Item = Result<T, Status>> + Send {
    struct State {
        data: axum::body::BodyDataStream,
        buf: Vec<u8>,
        eof: bool,
        done: bool,
    }
    let state = State {
        data: body.into_data_stream(),
        buf: Vec::new(),
        eof: false,
        done: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            match gojson::first_value(&st.buf, st.eof) {
                gojson::First::Value(range) => {
                    let msg = jsonpb::decode(&st.buf[range.clone()]);
                    st.buf.drain(..range.end);
                    st.done = msg.is_err();
                    return Some((msg.map_err(Status::invalid_argument), st));
                }
                gojson::First::Error(e) => {
                    st.done = true;
                    return Some((Err(Status::invalid_argument(e)), st));
                }
                gojson::First::Nothing => return None,
                // Only part of a value (or none) so far: read on.
                gojson::First::More => {}
            }
            if st.buf.len() > max.saturating_mul(2) {
                st.done = true;
                let e = Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({} vs. {max})",
                    st.buf.len()
                ));
                return Some((Err(e), st));
            }
            match st.data.next().await {
                Some(Ok(bytes)) => st.buf.extend_from_slice(&bytes),
                Some(Err(_)) => return None,
                None => st.eof = true,
            }
        }
    })
}

/// A streaming RPC's requests as etcd's gateway sends them on: the first one must decode
/// (else the answer is grpc-gateway's error with code Unknown, before any stream), and a
/// later one that does not ends the requests, as if the client had stopped sending, while
/// the answers go on.
async fn first_and_rest<T: Send + 'static>(
    mut requests: std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>,
) -> Result<impl futures::Stream<Item = Result<T, Status>> + Send + Unpin, Response> {
    let first = match requests.next().await {
        Some(Ok(msg)) => Some(Ok(msg)),
        Some(Err(status)) if status.code() == Code::InvalidArgument => {
            return Err(error(&Status::unknown(status.message())));
        }
        other => other,
    };
    let rest = requests.take_while(|r| {
        let go_on = !matches!(r, Err(s) if s.code() == Code::InvalidArgument);
        futures::future::ready(go_on)
    });
    Ok(futures::stream::iter(first).chain(rest))
}

/// A tonic request carrying the HTTP `Authorization` header as its token metadata.
fn with_token<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok())
    {
        req.metadata_mut().insert("authorization", token);
    }
    req
}

/// One unary call: the JSON body (empty: the default message) as the request, with the
/// `Authorization` header as gRPC metadata (where `identity` finds the token).
/// A message over `max` (encoded as protobuf) gets what etcd's gateway gets from its gRPC
/// call: grpc-go's RESOURCE_EXHAUSTED "received message larger than max".
async fn unary<Req, Resp, F, Fut>(max: usize, headers: HeaderMap, body: Body, call: F) -> Response
where
    Req: prost::Message + prost::Name + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let too_large = |n: usize| {
        error(&Status::resource_exhausted(format!(
            "grpc: received message larger than max ({n} vs. {max})"
        )))
    };
    // JSON carries bytes as base64 (4/3) plus its own syntax: room to read a message up to
    // twice `max` and say how large it is, as etcd does; beyond, the declared length.
    let cap = max.saturating_mul(4);
    let body = match axum::body::to_bytes(body, cap).await {
        Ok(b) => b,
        Err(_) => {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            return too_large(declared.unwrap_or(cap));
        }
    };
    let msg: Req = match parse(&body) {
        Ok(m) => m,
        Err(status) => return error(&status),
    };
    if msg.encoded_len() > max {
        return too_large(msg.encoded_len());
    }
    match call(with_token(&headers, msg)).await {
        Ok(resp) => match serde_json::to_vec(resp.get_ref()) {
            Ok(body) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => error(&Status::internal(e.to_string())),
        },
        Err(status) => error(&status),
    }
}

/// grpc-gateway v1's error answer.
fn error(status: &Status) -> Response {
    let body = serde_json::json!({
        "error": status.message(),
        "message": status.message(),
        "code": status.code() as i32,
    });
    (
        http_status(status.code()),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Another method than POST on an RPC path: Go's `http.Error` text, as etcd answers.
async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Method Not Allowed\n",
    )
        .into_response()
}
