//! Which member a call goes to, decided from its gRPC path (and, for Range, its body).

use oxetcd_common::etcdserverpb::RangeRequest;
use prost::Message;

use crate::grpc::grpc_message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Writes, linearizable reads, leases, locks, elections, membership: straight to the
    /// leader, so no follower hop.
    Leader,
    /// Serializable Range: any healthy member, balanced.
    AnyMember,
    /// Watch streams when the proxy does not coalesce them: spread over members.
    Spread,
    /// Answered by the proxy's own services (`crate::local`): coalesced watches and lease
    /// keep-alives.
    Local,
}

/// What the proxy answers itself rather than passing through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coalesce {
    pub watches: bool,
    pub keepalives: bool,
}

/// The route of a gRPC path such as `/etcdserverpb.KV/Put`. `Range` needs its body:
/// [`range_request`].
pub fn route_of(path: &str, coalesce: Coalesce) -> Route {
    match path {
        "/etcdserverpb.Watch/Watch" if coalesce.watches => Route::Local,
        "/etcdserverpb.Watch/Watch" => Route::Spread,
        "/etcdserverpb.Lease/LeaseKeepAlive" if coalesce.keepalives => Route::Local,
        _ => Route::Leader,
    }
}

/// Whether the path is a KV Range or RangeStream, whose route depends on `serializable`.
pub fn is_range(path: &str) -> bool {
    path == "/etcdserverpb.KV/Range" || path == "/etcdserverpb.KV/RangeStream"
}

/// Whether a request's effect may already be applied once it reached a member: such a request
/// is never sent twice.
pub fn is_read_only(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.KV/Range"
            | "/etcdserverpb.Maintenance/Status"
            | "/etcdserverpb.Maintenance/Alarm"
            | "/etcdserverpb.Maintenance/Hash"
            | "/etcdserverpb.Maintenance/HashKV"
            | "/etcdserverpb.Cluster/MemberList"
            | "/etcdserverpb.Lease/LeaseTimeToLive"
            | "/etcdserverpb.Lease/LeaseLeases"
            | "/v3electionpb.Election/Leader"
    )
}

/// Whether the call changes state and can be sent again safely with a request ID (the member
/// applies it once): single-response writes. Streams are never sent again.
pub fn is_dedup_write(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.KV/Put"
            | "/etcdserverpb.KV/DeleteRange"
            | "/etcdserverpb.KV/Txn"
            | "/etcdserverpb.KV/Compact"
            | "/etcdserverpb.Lease/LeaseGrant"
            | "/etcdserverpb.Lease/LeaseRevoke"
    )
}

/// The Range in the first gRPC message of a body (5-byte frame header, then the protobuf),
/// with its bytes. `None` if it cannot be decoded: the leader then answers the error.
pub fn range_request(body: &[u8]) -> Option<(&[u8], RangeRequest)> {
    let msg = grpc_message(body)?;
    Some((msg, RangeRequest::decode(msg).ok()?))
}

/// Calls that change keys: a client's later serializable reads must reflect their revision
/// (read-your-writes, `crate::sessions`).
pub fn is_write(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.KV/Put"
            | "/etcdserverpb.KV/DeleteRange"
            | "/etcdserverpb.KV/Txn"
            | "/etcdserverpb.Lease/LeaseRevoke"
            | "/v3lockpb.Lock/Lock"
            | "/v3lockpb.Lock/Unlock"
            | "/v3electionpb.Election/Campaign"
            | "/v3electionpb.Election/Proclaim"
            | "/v3electionpb.Election/Resign"
    )
}

/// KV writes: the read cache forgets the keys they name as their answer passes.
pub fn is_kv_write(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.KV/Put" | "/etcdserverpb.KV/DeleteRange" | "/etcdserverpb.KV/Txn"
    )
}

/// `Range` from `/etcdserverpb.KV/Range`, for metrics labels.
pub fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::put_grpc_message;

    fn frame(m: &impl Message) -> Vec<u8> {
        let mut f = Vec::new();
        put_grpc_message(&mut f, &m.encode_to_vec());
        f
    }

    #[test]
    fn a_range_is_read_from_its_first_message_and_watches_follow_the_flag() {
        let lin = RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let ser = RangeRequest {
            key: b"k".to_vec(),
            serializable: true,
            ..Default::default()
        };
        assert!(!range_request(&frame(&lin)).unwrap().1.serializable);
        assert!(range_request(&frame(&ser)).unwrap().1.serializable);
        // Cut short or compressed: the leader decides.
        let f = frame(&ser);
        assert!(range_request(&f[..f.len() - 1]).is_none());
        let mut compressed = f.clone();
        compressed[0] = 1;
        assert!(range_request(&compressed).is_none());
        let all = Coalesce {
            watches: true,
            keepalives: true,
        };
        assert_eq!(route_of("/etcdserverpb.KV/Put", all), Route::Leader);
        assert_eq!(
            route_of("/etcdserverpb.Watch/Watch", Coalesce::default()),
            Route::Spread
        );
        assert_eq!(route_of("/etcdserverpb.Watch/Watch", all), Route::Local);
        let keepalive = "/etcdserverpb.Lease/LeaseKeepAlive";
        assert_eq!(route_of(keepalive, all), Route::Local);
        assert_eq!(route_of(keepalive, Coalesce::default()), Route::Leader);
        assert_eq!(method_name("/etcdserverpb.KV/Put"), "Put");
    }
}
