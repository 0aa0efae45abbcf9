//! When a member campaigns: raft's pre-vote (etcd's `--pre-vote`, on by default since 3.5),
//! which openraft 0.9 lacks. openraft's own election timer is off (`enable_elect: false`);
//! this module's task watches for a voter that has not heard from a leader for a randomized
//! `[E, 1.5E)` (E: `--election-timeout`), asks the other voters whether they would vote for it
//! (a pre-vote changes nothing on either side), and only with a majority has openraft
//! campaign. A voter says yes only if it has not heard from a leader for E itself (a leader:
//! has had no quorum's acknowledgement for E) and the candidate's log is at least as new as
//! its own.
//!
//! What that buys: a member cut off from the others never raises its term, so when it comes
//! back it does not unseat a healthy leader; and a follower whose log lags cannot campaign,
//! so it cannot hold the up-to-date one off for a vote lease (which made elections after a
//! leader failure take up to 3–4.6 s, `tests/tests/recovery.rs`).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::LogId;
use crate::peer::PeerError;
use crate::server::EtcdServer;

/// What a would-be candidate asks: would you vote for me in `term`?
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PreVoteRequest {
    pub candidate: u64,
    /// The term it would campaign in (its current term + 1).
    pub term: u64,
    pub last_log: Option<LogId>,
}

/// This member's view of leadership, for the leader gauges (see [`Elections::leadership`]).
pub(crate) struct Leadership {
    pub leader: Option<u64>,
    pub leading: bool,
    pub learner: bool,
}

/// The election clock shared by the campaign task, the peer service (which reports contact
/// from the leader and answers pre-votes) and leadership transfer (which holds elections).
pub(crate) struct Elections {
    /// The leader as etcd would report it: raft's, but none once a follower has not heard
    /// from it for an election timeout (etcd's raft forgets its leader when its election
    /// timer fires; openraft 0.9 keeps it until a new one wins, and with pre-vote a member
    /// cut off from a majority never starts one).
    leader: tokio::sync::watch::Sender<Option<u64>>,
    election_timeout: Duration,
    /// `--pre-vote`: false campaigns as soon as due, as raft without pre-vote does.
    pre_vote: bool,
    state: Mutex<Clock>,
}

struct Clock {
    /// When this member last accepted an append or snapshot from a leader (or started).
    last_contact: Instant,
    /// When this member last tried (a pre-vote round); the next try waits a timeout again.
    last_try: Instant,
    /// This round's randomized timeout.
    timeout: Duration,
    /// No campaign before this (a leadership transfer asked), and the hold's generation.
    held_until: Option<Instant>,
    hold_generation: u64,
}

