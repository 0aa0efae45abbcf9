//! `/metrics` as etcd's: every metric the shipped alert rules, their tests and the dashboard
//! read exists with etcd's type and label names, and the gRPC counters move as etcd's do for the same calls.
//! Real etcd 3.4 clusters of three are the reference.

use std::collections::BTreeMap;

use oxetcd_tests::prometheus::{self, metric_names, Scrape};
use oxetcd_tests::{http_request, Cluster, Kind, Member};

fn scrape(m: &Member) -> Scrape {
    let (status, text) = http_request(m.client_port, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    prometheus::parse(&text)
}

fn deploy_file(path: &str) -> String {
    let full = format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Some traffic, so that every family has samples: writes, reads, a failed read.
fn traffic(m: &Member) {
    m.etcdctl(&["put", "k", "v"]).ok();
    m.etcdctl(&["get", "k"]).ok();
    m.etcdctl(&["get", "k", "--rev", "1000"]);
}

/// Every member metric the alert rules and the dashboard read, and the ones the issue names,
/// has etcd's type and etcd's label names; the ones etcd 3.4 lacks exist.
#[test]
fn metrics_have_etcds_names_types_and_labels() {
    let etcd = Cluster::start_with(Kind::Etcd, 3, &["--metrics", "extensive"]);
    let ours = Cluster::start_with(Kind::Oxetcd, 3, &["--metrics", "extensive"]);
    etcd.members.iter().chain(&ours.members).for_each(traffic);
    // The leader: it has every family (only a leader times heartbeats' round trips here).
    let leader = |c: &Cluster| {
        c.members
            .iter()
            .map(scrape)
            .find(|s| s.values.get("etcd_server_is_leader") == Some(&1.0))
            .expect("a leader")
    };
    let (etcd, ours) = (leader(&etcd), leader(&ours));

    let mut names = metric_names(&deploy_file("prometheus/oxetcd-alerts.yml"));
    names.extend(metric_names(&deploy_file(
        "prometheus/oxetcd-alerts.test.yml",
    )));
    names.extend(metric_names(&deploy_file("grafana/oxetcd-dashboard.json")));
    names.retain(|n| !n.starts_with("etcd_proxy_"));
    for n in [
        "etcd_server_has_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_server_quota_backend_bytes",
        "etcd_network_peer_round_trip_time_seconds",
        "etcd_network_peer_sent_bytes_total",
        "etcd_network_peer_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        "etcd_network_client_grpc_received_bytes_total",
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "etcd_server_version",
        "etcd_cluster_version",
        "etcd_server_id",
        "etcd_server_is_learner",
        "etcd_server_client_requests_total",
        "etcd_server_health_success",
    ] {
        names.insert(n.to_string());
    }
    // Families that have no sample until something fails (as in etcd: a vector without
    // children is not shown).
    let only_on_failure = ["etcd_network_peer_sent_failures_total"];
    let mut problems = Vec::new();
    for name in &names {
        if only_on_failure.contains(&name.as_str()) {
            continue;
        }
        let Some(ty) = ours.types.get(name) else {
            problems.push(format!("{name}: missing"));
            continue;
        };
        if let Some(etcd_ty) = etcd.types.get(name) {
            if ty != etcd_ty {
                problems.push(format!("{name}: {ty}, etcd's is {etcd_ty}"));
            }
            let (l, el) = (&ours.labels.get(name), &etcd.labels.get(name));
            if l != el {
                problems.push(format!("{name}: labels {l:?}, etcd's {el:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The same calls move the gRPC counters of etcd and oxetcd alike: started, handled by
/// code, messages each way, and the client request count.
#[test]
fn grpc_counters_move_as_etcds() {
    fn deltas(m: &Member) -> BTreeMap<String, f64> {
        let before = scrape(m);
        for _ in 0..3 {
            m.etcdctl(&["put", "a", "1"]).ok();
        }
        m.etcdctl(&["get", "a"]).ok();
        m.etcdctl(&["get", "a", "--rev", "1000"]);
        m.etcdctl_stdin(&["txn"], "\n\n\n");
        let after = scrape(m);
        after
            .values
            .iter()
            .filter(|(k, _)| {
                k.starts_with("grpc_server_started_total")
                    || k.starts_with("grpc_server_handled_total")
                    || k.starts_with("grpc_server_msg_")
                    || k.starts_with("etcd_server_client_requests_total")
            })
            .map(|(k, v)| (k.clone(), v - before.values.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d != 0.0)
            .map(|(k, d)| (k.replace("3.4", "V").replace("3.6", "V"), d))
            .collect()
    }
    let etcd = Member::start(Kind::Etcd);
    let ours = Member::start(Kind::Oxetcd);
    let (e, o) = (deltas(&etcd), deltas(&ours));
    assert!(
        e.keys().any(|k| k.contains(r#"grpc_code="OutOfRange""#)),
        "{e:#?}"
    );
    assert_eq!(e, o);
}
