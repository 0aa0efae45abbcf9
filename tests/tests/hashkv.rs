//! HashKV: etcd's hash of the key space, computed the way etcd 3.4 computes it (CRC-32C over
//! its bbolt layout of revisions), so the same history hashes the same on etcd and oxetcd, and
//! the members of a cluster agree.

use oxetcd_tests::{Cluster, Kind, Member};

/// Writes the same history: puts, overwrites, deletes, a txn, a compaction, more puts.
fn history(m: &Member) {
    for args in [
        &["put", "a", "1"][..],
        &["put", "b", "2"],
        &["put", "a", "3"],
        &["del", "b"],
        &["put", "c", "4"],
        &["put", "b", "5"],
        &["compaction", "4"],
        &["put", "d", "6"],
        &["del", "a"],
        &["put", "e", "7"],
    ] {
        m.etcdctl(args).ok();
    }
    m.etcdctl_stdin(&["txn"], "\nput f 8\nput g 9\n\n\n").ok();
}

/// (hash, compact revision, header revision) of `endpoint hashkv -w json`, at `rev`.
fn hashkv(m: &Member, rev: &str) -> (u64, i64, i64) {
    let out = m.etcdctl(&["endpoint", "hashkv", "-w", "json", &format!("--rev={rev}")]);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("json");
    let h = &v[0]["HashKV"];
    (
        h["hash"].as_u64().expect("hash"),
        h["compact_revision"].as_i64().expect("compact revision"),
        h["header"]["revision"].as_i64().expect("revision"),
    )
}

#[test]
fn hashkv_equals_etcds_for_the_same_history() {
    let run = |kind| {
        let m = Member::start(kind);
        history(&m);
        let now = hashkv(&m, "0");
        let at_8 = hashkv(&m, "8");
        let compacted = m.etcdctl(&["endpoint", "hashkv", "--rev=3"]);
        (now, at_8, compacted.error_line().map(str::to_string))
    };
    let reference = run(Kind::Etcd);
    let ours = run(Kind::Oxetcd);
    assert_eq!(reference, ours);
    assert_ne!(
        reference.0 .0, reference.1 .0,
        "different revisions hash differently"
    );
}

#[test]
fn members_of_a_cluster_agree_on_hashkv() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    history(&c.members[0]);
    // A linearizable read on each member first: each has applied everything.
    let hashes: Vec<(u64, i64, i64)> = c
        .members
        .iter()
        .map(|m| {
            m.etcdctl(&["get", "a"]);
            hashkv(m, "0")
        })
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// `oxetcdctl endpoint hashkv` prints what etcdctl prints, in every format, and fails as it
/// does for a compacted revision.
#[test]
fn oxetcdctl_endpoint_hashkv_prints_what_etcdctl_prints() {
    let m = Member::start(Kind::Oxetcd);
    history(&m);
    for args in [
        &["endpoint", "hashkv"][..],
        &["endpoint", "hashkv", "-w", "json"],
        &["endpoint", "hashkv", "-w", "table"],
        &["endpoint", "hashkv", "-w", "fields", "--rev=8"],
        &["endpoint", "hashkv", "--rev=3"],
        &["endpoint", "hashkv", "--cluster"],
    ] {
        let (theirs, ours) = (m.etcdctl(args), m.oxetcdctl(args));
        assert_eq!(
            (theirs.code, theirs.stdout.clone(), theirs.error_line()),
            (ours.code, ours.stdout.clone(), ours.error_line()),
            "{args:?}"
        );
    }
}
