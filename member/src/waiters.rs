//! Requests waiting for their raft entry, as etcd's `pkg/wait`: the proposer registers an
//! entry's waiters under a proposal number the entry carries (`RaftBatch.proposer` and
//! `.proposal`), and the state machine answers them as soon as it has applied the entry, rather
//! than handing the results back through openraft's core to the proposer task, two task
//! hand-offs later. Whoever takes a registration answers it: the state machine after the
//! apply, or the proposer when its write failed (or was applied without the number, which
//! cannot happen, but then the proposer still answers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use oxetcd_common::oxetcdpb::InternalRaftRequest;
use tokio::sync::oneshot;

use crate::error::ServerError;
use crate::peer::{Forwarded, PeerError};

/// The result a proposer hands back: encoded response and the entry's raft term.
pub(crate) type ProposalResult = Result<(Vec<u8>, u64), ServerError>;

/// Requests waiting to be proposed: one of this member's, or a batch a follower forwarded.
pub(crate) struct Pending {
    pub requests: Vec<InternalRaftRequest>,
    /// Encoded size of the requests.
    pub size: usize,
    pub waiter: Waiter,
}

/// Who waits for a [`Pending`]'s results.
pub(crate) enum Waiter {
    /// A request of this member's clients, or of the member itself: its one result.
    Local(oneshot::Sender<ProposalResult>),
    /// A batch forwarded by a follower (see `EtcdServer::write_forwarded`): the results of
    /// all its requests and the entry's term and index. Written here or refused, never
    /// forwarded again.
    Forwarded(oneshot::Sender<Result<Forwarded, PeerError>>),
}

/// The registry: one member's entries in flight, by proposal number.
pub(crate) struct Waiters {
    /// This member's ID: an entry's number is this member's only if it names it as proposer.
    member_id: u64,
    /// The next proposal number; starts from the time, so numbers differ across restarts (an
    /// entry of a previous life may still be applied after this one registers).
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Vec<Pending>>>,
}

impl Waiters {
    /// `first`: the first proposal number, the time the member started (see `next`).
    pub(crate) fn new(member_id: u64, first: u64) -> Self {
        Self {
            member_id,
            next: AtomicU64::new(first),
            waiting: Mutex::default(),
        }
    }

    /// Registers `batch`'s waiters under a new number; returns the payload of its entry (an
    /// encoded `RaftBatch`: every request of `batch` in order, this member and the number) and
    /// the number.
    pub(crate) fn register(&self, batch: Vec<Pending>) -> (Vec<u8>, u64) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let payload = encode(&batch, self.member_id, number);
        self.lock().insert(number, batch);
        (payload, number)
    }

    /// Takes back this member's own registration `number` (see [`Waiters::register`]).
    pub(crate) fn take_own(&self, number: u64) -> Option<Vec<Pending>> {
        self.take(self.member_id, number)
    }

    /// Takes the waiters of the entry `proposer` numbered `number`, if they are this
    /// member's and nobody took them yet.
    pub(crate) fn take(&self, proposer: u64, number: u64) -> Option<Vec<Pending>> {
        if proposer != self.member_id {
            return None;
        }
        self.lock().remove(&number)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Pending>>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An entry's payload: `batch`'s requests, in order, and the entry's number.
fn encode(batch: &[Pending], proposer: u64, proposal: u64) -> Vec<u8> {
    use prost::encoding::{message, uint64};
    let len: usize = batch
        .iter()
        .flat_map(|p| &p.requests)
        .map(|r| message::encoded_len(1, r))
        .sum::<usize>()
        + uint64::encoded_len(2, &proposer)
        + uint64::encoded_len(3, &proposal);
    let mut payload = Vec::with_capacity(len);
    for r in batch.iter().flat_map(|p| &p.requests) {
        // A repeated message field is its elements' encodings one after another.
        message::encode(1, r, &mut payload);
    }
    uint64::encode(2, &proposer, &mut payload);
    uint64::encode(3, &proposal, &mut payload);
    payload
}

/// Hands each waiter of `batch` its share of an entry's results, in order, or the error.
pub(crate) fn answer(batch: Vec<Pending>, written: Result<Forwarded, ServerError>) {
    let (mut results, term, log_index) = match written {
        Ok(f) => (f.results.into_iter(), f.term, f.log_index),
        Err(e) => {
            for p in batch {
                match p.waiter {
                    Waiter::Local(w) => {
                        let _ = w.send(Err(e.clone()));
                    }
                    Waiter::Forwarded(w) => {
                        let _ = w.send(Err(PeerError::Server(e.clone())));
                    }
                }
            }
            return;
        }
    };
    for p in batch {
        match p.waiter {
            Waiter::Local(w) => {
                let r = match results.next() {
                    Some(Ok(b)) => Ok((b, term)),
                    Some(Err(e)) => Err(e),
                    None => Err(ServerError::Internal(
                        "entry applied without a result".into(),
                    )),
                };
                let _ = w.send(r);
            }
            Waiter::Forwarded(w) => {
                let _ = w.send(Ok(Forwarded {
                    results: results.by_ref().take(p.requests.len()).collect(),
                    term,
                    log_index,
                }));
            }
        }
    }
}

/// After an entry with forwarded batches could not be written here: the followers' batches
/// are refused (they find the leader themselves), this member's own requests are returned to
/// go on their way, unless the deadline passed (`late`: the entry may still be applied, so they
/// must not be proposed again).
pub(crate) fn refuse_forwarded(batch: Vec<Pending>, late: bool) -> Vec<Pending> {
    let mut local = Vec::new();
    for p in batch {
        match p.waiter {
            Waiter::Forwarded(w) => {
                let refusal = if late {
                    PeerError::Server(ServerError::TimedOut)
                } else {
                    PeerError::NotLeader
                };
                let _ = w.send(Err(refusal));
            }
            Waiter::Local(w) if late => {
                let _ = w.send(Err(ServerError::TimedOut));
            }
            Waiter::Local(_) => local.push(p),
        }
    }
    local
}
