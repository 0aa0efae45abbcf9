//! The proxy's Prometheus metrics (served by `http`).

use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by gRPC method, the member that served them, and gRPC status code.
    pub requests: IntCounterVec,
    /// Time from the request's headers to the end of its response, by gRPC method.
    pub duration: HistogramVec,
    /// Leader changes the proxy has seen.
    pub leader_changes: IntCounter,
    /// 1 if the member answered its last health check.
    pub upstream_healthy: IntGaugeVec,
    /// Requests sent again to another member, by why (`connect`: never reached a member).
    pub retries: IntCounterVec,
    /// Client watchers on the proxy's watch streams.
    pub watchers: IntGauge,
    /// Client watch streams.
    pub watch_streams: IntGauge,
    /// Watches the proxy holds on members for them (watchers ÷ this = coalescing).
    pub upstream_watchers: IntGauge,
    /// Upstream watch streams moved to another member after theirs failed.
    pub watch_resumes: IntCounter,
    /// Watchers taken out of a shared upstream watch because their client read too slowly.
    pub watchers_parked: IntCounter,
    /// Upstream watches folded into another of the same key or range once caught up.
    pub watch_merges: IntCounter,
    /// Reads answered from the read cache (serializable, or linearizable after a barrier).
    pub cache_hits: IntCounter,
    /// Read barriers sent for linearizable reads the read cache answers (each shared by the
    /// linearizable reads that queued while the previous one was in flight).
    pub cache_barriers: IntCounter,
    /// Reads the live cache could not answer (not there, the client's last write not reached
    /// yet, or for a linearizable read, no barrier).
    pub cache_misses: IntCounter,
    /// Entries dropped to stay within `--read-cache-max-entries` and `--read-cache-max-bytes`.
    pub cache_evictions: IntCounter,
    /// Entries dropped because their keys changed.
    pub cache_invalidations: IntCounter,
    /// Entries in the read cache, and their size in bytes.
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    /// 1 while the read cache's watch is live (and it serves).
    pub cache_up: IntGauge,
    /// Client lease keep-alive streams, and the streams the proxy holds on leaders for them.
    pub keepalive_streams: IntGauge,
    pub upstream_keepalive_streams: IntGauge,
    /// Keep-alives from clients, and those sent upstream (÷: the fan-in).
    pub keepalives: IntCounter,
    pub upstream_keepalives: IntCounter,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "etcd_proxy_requests_total",
                "Requests handled by the proxy, by gRPC method, member and gRPC code.",
            ),
            &["grpc_method", "member", "grpc_code"],
        )
        .expect("metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "etcd_proxy_request_duration_seconds",
                "Latency of proxied requests (streams: their whole life).",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("buckets")),
            &["grpc_method"],
        )
        .expect("metric");
        let leader_changes = IntCounter::new(
            "etcd_proxy_leader_changes_seen_total",
            "Leader changes the proxy has seen.",
        )
        .expect("metric");
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "etcd_proxy_upstream_healthy",
                "1 if the member answered its last health check, else 0.",
            ),
            &["member"],
        )
        .expect("metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "etcd_proxy_retries_total",
                "Requests sent again to another member, by reason.",
            ),
            &["reason"],
        )
        .expect("metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("metric");
        let watchers = gauge(
            "oxetcd_proxy_watchers",
            "Client watchers on the proxy's watch streams.",
        );
        let watch_streams = gauge("oxetcd_proxy_watch_streams", "Client watch streams.");
        let upstream_watchers = gauge(
            "oxetcd_proxy_upstream_watchers",
            "Watches the proxy holds on members for its client watchers.",
        );
        let watch_resumes = counter(
            "oxetcd_proxy_watch_resumes_total",
            "Upstream watch streams moved to another member after theirs failed.",
        );
        let watchers_parked = counter(
            "oxetcd_proxy_watchers_parked_total",
            "Watchers taken out of a shared upstream watch because their client read slowly.",
        );
        let watch_merges = counter(
            "oxetcd_proxy_watch_merges_total",
            "Upstream watches folded into another of the same key or range once caught up.",
        );
        let cache_hits = counter(
            "oxetcd_proxy_cache_hits_total",
            "Reads answered from the read cache: serializable, or linearizable after a read barrier.",
        );
        let cache_barriers = counter(
            "oxetcd_proxy_cache_read_barriers_total",
            "Read barriers sent for linearizable reads answered from the read cache.",
        );
        let cache_misses = counter(
            "oxetcd_proxy_cache_misses_total",
            "Reads (serializable or linearizable) the live read cache could not answer.",
        );
        let cache_evictions = counter(
            "oxetcd_proxy_cache_evictions_total",
            "Read cache entries dropped to stay within its bounds.",
        );
        let cache_invalidations = counter(
            "oxetcd_proxy_cache_invalidations_total",
            "Read cache entries dropped because their keys changed.",
        );
        let cache_entries = gauge("oxetcd_proxy_cache_entries", "Entries in the read cache.");
        let cache_bytes = gauge(
            "oxetcd_proxy_cache_bytes",
            "Approximate size of the read cache's entries.",
        );
        let cache_up = gauge(
            "oxetcd_proxy_cache_up",
            "1 while the read cache's watch is live and it answers reads.",
        );
        let keepalive_streams = gauge(
            "oxetcd_proxy_keepalive_streams",
            "Client lease keep-alive streams.",
        );
        let upstream_keepalive_streams = gauge(
            "oxetcd_proxy_upstream_keepalive_streams",
            "Lease keep-alive streams the proxy holds on the leader for its clients.",
        );
        let keepalives = counter(
            "oxetcd_proxy_keepalives_total",
            "Lease keep-alives received from clients.",
        );
        let upstream_keepalives = counter(
            "oxetcd_proxy_upstream_keepalives_total",
            "Lease keep-alives sent to the leader for them.",
        );
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(leader_changes.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(retries.clone()),
            Box::new(watchers.clone()),
            Box::new(watch_streams.clone()),
            Box::new(upstream_watchers.clone()),
            Box::new(watch_resumes.clone()),
            Box::new(watchers_parked.clone()),
            Box::new(watch_merges.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_barriers.clone()),
            Box::new(cache_misses.clone()),
            Box::new(cache_evictions.clone()),
            Box::new(cache_invalidations.clone()),
            Box::new(cache_entries.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_up.clone()),
            Box::new(keepalive_streams.clone()),
            Box::new(upstream_keepalive_streams.clone()),
            Box::new(keepalives.clone()),
            Box::new(upstream_keepalives.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Arc::new(Metrics {
            registry,
            requests,
            duration,
            leader_changes,
            upstream_healthy,
            retries,
            watchers,
            watch_streams,
            upstream_watchers,
            watch_resumes,
            watchers_parked,
            watch_merges,
            cache_hits,
            cache_barriers,
            cache_misses,
            cache_evictions,
            cache_invalidations,
            cache_entries,
            cache_bytes,
            cache_up,
            keepalive_streams,
            upstream_keepalive_streams,
            keepalives,
            upstream_keepalives,
        })
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
