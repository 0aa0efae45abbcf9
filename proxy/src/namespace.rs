//! `--namespace`: every key a client names lives under a prefix, as with etcd's grpc-proxy.
//!
//! The proxy rewrites gRPC messages on their way through: keys (and range ends) in requests
//! get the prefix, keys in responses lose it. Range ends follow etcd's `prefixInterval`: an
//! end of `"\0"` ("to the end of the key space") becomes the end of the namespace, so
//! `get --prefix ""` and `get --from-key` never leave it.
//!
//! Unlike etcd 3.4's grpc-proxy, whose Lock and Election services (`v3lockpb`, `v3electionpb`:
//! what etcd-client's `lock` and `campaign` call) bypass the namespace, their names are
//! namespaced too: a namespace is meant to isolate, and a lock shared across namespaces would
//! surprise. (etcdctl's `lock` and `elect` use plain KV, namespaced either way.)
//!
//! Messages are length-prefixed gRPC frames that may be split across HTTP/2 DATA frames (or
//! several may share one): [`Frames`] reassembles them before they are decoded.

use bytes::{Buf, Bytes, BytesMut};
use oxetcd_common::etcdserverpb::{
    request_op, response_op, watch_request, DeleteRangeRequest, DeleteRangeResponse,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RangeStreamResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse, WatchRequest,
    WatchResponse,
};
use oxetcd_common::mvccpb::KeyValue;
use oxetcd_common::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ResignRequest,
};
use oxetcd_common::v3lockpb::{LockRequest, LockResponse, UnlockRequest};
use prost::Message;

/// Why a message could not be rewritten.
#[derive(Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// The message is compressed; the proxy only rewrites plain protobuf.
    Compressed,
    /// The bytes are not the message the path names.
    Decode(String),
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RewriteError::Compressed => write!(f, "compressed gRPC messages cannot be namespaced"),
            RewriteError::Decode(e) => write!(f, "malformed gRPC message: {e}"),
        }
    }
}

/// A key prefix applied to requests and removed from responses.
#[derive(Clone, Debug)]
pub struct Namespace {
    prefix: Vec<u8>,
}

impl Namespace {
    pub fn new(prefix: &str) -> Self {
        Namespace {
            prefix: prefix.as_bytes().to_vec(),
        }
    }

    fn key(&self, key: &mut Vec<u8>) {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        *key = k;
    }

    /// etcd's `prefixInterval`: prefixes the key, and the range end unless it is empty (a
    /// single key); an end of `"\0"` becomes the end of the namespace.
    fn interval(&self, key: &mut Vec<u8>, end: &mut Vec<u8>) {
        self.key(key);
        if end.as_slice() == [0] {
            *end = prefix_end(&self.prefix);
        } else if !end.is_empty() {
            self.key(end);
        }
    }

