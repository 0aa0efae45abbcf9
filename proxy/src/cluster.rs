//! What the proxy knows of the cluster: its members, which are healthy, and which is the leader.
//!
//! A background task keeps it fresh: every `--health-check-interval` it asks each member for
//! `Status` (health, and who it thinks leads), and every `--endpoints-auto-sync-interval` it
//! reads `MemberList` so members that join or leave are picked up without a restart. The data
//! plane reports failures back ([`Cluster::report_unreachable`]), which marks the member down
//! and triggers a check at once, so a dead leader is noticed in one round trip, not one interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use oxetcd_common::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_common::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_common::etcdserverpb::{MemberListRequest, StatusRequest};
use tokio::sync::{watch, Notify};
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::config::host_port;
use crate::metrics::Metrics;
use crate::tls::UpstreamTls;

/// How long a health check or member list may take. Not set on the channels themselves: it
/// would be sent as `grpc-timeout` and end a coalesced watch stream after it.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A member the data plane can send a request to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Member ID; 0 for a seed endpoint not yet identified by `MemberList`.
    pub id: u64,
    /// `host:port` of its client URL.
    pub addr: String,
    /// Label for metrics: the member name, or its address if unnamed.
    pub label: String,
    /// The member applies a write tagged with a request ID once (an oxetcd member says so
    /// in its `Status`), so a write in flight when it died may be sent to the new leader.
    pub dedup: bool,
}

#[derive(Clone, Debug)]
struct MemberState {
    upstream: Upstream,
    healthy: bool,
    learner: bool,
    /// The highest revision the member is known to have applied (from its answers).
    revision: Arc<AtomicI64>,
}

#[derive(Default)]
struct View {
    members: Vec<MemberState>,
    leader: Option<u64>,
    term: u64,
}

pub struct Cluster {
    view: RwLock<View>,
    /// The leader's upstream, for requests waiting on a leader change.
    leader_tx: watch::Sender<Option<Upstream>>,
    kick: Notify,
    /// Counts finished health rounds, for requests waiting on a member to catch up.
    rounds: watch::Sender<u64>,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
    tls: Option<Arc<UpstreamTls>>,
    /// gRPC channels to members by address, for the proxy's own calls (health, discovery,
    /// coalesced watches), with the TLS generation they were made under.
    channels: std::sync::Mutex<(Option<u64>, HashMap<String, Channel>)>,
}

