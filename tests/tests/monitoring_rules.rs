//! The operator's monitoring files in `deploy/`: the Prometheus alerting rules pass promtool's
//! checks and their unit tests, the example Prometheus config is valid, and the Grafana
//! dashboard is JSON whose queries use only metrics that members or the proxy export.

use std::collections::BTreeSet;
use std::process::Command;

use oxetcd_tests::prometheus::metric_names;

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

const MEMBER_METRICS_SOURCE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../member/src/metrics.rs");

/// What the prometheus crate's process collector exports on Linux (not named in our sources).
const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

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

/// Every metric family the members and the proxy register (the names their metrics
/// sources spell out), the process collector's, and Prometheus' own `up`.
/// (`tests/tests/metrics.rs` checks the members' against a live scrape and real etcd's.)
fn known_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for source in [MEMBER_METRICS_SOURCE, PROXY_METRICS_SOURCE] {
        let text = std::fs::read_to_string(source).expect("read a metrics source");
        names.extend(metric_names(&text));
    }
    names.extend(PROCESS_METRICS.iter().map(|n| n.to_string()));
    names.insert("up".into());
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
