//! The same etcdctl script against real etcd 3.4 and against oxetcd: the transcripts must be
//! identical once IDs and raft terms (which differ between any two clusters) are normalized.

use oxetcd_tests::{against_etcd, first_difference, kv_script, run_script, Kind, Member};

#[test]
fn etcdctl_kv_script_matches_real_etcd() {
    let script = kv_script();
    let (reference, ours) = against_etcd(|m| run_script(m, &script, false));
    assert!(
        reference == ours,
        "etcdctl against oxetcd differs from etcdctl against etcd at {}",
        first_difference(&reference, &ours)
    );
    // The script must have exercised errors, not only happy paths.
    assert!(ours.contains("Error: etcdserver: mvcc: required revision has been compacted"));
    assert!(ours.contains("Error: etcdserver: duplicate key given in txn request"));
    assert!(ours.contains("Error: etcdserver: too many operations in txn request"));
}

#[test]
fn oxetcdctl_prints_what_etcdctl_prints() {
    let script = kv_script();
    let a = Member::start(Kind::Oxetcd);
    let theirs = run_script(&a, &script, false);
    let b = Member::start(Kind::Oxetcd);
    let ours = run_script(&b, &script, true);
    assert!(
        theirs == ours,
        "oxetcdctl output differs from etcdctl's at {}",
        first_difference(&theirs, &ours)
    );
}

#[test]
#[ignore = "prints the transcript for a human to read"]
fn dump_transcript() {
    let m = Member::start(Kind::Oxetcd);
    println!("{}", run_script(&m, &kv_script(), true));
}