impl Cluster {
    /// Starts from the seed endpoints; nothing is known healthy until the first check.
    pub fn new(
        seeds: &[String],
        metrics: Arc<Metrics>,
        tls: Option<Arc<UpstreamTls>>,
    ) -> Arc<Self> {
        let members = seeds
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| MemberState {
                upstream: Upstream {
                    id: 0,
                    addr: host_port(s).to_string(),
                    label: host_port(s).to_string(),
                    dedup: false,
                },
                healthy: true,
                learner: false,
                revision: Default::default(),
            })
            .collect();
        Arc::new(Cluster {
            view: RwLock::new(View {
                members,
                leader: None,
                term: 0,
            }),
            leader_tx: watch::channel(None).0,
            kick: Notify::new(),
            rounds: watch::channel(0).0,
            next: AtomicUsize::new(0),
            metrics,
            tls,
            channels: Default::default(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader, if known and believed healthy.
    pub fn leader(&self) -> Option<Upstream> {
        self.leader_tx.borrow().clone()
    }

    /// Waits up to `timeout` for a leader to be known. Used by leader-bound requests that find
    /// none (an election is under way, or the leader was just found dead).
    pub async fn wait_leader(&self, timeout: Duration) -> Option<Upstream> {
        let mut rx = self.leader_tx.subscribe();
        let found = tokio::time::timeout(timeout, rx.wait_for(|l| l.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().map(|l| l.clone()));
        found.flatten()
    }

    /// A healthy voting member, round robin; any member if none is believed healthy (a stale
    /// health view must not turn into refusing all reads).
    pub fn any_member(&self) -> Option<Upstream> {
        let v = self.read();
        let healthy: Vec<&MemberState> = v
            .members
            .iter()
            .filter(|m| m.healthy && !m.learner)
            .collect();
        let pool: Vec<&MemberState> = if healthy.is_empty() {
            v.members.iter().collect()
        } else {
            healthy
        };
        if pool.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        Some(pool[i].upstream.clone())
    }

    /// A healthy voting member known to have applied `revision`, round robin.
    pub fn member_at(&self, revision: i64) -> Option<Upstream> {
        let v = self.read();
        let pool: Vec<&MemberState> = v
            .members
            .iter()
            .filter(|m| m.healthy && !m.learner && m.revision.load(Ordering::Relaxed) >= revision)
            .collect();
        if pool.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        Some(pool[i].upstream.clone())
    }

    /// Waits up to `timeout` for a member known to have applied `revision`, checking the
    /// members at once rather than at the next interval.
    pub async fn wait_member_at(&self, revision: i64, timeout: Duration) -> Option<Upstream> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rounds = self.rounds.subscribe();
        loop {
            if let Some(up) = self.member_at(revision) {
                return Some(up);
            }
            self.kick.notify_one();
            if tokio::time::timeout_at(deadline, rounds.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// A member at `addr` answered at `revision`.
    pub fn observe_revision(&self, addr: &str, revision: i64) {
        let v = self.read();
        if let Some(m) = v.members.iter().find(|m| m.upstream.addr == addr) {
            m.revision.fetch_max(revision, Ordering::Relaxed);
        }
    }

    /// A revision every voting member is known to have applied.
    pub fn settled_revision(&self) -> i64 {
        self.read()
            .members
            .iter()
            .filter(|m| !m.learner)
            .map(|m| m.revision.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether the member at `addr` is an oxetcd member (its `Status` said so).
    pub fn is_oxetcd(&self, addr: &str) -> bool {
        self.read()
            .members
            .iter()
            .any(|m| m.upstream.addr == addr && m.upstream.dedup)
    }

    /// Whether the member at `addr` passed its last health check.
    pub fn is_healthy(&self, addr: &str) -> bool {
        self.read()
            .members
            .iter()
            .any(|m| m.upstream.addr == addr && m.healthy)
    }

    /// The data plane could not reach `addr`: mark it down (and the leader unknown, if it was
    /// the leader) and check the cluster at once.
    pub fn report_unreachable(&self, addr: &str) {
        let mut v = self.write();
        let leader = v.leader;
        let mut was_leader = false;
        for m in v.members.iter_mut().filter(|m| m.upstream.addr == addr) {
            m.healthy = false;
            was_leader |= leader == Some(m.upstream.id);
        }
        if was_leader {
            v.leader = None;
            self.leader_tx.send_replace(None);
        }
        drop(v);
        self.kick.notify_one();
    }

    /// A member's answer named `leader` at `term` (its `oxetcd-leader` metadata). Newer than
    /// what the view holds, and a healthy member: it becomes the leader at once, so requests
    /// stop going to an old leader before the next health round notices.
    pub fn observe_leader(&self, leader: u64, term: u64) {
        {
            let v = self.read();
            if term < v.term || term == v.term && v.leader == Some(leader) {
                return;
            }
        }
        let mut v = self.write();
        if term < v.term || term == v.term && v.leader == Some(leader) {
            return;
        }
        let Some(up) = v
            .members
            .iter()
            .find(|m| m.upstream.id == leader && m.healthy)
            .map(|m| m.upstream.clone())
        else {
            return;
        };
        self.set_leader(&mut v, Some((term, up)));
    }

    /// Records the leader (or that none is known) and tells waiting requests.
    fn set_leader(&self, v: &mut View, leader: Option<(u64, Upstream)>) {
        let new_id = leader.as_ref().map(|(_, u)| u.id);
        if new_id != v.leader {
            if let Some((term, u)) = &leader {
                info!(leader = %u.label, term, "leader");
                if v.leader.is_some() || v.term > 0 {
                    self.metrics.leader_changes.inc();
                }
            } else {
                warn!("no leader known");
            }
            v.leader = new_id;
        }
        if let Some((term, _)) = &leader {
            v.term = v.term.max(*term);
        }
        let upstream = leader.map(|(_, u)| u);
        self.leader_tx.send_if_modified(|cur| {
            if *cur != upstream {
                *cur = upstream;
                true
            } else {
                false
            }
        });
    }

    /// Keeps the view fresh until the process ends.
    pub async fn run(self: Arc<Self>, health_every: Duration, sync_every: Duration) {
        let mut last_sync = None::<tokio::time::Instant>;
        loop {
            let due = last_sync.is_none_or(|t: tokio::time::Instant| {
                !sync_every.is_zero() && t.elapsed() >= sync_every
            });
            if due && self.sync_members().await {
                last_sync = Some(tokio::time::Instant::now());
            }
            self.check_health().await;
            tokio::select! {
                _ = tokio::time::sleep(health_every) => {}
                _ = self.kick.notified() => {}
            }
        }
    }

    /// A (lazily connecting) gRPC channel to the member at `addr`, shared by every caller;
    /// certificates replaced on disk give new channels, so new handshakes use them.
    pub fn channel(&self, addr: &str) -> Option<Channel> {
        let generation = self.tls.as_ref().map(|t| t.generation());
        let mut guard = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let (made_under, channels) = &mut *guard;
        if *made_under != generation {
            channels.clear();
            *made_under = generation;
        }
        if let Some(c) = channels.get(addr) {
            return Some(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            ep = match ep.tls_config(tls.tonic()) {
                Ok(ep) => ep,
                Err(e) => {
                    warn!(%addr, "TLS towards member: {e}");
                    return None;
                }
            };
        }
        let c = ep.connect_lazy();
        channels.insert(addr.to_string(), c.clone());
        Some(c)
    }

    /// Replaces the member set with `MemberList` from the leader (or any member that answers).
    /// Returns whether a list was read.
    async fn sync_members(&self) -> bool {
        let mut order: Vec<String> = self.leader().map(|l| l.addr).into_iter().collect();
        order.extend(self.read().members.iter().map(|m| m.upstream.addr.clone()));
        for addr in order {
            let Some(ch) = self.channel(&addr) else {
                continue;
            };
            let resp = tokio::time::timeout(
                CALL_TIMEOUT,
                ClusterClient::new(ch).member_list(MemberListRequest {
                    linearizable: false,
                }),
            )
            .await;
            let Ok(Ok(resp)) = resp else { continue };
            let mut fresh = Vec::new();
            for m in resp.into_inner().members {
                // An unstarted member has no client URL yet: nothing to send to.
                let Some(url) = m.client_ur_ls.first() else {
                    continue;
                };
                let addr = host_port(url).to_string();
                let label = if m.name.is_empty() {
                    addr.clone()
                } else {
                    m.name.clone()
                };
                fresh.push(MemberState {
                    upstream: Upstream {
                        id: m.id,
                        addr,
                        label,
                        dedup: false,
                    },
                    healthy: true,
                    learner: m.is_learner,
                    revision: Default::default(),
                });
            }
            if fresh.is_empty() {
                continue;
            }
            let mut v = self.write();
            for f in fresh.iter_mut() {
                if let Some(old) = v
                    .members
                    .iter()
                    .find(|o| o.upstream.addr == f.upstream.addr)
                {
                    f.healthy = old.healthy;
                    f.upstream.dedup = old.upstream.dedup;
                    f.revision = old.revision.clone();
                }
            }
            let before: Vec<String> = v.members.iter().map(|m| m.upstream.label.clone()).collect();
            let after: Vec<String> = fresh.iter().map(|m| m.upstream.label.clone()).collect();
            if before != after {
                info!(members = ?after, "member list changed");
                // A member that left has no health to report: drop its series, or an alert
                // on it would fire for ever.
                for gone in before.iter().filter(|l| !after.contains(l)) {
                    let _ = self.metrics.upstream_healthy.remove_label_values(&[gone]);
                }
            }
            v.members = fresh;
            return true;
        }
        warn!("no member answered MemberList");
        false
    }

    /// Asks every member for `Status`; updates health and the leader.
    async fn check_health(&self) {
        let addrs: Vec<String> = self
            .read()
            .members
            .iter()
            .map(|m| m.upstream.addr.clone())
            .collect();
        let checks = addrs.iter().map(|addr| {
            let ch = self.channel(addr);
            async move {
                let ch = ch?;
                let resp = tokio::time::timeout(
                    CALL_TIMEOUT,
                    MaintenanceClient::new(ch).status(StatusRequest {}),
                )
                .await
                .ok()?
                .ok()?;
                let dedup = resp
                    .metadata()
                    .contains_key(oxetcd_common::OXETCD_VERSION_HEADER);
                let s = resp.into_inner();
                let header = s.header.unwrap_or_default();
                Some((
                    s.leader,
                    s.raft_term,
                    header.member_id,
                    dedup,
                    header.revision,
                ))
            }
        });
        let results = futures::future::join_all(checks).await;

        let mut v = self.write();
        let mut best: Option<(u64, u64)> = None; // (term, leader)
        for (addr, r) in addrs.iter().zip(&results) {
            let healthy = r.is_some();
            for m in v.members.iter_mut().filter(|m| &m.upstream.addr == addr) {
                m.healthy = healthy;
                if let Some((_, _, id, dedup, revision)) = r {
                    if m.upstream.id == 0 {
                        m.upstream.id = *id;
                    }
                    m.upstream.dedup = *dedup;
                    m.revision.fetch_max(*revision, Ordering::Relaxed);
                }
                self.metrics
                    .upstream_healthy
                    .with_label_values(&[&m.upstream.label])
                    .set(healthy as i64);
            }
            if let Some((leader, term, ..)) = r {
                if *leader != 0 && best.is_none_or(|(t, _)| *term > t) {
                    best = Some((*term, *leader));
                }
            }
        }
        let leader = best.and_then(|(term, id)| {
            v.members
                .iter()
                .find(|m| m.upstream.id == id && m.healthy)
                .map(|m| (term, m.upstream.clone()))
        });
        self.set_leader(&mut v, leader);
        drop(v);
        self.rounds.send_modify(|n| *n += 1);
    }
}
