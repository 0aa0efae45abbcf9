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
}
