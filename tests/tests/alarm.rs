//! Alarms and the space quota, against real etcd 3.4: past `--quota-backend-bytes` writes get
//! "database space exceeded" and a NOSPACE alarm is raised cluster-wide; reads, deletes,
//! compaction and defrag still work; `alarm disarm` after freeing space restores writes. A
//! CORRUPT alarm stops every write until disarmed.

use oxetcd_tests::{against_etcd, against_etcd_with, http_request, Cluster, Ctl, Kind, Member};

/// 2 MiB: reached after a few dozen of the values below on etcd and on oxetcd.
const QUOTA: &str = "--quota-backend-bytes=2097152";

/// A 128 KiB value (printable, so it passes through etcdctl's stdin).
fn big_value() -> String {
    (0..128 * 1024)
        .map(|i| char::from(b'a' + ((i * 7919) % 26) as u8))
        .collect()
}

/// Puts big values under `k<i>` until one is refused; returns that refusal.
fn fill(m: &Member) -> Ctl {
    let value = big_value();
    for i in 0..200 {
        let out = m.etcdctl_stdin(&["put", &format!("k{i}")], &value);
        if out.code != 0 {
            return out;
        }
    }
    panic!("200 puts of 128 KiB never reached a 2 MiB quota");
}

/// The errors `endpoint status` lists for the member (its raised alarms).
fn errors_of_status(m: &Member) -> Vec<String> {
    let out = m.etcdctl(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("status json");
    v[0]["Status"]["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Exit code, stdout and error line: what a user sees.
fn seen(out: &Ctl) -> (i32, String, Option<String>) {
    (
        out.code,
        out.stdout.clone(),
        out.error_line().map(str::to_string),
    )
}

#[test]
fn nospace_caps_writes_until_space_is_freed_and_the_alarm_disarmed() {
    let run = |m: &Member| {
        let id = m.id().to_string();
        let refused = seen(&fill(m));
        let alarm = m.etcdctl(&["alarm", "list"]).ok().replace(&id, "ID");
        let status_errors: Vec<String> = errors_of_status(m)
            .iter()
            .map(|e| e.replace(&id, "ID"))
            .collect();
        // Capped: no put, no lease grant, no txn with a put; reads and deletes still work.
        let capped = [
            seen(&m.etcdctl(&["put", "small", "v"])),
            seen(&m.etcdctl(&["lease", "grant", "60"])),
            seen(&m.etcdctl_stdin(&["txn"], "\nput t 1\n\n")),
        ];
        let read = m.etcdctl(&["get", "k0", "--print-value-only"]).code;
        let deleted = seen(&m.etcdctl(&["del", "--prefix", "k"]));
        let rev = m.revision().to_string();
        let compacted = seen(&m.etcdctl(&["compaction", &rev]));
        let defrag = m.etcdctl(&["defrag"]).code;
        // Still capped until disarmed, even with the space freed.
        let still = seen(&m.etcdctl(&["put", "small", "v"]));
        let disarmed = m.etcdctl(&["alarm", "disarm"]).ok().replace(&id, "ID");
        let after = seen(&m.etcdctl(&["put", "small", "v"]));
        let listed_after = m.etcdctl(&["alarm", "list"]).ok().to_string();
        (
            refused,
            alarm,
            status_errors,
            capped,
            read,
            deleted.0,
            compacted.0,
            defrag,
            still,
            disarmed,
            after,
            listed_after,
        )
    };
    let (etcd, ours) = against_etcd_with(&[QUOTA], run);
    assert_eq!(etcd, ours);
    assert_eq!(
        etcd.0 .2.as_deref(),
        Some("Error: etcdserver: mvcc: database space exceeded")
    );
    assert_eq!(etcd.1, "memberID:ID alarm:NOSPACE \n");
}

#[test]
fn corrupt_alarm_stops_writes_but_not_reads() {
    let (etcd, ours) = against_etcd(|m| {
        m.etcdctl(&["put", "a", "1"]).ok();
        let raise = r#"{"action":"ACTIVATE","memberID":"5","alarm":"CORRUPT"}"#;
        let raised = http_request(m.client_port, "POST", "/v3/maintenance/alarm", raise);
        let refused = [
            seen(&m.etcdctl(&["put", "a", "2"])),
            seen(&m.etcdctl(&["del", "a"])),
            seen(&m.etcdctl_stdin(&["txn"], "\nput t 1\n\n")),
            seen(&m.etcdctl(&["lease", "grant", "60"])),
            seen(&m.etcdctl(&["compaction", "1"])),
        ];
        let read = seen(&m.etcdctl(&["get", "a", "--print-value-only"]));
        let listed = m.etcdctl(&["alarm", "list"]).ok().to_string();
        let disarmed = m.etcdctl(&["alarm", "disarm"]).ok().to_string();
        let after = seen(&m.etcdctl(&["put", "a", "3"]));
        (raised, refused, read, listed, disarmed, after)
    });
    assert_eq!(etcd, ours);
    assert_eq!(
        etcd.1[0].2.as_deref(),
        Some("Error: etcdserver: corrupt cluster")
    );
}

/// Gateway answers for the alarm calls: GET with none raised, activate twice, deactivate one
/// that is not raised. AlarmResponse carries no header in etcd 3.4.
#[test]
fn alarm_calls_answer_as_etcds() {
    let (etcd, ours) = against_etcd(|m| {
        [
            r#"{}"#,
            r#"{"action":"ACTIVATE","memberID":"7","alarm":"NOSPACE"}"#,
            r#"{"action":"ACTIVATE","memberID":"7","alarm":"NOSPACE"}"#,
            r#"{"action":"GET","alarm":"CORRUPT"}"#,
            r#"{"action":"DEACTIVATE","memberID":"8","alarm":"NOSPACE"}"#,
            r#"{"action":"DEACTIVATE","memberID":"7","alarm":"NOSPACE"}"#,
            r#"{"action":"GET"}"#,
        ]
        .map(|body| http_request(m.client_port, "POST", "/v3/maintenance/alarm", body))
    });
    assert_eq!(etcd, ours);
}

/// The alarm is cluster state: raised by the member that ran out of space, it caps writes on
/// every member and every member lists it.
#[test]
fn nospace_raised_on_one_member_caps_the_whole_cluster() {
    let c = Cluster::start_with(Kind::Oxetcd, 3, &[QUOTA]);
    let refused = fill(&c.members[0]);
    assert_eq!(
        refused.error_line(),
        Some("Error: etcdserver: mvcc: database space exceeded")
    );
    for m in &c.members {
        assert!(
            m.etcdctl(&["alarm", "list"]).ok().contains("alarm:NOSPACE"),
            "{}",
            m.name
        );
        assert_eq!(
            m.etcdctl(&["put", "small", "v"]).error_line(),
            Some("Error: etcdserver: mvcc: database space exceeded"),
            "{}",
            m.name
        );
    }
}
