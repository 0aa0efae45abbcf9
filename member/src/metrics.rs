//! Prometheus metrics with etcd's names, served on the client URLs' `/metrics`.

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub proposals_committed: IntCounter,
    pub proposals_failed: IntCounter,
    pub db_size: IntGauge,
    pub keys_total: IntGauge,
    pub current_revision: IntGauge,
    pub watch_lagged: IntCounter,
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric name");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric name");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let r = Registry::new();
        Self {
            has_leader: gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes: counter(
                &r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed: counter(
                &r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_failed: counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            db_size: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            keys_total: gauge(
                &r,
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            ),
            current_revision: gauge(
                &r,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            watch_lagged: counter(
                &r,
                "oxetcd_watch_stream_lagged_total",
                "Times a watch stream fell behind the event feed and caught up from the store.",
            ),
            registry: r,
        }
    }

    /// The registry in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
