//! The apply pipeline: every committed client request passes through a chain of small layers
//! around the interpreter, as in etcd's applier (auth, quota, capped, corrupt check around
//! one interpreter). A layer may answer by itself (a request applied before), refuse the
//! request (a permission or quota check) or pass it on; what it stages goes into the same
//! RocksDB batch as the request's own writes, so a layer's record and the request it guards
//! are durable together.
//!
//! Today: [`Dedup`] (request IDs applied once) around [`super::interpreter::Interpreter`].
//! Permission and quota checks come in as layers here.

use oxetcd_common::mvccpb::Event;
use oxetcd_common::oxetcdpb::internal_raft_request::Request;
use oxetcd_common::oxetcdpb::InternalRaftRequest;
use rocksdb::WriteBatch;

use super::state::MemberState;
use crate::dedup;
use crate::mvcc::KvError;
use crate::storage::Storage;

/// What a layer applies a request to: the state, the batch its writes are staged in, the
/// events it made (published once the batch is written), and where the request sits in the log.
pub(super) struct Context<'a> {
    pub(super) state: &'a mut MemberState,
    pub(super) batch: &'a mut WriteBatch,
    pub(super) published: &'a mut Vec<(i64, Vec<Event>)>,
    pub(super) log_index: u64,
    pub(super) position: u32,
}

/// One layer of the pipeline.
pub(super) trait Applier {
    fn apply(&self, cx: &mut Context<'_>, req: Request) -> Result<Vec<u8>, KvError>;
}

/// Answers a request whose ID was applied before with its first result, and records the
/// result of a new one (see `dedup`): a client that sends a write again after a failover gets
/// it applied once.
pub(super) struct Dedup<A> {
    pub(super) storage: Storage,
    pub(super) inner: A,
}

impl<A: Applier> Dedup<A> {
    /// The pipeline's entry: a request as proposed, with its optional ID.
    pub(super) fn apply_request(
        &self,
        cx: &mut Context<'_>,
        req: InternalRaftRequest,
    ) -> Result<Vec<u8>, KvError> {
        let id = Some(req.request_id).filter(|id| !id.is_empty() && id.len() <= dedup::MAX_ID_LEN);
        if let Some(first) = id.as_deref().and_then(|id| cx.state.requests.get(id)) {
            return first;
        }
        let result = match req.request {
            Some(r) => self.inner.apply(cx, r),
            // A request kind this member does not know (a newer member proposed it): every
            // member of this version skips it the same way.
            None => Err(KvError::Corrupt("unknown request kind".into())),
        };
        if let Some(id) = id {
            cx.state.requests.record(
                &self.storage,
                id,
                cx.log_index,
                cx.position,
                &result,
                cx.batch,
            );
        }
        result
    }
}
