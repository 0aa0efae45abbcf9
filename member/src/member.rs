//! Starting and stopping a member: open storage, bootstrap or restart raft, serve clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use oxetcd_common::version::{ETCD_SERVER_VERSION, OXETCD_VERSION};
use tonic::transport::server::TcpIncoming;

use crate::apply::StateMachine;
use crate::config::{split_urls, url_host_port, Config};
use crate::lease::Lessor;
use crate::metrics::Metrics;
use crate::raft::{LogStore, MemberNode, Network, Raft};
use crate::server::{cluster_id, member_id, EtcdServer, Limits};
use crate::storage::{Storage, CF_RAFT_META, IDENTITY_KEY, RESTORED_CLUSTER_KEY};
use crate::tasks::Tasks;
use crate::watch::WatchHub;

/// `oxetcd --version`.
pub fn version_text() -> String {
    format!(
        "oxetcd Version: {OXETCD_VERSION}\netcd API Version: {ETCD_SERVER_VERSION}\nGit SHA: {}\nRust Version: {}\nRust OS/Arch: {}/{}\n",
        env!("OXETCD_GIT_SHA"),
        env!("OXETCD_RUSTC_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// Requests waiting for the proposer; beyond this, callers wait (back-pressure).
const PROPOSAL_QUEUE: usize = 4096;

/// Revisions the watch feed buffers before a slow stream has to catch up from the store.
const WATCH_FEED_CAPACITY: usize = 1024;

/// The member and cluster IDs: fixed at bootstrap and kept in `raft_meta` (not in the state
/// machine, so a snapshot from another member never overwrites them).
fn load_or_create_identity(
    storage: &Storage,
    cfg: &Config,
    existing_cluster: Option<(u64, u64)>,
) -> anyhow::Result<(u64, u64, bool)> {
    let cf = storage.cf(CF_RAFT_META);
    if let Some(b) = storage.db().get_cf(cf, IDENTITY_KEY)? {
        let (m, c): (u64, u64) = bincode::deserialize(&b).context("corrupt member identity")?;
        return Ok((m, c, false));
    }
    let members = cfg.initial_members()?;
    let ids: Vec<u64> = members
        .iter()
        .map(|(_, urls)| member_id(urls, &cfg.initial_cluster_token))
        .collect();
    let (me, cid) = match existing_cluster {
        // Joining an existing cluster: both IDs come from its members (`member add` chose ours).
        Some((cid, me)) => (me, cid),
        None => {
            let me = member_id(&cfg.peer_urls(), &cfg.initial_cluster_token);
            if !ids.contains(&me) {
                bail!(
                    "--initial-advertise-peer-urls {:?} do not match this member's URLs in --initial-cluster",
                    cfg.initial_advertise_peer_urls
                );
            }
            (me, cluster_id(&ids, &cfg.initial_cluster_token))
        }
    };
    let mut o = rocksdb::WriteOptions::default();
    o.set_sync(true);
    storage
        .db()
        .put_cf_opt(cf, IDENTITY_KEY, bincode::serialize(&(me, cid))?, &o)?;
    Ok((me, cid, true))
}

/// Asks the other members of `--initial-cluster` for the cluster's ID (joining with
/// `--initial-cluster-state existing`, after `member add`).
async fn fetch_cluster_id(
    cfg: &Config,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<(u64, u64)> {
    let mine = cfg.peer_urls();
    let mut mine_sorted = mine.clone();
    mine_sorted.sort();
    let others: Vec<String> = cfg
        .initial_members()?
        .into_iter()
        .flat_map(|(_, urls)| urls)
        .filter(|u| !mine.contains(u))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut reached = false;
    loop {
        for url in &others {
            let Ok((cluster_id, members)) =
                crate::peer::Peers::cluster_members(url, tls.clone(), Duration::from_secs(2)).await
            else {
                continue;
            };
            // Its members as it has applied them; `member add` put us there (a member that
            // has not applied the addition yet does not list us: ask again).
            let me = members.into_iter().find_map(|(id, mut urls)| {
                urls.sort();
                (urls == mine_sorted).then_some(id)
            });
            if let Some(me) = me {
                return Ok((cluster_id, me));
            }
            reached = true;
        }
        if std::time::Instant::now() > deadline {
            if reached {
                bail!(
                    "this member's peer URLs {mine:?} are not in the cluster's member list: add it with `member add` first"
                );
            }
            bail!("cannot reach any member of the existing cluster at {others:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keeps the leader gauges up to date from the leader as etcd reports it (`raft::election`),
/// and the learner and applied-index gauges from raft's metrics.
async fn watch_leadership(
    raft: Raft,
    elections: Arc<crate::raft::election::Elections>,
    me: u64,
    metrics: Metrics,
) {
    // Server metrics change with the vote, state, leader and membership only (the whole
    // metrics change after every command of raft's core: waking on those costs CPU per write).
    let mut rx = raft.server_metrics();
    let mut leaders = elections.leader_changes();
    let mut last_leader = None;
    loop {
        let now = elections.leadership(&raft, me);
        metrics.set_leadership(now.leader, now.leading, now.learner);
        let leader = now.leader;
        if leader.is_some() && leader != last_leader {
            metrics.leader_changes.inc();
            tracing::info!(
                leader = format!("{:x}", leader.unwrap_or(0)),
                "leader elected"
            );
        }
        last_leader = leader;
        let changed = tokio::select! {
            r = rx.changed() => r.is_ok(),
            r = leaders.changed() => r.is_ok(),
        };
        if !changed {
            return;
        }
    }
}

/// Resolves when raft's core has stopped by itself: a storage error (a full, read-only or
/// failing disk) ends it. The member cannot make writes durable any more, so it stops
/// (fail-stop, as etcd exits when a WAL fsync fails); restarted once the disk is fixed, it
/// recovers from its log and catches up from the others.
async fn raft_core_stopped(raft: Raft) {
    // The core owns the sender: the channel closes when it stops.
    let mut rx = raft.server_metrics();
    while rx.changed().await.is_ok() {}
}

/// Asks openraft for a snapshot (which lets it purge the log) each time one is due.
async fn take_snapshots(raft: Raft, trigger: Arc<crate::apply::SnapshotTrigger>) {
    loop {
        trigger.due().await;
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::warn!("cannot take a raft snapshot: {e}");
            return;
        }
    }
}

/// Keeps the size gauges (database size, keys, revision) current.
async fn refresh_gauges(server: std::sync::Weak<EtcdServer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        server.metrics.db_size.set(server.storage.size_on_disk());
        server
            .metrics
            .db_size_in_use
            .set(server.storage.size_in_use());
        let sizes = server
            .read_state()
            .map(|s| (s.mvcc.key_count(), s.mvcc.current_rev()));
        if let Ok((keys, revision)) = sizes {
            server.metrics.keys_total.set(keys);
            server.metrics.current_revision.set(revision);
        }
    }
}

/// The listen backlog: as large as the kernel allows (`somaxconn` caps it), as Go's listeners
/// are. With the default 128, a burst of thousands of connections waits out SYN retries.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `host:port` with [`LISTEN_BACKLOG`].
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let Some(sa) = tokio::net::lookup_host(addr).await?.next() else {
        return Err(std::io::Error::other(format!("{addr}: no address")));
    };
    let socket = match sa {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(sa)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` (with TLS when `tls` is given) until `stop` is set.
fn serve(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        match tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), stopped)
                    .await
            }
            // Accepted sockets need TCP_NODELAY set here: the builder's tcp_nodelay applies
            // only to listeners tonic binds itself. Without it a response written right after
            // a watch event on the same connection waits ~40 ms for a delayed ACK.
            None => {
                router
                    .serve_with_incoming_shutdown(
                        TcpIncoming::from(listener).with_nodelay(Some(true)),
                        stopped,
                    )
                    .await
            }
        }
    })
}

/// Resolves once this member is no longer in the cluster: the leader said so (peer RPC
/// `Removed`), or a committed membership without it was applied here. A member that never was
/// in the applied membership (a new member catching up) is not "removed".
async fn removed_from_cluster(server: &EtcdServer) {
    let mut told = server.removed.subscribe();
    let mut metrics = server.raft.server_metrics();
    let mut was_member = false;
    loop {
        if *told.borrow() {
            return;
        }
        let present = {
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&server.member_id)
                .is_some()
        };
        if present {
            was_member = true;
        } else if was_member {
            return;
        }
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return std::future::pending().await },
            r = told.changed() => if r.is_err() { return std::future::pending().await },
        }
    }
}

/// Announces this member's name and client URLs through raft once a leader is known, unless the
/// cluster already has them (etcd's publish), so every member lists every client URL. Then tells
/// systemd the member is ready.
async fn publish_attributes(
    server: std::sync::Weak<EtcdServer>,
    name: String,
    client_urls: Vec<String>,
) {
    {
        let Some(server) = server.upgrade() else {
            return;
        };
        let mut backoff = Duration::from_millis(200);
        loop {
            let known = server
                .read_state()
                .ok()
                .and_then(|s| s.attributes.get(&server.member_id).cloned());
            if known == Some((name.clone(), client_urls.clone())) {
                oxetcd_common::systemd::notify_ready();
                return;
            }
            let req = oxetcd_common::oxetcdpb::MemberAttributes {
                id: server.member_id,
                name: name.clone(),
                client_urls: client_urls.clone(),
            };
            match server
                .propose(
                    oxetcd_common::oxetcdpb::internal_raft_request::Request::MemberAttributes(req),
                )
                .await
            {
                Ok(_) => {
                    oxetcd_common::systemd::notify_ready();
                    return;
                }
                Err(e) => {
                    tracing::debug!("publishing member attributes: {e}; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Runs a member until SIGTERM or SIGINT.
pub async fn run(mut cfg: Config) -> anyhow::Result<()> {
    if !cfg.discovery_srv.is_empty() && cfg.initial_cluster.is_some() {
        bail!("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"");
    }
    let data_dir = cfg.data_dir();
    let db_dir = data_dir.join("member").join("db");
    std::fs::create_dir_all(&db_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let storage =
        Storage::open(&db_dir).with_context(|| format!("cannot open {}", db_dir.display()))?;
    crate::snapshot::save::clear_scratch(&storage);
    let has_identity = storage
        .db()
        .get_cf(storage.cf(CF_RAFT_META), IDENTITY_KEY)?
        .is_some();
    // Once bootstrapped the member knows its cluster: DNS is not needed (nor asked) again.
    if !has_identity && !cfg.discovery_srv.is_empty() {
        crate::discovery::apply_srv(&mut cfg).await?;
    }
    let client_link = crate::tls::client_link(&cfg, &data_dir).context("client TLS")?;
    let peer_link = crate::tls::peer_link(&cfg, &data_dir).context("peer TLS")?;
    let peer_client_tls = peer_link
        .as_ref()
        .map(|l| oxetcd_common::tls::client_config(&l.files, &l.policy))
        .transpose()
        .context("peer TLS")?;
    let existing_cluster = match cfg.initial_cluster_state.as_str() {
        "existing" if !has_identity => Some(fetch_cluster_id(&cfg, peer_client_tls.clone()).await?),
        "existing" | "new" => None,
        other => bail!("--initial-cluster-state must be 'new' or 'existing', not {other:?}"),
    };
    let (me, cid, fresh) = load_or_create_identity(&storage, &cfg, existing_cluster)?;
    tracing::info!(
        name = cfg.name,
        member_id = format!("{me:x}"),
        cluster_id = format!("{cid:x}"),
        data_dir = %data_dir.display(),
        "starting member"
    );

    let metrics = Metrics::new(me, cfg.metrics == "extensive");
    metrics
        .quota_backend_bytes
        .set(crate::quota::reported_quota(cfg.quota_backend_bytes));
    let lessor = Arc::new(Lessor::new(Duration::from_millis(cfg.election_timeout)));
    let watch_hub = WatchHub::new(WATCH_FEED_CAPACITY);
    let tokens = Arc::new(
        crate::auth::Tokens::from_flags(&cfg.auth_token, cfg.auth_token_ttl)
            .context("--auth-token")?,
    );
    let auto_compaction = crate::compactor::policy(
        &cfg.auto_compaction_mode,
        &cfg.auto_compaction_retention,
        cfg.auto_compaction_revision_interval,
    )
    .map_err(anyhow::Error::msg)?;
    if !(4..=31).contains(&cfg.bcrypt_cost) {
        bail!(
            "--bcrypt-cost must be between 4 and 31, not {}",
            cfg.bcrypt_cost
        );
    }
    let (compactions, compaction_targets) = tokio::sync::watch::channel(0);
    let (compacted_tx, compacted) = tokio::sync::watch::channel(0);
    let snapshots = Arc::new(crate::apply::SnapshotTrigger::new(cfg.snapshot_count));
    // Where this life's forwarded request IDs and proposal numbers start: they must differ from
    // those of earlier lives still in the log.
    let started_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let waiters = Arc::new(crate::waiters::Waiters::new(me, started_nanos));
    let state_machine = StateMachine::open(
        storage.clone(),
        crate::apply::Shared {
            lessor: lessor.clone(),
            hub: watch_hub.clone(),
            tokens: tokens.clone(),
            compactions,
            snapshots: snapshots.clone(),
            waiters: waiters.clone(),
        },
        crate::apply::ApplyMetrics {
            commit_latency: metrics.backend_commit.clone(),
            slow_applies: metrics.slow_applies.clone(),
            applied: metrics.proposals_applied.clone(),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = state_machine.state();
    // openraft 0.9: a follower that has a leader campaigns only after the leader's lease
    // (`election_timeout_max`) plus a random `[min, max)` without a heartbeat, and voters refuse
    // votes within the lease. With etcd's `--election-timeout` E as `[E, 2E)` that was 3–4 s
    // after a leader died (`bench/failover.sh`). `[E/2, 3E/4)` puts the first campaign at
    // `[1.25E, 1.5E)`, inside etcd's own `[E, 2E)`; `min` stays 5 heartbeats with the defaults.
    let (election_min, election_max) = (cfg.election_timeout / 2, cfg.election_timeout * 3 / 4);
    let raft_config = openraft::Config {
        cluster_name: cfg.initial_cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval,
        election_timeout_min: election_min,
        election_timeout_max: election_max,
        // Elections start from `raft::election` after a pre-vote, not from openraft's timer.
        enable_elect: false,
        // Snapshots are triggered by applied requests, not entries (`SnapshotTrigger`).
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: cfg.experimental_snapshot_catchup_entries,
        commit_delay_us: crate::raft::COMMIT_DELAY.as_micros() as u64,
        ..Default::default()
    }
    .validate()
    .context("raft configuration")?;
    let peers = Arc::new(crate::peer::Peers::new(cid, peer_client_tls.clone()));
    // etcd checks only a member that has data of its own (a restart), before raft starts.
    if cfg.initial_corrupt_check()? && !fresh {
        crate::corrupt::initial_check(me, &storage, &state, &peers).await?;
    }
    let raft = Raft::new(
        me,
        Arc::new(raft_config),
        Network {
            peers: peers.clone(),
            metrics: metrics.peer.clone(),
            heartbeat_failures: metrics.heartbeat_send_failures.clone(),
            idle: Default::default(),
        },
        LogStore::new(
            storage.clone(),
            metrics.wal_fsync.clone(),
            metrics.proposals_committed.clone(),
        )
        .context("starting the raft log")?,
        state_machine,
    )
    .await
    .context("starting raft")?;

    // A new cluster's members, from the flags or from the restore that made this data dir.
    let restored = storage
        .db()
        .get_cf(storage.cf(CF_RAFT_META), RESTORED_CLUSTER_KEY)?;
    let initial: Option<Vec<(u64, String, Vec<String>)>> = match restored {
        Some(b) => Some(bincode::deserialize(&b).context("corrupt restored cluster record")?),
        None if fresh && cfg.initial_cluster_state == "new" => Some(
            cfg.initial_members()?
                .into_iter()
                .map(|(name, urls)| (member_id(&urls, &cfg.initial_cluster_token), name, urls))
                .collect(),
        ),
        None => None,
    };
    if let Some(initial) = initial {
        let members: BTreeMap<u64, MemberNode> = initial
            .into_iter()
            .map(|(id, name, peer_urls)| {
                let client_urls = match id == me {
                    true => cfg.advertised_client_urls(),
                    false => Vec::new(),
                };
                let node = MemberNode {
                    name,
                    peer_urls,
                    client_urls,
                };
                (id, node)
            })
            .collect();
        if !raft.is_initialized().await? {
            raft.initialize(members)
                .await
                .context("bootstrapping the cluster")?;
        }
        storage
            .db()
            .delete_cf(storage.cf(CF_RAFT_META), RESTORED_CLUSTER_KEY)?;
    }

    let elections = Arc::new(crate::raft::election::Elections::new(
        Duration::from_millis(cfg.election_timeout),
        cfg.pre_vote,
    ));
    let mut tasks = Tasks::default();
    tasks.spawn(
        "leadership-metrics",
        watch_leadership(raft.clone(), elections.clone(), me, metrics.clone()),
    );
    let (proposals, proposal_rx) = tokio::sync::mpsc::channel(PROPOSAL_QUEUE);
    let (reads, read_rx) = tokio::sync::mpsc::channel(PROPOSAL_QUEUE);
    let (renewals, renewal_queue) = crate::lease::renewals();
    let server = Arc::new(EtcdServer {
        raft: raft.clone(),
        state,
        storage: storage.clone(),
        member_id: me,
        cluster_id: cid,
        cluster_token: cfg.initial_cluster_token.clone(),
        limits: Limits {
            max_request_bytes: cfg.max_request_bytes as usize,
            max_txn_ops: cfg.max_txn_ops,
            quota_backend_bytes: cfg.quota_backend_bytes,
        },
        timing: crate::server::Timing {
            election_timeout: Duration::from_millis(cfg.election_timeout),
            watch_progress_interval: cfg.watch_progress_interval(),
        },
        metrics: metrics.clone(),
        lessor,
        renewals,
        watch_hub,
        peers,
        lease_ids: std::sync::atomic::AtomicU64::new(
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0))
                << 8,
        ),
        proposals,
        waiters,
        reads,
        forward_ids: std::sync::atomic::AtomicU64::new(started_nanos),
        transferring: tokio::sync::watch::channel(false).0,
        removed: tokio::sync::watch::channel(false).0,
        elections: elections.clone(),
        tokens,
        compacted,
        auth_settings: crate::server::AuthSettings {
            bcrypt_cost: cfg.bcrypt_cost,
            client_cert_auth: cfg.client_cert_auth,
            trusted_proxy_cns: split_urls(&cfg.trusted_proxy_cn),
        },
    });
    let weak = Arc::downgrade(&server);
    tasks.spawn(
        "read-index-batcher",
        crate::server::run_read_batcher(weak.clone(), read_rx),
    );
    tasks.spawn(
        "proposer",
        crate::server::run_proposer(weak.clone(), proposal_rx),
    );
    tasks.spawn("lease-expiry", crate::lease::run_expiry(weak.clone()));
    tasks.spawn(
        "lease-renewals",
        crate::lease::run_renewals(weak.clone(), renewal_queue),
    );
    tasks.spawn("raft-snapshots", take_snapshots(raft.clone(), snapshots));
    tasks.spawn(
        "compaction",
        crate::apply::compaction::run(
            storage.clone(),
            server.state.clone(),
            compaction_targets,
            compacted_tx,
        ),
    );
    tasks.spawn("size-gauges", refresh_gauges(weak.clone()));
    tasks.spawn(
        "elections",
        crate::raft::election::campaign_when_due(
            weak.clone(),
            Duration::from_millis(cfg.heartbeat_interval),
        ),
    );
    let corrupt_check = cfg.corrupt_check_every();
    if !corrupt_check.is_zero() {
        tasks.spawn(
            "corruption-check",
            crate::corrupt::run_periodic(weak.clone(), corrupt_check),
        );
    }
    if let Some(policy) = auto_compaction {
        tasks.spawn(
            "auto-compactor",
            crate::compactor::run(weak.clone(), policy),
        );
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    // Client URLs offer HTTP/1.1 too (for /health and /metrics); peer URLs only HTTP/2.
    let client_tls = client_link
        .as_ref()
        .map(|l| oxetcd_common::tls::server_config(&l.files, &l.policy, &[b"h2", b"http/1.1"]))
        .transpose()
        .context("client TLS")?;
    let http_urls = split_urls(&cfg.listen_client_http_urls);
    let main = match http_urls.is_empty() {
        true => crate::api::Serves::All,
        false => crate::api::Serves::Grpc,
    };
    let listeners = cfg
        .client_urls()
        .into_iter()
        .map(|u| (u, main, "client requests"))
        .chain(
            http_urls
                .into_iter()
                .map(|u| (u, crate::api::Serves::Http, "HTTP client requests")),
        )
        .chain(
            split_urls(&cfg.listen_metrics_urls)
                .into_iter()
                .map(|u| (u, crate::api::Serves::Metrics, "metrics")),
        );
    for (url, serves, what) in listeners {
        let tls = match url.starts_with("https://") {
            true => Some(client_tls.clone().with_context(|| {
                format!(
                    "{url}: an https client URL needs --cert-file and --key-file (or --auto-tls)"
                )
            })?),
            false => None,
        };
        let addr = url_host_port(&url)?;
        let listener = listen(&addr)
            .await
            .with_context(|| format!("cannot listen on {url}"))?;
        tracing::info!(%url, "serving {what}");
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(crate::api::routes(server.clone(), serves));
        servers.push(serve(router, listener, tls, stop_rx.clone()));
    }

    let peer_tls = peer_link
        .as_ref()
        .map(|l| oxetcd_common::tls::server_config(&l.files, &l.policy, &[b"h2"]))
        .transpose()
        .context("peer TLS")?;
    for url in split_urls(&cfg.listen_peer_urls) {
        let tls = match url.starts_with("https://") {
            true => Some(peer_tls.clone().with_context(|| {
                format!(
                    "{url}: an https peer URL needs --peer-cert-file, --peer-key-file and \
                     --peer-trusted-ca-file (or --peer-auto-tls)"
                )
            })?),
            false => None,
        };
        let addr = url_host_port(&url)?;
        let listener = listen(&addr)
            .await
            .with_context(|| format!("cannot listen on peer URL {url}"))?;
        tracing::info!(%url, "serving peer traffic");
        let peer = oxetcd_common::oxetcdpeerpb::raft_peer_server::RaftPeerServer::new(
            crate::peer::PeerService::new(server.clone()),
        )
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
        let router = tonic::transport::Server::builder().add_service(peer);
        servers.push(serve(router, listener, tls, stop_rx.clone()));
    }

    // Ready (systemd READY=1) once this member's attributes are committed, as etcd's is: by
    // then a leader exists and the member list shows this member's client URLs.
    tasks.spawn(
        "publish-attributes",
        publish_attributes(weak, cfg.name.clone(), cfg.advertised_client_urls()),
    );

    let mut failed = false;
    tokio::select! {
        _ = oxetcd_common::signal::terminated() => tracing::info!("shutting down"),
        _ = raft_core_stopped(raft.clone()) => {
            tracing::error!("raft stopped after a storage error (logged above); the member stops");
            failed = true;
        }
        _ = removed_from_cluster(&server) => {
            tracing::warn!("the member has been permanently removed from the cluster; shutting down");
        }
        _ = tasks.ended() => {}
    }
    tasks.shutdown().await;
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    let _ = raft.shutdown().await;
    if failed {
        bail!("storage failed: fix the disk and restart the member (it catches up from its peers)");
    }
    storage.db().flush_wal(true)?;
    Ok(())
}