impl Elections {
    pub(crate) fn new(election_timeout: Duration, pre_vote: bool) -> Self {
        let now = Instant::now();
        Elections {
            leader: tokio::sync::watch::Sender::new(None),
            election_timeout,
            pre_vote,
            state: Mutex::new(Clock {
                last_contact: now,
                last_try: now,
                timeout: random_timeout(election_timeout),
                held_until: None,
                hold_generation: 0,
            }),
        }
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader as etcd would report it (see [`Elections`]), from raft's metrics now.
    pub(crate) fn leader(&self, raft: &super::Raft, me: u64) -> Option<u64> {
        self.leadership(raft, me).leader
    }

    /// This member's view of leadership (the leader as etcd reports it, whether this member
    /// leads, whether it is a learner), all from one snapshot of raft's server metrics. Those
    /// are published before openraft's whole metrics, so they are never the older of the two;
    /// reading the leader from one and the state from the other once showed a member leading
    /// while `has_leader` said 0.
    pub(crate) fn leadership(&self, raft: &super::Raft, me: u64) -> Leadership {
        let m = raft.server_metrics();
        let m = m.borrow();
        let leading = m.state == ServerState::Leader;
        Leadership {
            leader: self.view(m.current_leader, me, leading),
            leading,
            learner: m.state == ServerState::Learner,
        }
    }

    fn view(&self, raft_leader: Option<u64>, me: u64, leading: bool) -> Option<u64> {
        let silent = self.clock().last_contact.elapsed() >= self.election_timeout;
        match (leading, silent) {
            (true, _) => Some(me),
            (false, true) => None,
            (false, false) => raft_leader,
        }
    }

    /// Changes of [`Elections::leader`] that come with time (a leader falling silent),
    /// published by the campaign task at each tick; raft's own changes are in its metrics.
    pub(crate) fn leader_changes(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.leader.subscribe()
    }

    fn see_leader(&self, raft_leader: Option<u64>, me: u64, leading: bool) {
        let view = self.view(raft_leader, me, leading);
        self.leader.send_if_modified(|l| {
            let changed = *l != view;
            *l = view;
            changed
        });
    }

    /// A leader's append or snapshot was accepted.
    pub(crate) fn heard_from_leader(&self) {
        self.clock().last_contact = Instant::now();
    }

    /// No campaign for `d` (a leadership transfer's other voters); returns the hold's
    /// generation: only the latest hold lifts itself ([`Elections::lift`]).
    pub(crate) fn hold(&self, d: Duration) -> u64 {
        let mut c = self.clock();
        c.held_until = Some(Instant::now() + d);
        c.hold_generation += 1;
        c.hold_generation
    }

    /// Lifts the hold of `generation`, or any hold (`None`).
    pub(crate) fn lift(&self, generation: Option<u64>) {
        let mut c = self.clock();
        if generation.is_none_or(|g| g == c.hold_generation) {
            c.held_until = None;
        }
    }

    /// Whether a voter that is not the leader may campaign now.
    fn due(&self) -> bool {
        let c = self.clock();
        let now = Instant::now();
        let held = c.held_until.is_some_and(|t| now < t);
        !held && now.duration_since(c.last_contact.max(c.last_try)) >= c.timeout
    }

    fn tried(&self) {
        let mut c = self.clock();
        c.last_try = Instant::now();
        c.timeout = random_timeout(self.election_timeout);
    }

    /// This member's answer to a pre-vote.
    pub(crate) fn grants(&self, server: &EtcdServer, req: &PreVoteRequest) -> bool {
        let (term, leading, quorum_ack) = {
            let m = server.raft.metrics();
            let m = m.borrow();
            (
                m.current_term,
                m.state == ServerState::Leader,
                m.millis_since_quorum_ack,
            )
        };
        if req.term <= term {
            tracing::debug!(
                candidate = req.candidate,
                req.term,
                term,
                "pre-vote refused: term"
            );
            return false;
        }
        let timeout = self.election_timeout;
        let in_lease = match leading {
            true => quorum_ack.is_some_and(|ms| Duration::from_millis(ms) < timeout),
            false => self.clock().last_contact.elapsed() < timeout,
        };
        if in_lease {
            tracing::debug!(
                candidate = req.candidate,
                "pre-vote refused: a leader is alive"
            );
            return false;
        }
        let mine = super::log_store::last_log_id(&server.storage);
        if req.last_log < mine {
            tracing::debug!(candidate = req.candidate, ?mine, theirs = ?req.last_log, "pre-vote refused: log");
            return false;
        }
        true
    }
}

/// `[E, 1.5E)`.
fn random_timeout(e: Duration) -> Duration {
    let ms = e.as_millis() as u64;
    Duration::from_millis(ms + rand::rng().random_range(0..=ms / 2))
}

/// The campaign task: checks every heartbeat interval whether this voter is due, then runs a
/// pre-vote round and, with a majority, has openraft campaign.
/// It also keeps the etcd view of the leader ([`Elections::leader`]) current.
pub(crate) async fn campaign_when_due(server: Weak<EtcdServer>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        // The voters as raft knows them (a membership not applied yet included: at the
        // first start nothing is applied).
        let (term, voters, state, raft_leader) = {
            let m = server.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let voters: Vec<(u64, Option<super::MemberNode>)> = membership
                .voter_ids()
                .map(|id| (id, membership.get_node(&id).cloned()))
                .collect();
            (m.current_term, voters, m.state, m.current_leader)
        };
        let me = server.member_id;
        let leading = state == ServerState::Leader;
        server.elections.see_leader(raft_leader, me, leading);
        if state == ServerState::Leader || !voters.iter().any(|(id, _)| *id == me) {
            // A leader or a learner does not campaign; count a fresh timeout from here.
            server.elections.tried();
            continue;
        }
        // A sole voter has nobody to hear from or to ask: it campaigns at once (etcd
        // fast-forwards its election ticks alike), so a restarted single member serves
        // without waiting out an election timeout.
        let alone = voters.len() == 1;
        if !alone && !server.elections.due() {
            continue;
        }
        server.elections.tried();
        let req = PreVoteRequest {
            candidate: me,
            term: term + 1,
            last_log: super::log_store::last_log_id(&server.storage),
        };
        let won = !server.elections.pre_vote || pre_vote(&server, &voters, &req).await;
        tracing::debug!(term = req.term, won, ?state, "pre-vote round");
        if won {
            tracing::info!(term = req.term, "pre-vote won, campaigning");
            if let Err(e) = server.raft.trigger().elect().await {
                tracing::warn!("cannot campaign: {e}");
                return;
            }
        }
    }
}

/// Asks the other voters; true once a majority (this member included) would vote for it.
async fn pre_vote(
    server: &Arc<EtcdServer>,
    voters: &[(u64, Option<super::MemberNode>)],
    req: &PreVoteRequest,
) -> bool {
    let needed = voters.len() / 2 + 1;
    let mut granted = 1;
    if granted >= needed {
        return true;
    }
    let timeout = server.elections.election_timeout / 2;
    let mut asks: FuturesUnordered<_> = voters
        .iter()
        .filter(|(id, _)| *id != server.member_id)
        .filter_map(|(_, node)| node.clone())
        .map(|node| async move {
            match server.peers.pre_vote(&node, req, timeout).await {
                Ok(yes) => yes,
                // A member of an older version has no pre-vote: it votes as raft does.
                Err(PeerError::Unimplemented) => true,
                Err(_) => false,
            }
        })
        .collect();
    while let Some(yes) = asks.next().await {
        if yes {
            granted += 1;
            if granted >= needed {
                return true;
            }
        }
    }
    false
}
