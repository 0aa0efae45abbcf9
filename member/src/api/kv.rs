//! etcdserverpb.KV: Range is served locally (after a read barrier unless serializable); Put,
//! DeleteRange, Txn and Compact go through raft.

use std::sync::Arc;

use oxetcd_common::etcdserverpb::kv_server::Kv;
use oxetcd_common::etcdserverpb::{
    range_request, request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RangeStreamResponse,
    TxnRequest, TxnResponse,
};
use oxetcd_common::oxetcdpb::internal_raft_request::Request as Proposal;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::request_id;
use crate::auth::{AuthError, AuthStore};
use crate::identity::Credentials;
use crate::mvcc;
use crate::quota;
use crate::server::EtcdServer;

pub(super) struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }

    /// Proposes a write as the request's caller (permissions are checked at apply).
    async fn propose<R: Message + Default>(
        &self,
        (creds, id): (Credentials, String),
        p: Proposal,
    ) -> Result<(R, u64), Status> {
        let who = creds.who(&self.server).await?;
        let (bytes, term) = self.server.propose_for(p, id, who.as_ref()).await?;
        let resp = R::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("etcdserver: bad apply result: {e}")))?;
        Ok((resp, term))
    }

    /// Who sent the request, and its request ID, taken before the body is.
    fn sender<T>(&self, request: &Request<T>) -> (Credentials, String) {
        (Credentials::of(&self.server, request), request_id(request))
    }

    /// What a Range and a RangeStream do before reading: the request's own checks, the read
    /// barrier unless serializable, and who asks (their permission is checked by the caller,
    /// with the state it reads).
    async fn admit_range(
        &self,
        request: Request<RangeRequest>,
        check: fn(&RangeRequest) -> Result<(), mvcc::KvError>,
    ) -> Result<(RangeRequest, crate::auth::AuthInfo), Status> {
        let creds = Credentials::of(&self.server, &request);
        let req = request.into_inner();
        check(&req)?;
        if !req.serializable {
            self.server.read_barrier().await?;
        }
        let who = creds.who(&self.server).await?.unwrap_or_default();
        Ok((req, who))
    }

    /// A Range, admitted and its permission checked, read by `read` (see `read_state_with`).
    async fn read_range<T>(
        &self,
        request: Request<RangeRequest>,
        read: impl FnOnce(&dyn mvcc::KvRead, &RangeRequest) -> Result<T, mvcc::KvError>,
    ) -> Result<T, Status> {
        let (req, who) = self.admit_range(request, mvcc::check_range).await?;
        self.read_state_with(
            mvcc::may_read_many(&req),
            |auth| auth.check_range(&who, &req),
            |store| read(store, &req),
        )
    }

    /// Reads with `read` once `permitted` allows it: under the state lock, or, for a read
    /// that may touch `many` keys, from a snapshot with the lock released and off the
    /// runtime's workers. Applies go on meanwhile (and the reads queued behind a waiting
    /// apply), and the worker's other tasks, the raft heartbeats among them, move to another
    /// thread: two full Ranges of 1M keys on a leader (about a second of reading each) held
    /// up both workers and cost it its term.
    fn read_state_with<T>(
        &self,
        many: bool,
        permitted: impl FnOnce(&AuthStore) -> Result<(), AuthError>,
        read: impl FnOnce(&dyn mvcc::KvRead) -> Result<T, mvcc::KvError>,
    ) -> Result<T, Status> {
        if !many {
            let state = self.server.read_state()?;
            permitted(&state.auth)?;
            return Ok(read(&state.mvcc)?);
        }
        crate::apply::off_runtime(|| {
            let view = {
                let state = self.server.read_state()?;
                permitted(&state.auth)?;
                mvcc::View::of(&state.mvcc, &self.server.storage)
            };
            Ok(read(&view)?)
        })
    }

    /// A Range as the gRPC API answers it: its key-values left encoded where the request
    /// allows (see `mvcc::range_encoded`).
    pub(super) async fn range_encoded(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<mvcc::EncodedRange, Status> {
        let mut resp = self
            .read_range(request, |store, req| {
                Ok(match mvcc::range_encoded(store, req)? {
                    Some(kvs) => mvcc::EncodedRange::Encoded { header: None, kvs },
                    None => mvcc::EncodedRange::Message(mvcc::range(store, req)?),
                })
            })
            .await?;
        resp.set_header(self.server.header(resp.revision(), self.server.term()));
        Ok(resp)
    }

    fn revision_of(h: &Option<oxetcd_common::etcdserverpb::ResponseHeader>) -> i64 {
        h.as_ref().map(|h| h.revision).unwrap_or_default()
    }
}

/// Is this txn read-only (no put, delete or nested write in either branch)? And are all its
/// ranges serializable? etcd serves such txns without a raft round trip.
fn txn_reads(t: &TxnRequest) -> (bool, bool) {
    let mut read_only = true;
    let mut serializable = true;
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => serializable &= r.serializable,
            Some(request_op::Request::RequestTxn(n)) => {
                let (ro, s) = txn_reads(n);
                read_only &= ro;
                serializable &= s;
            }
            Some(_) => read_only = false,
            None => {}
        }
    }
    (read_only, serializable)
}

/// A RangeStream's first chunk: etcd's `initialStreamChunkLimit`.
const FIRST_CHUNK_KEYS: i64 = 10;
/// Chunks a RangeStream keeps ready ahead of the client: what bounds its memory.
const CHUNKS_AHEAD: usize = 2;

/// etcd's `adjustChunkLimit`: the next chunk's key count, doubled while chunks come out under
/// half the target size and halved while over twice it.
fn next_chunk_limit(last: i64, last_size: usize, target: usize) -> i64 {
    let next = match last_size {
        s if s < target / 2 => last.saturating_mul(2),
        s if s > target.saturating_mul(2) => last / 2,
        _ => last,
    };
    next.max(1)
}