    /// The keys a client's `key` and `range_end` name on the members.
    pub fn on_members(&self, key: &[u8], range_end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut k, mut e) = (key.to_vec(), range_end.to_vec());
        self.interval(&mut k, &mut e);
        (k, e)
    }

    /// The whole namespace on the members: `key` and `range_end`.
    pub fn whole(&self) -> (Vec<u8>, Vec<u8>) {
        (self.prefix.clone(), prefix_end(&self.prefix))
    }

    fn strip(&self, key: &mut Vec<u8>) {
        if key.starts_with(&self.prefix) {
            key.drain(..self.prefix.len());
        }
    }

    fn strip_kv(&self, kv: &mut KeyValue) {
        self.strip(&mut kv.key);
    }

    /// A KV request with an empty key is left as it is: the member answers etcd's "key is not
    /// provided", as etcd's proxy does.
    fn range(&self, r: &mut RangeRequest) {
        if !r.key.is_empty() {
            self.interval(&mut r.key, &mut r.range_end);
        }
    }

    fn put(&self, r: &mut PutRequest) {
        if !r.key.is_empty() {
            self.key(&mut r.key);
        }
    }

    fn delete(&self, r: &mut DeleteRangeRequest) {
        if !r.key.is_empty() {
            self.interval(&mut r.key, &mut r.range_end);
        }
    }

    fn txn(&self, t: &mut TxnRequest) {
        for c in &mut t.compare {
            if !c.key.is_empty() {
                self.interval(&mut c.key, &mut c.range_end);
            }
        }
        for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
            self.op(op);
        }
    }

    fn op(&self, op: &mut RequestOp) {
        match &mut op.request {
            Some(request_op::Request::RequestRange(r)) => self.range(r),
            Some(request_op::Request::RequestPut(r)) => self.put(r),
            Some(request_op::Request::RequestDeleteRange(r)) => self.delete(r),
            Some(request_op::Request::RequestTxn(t)) => self.txn(t),
            None => {}
        }
    }

    fn range_resp(&self, r: &mut RangeResponse) {
        r.kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    fn put_resp(&self, r: &mut PutResponse) {
        r.prev_kv.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    fn delete_resp(&self, r: &mut DeleteRangeResponse) {
        r.prev_kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    fn txn_resp(&self, t: &mut TxnResponse) {
        for op in &mut t.responses {
            self.op_resp(op);
        }
    }

    fn op_resp(&self, op: &mut ResponseOp) {
        match &mut op.response {
            Some(response_op::Response::ResponseRange(r)) => self.range_resp(r),
            Some(response_op::Response::ResponsePut(r)) => self.put_resp(r),
            Some(response_op::Response::ResponseDeleteRange(r)) => self.delete_resp(r),
            Some(response_op::Response::ResponseTxn(t)) => self.txn_resp(t),
            None => {}
        }
    }

    fn leader_key(&self, l: &mut LeaderKey) {
        self.key(&mut l.name);
        self.key(&mut l.key);
    }

    fn strip_leader_key(&self, l: &mut LeaderKey) {
        self.strip(&mut l.name);
        self.strip(&mut l.key);
    }

    /// Whether messages of this gRPC method carry keys, so [`Self::request`] and
    /// [`Self::response`] have something to do.
    pub fn rewrites(path: &str) -> bool {
        matches!(
            path,
            "/etcdserverpb.KV/Range"
                | "/etcdserverpb.KV/RangeStream"
                | "/etcdserverpb.KV/Put"
                | "/etcdserverpb.KV/DeleteRange"
                | "/etcdserverpb.KV/Txn"
                | "/etcdserverpb.Watch/Watch"
                | "/etcdserverpb.Lease/LeaseTimeToLive"
                | "/v3lockpb.Lock/Lock"
                | "/v3lockpb.Lock/Unlock"
                | "/v3electionpb.Election/Campaign"
                | "/v3electionpb.Election/Proclaim"
                | "/v3electionpb.Election/Leader"
                | "/v3electionpb.Election/Observe"
                | "/v3electionpb.Election/Resign"
        )
    }

    /// Rewrites one request message of the method `path`.
    pub fn request(&self, path: &str, msg: &[u8]) -> Result<Vec<u8>, RewriteError> {
        Ok(match path {
            "/etcdserverpb.KV/Range" | "/etcdserverpb.KV/RangeStream" => {
                edit(msg, |r: &mut RangeRequest| self.range(r))?
            }
            "/etcdserverpb.KV/Put" => edit(msg, |r: &mut PutRequest| self.put(r))?,
            "/etcdserverpb.KV/DeleteRange" => {
                edit(msg, |r: &mut DeleteRangeRequest| self.delete(r))?
            }
            "/etcdserverpb.KV/Txn" => edit(msg, |t: &mut TxnRequest| self.txn(t))?,
            "/etcdserverpb.Watch/Watch" => edit(msg, |w: &mut WatchRequest| {
                if let Some(watch_request::RequestUnion::CreateRequest(c)) = &mut w.request_union {
                    self.interval(&mut c.key, &mut c.range_end);
                }
            })?,
            "/v3lockpb.Lock/Lock" => edit(msg, |r: &mut LockRequest| self.key(&mut r.name))?,
            "/v3lockpb.Lock/Unlock" => edit(msg, |r: &mut UnlockRequest| self.key(&mut r.key))?,
            "/v3electionpb.Election/Campaign" => {
                edit(msg, |r: &mut CampaignRequest| self.key(&mut r.name))?
            }
            "/v3electionpb.Election/Leader" | "/v3electionpb.Election/Observe" => {
                edit(msg, |r: &mut LeaderRequest| self.key(&mut r.name))?
            }
            "/v3electionpb.Election/Proclaim" => edit(msg, |r: &mut ProclaimRequest| {
                r.leader.iter_mut().for_each(|l| self.leader_key(l))
            })?,
            "/v3electionpb.Election/Resign" => edit(msg, |r: &mut ResignRequest| {
                r.leader.iter_mut().for_each(|l| self.leader_key(l))
            })?,
            _ => msg.to_vec(),
        })
    }

    /// Rewrites one response message of the method `path`.
    pub fn response(&self, path: &str, msg: &[u8]) -> Result<Vec<u8>, RewriteError> {
        Ok(match path {
            "/etcdserverpb.KV/Range" => edit(msg, |r: &mut RangeResponse| self.range_resp(r))?,
            "/etcdserverpb.KV/RangeStream" => edit(msg, |r: &mut RangeStreamResponse| {
                r.range_response.iter_mut().for_each(|r| self.range_resp(r))
            })?,
            "/etcdserverpb.KV/Put" => edit(msg, |r: &mut PutResponse| self.put_resp(r))?,
            "/etcdserverpb.KV/DeleteRange" => {
                edit(msg, |r: &mut DeleteRangeResponse| self.delete_resp(r))?
            }
            "/etcdserverpb.KV/Txn" => edit(msg, |t: &mut TxnResponse| self.txn_resp(t))?,
            "/etcdserverpb.Watch/Watch" => edit(msg, |w: &mut WatchResponse| {
                for ev in &mut w.events {
                    ev.kv.iter_mut().for_each(|kv| self.strip_kv(kv));
                    ev.prev_kv.iter_mut().for_each(|kv| self.strip_kv(kv));
                }
            })?,
            "/etcdserverpb.Lease/LeaseTimeToLive" => {
                edit(msg, |r: &mut LeaseTimeToLiveResponse| {
                    r.keys.iter_mut().for_each(|k| self.strip(k))
                })?
            }
            "/v3lockpb.Lock/Lock" => edit(msg, |r: &mut LockResponse| self.strip(&mut r.key))?,
            "/v3electionpb.Election/Campaign" => edit(msg, |r: &mut CampaignResponse| {
                r.leader.iter_mut().for_each(|l| self.strip_leader_key(l))
            })?,
            "/v3electionpb.Election/Leader" | "/v3electionpb.Election/Observe" => {
                edit(msg, |r: &mut LeaderResponse| {
                    r.kv.iter_mut().for_each(|kv| self.strip_kv(kv))
                })?
            }
            _ => msg.to_vec(),
        })
    }
}

use oxetcd_common::net::prefix_end;

fn edit<M: Message + Default>(msg: &[u8], f: impl FnOnce(&mut M)) -> Result<Vec<u8>, RewriteError> {
    let mut m = M::decode(msg).map_err(|e| RewriteError::Decode(e.to_string()))?;
    f(&mut m);
    Ok(m.encode_to_vec())
}

/// Reassembles length-prefixed gRPC messages from a body that arrives in arbitrary chunks.
#[derive(Default)]
pub struct Frames {
    buf: BytesMut,
}

impl Frames {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message, if all of it has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, RewriteError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(RewriteError::Compressed);
        }
        self.buf.advance(5);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Bytes of a message that has not fully arrived.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Drains every complete message through `rewrite` and returns them framed again.
    pub fn rewrite(
        &mut self,
        mut rewrite: impl FnMut(&[u8]) -> Result<Vec<u8>, RewriteError>,
    ) -> Result<Bytes, RewriteError> {
        let mut out = Vec::new();
        while let Some(msg) = self.next_message()? {
            crate::grpc::put_grpc_message(&mut out, &rewrite(&msg)?);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::etcdserverpb::{Compare, WatchCreateRequest};

    fn frame(m: &impl Message) -> Vec<u8> {
        let mut f = Vec::new();
        crate::grpc::put_grpc_message(&mut f, &m.encode_to_vec());
        f
    }

    #[test]
    fn intervals_follow_etcds_prefix_interval() {
        let ns = Namespace::new("/ns/");
        // (key, range end) in, (key, range end) out.
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8]);
        let cases: [Case; 4] = [
            (b"a", b"", b"/ns/a", b""),
            (b"a", b"b", b"/ns/a", b"/ns/b"),
            // From a key to the end of the key space: to the end of the namespace.
            (b"a", b"\0", b"/ns/a", b"/ns0"),
            (b"\0", b"\0", b"/ns/\0", b"/ns0"),
        ];
        for (key, end, want_key, want_end) in cases {
            let (mut k, mut e) = (key.to_vec(), end.to_vec());
            ns.interval(&mut k, &mut e);
            assert_eq!((k.as_slice(), e.as_slice()), (want_key, want_end));
        }
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn txn_compares_and_nested_ops_are_prefixed_and_results_stripped() {
        let ns = Namespace::new("p/");
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: b"k".to_vec(),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"r".to_vec(),
                    range_end: vec![0],
                    ..Default::default()
                })),
            }],
        };
        let out = TxnRequest::decode(
            ns.request("/etcdserverpb.KV/Txn", &txn.encode_to_vec())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(out.compare[0].key, b"p/c");
        let Some(request_op::Request::RequestTxn(inner)) = &out.success[0].request else {
            panic!("nested txn lost")
        };
        let Some(request_op::Request::RequestPut(put)) = &inner.success[0].request else {
            panic!("nested put lost")
        };
        assert_eq!(put.key, b"p/k");
        let Some(request_op::Request::RequestRange(r)) = &out.failure[0].request else {
            panic!("range lost")
        };
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"p/r"[..], &b"p0"[..])
        );

        let resp = TxnResponse {
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponseRange(RangeResponse {
                    kvs: vec![KeyValue {
                        key: b"p/x".to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let out = TxnResponse::decode(
            ns.response("/etcdserverpb.KV/Txn", &resp.encode_to_vec())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let Some(response_op::Response::ResponseRange(r)) = &out.responses[0].response else {
            panic!("range response lost")
        };
        assert_eq!(r.kvs[0].key, b"x");
    }

    #[test]
    fn empty_keys_are_left_for_the_member_to_refuse() {
        let ns = Namespace::new("p/");
        let put = PutRequest::default();
        let out = ns
            .request("/etcdserverpb.KV/Put", &put.encode_to_vec())
            .unwrap();
        assert!(PutRequest::decode(out.as_slice()).unwrap().key.is_empty());
    }

    #[test]
    fn frames_split_and_joined_anyhow_come_out_whole_and_rewritten() {
        let ns = Namespace::new("w/");
        let create = |k: &[u8]| WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: k.to_vec(),
                    ..Default::default()
                },
            )),
        };
        let mut stream = frame(&create(b"a"));
        stream.extend(frame(&create(b"bb")));
        // Fed a byte at a time, then all at once: the same two messages.
        for chunk_size in [1, stream.len()] {
            let mut frames = Frames::default();
            let mut out = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                frames.push(chunk);
                out.extend_from_slice(
                    &frames
                        .rewrite(|m| ns.request("/etcdserverpb.Watch/Watch", m))
                        .unwrap(),
                );
            }
            assert_eq!(frames.pending(), 0);
            let mut expected = frame(&create(b"w/a"));
            expected.extend(frame(&create(b"w/bb")));
            assert_eq!(out, expected);
        }
        let mut compressed = frame(&create(b"a"));
        compressed[0] = 1;
        let mut frames = Frames::default();
        frames.push(&compressed);
        assert_eq!(frames.next_message(), Err(RewriteError::Compressed));
    }
}
