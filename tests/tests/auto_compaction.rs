//! Auto compaction, as etcd 3.4 runs it: periodic (keep a duration of history) and by
//! revision (keep a number of revisions).

use std::time::{Duration, Instant};

use oxetcd_tests::{against_etcd_with, Cluster, Kind, Member};

/// The compacted revision `endpoint hashkv` reports (-1 before any compaction).
fn compacted(m: &Member) -> i64 {
    let out = m.etcdctl(&["endpoint", "hashkv", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("json");
    v[0]["HashKV"]["compact_revision"]
        .as_i64()
        .expect("compact revision")
}

/// Waits (a bounded poll: compaction raises no event a client can wait on) until the member
/// has compacted at least to `rev`; returns what it compacted to.
fn wait_compacted(m: &Member, rev: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let c = compacted(m);
        if c >= rev {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted to {rev} within {within:?} (at {c})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(m: &Member, n: usize) -> i64 {
    for i in 0..n {
        m.etcdctl(&["put", &format!("k{}", i % 3), &i.to_string()])
            .ok();
    }
    m.revision()
}

/// `periodic` with a 2 s retention: nothing is compacted before 2 s have passed; then the
/// revision of (about) 2 s ago is, and with no writes since, that is the current one. etcd
/// answers the same, and reading below it fails as etcd's does.
#[test]
fn periodic_compaction_keeps_the_retention() {
    let flags = [
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=2s",
    ];
    let (etcd, ours) = against_etcd_with(&flags, |m| {
        let started = Instant::now();
        let rev = write(m, 10);
        let at = wait_compacted(m, rev, Duration::from_secs(20));
        let waited = started.elapsed();
        let below = m.etcdctl(&["get", "k0", "--rev=2"]);
        (
            at,
            waited >= Duration::from_secs(2),
            below.error_line().map(str::to_string),
        )
    });
    assert_eq!(etcd, ours);
    assert!(ours.1, "compacted before the retention had passed");
}

/// `revision` mode keeps the last N revisions: compacts to current - N. etcd looks every 5
/// minutes; the hidden `--auto-compaction-revision-interval` makes that short for the test,
/// so there is no etcd run to compare with here. A 3-member cluster: the leader compacts, and
/// every member applies it.
#[test]
fn revision_compaction_keeps_the_last_revisions_on_every_member() {
    let c = Cluster::start_with(
        Kind::Oxetcd,
        3,
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=4",
            "--auto-compaction-revision-interval=200ms",
        ],
    );
    let rev = write(&c.members[0], 12);
    for m in &c.members {
        assert_eq!(
            wait_compacted(m, rev - 4, Duration::from_secs(20)),
            rev - 4,
            "{}",
            m.name
        );
    }
    // Kept: the last 4 revisions are readable.
    let kept = c.members[1].etcdctl(&["get", "k0", &format!("--rev={}", rev - 4)]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
}

/// etcd's flag errors: an unknown mode and a retention that is neither a number nor a
/// duration stop the member at start-up.
#[test]
fn bad_auto_compaction_flags_are_refused() {
    for flags in [
        &[
            "--auto-compaction-mode=weekly",
            "--auto-compaction-retention=1",
        ][..],
        &["--auto-compaction-retention=soon"],
    ] {
        let out = std::process::Command::new(oxetcd_tests::bin("oxetcd"))
            .args(flags)
            .arg("--data-dir")
            .arg(tempfile::tempdir().expect("tmp").path().join("d"))
            .output()
            .expect("oxetcd runs");
        assert!(!out.status.success(), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("auto-compaction") || err.contains("CompactionRetention"),
            "{err}"
        );
    }
}
