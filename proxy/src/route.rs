//! Which member a call goes to, decided from its gRPC path (and, for Range, its body).

use oxetcd_common::etcdserverpb::RangeRequest;
use prost::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Writes, linearizable reads, leases, locks, elections, membership: straight to the
    /// leader, so no follower hop.
    Leader,
    /// Serializable Range: any healthy member, balanced.
    AnyMember,
    /// Watch streams when the proxy does not coalesce them: spread over members.
    Spread,
    /// Answered by the proxy's own services (`crate::local`): coalesced watches.
    Local,
}

/// The route of a gRPC path such as `/etcdserverpb.KV/Put`. `Range` needs its body:
/// [`route_range`]. `coalesce` says whether the proxy serves watches itself.
pub fn route_of(path: &str, coalesce: bool) -> Route {
    match path {
        "/etcdserverpb.Watch/Watch" if coalesce => Route::Local,
        "/etcdserverpb.Watch/Watch" => Route::Spread,
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

/// The route of a Range from the first gRPC message of its body (5-byte frame header, then
/// the protobuf). A body that cannot be decoded goes to the leader, which answers the error.
pub fn route_range(body: &[u8]) -> Route {
    match grpc_message(body).and_then(|m| RangeRequest::decode(m).ok()) {
        Some(r) if r.serializable => Route::AnyMember,
        _ => Route::Leader,
    }
}

/// The first complete gRPC message in `buf`, if it is all there and uncompressed.
pub fn grpc_message(buf: &[u8]) -> Option<&[u8]> {
    let len = grpc_frame_len(buf)?;
    if buf[0] != 0 {
        return None;
    }
    buf.get(5..5 + len)
}

/// Appends `msg` to `out` as one uncompressed gRPC message: flag byte, big-endian length, bytes.
pub fn put_grpc_message(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Length of the first gRPC message announced in `buf`'s frame header.
pub fn grpc_frame_len(buf: &[u8]) -> Option<usize> {
    let h = buf.get(..5)?;
    Some(u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize)
}

/// `Range` from `/etcdserverpb.KV/Range`, for metrics labels.
pub fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(m: &impl Message) -> Vec<u8> {
        let mut f = Vec::new();
        put_grpc_message(&mut f, &m.encode_to_vec());
        f
    }

    #[test]
    fn serializable_ranges_are_balanced_the_rest_goes_to_the_leader() {
        let lin = RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let ser = RangeRequest {
            key: b"k".to_vec(),
            serializable: true,
            ..Default::default()
        };
        assert_eq!(route_range(&frame(&lin)), Route::Leader);
        assert_eq!(route_range(&frame(&ser)), Route::AnyMember);
        // Cut short or compressed: the leader decides.
        let f = frame(&ser);
        assert_eq!(route_range(&f[..f.len() - 1]), Route::Leader);
        let mut compressed = f.clone();
        compressed[0] = 1;
        assert_eq!(route_range(&compressed), Route::Leader);
        assert_eq!(route_of("/etcdserverpb.KV/Put", true), Route::Leader);
        assert_eq!(route_of("/etcdserverpb.Watch/Watch", false), Route::Spread);
        assert_eq!(route_of("/etcdserverpb.Watch/Watch", true), Route::Local);
        assert_eq!(method_name("/etcdserverpb.KV/Put"), "Put");
    }
}
