//! The proxy's Prometheus metrics (served by `http`).

use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
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
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(leader_changes.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(retries.clone()),
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
        })
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
