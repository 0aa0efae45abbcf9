//! Backups in etcd's format, both ways: real `etcdctl snapshot save` from oxetcd gives a file
//! real etcd restores and then serves the same keys and revisions (migration out);
//! `oxetcdutl snapshot restore` of a real etcd's snapshot gives an oxetcd cluster serving the
//! same data (migration in). And `Hash`, over the same rows, agrees across members.

use std::path::{Path, PathBuf};
use std::process::Command;

use oxetcd_tests::{bin, http_request, write_history, Cluster, Kind, Member, CLUSTER_TOKEN};

/// What a backup must carry: the shared history (overwrites, deletes, a txn, a compaction),
/// users and roles (auth left disabled, so reads need no login), a lease with a key.
fn history(m: &Member) {
    write_history(m);
    for args in [
        &["user", "add", "alice:secret"][..],
        &["role", "add", "readers"],
        &["role", "grant-permission", "readers", "read", "a", "z"],
        &["user", "grant-role", "alice", "readers"],
    ] {
        m.etcdctl(args).ok();
    }
    let lease = m.etcdctl(&["lease", "grant", "600"]).granted_lease_id();
    m.etcdctl(&["put", "leased", "7", "--lease", &lease]).ok();
}

/// What a client sees of a member's state: every key with its revisions, the header
/// revision, a read below the compaction, the leases and their keys, users, roles, and
/// HashKV (which covers every kept revision).
fn observed(m: &Member) -> Vec<String> {
    let get = m.etcdctl(&["get", "", "--prefix", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(get.ok().trim()).expect("json");
    let mut seen = vec![
        v["kvs"].to_string(),
        v["header"]["revision"].to_string(),
        m.etcdctl(&["get", "a", "--rev=2"])
            .error_line()
            .unwrap_or("no error")
            .to_string(),
        m.etcdctl(&["user", "list"]).ok().to_string(),
        m.etcdctl(&["role", "get", "readers"]).ok().to_string(),
        m.etcdctl(&["user", "get", "alice"]).ok().to_string(),
    ];
    let leases = m.etcdctl(&["lease", "list"]).ok().to_string();
    for id in leases.lines().skip(1) {
        let ttl = m.etcdctl(&["lease", "timetolive", id, "--keys"]);
        // The remaining TTL restarts at restore: keep the granted TTL and the keys.
        let line = ttl.ok().to_string();
        let granted = line
            .split("granted with TTL(")
            .nth(1)
            .and_then(|r| r.split(')').next());
        let keys = line.split("attached keys(").nth(1).unwrap_or("");
        seen.push(format!("{id} granted {granted:?} keys {keys}"));
    }
    let hashkv = m.etcdctl(&["endpoint", "hashkv", "-w", "json"]);
    let h: serde_json::Value = serde_json::from_str(hashkv.ok().trim()).expect("json");
    seen.push(h[0]["HashKV"]["hash"].to_string());
    seen.push(h[0]["HashKV"]["compact_revision"].to_string());
    seen
}

fn save(m: &Member, dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(name);
    let out = m.etcdctl(&["snapshot", "save", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    file
}

/// Real `etcdctl snapshot restore` of `file` into `m`'s data dir, for `m`'s cluster.
fn etcdctl_restore(file: &Path, m: &Member) {
    let out = restore_with(false, file, &restore_flags(m));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn restore_flags(m: &Member) -> Vec<String> {
    vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", m.data_dir().display()),
        format!("--initial-cluster={}", m.initial_cluster()),
        format!("--initial-cluster-token={CLUSTER_TOKEN}"),
        format!("--initial-advertise-peer-urls={}", m.peer_url()),
    ]
}

/// `snapshot restore FILE FLAGS…` by real etcdctl, or by oxetcdutl (`ours`).
fn restore_with(ours: bool, file: &Path, flags: &[String]) -> std::process::Output {
    let mut cmd = match ours {
        true => Command::new(bin("oxetcdutl")),
        false => Command::new("etcdctl"),
    };
    cmd.env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(file)
        .args(flags)
        .output()
        .expect("the restore runs")
}

/// Restore flags for a one-member cluster in `data_dir` (nothing is started on it).
fn lone_member_flags(data_dir: &Path) -> Vec<String> {
    vec![
        "--name=m1".into(),
        format!("--data-dir={}", data_dir.display()),
        "--initial-cluster=m1=http://127.0.0.1:2380".into(),
        format!("--initial-cluster-token={CLUSTER_TOKEN}"),
        "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
    ]
}

/// `oxetcdutl snapshot restore` of `file` into `m`'s data dir; its output.
fn oxetcdutl_restore(file: &Path, m: &Member, extra: &[&str]) -> std::process::Output {
    let mut flags = restore_flags(m);
    flags.extend(extra.iter().map(|f| f.to_string()));
    restore_with(true, file, &flags)
}

#[test]
fn etcdctl_saves_an_oxetcd_snapshot_that_real_etcd_restores() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ox = Member::start(Kind::Oxetcd);
    history(&ox);
    let file = save(&ox, tmp.path(), "ox.db");
    let status = ox.etcdctl(&["snapshot", "status", file.to_str().unwrap(), "-w", "json"]);
    let s: serde_json::Value = serde_json::from_str(status.ok().trim()).expect("json");
    let rev = ox.revision();
    assert_eq!(s["revision"], rev);
    let etcd = Member::start_prepared(Kind::Etcd, &[], |m| etcdctl_restore(&file, m));
    assert_eq!(observed(&ox), observed(&etcd));
    // The restored etcd goes on from the same revision.
    let next = etcd.etcdctl(&["put", "f", "8", "-w", "json"]);
    let want = format!("\"revision\":{}", rev + 1);
    assert!(next.ok().contains(&want), "{}", next.stdout);
}

#[test]
fn a_real_etcd_snapshot_restores_into_an_oxetcd_cluster() {
    let tmp = tempfile::tempdir().expect("tmp");
    let etcd = Member::start(Kind::Etcd);
    history(&etcd);
    // Many revisions of a few keys, so compaction and history matter.
    for i in 0..200 {
        etcd.etcdctl(&["put", &format!("h{}", i % 7), &i.to_string()])
            .ok();
    }
    let file = save(&etcd, tmp.path(), "etcd.db");
    let c = Cluster::start_prepared(Kind::Oxetcd, 3, &[], |m| {
        let out = oxetcdutl_restore(&file, m, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let reference = observed(&etcd);
    for m in &c.members {
        assert_eq!(observed(m), reference, "{}", m.name);
    }
    // Writes go on from etcd's revision, on every member.
    let next = |m: &Member| {
        let out = m.etcdctl(&["put", "new", "1", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("json");
        v["header"]["revision"].as_i64().expect("revision")
    };
    assert_eq!(next(&c.members[1]), next(&etcd));
}

#[test]
fn restore_can_bump_the_revision_and_mark_it_compacted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ox = Member::start(Kind::Oxetcd);
    history(&ox);
    let file = save(&ox, tmp.path(), "ox.db");
    let rev = ox.revision();
    let restored = Member::start_prepared(Kind::Oxetcd, &[], |m| {
        let out = oxetcdutl_restore(&file, m, &["--bump-revision=1000", "--mark-compacted"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let put = restored.etcdctl(&["put", "x", "1", "-w", "json"]);
    assert!(
        put.ok().contains(&format!("\"revision\":{}", rev + 1001)),
        "{}",
        put.stdout
    );
    // A watcher of before the backup hears its history is gone, not silence.
    let below = restored.etcdctl(&["get", "a", &format!("--rev={rev}")]);
    assert_eq!(
        below.error_line(),
        Some("Error: etcdserver: mvcc: required revision has been compacted")
    );
    assert_eq!(
        restored.etcdctl(&["get", "c", "--print-value-only"]).ok(),
        "4\n"
    );
    // etcdutl's rule: one flag without the other is refused.
    let mut flags = lone_member_flags(&tmp.path().join("lone"));
    flags.push("--bump-revision=5".into());
    let lone = restore_with(true, &file, &flags);
    assert!(!lone.status.success());
    assert!(
        String::from_utf8_lossy(&lone.stderr)
            .contains("--mark-compacted required if --revision-bump > 0"),
        "{}",
        String::from_utf8_lossy(&lone.stderr)
    );
}

#[test]
fn a_damaged_snapshot_is_refused_as_etcd_refuses_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ox = Member::start(Kind::Oxetcd);
    history(&ox);
    let file = save(&ox, tmp.path(), "ox.db");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[5000] ^= 0xff;
    let damaged = tmp.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).expect("write");
    let theirs = restore_with(
        false,
        &damaged,
        &[format!("--data-dir={}", tmp.path().join("e").display())],
    );
    let ours = restore_with(true, &damaged, &lone_member_flags(&tmp.path().join("o")));
    assert!(!theirs.status.success() && !ours.status.success());
    assert!(
        last(&theirs).starts_with("Error: expected sha256 ["),
        "{}",
        last(&theirs)
    );
    assert_eq!(last(&theirs), last(&ours));
    assert!(
        !tmp.path().join("o").exists(),
        "a failed restore leaves no data dir"
    );
}

/// A snapshot taken while writes go on is one point of the history: a real etcd restored
/// from it serves exactly what oxetcd served at the snapshot's revision.
#[test]
fn a_snapshot_taken_under_writes_is_one_revision() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ox = Member::start(Kind::Oxetcd);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, endpoint) = (stop.clone(), ox.endpoint());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 20 {
                oxetcd_tests::etcdctl_at(
                    &endpoint,
                    &["put", &format!("w{}", i % 10), &i.to_string()],
                )
                .ok();
                i += 1;
            }
        })
    };
    let file = save(&ox, tmp.path(), "busy.db");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    let etcd = Member::start_prepared(Kind::Etcd, &[], |m| etcdctl_restore(&file, m));
    let at = etcd.etcdctl(&["get", "", "--prefix", "-w", "json"]);
    let at: serde_json::Value = serde_json::from_str(at.ok().trim()).expect("json");
    let rev = at["header"]["revision"].as_i64().expect("revision");
    let then = ox.etcdctl(&["get", "", "--prefix", "-w", "json", &format!("--rev={rev}")]);
    let then: serde_json::Value = serde_json::from_str(then.ok().trim()).expect("json");
    assert_eq!(at["kvs"], then["kvs"]);
}

/// Maintenance.Hash (the whole backend) is the same on every member once each has applied
/// the same entries, and stays so across a restart.
#[test]
fn hash_is_equal_on_every_member() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    history(&c.members[0]);
    let hash = |m: &Member| {
        // A linearizable read first: the member has applied everything written.
        m.etcdctl(&["get", "a"]).ok();
        let (status, body) = http_request(m.client_port, "POST", "/v3/maintenance/hash", "{}");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["hash"].as_u64().expect("hash")
    };
    let first: Vec<u64> = c.members.iter().map(hash).collect();
    assert!(first.windows(2).all(|w| w[0] == w[1]), "{first:?}");
    c.members[0].etcdctl(&["put", "z", "26"]).ok();
    let changed = hash(&c.members[0]);
    assert_ne!(changed, first[0], "a write changes the hash");
    c.members[2].stop();
    c.members[2].restart();
    assert_eq!(hash(&c.members[2]), changed);
    assert_eq!(hash(&c.members[1]), changed);
}

/// The last line a command wrote on stderr (its `Error:` line).
fn last(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

fn oxetcdutl(args: &[&str]) -> std::process::Output {
    Command::new(bin("oxetcdutl"))
        .args(args)
        .output()
        .expect("oxetcdutl runs")
}

/// `oxetcdutl snapshot status` prints what etcdctl 3.4 prints, in every format.
#[test]
fn oxetcdutl_snapshot_status_prints_what_etcdctl_prints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let etcd = Member::start(Kind::Etcd);
    history(&etcd);
    let file = save(&etcd, tmp.path(), "etcd.db");
    let path = file.to_str().unwrap();
    for format in ["simple", "table", "json", "fields"] {
        let theirs = etcd.etcdctl(&["snapshot", "status", path, "-w", format]);
        let ours = oxetcdutl(&["snapshot", "status", path, "-w", format]);
        assert_eq!(
            theirs.stdout,
            String::from_utf8_lossy(&ours.stdout),
            "{format}"
        );
    }
}

/// Offline commands on a stopped member's data dir: `hashkv` answers what the running
/// member answered; `defrag` keeps every key; `snapshot restore` refuses an existing data dir
/// as etcdctl does.
#[test]
fn oxetcdutl_offline_commands_on_a_data_dir() {
    let mut m = Member::start(Kind::Oxetcd);
    history(&m);
    let online = m.etcdctl(&["endpoint", "hashkv", "-w", "json"]);
    let online: serde_json::Value = serde_json::from_str(online.ok().trim()).expect("json");
    let before = observed(&m);
    m.stop();
    let dir = m.data_dir().to_str().unwrap().to_string();
    let hashkv = oxetcdutl(&["hashkv", &dir, "-w", "json"]);
    assert!(
        hashkv.status.success(),
        "{}",
        String::from_utf8_lossy(&hashkv.stderr)
    );
    let h: serde_json::Value = serde_json::from_slice(&hashkv.stdout).expect("json");
    assert_eq!(h["hash"], online[0]["HashKV"]["hash"]);
    assert_eq!(
        h["compactRevision"],
        online[0]["HashKV"]["compact_revision"]
    );
    let defrag = oxetcdutl(&["defrag", "--data-dir", &dir]);
    assert_eq!(
        String::from_utf8_lossy(&defrag.stdout),
        format!("Finished defragmenting etcd data[{dir}]\n")
    );
    let flags = [format!("--data-dir={dir}"), "--skip-hash-check".to_string()];
    let exists = restore_with(true, Path::new("x.db"), &flags);
    let theirs = restore_with(false, Path::new("x.db"), &flags);
    assert_eq!(last(&exists), last(&theirs));
    assert_eq!(exists.status.code(), theirs.status.code());
    m.restart();
    assert_eq!(observed(&m), before);
}
