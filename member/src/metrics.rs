//! Prometheus metrics with etcd's names, label names, types and buckets, served on the client
//! URLs' `/metrics` (and `--listen-metrics-urls`): what etcd-mixin's alerts and dashboards
//! and kube-prometheus read. `--metrics extensive` adds `grpc_server_handling_seconds`, as
//! etcd's flag does.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::descriptors::{pool, CLIENT_SERVICES};

#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub is_learner: IntGauge,
    pub leader_changes: IntCounter,
    /// Raft's committed and applied indexes (gauges in etcd, despite `_total`).
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntGauge,
    /// Requests handed to raft and not yet answered.
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    /// Heartbeats a leader failed to send.
    pub heartbeat_send_failures: IntCounter,
    /// Applies of one raft batch that took longer than etcd's 100 ms warning.
    pub slow_applies: IntCounter,
    /// `/health` answers, by outcome.
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub quota_backend_bytes: IntGauge,
    /// The raft log's synced writes (etcd's WAL fsync).
    pub wal_fsync: Histogram,
    /// The state machine's writes of applied entries (etcd's backend commit).
    pub backend_commit: Histogram,
    pub db_size: IntGauge,
    pub db_size_in_use: IntGauge,
    pub keys_total: IntGauge,
    pub current_revision: IntGauge,
    pub peer: PeerMetrics,
    pub grpc: Arc<GrpcMetrics>,
    pub watch_lagged: IntCounter,
    /// Watchers on this member's client streams (etcd's `watcher_total`).
    pub watchers: IntGauge,
    /// Open client watch streams (etcd's `watch_stream_total`).
    pub watch_streams: IntGauge,
}

/// Raft's traffic with each peer, labelled by the peer's member ID (hex), as etcd's are.
#[derive(Clone)]
pub(crate) struct PeerMetrics {
    pub sent_bytes: IntCounterVec,
    pub received_bytes: IntCounterVec,
    pub sent_failures: IntCounterVec,
    /// Heartbeats' round trips (an empty append: network and the peer's handling only).
    pub round_trip: HistogramVec,
}

/// go-grpc-prometheus's server metrics, and etcd's client byte counters, by gRPC method.
/// (`grpc_server_handling_seconds` only with `--metrics extensive`.)
pub(crate) struct GrpcMetrics {
    pub client_sent_bytes: IntCounter,
    pub client_received_bytes: IntCounter,
    /// etcd's count of calls by kind (`unary`, `stream`) and the client's `client-api-version`.
    pub client_requests: IntCounterVec,
    /// `/etcdserverpb.KV/Range` → its counters, for every method clients call.
    methods: HashMap<String, Arc<Method>>,
}

/// A gRPC method's counters, resolved once (a label lookup per call would cost more than
/// the count).
pub(crate) struct Method {
    /// `unary` or `stream`, etcd's kinds for `etcd_server_client_requests_total`.
    kind: &'static str,
    started: IntCounter,
    handled: Vec<IntCounter>,
    received: IntCounter,
    sent: IntCounter,
    handling: Option<Histogram>,
}

/// grpc-go's names of the status codes, as go-grpc-prometheus labels them.
pub(crate) const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

impl GrpcMetrics {
    /// The counters of the method at this request path, if clients call it.
    pub(crate) fn method(&self, path: &str) -> Option<Arc<Method>> {
        self.methods.get(path).cloned()
    }

    /// A call began; `api_version` is the client's `client-api-version` metadata.
    pub(crate) fn started(&self, m: &Method, api_version: Option<&str>) {
        m.started.inc();
        let version = api_version.unwrap_or("unknown");
        self.client_requests
            .with_label_values(&[m.kind, version])
            .inc();
    }

    /// A call ended with this grpc-status code (a number), after `seconds`.
    pub(crate) fn handled(&self, m: &Method, code: usize, seconds: f64) {
        // An unknown code counts as Unknown (2), as grpc-go reports it.
        m.handled.get(code).unwrap_or(&m.handled[2]).inc();
        if let Some(h) = &m.handling {
            h.observe(seconds);
        }
    }

    pub(crate) fn received(&self, m: &Method, messages: u64, bytes: u64) {
        m.received.inc_by(messages);
        self.client_received_bytes.inc_by(bytes);
    }

    pub(crate) fn sent(&self, m: &Method, messages: u64, bytes: u64) {
        m.sent.inc_by(messages);
        self.client_sent_bytes.inc_by(bytes);
    }
}

/// Registers collectors as they are made.
struct Maker(Registry);

