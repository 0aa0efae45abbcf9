//! oxetcdctl's `snapshot save|status`, `defrag` and `alarm list|disarm` against real etcd 3.4
//! and real etcdctl 3.4: the same stdout, `Error:` line and exit code.
//!
//! Tests marked "needs oxetcd's server side" run the commands against an oxetcd member, whose
//! Snapshot and Alarm services are being written; they may fail until those land.

use std::path::Path;

use oxetcd_tests::{against_etcd, bin, etcdctl_at, normalize, write_history, Ctl, Kind, Member};

/// The shared history and a lease, so the snapshot has several revisions of keys and more
/// than the empty buckets.
fn history(m: &Member) {
    write_history(m);
    m.etcdctl(&["lease", "grant", "600"]).ok();
}

/// Runs oxetcdctl with `endpoints` in ETCDCTL_ENDPOINTS (etcdctl refuses the variable and the
/// flag together, so the harness's variable cannot be overridden with `--endpoints`).
fn oxetcdctl_at(endpoints: &str, args: &[&str]) -> Ctl {
    let out = std::process::Command::new(bin("oxetcdctl"))
        .env("ETCDCTL_API", "3")
        .env("ETCDCTL_ENDPOINTS", endpoints)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run oxetcdctl");
    Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What a comparison looks at: exit code, stdout, and the `Error:` line.
fn seen(r: &Ctl) -> (i32, String, Option<String>) {
    (r.code, r.stdout.clone(), r.error_line().map(str::to_string))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The `msg` of each zap JSON line on stderr, in order.
fn log_messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect()
}

/// `snapshot status -w json` by etcdctl: (hash, revision, total keys).
fn status_json(m: &Member, file: &str) -> (u64, i64, u64) {
    let out = m.etcdctl(&["snapshot", "status", file, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("status json");
    (
        v["hash"].as_u64().expect("hash"),
        v["revision"].as_i64().expect("revision"),
        v["totalKey"].as_u64().expect("totalKey"),
    )
}

#[test]
fn snapshot_status_of_an_etcd_snapshot_prints_what_etcdctl_prints() {
    let m = Member::start(Kind::Etcd);
    history(&m);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("etcd.db");
    let file = path_str(&file);
    m.etcdctl(&["snapshot", "save", file]).ok();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database\n").expect("write junk");
    let zeros = dir.path().join("zeros.db");
    std::fs::write(&zeros, vec![0u8; 20480]).expect("write zeros");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("write empty");
    let missing = dir.path().join("missing.db");
    let (junk, zeros, empty, missing) = (
        path_str(&junk),
        path_str(&zeros),
        path_str(&empty),
        path_str(&missing),
    );
    let d = path_str(dir.path());
    for args in [
        &["snapshot", "status", file][..],
        &["snapshot", "status", file, "-w", "json"],
        &["snapshot", "status", file, "-w", "table"],
        &["snapshot", "status", file, "-w", "fields"],
        &["snapshot", "status", file, "-w", "protobuf"],
        &["snapshot", "status", missing],
        &["snapshot", "status", missing, "-w", "protobuf"],
        &["snapshot", "status", junk],
        &["snapshot", "status", zeros],
        &["snapshot", "status", empty],
        &["snapshot", "status", d],
        &["snapshot", "status"],
        &["snapshot", "status", file, file],
    ] {
        let (theirs, ours) = (m.etcdctl(args), m.oxetcdctl(args));
        assert_eq!(seen(&theirs), seen(&ours), "{args:?}");
    }
    // The revision is the store's, as etcdctl reads it from the `key` bucket.
    assert_eq!(status_json(&m, file).1, m.revision());
}

#[test]
fn snapshot_save_from_etcd_matches_etcdctls_save() {
    let m = Member::start(Kind::Etcd);
    history(&m);
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours_path, theirs_path) = (dir.path().join("ours.db"), dir.path().join("theirs.db"));
    let (ours_file, theirs_file) = (path_str(&ours_path), path_str(&theirs_path));
    let ours = m.oxetcdctl(&["snapshot", "save", ours_file]);
    let theirs = m.etcdctl(&["snapshot", "save", theirs_file]);
    assert_eq!(ours.ok(), format!("Snapshot saved at {ours_file}\n"));
    assert_eq!(theirs.ok(), format!("Snapshot saved at {theirs_file}\n"));
    assert_eq!(log_messages(&ours.stderr), log_messages(&theirs.stderr));
    assert!(!Path::new(&format!("{ours_file}.part")).exists());
    // Nothing was written in between: the same database, which etcdctl accepts.
    assert_eq!(status_json(&m, ours_file), status_json(&m, theirs_file));
    let len = std::fs::metadata(&ours_path).expect("saved file").len();
    assert_eq!(len % 512, 32, "the sha256 etcd appends is kept");
    // And oxetcdctl's status of its own file is etcdctl's.
    let args = ["snapshot", "status", ours_file, "-w", "table"];
    assert_eq!(seen(&m.etcdctl(&args)), seen(&m.oxetcdctl(&args)));

    // Refusals: several endpoints, a directory that does not exist, no file, two files.
    let two = format!("{},{}", m.endpoint(), m.endpoint());
    let args = ["snapshot", "save", ours_file];
    let (theirs, ours) = (etcdctl_at(&two, &args), oxetcdctl_at(&two, &args));
    assert_eq!(seen(&theirs), seen(&ours));
    assert_eq!(ours.code, 5, "{ours:?}");
    let nowhere = dir.path().join("no/such/dir.db");
    for args in [
        &["snapshot", "save", path_str(&nowhere)][..],
        &["snapshot", "save"],
        &["snapshot", "save", ours_file, theirs_file],
    ] {
        let (theirs, ours) = (m.etcdctl(args), m.oxetcdctl(args));
        assert_eq!(seen(&theirs), seen(&ours), "{args:?}");
    }
}

#[test]
fn defrag_prints_what_etcdctl_prints() {
    let m = Member::start(Kind::Etcd);
    history(&m);
    // A second endpoint nothing listens on: its failure goes to stderr, the exit code is 1.
    let dead = format!("{},127.0.0.1:{}", m.endpoint(), oxetcd_tests::free_port());
    let live = m.endpoint();
    for (endpoints, args) in [
        (&live, &["defrag"][..]),
        (&live, &["defrag", "-w", "json"]),
        (&live, &["defrag", "--cluster"]),
        (&dead, &["--command-timeout=1s", "defrag"]),
    ] {
        let (theirs, ours) = (etcdctl_at(endpoints, args), oxetcdctl_at(endpoints, args));
        assert_eq!(seen(&theirs), seen(&ours), "{args:?}: {theirs:?}");
        let failed = |r: &Ctl| -> Vec<String> {
            r.stderr
                .lines()
                .filter(|l| l.starts_with("Failed to defragment"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(failed(&theirs), failed(&ours), "{args:?}");
    }
    let r = oxetcdctl_at(&dead, &["--command-timeout=1s", "defrag"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        format!("Finished defragmenting etcd member[{live}]\n")
    );
}

/// Every format of `alarm list|disarm` without alarms. etcdctl's `fields` printer dies of the
/// missing header (exit 2); oxetcdctl exits the same way.
#[test]
fn alarm_list_and_disarm_without_alarms_print_what_etcdctl_prints() {
    let m = Member::start(Kind::Etcd);
    for cmd in ["list", "disarm"] {
        for w in ["simple", "json", "table", "fields", "protobuf"] {
            let args = ["alarm", cmd, "-w", w];
            let (theirs, ours) = (m.etcdctl(&args), m.oxetcdctl(&args));
            assert_eq!(seen(&theirs), seen(&ours), "{args:?}");
        }
        let args = ["alarm", cmd, "extra"];
        assert_eq!(seen(&m.etcdctl(&args)), seen(&m.oxetcdctl(&args)));
    }
}

/// A NOSPACE alarm raised by real etcd (a 1 MiB quota, filled), listed in every format, then
/// disarmed by oxetcdctl.
#[test]
fn nospace_alarm_listed_and_disarmed_as_etcdctl_does() {
    let m = Member::start_with(Kind::Etcd, &["--quota-backend-bytes", "1048576"]);
    let value = "x".repeat(100_000);
    let mut raised = false;
    for i in 0..40 {
        let r = m.etcdctl(&["put", &format!("k{i}"), &value]);
        if r.code != 0 {
            assert_eq!(
                r.error_line(),
                Some("Error: etcdserver: mvcc: database space exceeded")
            );
            raised = true;
            break;
        }
    }
    assert!(raised, "the quota was never exceeded");
    for w in ["simple", "json", "table", "fields", "protobuf"] {
        let args = ["alarm", "list", "-w", w];
        let (theirs, ours) = (m.etcdctl(&args), m.oxetcdctl(&args));
        assert_eq!(seen(&theirs), seen(&ours), "{args:?}");
    }
    let listed = m.etcdctl(&["alarm", "list", "-w", "json"]);
    assert!(listed.ok().contains("\"alarm\":1"), "{listed:?}");
    // disarm answers with the alarms it deactivated, in a response without a header: the
    // list's JSON.
    let disarmed = m.oxetcdctl(&["alarm", "disarm", "-w", "json"]);
    assert_eq!(disarmed.ok(), listed.ok());
    assert_eq!(m.etcdctl(&["alarm", "list"]).ok(), "");
}

/// Needs oxetcd's server side (Snapshot): a snapshot of oxetcd saved by either CLI is a
/// database etcdctl's `snapshot status` reads, at oxetcd's revision, and oxetcdctl reads it
/// the same.
#[test]
fn snapshot_of_oxetcd_is_read_by_etcdctl() {
    let m = Member::start(Kind::Oxetcd);
    history(&m);
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours_path, theirs_path) = (dir.path().join("ours.db"), dir.path().join("theirs.db"));
    let (ours_file, theirs_file) = (path_str(&ours_path), path_str(&theirs_path));
    let ours = m.oxetcdctl(&["snapshot", "save", ours_file]);
    assert_eq!(ours.ok(), format!("Snapshot saved at {ours_file}\n"));
    let theirs = m.etcdctl(&["snapshot", "save", theirs_file]);
    assert_eq!(theirs.ok(), format!("Snapshot saved at {theirs_file}\n"));
    let (_, rev, _) = status_json(&m, ours_file);
    assert_eq!(rev, m.revision());
    assert_eq!(status_json(&m, ours_file), status_json(&m, theirs_file));
    for w in ["simple", "json", "table", "fields"] {
        let args = ["snapshot", "status", ours_file, "-w", w];
        assert_eq!(seen(&m.etcdctl(&args)), seen(&m.oxetcdctl(&args)), "{w}");
    }
}

/// Needs oxetcd's server side (Defragment, Alarm as etcd 3.4 answers it: no header): what
/// both CLIs print against oxetcd is what they print against etcd.
#[test]
fn defrag_and_alarm_list_against_oxetcd_print_what_they_print_against_etcd() {
    let run = |m: &Member| {
        let mut out = String::new();
        for args in [
            &["defrag"][..],
            &["alarm", "list"],
            &["alarm", "list", "-w", "json"],
            &["alarm", "list", "-w", "protobuf"],
            &["alarm", "disarm", "-w", "json"],
        ] {
            for r in [m.etcdctl(args), m.oxetcdctl(args)] {
                // Endpoints differ by port only.
                let stdout = r.stdout.replace(&m.endpoint(), "ENDPOINT");
                out.push_str(&format!("$ {}\n{}", args.join(" "), normalize(&stdout)));
                if let Some(e) = r.error_line() {
                    out.push_str(&format!("{e}\n"));
                }
                out.push_str(&format!("[exit {}]\n", r.code));
            }
        }
        out
    };
    let (etcd, ours) = against_etcd(run);
    assert_eq!(
        etcd,
        ours,
        "{}",
        oxetcd_tests::first_difference(&etcd, &ours)
    );
}
