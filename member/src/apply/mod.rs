//! The state machine: applies committed raft entries to the member's state.
//!
//! `StateMachine` is openraft's side: it walks the committed entries, keeps the applied log
//! id and membership, and writes one RocksDB batch per apply call holding every change of its
//! entries, so a crash never half-applies an entry (after a restart openraft replays the log
//! from the applied id). The batch is not synced on its own; the raft log's synced appends make
//! it durable, and anything lost is re-applied. Each client request goes through the apply
//! pipeline (`layers`) to the `interpreter`; `snapshot` builds and installs raft snapshots;
//! `state` is what the read path shares.

pub(crate) mod compaction;
mod interpreter;
mod layers;
mod snapshot;
mod state;

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{Entry, EntryPayload, RaftSnapshotBuilder, StoredMembership};
use oxetcd_common::oxetcdpb::internal_raft_request::Request as Proposal;
use oxetcd_common::oxetcdpb::{InternalRaftRequest, RaftBatch};
use prost::Message;
use rocksdb::WriteBatch;

pub(crate) use snapshot::SnapshotTrigger;
pub(crate) use state::{off_runtime, MemberState, StateLock};

use interpreter::Interpreter;
use layers::{Alarms, Context, Dedup, Permissions};
use state::{load_state, read_err, restart_lease_clock, stage_applied, write_err};

use crate::auth::Tokens;
use crate::lease::Lessor;
use crate::peer::Forwarded;
use crate::raft::{ApplyResult, LogId, MemberNode, StorageError, TypeConfig};
use crate::storage::Storage;
use crate::waiters::{answer, Pending, Waiters};
use crate::watch::WatchHub;

/// etcd warns of an apply slower than this ("apply request took too long").
const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(100);

/// What the state machine reports (etcd's names in `crate::metrics`).
#[derive(Clone)]
pub(crate) struct ApplyMetrics {
    /// Latency of writing applied entries (etcd's backend commit).
    pub commit_latency: prometheus::Histogram,
    /// Applies slower than [`SLOW_APPLY`].
    pub slow_applies: prometheus::IntCounter,
    /// The applied log index (`etcd_server_proposals_applied_total`).
    pub applied: prometheus::IntGauge,
}

#[derive(Clone)]
pub(crate) struct StateMachine {
    storage: Storage,
    state: Arc<StateLock>,
    lessor: Arc<Lessor>,
    hub: WatchHub,
    /// The apply pipeline every client request goes through.
    pipeline: Arc<Dedup<Permissions<Alarms<Interpreter>>>>,
    /// This member's auth tokens (forgotten when a snapshot replaces the state).
    tokens: Arc<Tokens>,
    /// The file a snapshot being received from the leader is written to.
    receiving: Arc<std::sync::Mutex<Option<std::path::PathBuf>>>,
    /// Whether openraft asked for the current snapshot yet (its first ask, at start-up,
    /// needs only the meta; see `snapshot`).
    asked_for_snapshot: Arc<std::sync::atomic::AtomicBool>,
    /// Where compaction revisions go for the background task (`compaction`).
    compactions: tokio::sync::watch::Sender<i64>,
    metrics: ApplyMetrics,
    /// Counts applied requests towards the next raft snapshot.
    snapshots: Arc<SnapshotTrigger>,
    /// The proposer's waiters, answered here once their entry is applied.
    waiters: Arc<Waiters>,
}

/// Whether applying a request may hold the state lock for long: it may touch many keys.
fn may_take_long(req: &InternalRaftRequest) -> bool {
    match &req.request {
        Some(Proposal::DeleteRange(d)) => !d.range_end.is_empty(),
        Some(Proposal::Txn(t)) => crate::mvcc::txn_may_touch_many(t),
        // Deletes every key attached to the lease.
        Some(Proposal::LeaseRevoke(_)) => true,
        _ => false,
    }
}

/// An apply that may take long, for as long as it holds the state lock: readers wait for it
/// off the runtime's workers.
struct LongWrite<'a>(&'a StateLock);

impl Drop for LongWrite<'_> {
    fn drop(&mut self) {
        self.0.set_long(false);
    }
}

/// A loaded state may hold rows a compaction had not removed yet (a crash, a snapshot from
/// a member midway): have the background task finish it.
fn resume_compaction(compactions: &tokio::sync::watch::Sender<i64>, state: &MemberState) {
    let floor = state.mvcc.compaction_floor();
    if floor > 0 {
        compactions.send_replace(floor);
    }
}