impl Maker {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("registered once");
        c
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }
    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }
    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }
    fn histograms(&self, name: &str, help: &str, buckets: Vec<f64>, l: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.add(HistogramVec::new(opts, l).expect("valid metric"))
    }
    /// An info gauge: 1, with the value as a label (etcd's `etcd_server_version`).
    fn info(&self, name: &str, help: &str, label: &str, value: &str) {
        let g = self.add(IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid"));
        g.with_label_values(&[value]).set(1);
    }
}

/// etcd's disk latency buckets: 1 ms to 8 s.
fn disk_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
}

impl Metrics {
    /// The leader gauges: `etcd_server_has_leader`, `_is_leader`, `_is_learner`.
    pub(crate) fn set_leadership(&self, leader: Option<u64>, leading: bool, learner: bool) {
        self.has_leader.set(leader.is_some() as i64);
        self.is_leader.set(leading as i64);
        self.is_learner.set(learner as i64);
    }

    /// The member's metrics; `extensive` is `--metrics extensive`.
    pub(crate) fn new(member_id: u64, extensive: bool) -> Self {
        let m = Maker(Registry::new());
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            m.0.register(Box::new(process)).expect("registered once");
        }
        m.info(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            oxetcd_common::version::ETCD_SERVER_VERSION,
        );
        let cluster_version = oxetcd_common::version::ETCD_CLUSTER_VERSION;
        let major_minor = cluster_version
            .rsplit_once('.')
            .map_or(cluster_version, |(v, _)| v);
        m.info(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            major_minor,
        );
        m.info(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            &format!("{member_id:x}"),
        );
        let grpc = GrpcMetrics::new(&m, extensive);
        let peer = PeerMetrics {
            sent_bytes: m.counters(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            received_bytes: m.counters(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            sent_failures: m.counters(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                &["To"],
            ),
            round_trip: m.histograms(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
                exponential_buckets(0.0001, 2.0, 16).expect("valid buckets"),
                &["To"],
            ),
        };
        Self {
            has_leader: m.gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: m.gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: m.gauge(
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            leader_changes: m.counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed: m.gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: m.gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: m.gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: m.counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            heartbeat_send_failures: m.counter(
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            ),
            slow_applies: m.counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            health_success: m.counter(
                "etcd_server_health_success",
                "The total number of successful health checks",
            ),
            health_failures: m.counter(
                "etcd_server_health_failures",
                "The total number of failed health checks",
            ),
            quota_backend_bytes: m.gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            wal_fsync: m.histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                disk_buckets(),
            ),
            backend_commit: m.histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                disk_buckets(),
            ),
            db_size: m.gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_size_in_use: m.gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys_total: m.gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            current_revision: m.gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            watch_lagged: m.counter(
                "oxetcd_watch_stream_lagged_total",
                "Times a watch stream fell behind the event feed and caught up from the store.",
            ),
            watchers: m.gauge(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            watch_streams: m.gauge(
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            peer,
            grpc: Arc::new(grpc),
            registry: m.0,
        }
    }

    /// The registry in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = prometheus::Encoder::encode(&TextEncoder::new(), &self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl GrpcMetrics {
    fn new(m: &Maker, extensive: bool) -> Self {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = m.counters(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            &labels,
        );
        let handled = m.counters(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        );
        let msg_received = m.counters(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            &labels,
        );
        let msg_sent = m.counters(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            &labels,
        );
        let handling = extensive.then(|| {
            m.histograms(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                prometheus::DEFAULT_BUCKETS.to_vec(),
                &labels,
            )
        });
        // Every method's series exist from the start, at zero (go-grpc-prometheus registers
        // them so), so that rates over them are defined before the first call.
        let mut methods = HashMap::new();
        for service in CLIENT_SERVICES {
            let Some(svc) = pool().get_service_by_name(service) else {
                continue;
            };
            for method in svc.methods() {
                let grpc_type = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => "unary",
                    (true, false) => "client_stream",
                    (false, true) => "server_stream",
                    (true, true) => "bidi_stream",
                };
                let l = [grpc_type, service, method.name()];
                let counters = Method {
                    kind: if grpc_type == "unary" {
                        "unary"
                    } else {
                        "stream"
                    },
                    started: started.with_label_values(&l),
                    handled: GRPC_CODES
                        .iter()
                        .map(|code| handled.with_label_values(&[l[0], l[1], l[2], code]))
                        .collect(),
                    received: msg_received.with_label_values(&l),
                    sent: msg_sent.with_label_values(&l),
                    handling: handling.as_ref().map(|h| h.with_label_values(&l)),
                };
                methods.insert(format!("/{service}/{}", method.name()), Arc::new(counters));
            }
        }
        GrpcMetrics {
            client_sent_bytes: m.counter(
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            client_received_bytes: m.counter(
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            client_requests: m.counters(
                "etcd_server_client_requests_total",
                "The total number of client requests per client version.",
                &["type", "client_api_version"],
            ),
            methods,
        }
    }
}
