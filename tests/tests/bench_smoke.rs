//! The load generator runs against a member and its writes really land.

use oxetcd_tests::{Kind, Member};

#[test]
fn bench_put_and_range_smoke() {
    let m = Member::start(Kind::Oxetcd);
    let r = m.oxetcdctl(&[
        "bench",
        "--clients",
        "8",
        "--conns",
        "2",
        "put",
        "--total",
        "400",
        "--key-space-size",
        "100",
        "--sequential-keys",
        "--key-size",
        "4",
    ]);
    let out = r.ok();
    assert!(out.contains("Requests/sec:"), "{out}");
    assert!(out.contains("99.9% in "), "{out}");
    assert!(!out.contains("requests failed"), "{out}");
    // 400 puts over 100 sequential keys: 100 keys of version 4, revision 401.
    let count = m.etcdctl(&["get", "", "--prefix", "-w", "json", "--keys-only"]);
    let json: serde_json::Value = serde_json::from_str(count.ok().trim()).expect("json");
    assert_eq!(json["count"], 100);
    assert_eq!(json["header"]["revision"], 401);
    // --rate paces the run: 40 puts at 200/s take at least 195 ms, whatever the clients.
    let r = m.oxetcdctl(&[
        "-w",
        "json",
        "bench",
        "--clients",
        "8",
        "put",
        "--total",
        "40",
        "--rate",
        "200",
    ]);
    let v: serde_json::Value = serde_json::from_str(r.ok().trim()).unwrap();
    assert!(v["total"].as_f64().unwrap() >= 0.195, "{v}");
    assert_eq!(v["requests"], 40);
    let r = m.oxetcdctl(&[
        "bench",
        "--clients",
        "4",
        "range",
        "0000",
        "--total",
        "200",
        "--consistency",
        "s",
    ]);
    assert!(r.ok().contains("Requests/sec:"));
    // RangeStream: every request is a whole stream drained, none failed.
    let r = m.oxetcdctl(&[
        "-w",
        "json",
        "bench",
        "--clients",
        "2",
        "range",
        "0",
        "1",
        "--total",
        "20",
        "--stream",
    ]);
    let v: serde_json::Value = serde_json::from_str(r.ok().trim()).unwrap();
    assert_eq!(
        (v["requests"].as_u64(), v["errors"].as_u64()),
        (Some(20), Some(0)),
        "{v}"
    );
}

#[test]
fn bench_txn_put_and_json_report() {
    let m = Member::start(Kind::Oxetcd);
    let r = m.oxetcdctl(&[
        "-w",
        "json",
        "bench",
        "--clients",
        "4",
        "txn-put",
        "--total",
        "100",
        "--txn-ops",
        "3",
        "--key-space-size",
        "1000",
    ]);
    let report: serde_json::Value = serde_json::from_str(r.ok().trim()).expect("one JSON report");
    assert_eq!(report["requests"], 100);
    assert_eq!(report["errors"], 0);
    assert!(report["requests_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(report["latency_distribution"].as_array().unwrap().len(), 8);
    // 100 txns of 3 puts each: 100 revisions, up to 300 keys written.
    let out = m.etcdctl(&["get", "", "--prefix", "-w", "json", "--keys-only"]);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(v["header"]["revision"], 101);
    assert!(v["count"].as_i64().unwrap() > 100);
}

/// `--gateway`: the same loads as HTTP+JSON, against real etcd's gateway and ours, and the
/// writes land.
#[test]
fn bench_through_the_gateway_smoke() {
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let m = Member::start(kind);
        let r = m.oxetcdctl(&[
            "bench",
            "--gateway",
            "--clients",
            "8",
            "put",
            "--total",
            "400",
            "--key-space-size",
            "100",
            "--sequential-keys",
            "--key-size",
            "4",
        ]);
        let out = r.ok();
        assert!(out.contains("Requests/sec:"), "{kind:?}: {out}");
        assert!(!out.contains("requests failed"), "{kind:?}: {out}");
        let count = m.etcdctl(&["get", "", "--prefix", "-w", "json", "--keys-only"]);
        let json: serde_json::Value = serde_json::from_str(count.ok().trim()).expect("json");
        assert_eq!(json["count"], 100, "{kind:?}");
        assert_eq!(json["header"]["revision"], 401, "{kind:?}");
        let r = m.oxetcdctl(&[
            "bench",
            "--gateway",
            "--clients",
            "4",
            "range",
            "0000",
            "--total",
            "100",
        ]);
        let out = r.ok();
        assert!(
            out.contains("Requests/sec:") && !out.contains("failed"),
            "{kind:?}: {out}"
        );
    }
}

#[test]
fn bench_lease_keepalive_and_watch_get_on_etcd_and_oxetcd() {
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let m = Member::start(kind);
        let r = m.oxetcdctl(&[
            "-w",
            "json",
            "bench",
            "--clients",
            "4",
            "--conns",
            "2",
            "lease-keepalive",
            "--total",
            "60",
        ]);
        let v: serde_json::Value = serde_json::from_str(r.ok().trim()).unwrap();
        assert_eq!(
            (v["requests"].as_u64(), v["errors"].as_u64()),
            (Some(60), Some(0)),
            "{kind:?} {v}"
        );
        // Four leases, one per client, and nothing else granted.
        let leases = m.etcdctl(&["lease", "list"]);
        assert!(
            leases.ok().starts_with("found 4 leases"),
            "{kind:?} {}",
            leases.ok()
        );

        let r = m.oxetcdctl(&[
            "-w",
            "json",
            "bench",
            "--conns",
            "2",
            "watch-get",
            "--watchers",
            "200",
            "--streams",
            "4",
            "--events",
            "5",
        ]);
        let v: serde_json::Value = serde_json::from_str(r.ok().trim()).unwrap();
        assert_eq!(v["errors"].as_u64(), Some(0), "{kind:?} {v}");
        // Every watcher saw every event (else the tool reports a failure, or never ends);
        // how many gets fit in meanwhile is the measurement, not checked here.
        let events = m.etcdctl(&["get", "watchkey", "-w", "json"]);
        assert!(
            events.ok().contains("\"version\":5"),
            "{kind:?} {}",
            events.ok()
        );
    }
}