/// What the state machine shares with the rest of the member.
pub(crate) struct Shared {
    pub lessor: Arc<Lessor>,
    pub hub: WatchHub,
    pub tokens: Arc<Tokens>,
    /// Hears every compaction revision applied (and the one found at start-up), for the
    /// background task that removes the rows (`compaction`).
    pub compactions: tokio::sync::watch::Sender<i64>,
    pub snapshots: Arc<SnapshotTrigger>,
    /// The proposer's waiters, answered once their entry is applied.
    pub waiters: Arc<Waiters>,
}

impl StateMachine {
    pub(crate) fn open(
        storage: Storage,
        shared: Shared,
        metrics: ApplyMetrics,
    ) -> Result<Self, StorageError> {
        let Shared {
            lessor,
            hub,
            tokens,
            compactions,
            snapshots,
            waiters,
        } = shared;
        snapshot::recover(&storage)?;
        let state = load_state(&storage)?;
        resume_compaction(&compactions, &state);
        restart_lease_clock(&lessor, &state.leases);
        let pipeline = Arc::new(Dedup {
            storage: storage.clone(),
            inner: Permissions {
                inner: Alarms {
                    inner: Interpreter {
                        storage: storage.clone(),
                        lessor: lessor.clone(),
                        tokens: tokens.clone(),
                        compactions: compactions.clone(),
                        hub: hub.clone(),
                    },
                },
            },
        });
        Ok(Self {
            storage,
            state: Arc::new(StateLock::new(state)),
            lessor,
            hub,
            pipeline,
            tokens,
            receiving: Default::default(),
            asked_for_snapshot: Default::default(),
            compactions,
            snapshots,
            waiters,
            metrics,
        })
    }

    pub(crate) fn state(&self) -> Arc<StateLock> {
        self.state.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build().await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, MemberNode>), StorageError> {
        let state = self.state.read().map_err(read_err)?;
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let started = std::time::Instant::now();
        let mut state = self.state.write().map_err(write_err)?;
        let mut batch = WriteBatch::default();
        let mut results = Vec::new();
        let mut published = Vec::new();
        // This member's proposer's waiters, answered once the batch is written.
        let mut answers: Vec<(Vec<Pending>, Forwarded)> = Vec::new();
        // Set once a request that may take long is seen (see `StateLock`).
        let mut long: Option<LongWrite<'_>> = None;
        for entry in entries {
            state.applied = Some(entry.log_id);
            let mut waiters = None;
            let responses = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
                EntryPayload::Normal(proposal) => match RaftBatch::decode(proposal.0.as_slice()) {
                    Ok(b) => {
                        waiters = self.waiters.take(b.proposer, b.proposal);
                        if long.is_none() && b.requests.iter().any(may_take_long) {
                            self.state.set_long(true);
                            long = Some(LongWrite(&self.state));
                        }
                        let run = || {
                            let mut out = Vec::with_capacity(b.requests.len());
                            for (position, req) in b.requests.into_iter().enumerate() {
                                let mut cx = Context {
                                    state: &mut state,
                                    batch: &mut batch,
                                    published: &mut published,
                                    log_index: entry.log_id.index,
                                    position: position as u32,
                                    who: None,
                                };
                                out.push(self.pipeline.apply_request(&mut cx, req));
                            }
                            out
                        };
                        if long.is_some() {
                            off_runtime(run)
                        } else {
                            run()
                        }
                    }
                    Err(e) => {
                        tracing::error!(
                            index = entry.log_id.index,
                            "undecodable proposal skipped: {e}"
                        );
                        Vec::new()
                    }
                },
            };
            self.snapshots.applied(responses.len().max(1) as u64);
            match waiters {
                Some(batch) => {
                    let applied = Forwarded {
                        results: responses,
                        term: entry.log_id.leader_id.term,
                        log_index: entry.log_id.index,
                    };
                    answers.push((batch, applied));
                    results.push(ApplyResult::default());
                }
                None => results.push(ApplyResult { responses }),
            }
        }
        state.mvcc.seal(&mut batch);
        stage_applied(&self.storage, &mut batch, &state.applied, &state.membership)?;
        let timer = self.metrics.commit_latency.start_timer();
        let write = || self.storage.db().write(batch).map_err(write_err);
        if long.is_some() {
            off_runtime(write)?;
        } else {
            write()?;
        }
        timer.observe_duration();
        if started.elapsed() > SLOW_APPLY {
            self.metrics.slow_applies.inc();
        }
        state.mvcc.batch_written();
        if let Some(applied) = &state.applied {
            self.metrics.applied.set(applied.index as i64);
        }
        // Watchers hear of a revision only once it is readable from the store.
        for (rev, events) in published {
            self.hub.publish(rev, events);
        }
        drop(state);
        drop(long);
        for (batch, applied) in answers {
            answer(batch, Ok(applied));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        self.receiving().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current().await
    }
}
