//! The operator's monitoring files in `deploy/`: the Prometheus alerting rules pass promtool's
//! checks and their unit tests, the example Prometheus config is valid, and the Grafana
//! dashboard is JSON whose queries use only metrics that members or the proxy export.

use std::collections::BTreeSet;
use std::process::Command;

const ALERTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/oxetcd-alerts.yml"
);
const ALERT_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/oxetcd-alerts.test.yml"
);
const PROMETHEUS_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/prometheus.yml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/oxetcd-dashboard.json"
);
const PROXY_METRICS_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../proxy/src/metrics.rs");

/// Metrics the members export, with etcd's names.
const MEMBER_METRICS: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_is_learner",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "etcd_server_version",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_current_revision",
];

/// The members' histograms (`grpc_server_handling_seconds` only with `--metrics extensive`).
const MEMBER_HISTOGRAMS: &[&str] = &[
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_network_peer_round_trip_time_seconds",
    "grpc_server_handling_seconds",
];

/// oxetcd-proxy's metrics (`proxy/src/metrics.rs`).
const PROXY_METRICS: &[&str] = &[
    "etcd_proxy_requests_total",
    "etcd_proxy_leader_changes_seen_total",
    "etcd_proxy_upstream_healthy",
    "etcd_proxy_retries_total",
];

const PROXY_HISTOGRAMS: &[&str] = &["etcd_proxy_request_duration_seconds"];

/// Runs promtool with `args` and returns its output; panics with that output if it fails.
fn promtool(args: &[&str]) -> String {
    let out = match Command::new("promtool").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run promtool ({e}): run .ci/setup (Debian's prometheus package)"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

/// Every metric name an exported series can have: gauges and counters as they are,
/// histograms as their `_bucket`, `_sum` and `_count` series.
fn known_metrics() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = MEMBER_METRICS
        .iter()
        .chain(PROXY_METRICS)
        .map(|n| n.to_string())
        .collect();
    for h in MEMBER_HISTOGRAMS.iter().chain(PROXY_HISTOGRAMS) {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names.insert("up".into());
    names
}

/// The identifiers in `text` that look like metric names of ours: they start with `etcd_`,
/// `grpc_server_` or `process_` (labels such as `grpc_method` do not).
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find(is_ident) {
        let word_and_more = &rest[start..];
        let end = word_and_more
            .find(|c: char| !is_ident(c))
            .unwrap_or(word_and_more.len());
        let word = &word_and_more[..end];
        if ["etcd_", "grpc_server_", "process_"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            names.insert(word.to_string());
        }
        rest = &word_and_more[end..];
    }
    names
}

/// Every `expr` string anywhere in a Grafana dashboard (panel targets, rows' panels, ...).
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The alerting rules are valid rule files for promtool (no duplicate rules either).
#[test]
fn alerting_rules_pass_promtools_checks() {
    let out = promtool(&["check", "rules", "--lint-fatal", ALERTS]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The alerts' unit tests pass: each alert fires on the series it is about, and not on
/// healthy ones or those of another job (a proxy down is no member down).
#[test]
fn alerting_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", ALERT_TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The example Prometheus config is valid, and the alerting rules it loads are found.
#[test]
fn example_prometheus_config_is_valid_and_loads_the_alerts() {
    let out = promtool(&["check", "config", PROMETHEUS_CONFIG]);
    // promtool names each rule file it loaded and checked.
    assert!(out.contains("oxetcd-alerts.yml"), "{out}");
}

/// The Grafana dashboard is JSON, with a data source and a cluster variable, and every metric
/// its queries use is one the members or the proxy export.
#[test]
fn dashboard_queries_use_only_exported_metrics() {
    let text = std::fs::read_to_string(DASHBOARD).expect("read the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"datasource") && vars.contains(&"cluster"),
        "{vars:?}"
    );
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() > 20, "only {} queries found", all.len());
    let known = known_metrics();
    for e in &all {
        let unknown: Vec<_> = metric_names(e)
            .into_iter()
            .filter(|n| !known.contains(n))
            .collect();
        assert!(unknown.is_empty(), "unknown metrics {unknown:?} in {e}");
    }
}

/// The values of `key:` in a YAML file: inline (`key: value`) or block scalars (`key: |` and
/// the lines indented under it). Enough for promtool's rule and test files.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = text.lines().collect();
    let mut values = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(value) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .copied()
                .collect();
            values.push(block.join("\n"));
        } else {
            values.push(value.to_string());
        }
    }
    values
}

/// The alerting rules' expressions and their tests' input series name only metrics the
/// members or the proxy export.
#[test]
fn alerting_rules_use_only_exported_metrics() {
    let known = known_metrics();
    for (file, key) in [
        (ALERTS, "expr"),
        (ALERT_TESTS, "series"),
        (ALERT_TESTS, "expr"),
    ] {
        let text = std::fs::read_to_string(file).expect("read the rules");
        for e in yaml_values(&text, key) {
            let unknown: Vec<_> = metric_names(&e)
                .into_iter()
                .filter(|n| !known.contains(n))
                .collect();
            assert!(
                unknown.is_empty(),
                "unknown metrics {unknown:?} in {file}: {e}"
            );
        }
    }
    // Every rule's expression was found.
    let rules = std::fs::read_to_string(ALERTS).expect("read the rules");
    let exprs = yaml_values(&rules, "expr");
    assert_eq!(
        exprs.len(),
        yaml_values(&rules, "alert").len(),
        "{exprs:#?}"
    );
    assert!(exprs.iter().all(|e| !e.trim().is_empty()), "{exprs:#?}");
}

/// The proxy's metric names above are the ones `proxy/src/metrics.rs` registers.
#[test]
fn proxy_metric_names_match_the_proxy_source() {
    let source = std::fs::read_to_string(PROXY_METRICS_SOURCE).expect("read the proxy source");
    let registered = metric_names(&source);
    let ours: BTreeSet<String> = PROXY_METRICS
        .iter()
        .chain(PROXY_HISTOGRAMS)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(registered, ours);
}