/// Sends the chunks of a RangeStream (checked, read barrier and permissions done) to `tx`:
/// each read under the state lock on its own, all at the revision of the first, as etcd's
/// `rangeStream`. Returns early if the client goes away.
async fn stream_range(
    server: &EtcdServer,
    mut req: RangeRequest,
    tx: &tokio::sync::mpsc::Sender<Result<RangeStreamResponse, Status>>,
) -> Result<(), Status> {
    let send = |range_response| async {
        tx.send(Ok(RangeStreamResponse {
            range_response: Some(range_response),
        }))
        .await
        .is_ok()
    };
    if req.count_only {
        let resp = mvcc::range(&server.read_state()?.mvcc, &req)?;
        let rev = KvService::revision_of(&resp.header);
        send(RangeResponse {
            header: server.header(rev, server.term()),
            count: resp.count,
            ..Default::default()
        })
        .await;
        return Ok(());
    }
    // The chunks come in key order whatever the (default) order asked for.
    req.sort_order = range_request::SortOrder::None as i32;
    let total = if req.limit > 0 { req.limit } else { i64::MAX };
    req.limit = FIRST_CHUNK_KEYS.min(total);
    let mut count = 0i64;
    let mut header_rev = 0;
    loop {
        let resp = mvcc::range_chunk(&server.read_state()?.mvcc, &req)?;
        if header_rev == 0 {
            header_rev = KvService::revision_of(&resp.header);
            if req.revision == 0 {
                req.revision = header_rev;
            }
        }
        count += resp.kvs.len() as i64;
        let next_key = match (resp.more, resp.kvs.last()) {
            (true, Some(last)) => {
                let mut k = last.key.clone();
                k.push(0);
                Some(k)
            }
            _ => None,
        };
        let size = resp.encoded_len();
        let done = !resp.more || count == total;
        let mut out = RangeResponse {
            kvs: resp.kvs,
            ..Default::default()
        };
        if done {
            out.header = server.header(header_rev, server.term());
            out.more = resp.more;
            out.count = count;
            if let Some(next) = &next_key {
                let rest = RangeRequest {
                    key: next.clone(),
                    count_only: true,
                    ..req.clone()
                };
                out.count += mvcc::range(&server.read_state()?.mvcc, &rest)?.count;
            }
        }
        if !send(out).await || done {
            return Ok(());
        }
        if let Some(next) = next_key {
            req.key = next;
        }
        req.limit =
            next_chunk_limit(req.limit, size, server.limits.max_request_bytes).min(total - count);
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let mut resp = self
            .read_range(request, |store, req| mvcc::range(store, req))
            .await?;
        resp.header = self
            .server
            .header(Self::revision_of(&resp.header), self.server.term());
        Ok(Response::new(resp))
    }

    type RangeStreamStream = ReceiverStream<Result<RangeStreamResponse, Status>>;

    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let (req, who) = self.admit_range(request, mvcc::check_range_stream).await?;
        self.server.read_state()?.auth.check_range(&who, &req)?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let server = self.server.clone();
        tokio::spawn(async move {
            if let Err(e) = stream_range(&server, req, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let from = self.sender(&request);
        let req = request.into_inner();
        mvcc::check_put(&req)?;
        self.server.check_quota(quota::put_cost(&req)).await?;
        let (mut resp, term): (PutResponse, _) = self.propose(from, Proposal::Put(req)).await?;
        resp.header = self.server.header(Self::revision_of(&resp.header), term);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let from = self.sender(&request);
        let req = request.into_inner();
        mvcc::check_delete(&req)?;
        let (mut resp, term): (DeleteRangeResponse, _) =
            self.propose(from, Proposal::DeleteRange(req)).await?;
        resp.header = self.server.header(Self::revision_of(&resp.header), term);
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let (creds, id) = self.sender(&request);
        let req = request.into_inner();
        mvcc::check_txn(&req, self.server.limits.max_txn_ops)?;
        let (read_only, serializable) = txn_reads(&req);
        if read_only {
            if !serializable {
                self.server.read_barrier().await?;
            }
            let who = creds.who(&self.server).await?.unwrap_or_default();
            let mut resp = self.read_state_with(
                mvcc::txn_may_touch_many(&req),
                |auth| auth.check_txn(&who, &req, &|_| Vec::new()),
                |store| mvcc::read_txn(store, &req),
            )?;
            resp.header = self
                .server
                .header(Self::revision_of(&resp.header), self.server.term());
            return Ok(Response::new(resp));
        }
        // etcd 3.4 checks every txn, so over the quota not even a delete or a read-only txn
        // passes; only txns with puts are checked here, so a client can free space with them.
        let cost = quota::txn_cost(&req);
        if cost > 0 {
            self.server.check_quota(cost).await?;
        }
        let (mut resp, term): (TxnResponse, _) =
            self.propose((creds, id), Proposal::Txn(req)).await?;
        resp.header = self.server.header(Self::revision_of(&resp.header), term);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let from = self.sender(&request);
        let req = request.into_inner();
        let (rev, physical) = (req.revision, req.physical);
        let (mut resp, term): (CompactionResponse, _) =
            self.propose(from, Proposal::Compaction(req)).await?;
        // etcd's `physical`: answer once this member's rows are gone, not only unreachable.
        if physical {
            let mut done = self.server.compacted.clone();
            let _ = done.wait_for(|d| *d >= rev).await;
        }
        resp.header = self.server.header(Self::revision_of(&resp.header), term);
        Ok(Response::new(resp))
    }
}
