//! etcd's errors as gRPC statuses, in one table: same codes, same messages, so every etcd
//! client recognises them (clientv3 matches on the message text). Only `api` builds statuses.

use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::error::ServerError;
use crate::mvcc::KvError;

/// The gRPC code etcd answers each error with (`v3rpc/rpctypes/error.go`).
fn code(e: &ServerError) -> Code {
    match e {
        ServerError::Kv(kv) => match kv {
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::RequestTooLarge => Code::InvalidArgument,
            KvError::Compacted | KvError::FutureRev => Code::OutOfRange,
            KvError::LeaseNotFound => Code::NotFound,
            KvError::LeaseExists => Code::FailedPrecondition,
            KvError::LeaseTtlTooLarge => Code::OutOfRange,
            KvError::StreamSortUnsupported | KvError::StreamFiltersUnsupported => {
                Code::Unimplemented
            }
            KvError::Storage(_) | KvError::Corrupt(_) => Code::Internal,
        },
        ServerError::Auth(a) => match a {
            AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted
            | AuthError::AuthNotEnabled => Code::FailedPrecondition,
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::AuthFailed
            | AuthError::InvalidAuthMgmt
            | AuthError::AuthOldRevision
            | AuthError::PermissionNotGiven => Code::InvalidArgument,
            AuthError::PermissionDenied => Code::PermissionDenied,
            AuthError::InvalidAuthToken => Code::Unauthenticated,
        },
        ServerError::NoLeader
        | ServerError::TimedOut
        | ServerError::Stopped
        | ServerError::Unavailable(_) => Code::Unavailable,
        ServerError::NotLeader
        | ServerError::BadTransferee
        | ServerError::TransferInProgress
        | ServerError::PeerUrlExists
        | ServerError::NotEnoughStartedMembers
        | ServerError::NotALearner
        | ServerError::LearnerNotReady => Code::FailedPrecondition,
        ServerError::TransferTimedOut => Code::DeadlineExceeded,
        ServerError::MemberNotFound => Code::NotFound,
        ServerError::InvalidPeerUrls => Code::InvalidArgument,
        ServerError::Internal(_) => Code::Internal,
        ServerError::NoSpace => Code::ResourceExhausted,
        ServerError::CorruptCluster => Code::DataLoss,
        // etcd's v3election/v3lock servers return this as a plain error: gRPC Unknown.
        ServerError::ContenderDeleted => Code::Unknown,
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        Status::new(code(&e), e.to_string())
    }
}

/// etcd's v3lock and v3election servers run their steps through an internal client and pass
/// its errors on as plain Go errors: gRPC Unknown, with the same message.
pub(super) fn as_plain_error(s: Status) -> Status {
    Status::new(Code::Unknown, s.message())
}

/// An error of a Lock or Election step run for the caller: a permission refusal comes back as
/// etcd's recipes pass it on (a plain error, gRPC Unknown); the rest as everywhere.
pub(super) fn from_recipe(e: ServerError) -> Status {
    match e {
        ServerError::Auth(_) => as_plain_error(e.into()),
        e => e.into(),
    }
}

impl From<crate::snapshot::SnapshotError> for Status {
    fn from(e: crate::snapshot::SnapshotError) -> Self {
        Status::internal(format!("etcdserver: {e}"))
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        ServerError::Auth(e).into()
    }
}

impl From<KvError> for Status {
    fn from(e: KvError) -> Self {
        ServerError::Kv(e).into()
    }
}

/// tonic refuses a request over the receive limit with OUT_OF_RANGE "Error, decoded message
/// length too large: found N bytes, the limit is: M bytes"; etcd (grpc-go) with
/// RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. M)", which clients
/// recognise. Rewrites the first into the second (a trailers-only answer: in the headers).
pub(super) async fn oversized_as_grpc_go(
    mut resp: axum::response::Response,
) -> axum::response::Response {
    let headers = resp.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return resp;
    }
    let Some(message) = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
    else {
        return resp;
    };
    let sizes = message
        .strip_prefix("Error, decoded message length too large: found ")
        .and_then(|rest| rest.strip_suffix(" bytes"))
        .and_then(|rest| rest.split_once(" bytes, the limit is: "));
    if let Some((found, limit)) = sizes {
        let text = format!("grpc: received message larger than max ({found} vs. {limit})");
        if let Ok(v) = axum::http::HeaderValue::from_str(&text.replace(' ', "%20")) {
            headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
            headers.insert("grpc-message", v);
        }
    }
    resp
}

/// gRPC's percent-encoding of `grpc-message`, undone.
fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
