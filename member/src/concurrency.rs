//! Server-side Lock and Election (v3lockpb, v3electionpb), built like etcd's client-side
//! recipes they wrap: a key `<name>/<lease in hex>` created under the caller's lease, ordered by
//! create revision; the owner is the key with the lowest create revision. Waiting is driven by
//! the watch feed: every committed revision wakes the waiters, who re-check the prefix.

use std::sync::Arc;

use crate::auth::AuthInfo;
use crate::error::ServerError;
use crate::server::EtcdServer;
use oxetcd_common::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use oxetcd_common::mvccpb::KeyValue;
use oxetcd_common::oxetcdpb::internal_raft_request::Request as Proposal;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;

/// `name/` : the prefix all contenders of a lock or election share.
pub(crate) fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// `name/<lease hex>`: one contender's key.
pub(crate) fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

use oxetcd_common::net::prefix_end;

/// On whose behalf a step runs: a client's steps are checked at apply against its
/// permissions (as etcd's recipes run with the caller's token), the member's own cleanup of a
/// contender key it created is not.
#[derive(Clone, Copy)]
pub(crate) enum Actor<'a> {
    Client(Option<&'a AuthInfo>),
    Member,
}

pub(crate) async fn txn(
    server: &EtcdServer,
    actor: Actor<'_>,
    req: TxnRequest,
) -> Result<(TxnResponse, u64), ServerError> {
    let (bytes, term) = match actor {
        Actor::Client(who) => {
            server
                .propose_for(Proposal::Txn(req), String::new(), who)
                .await?
        }
        Actor::Member => server.propose(Proposal::Txn(req)).await?,
    };
    let resp = TxnResponse::decode(bytes.as_slice()).map_err(ServerError::bad_apply_result)?;
    Ok((resp, term))
}

fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        range_end: Vec::new(),
    }
}

fn op_put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn op_get(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

fn op_delete(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// Creates `key` under `lease` unless it exists; returns its create revision and current value.
pub(crate) async fn create_or_get(
    server: &EtcdServer,
    actor: Actor<'_>,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(i64, Option<KeyValue>), ServerError> {
    let (resp, _) = txn(
        server,
        actor,
        TxnRequest {
            compare: vec![create_revision_is(key, 0)],
            success: vec![op_put(key, value, lease)],
            failure: vec![op_get(key)],
        },
    )
    .await?;
    let rev = resp.header.map(|h| h.revision).unwrap_or_default();
    if resp.succeeded {
        return Ok((rev, None));
    }
    let existing = resp.responses.into_iter().find_map(|r| match r.response {
        Some(oxetcd_common::etcdserverpb::response_op::Response::ResponseRange(r)) => {
            r.kvs.into_iter().next()
        }
        _ => None,
    });
    let kv = existing.ok_or_else(|| ServerError::Internal("contender key vanished".into()))?;
    Ok((kv.create_revision, Some(kv)))
}

/// Puts `value` on `key` if it still has create revision `rev`; false if someone else's now.
pub(crate) async fn put_if_owner(
    server: &EtcdServer,
    actor: Actor<'_>,
    key: &[u8],
    rev: i64,
    value: &[u8],
    lease: i64,
) -> Result<(bool, Option<ResponseHeader>), ServerError> {
    let (resp, term) = txn(
        server,
        actor,
        TxnRequest {
            compare: vec![create_revision_is(key, rev)],
            success: vec![op_put(key, value, lease)],
            failure: vec![],
        },
    )
    .await?;
    let header = server.header(resp.header.map(|h| h.revision).unwrap_or_default(), term);
    Ok((resp.succeeded, header))
}

/// Deletes `key` if it still has create revision `rev` (whatever its revision with `None`:
/// Unlock's delete, as etcd's).
pub(crate) async fn delete_if_owner(
    server: &EtcdServer,
    actor: Actor<'_>,
    key: &[u8],
    rev: Option<i64>,
) -> Result<Option<ResponseHeader>, ServerError> {
    let compare = rev
        .map(|rev| vec![create_revision_is(key, rev)])
        .unwrap_or_default();
    let (resp, term) = txn(
        server,
        actor,
        TxnRequest {
            compare,
            success: vec![op_delete(key)],
            failure: vec![],
        },
    )
    .await?;
    Ok(server.header(resp.header.map(|h| h.revision).unwrap_or_default(), term))
}

/// The live key with the lowest create revision under `prefix`, and the current revision.
pub(crate) fn owner(
    server: &EtcdServer,
    prefix: &[u8],
) -> Result<(Option<KeyValue>, i64), ServerError> {
    let st = server.read_state()?;
    let end = prefix_end(prefix);
    let current = st.mvcc.current_rev();
    let mut oldest: Option<crate::mvcc::KeyAt> = None;
    for item in st.mvcc.range_index(prefix, &end, current) {
        let (_, at) = item?;
        if oldest.is_none_or(|o| at.created < o.created) {
            oldest = Some(at);
        }
    }
    let oldest = oldest.map(|at| at.modified);
    let kv = match oldest {
        Some(rev) => st.mvcc.fetch(&[rev])?.pop(),
        None => None,
    };
    Ok((kv, current))
}

/// Waits until `key` (created at `rev`) is the oldest key under `prefix`. Fails if the key
/// disappears meanwhile (its lease expired or someone deleted it).
pub(crate) async fn wait_until_owner(
    server: &Arc<EtcdServer>,
    prefix: &[u8],
    key: &[u8],
    rev: i64,
) -> Result<i64, ServerError> {
    // Subscribe before checking, so no change between the check and the wait is missed.
    let mut feed = server.watch_hub.subscribe();
    loop {
        let (first, current) = owner(server, prefix)?;
        match first {
            Some(kv) if kv.key == key && kv.create_revision == rev => return Ok(current),
            Some(_) => {}
            None => return Err(ServerError::ContenderDeleted),
        }
        {
            let st = server.read_state()?;
            let mine = st.mvcc.range_index(key, &[], current).next().transpose()?;
            if mine.map(|(_, at)| at.created) != Some(rev) {
                return Err(ServerError::ContenderDeleted);
            }
        }
        match feed.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err(ServerError::Stopped),
        }
    }
}

/// Deletes a contender key if the request that created it goes away before it is returned
/// (the client gave up waiting), as etcd's Mutex.Lock does on cancellation.
pub(crate) struct Abandon {
    server: Option<Arc<EtcdServer>>,
    key: Vec<u8>,
    rev: i64,
}

impl Abandon {
    pub(crate) fn new(server: Arc<EtcdServer>, key: Vec<u8>, rev: i64) -> Self {
        Self {
            server: Some(server),
            key,
            rev,
        }
    }

    /// The request completed: keep the key.
    pub(crate) fn keep(mut self) {
        self.server = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let (key, rev) = (std::mem::take(&mut self.key), self.rev);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = delete_if_owner(&server, Actor::Member, &key, Some(rev)).await;
                });
            }
        }
    }
}
