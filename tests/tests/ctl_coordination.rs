//! oxetcdctl's watch, lease, lock and elect print what etcdctl 3.4 prints, against the same
//! member; and our lock interoperates with etcdctl's lock recipe.

use oxetcd_tests::{normalize, Kind, Member, Running};

/// Starts the same watch with etcdctl and oxetcdctl, makes `writes` and a sentinel put
/// `zz-end = done`, and returns both outputs up to the first line for which `last` holds.
fn watch_both(
    m: &Member,
    args: &[&str],
    writes: &[&[&str]],
    last: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    // Start from the next revision so that both see the same events however fast they start.
    let rev = {
        let out = m.etcdctl(&["get", "x", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.ok().trim()).unwrap();
        v["header"]["revision"].as_i64().unwrap() + 1
    };
    let rev_flag = format!("--rev={rev}");
    let mut full: Vec<&str> = vec!["watch", &rev_flag];
    full.extend_from_slice(args);
    let mut theirs = Running::start(false, &m.endpoint(), &full);
    let mut ours = Running::start(true, &m.endpoint(), &full);
    for w in writes {
        m.etcdctl(w).ok();
    }
    m.etcdctl(&["put", "zz-end", "done"]).ok();
    let read = |r: &mut Running| {
        let mut out = Vec::new();
        loop {
            let l = r.next_line();
            let done = last(&l);
            out.push(l);
            if done {
                return out;
            }
        }
    };
    (read(&mut theirs), read(&mut ours))
}

#[test]
fn watch_output_matches_etcdctl() {
    let m = Member::start(Kind::Oxetcd);
    let writes: &[&[&str]] = &[
        &["put", "wk", "1"],
        &["put", "wk", "2"],
        &["del", "wk"],
        &["put", "wk1", "a"],
        &["put", "wk1", "b"],
        &["del", "wk1"],
        &["put", "other", "x"],
    ];
    for args in [
        vec!["", "--prefix"],
        vec!["--prefix", "--prev-kv", ""],
        vec!["", "--prefix", "-w", "json"],
        vec!["a", "zzz", "--hex"],
    ] {
        // The sentinel's value "done": base64 in JSON, escaped with --hex.
        let last: fn(&str) -> bool = if args.contains(&"json") {
            |l| l.contains("ZG9uZQ==")
        } else if args.contains(&"--hex") {
            |l| l == "\\x64\\x6f\\x6e\\x65"
        } else {
            |l| l == "done"
        };
        let (theirs, ours) = watch_both(&m, &args, writes, last);
        assert_eq!(
            normalize(&theirs.join("\n")),
            normalize(&ours.join("\n")),
            "watch {args:?}"
        );
        assert!(
            theirs.len() >= 8,
            "watch {args:?} saw too little: {theirs:?}"
        );
    }
}

#[test]
fn watch_exec_mode_and_compacted_cancel_match_etcdctl() {
    let m = Member::start(Kind::Oxetcd);
    let exec = ["wk", "--", "sh", "-c", "env | grep ETCD_WATCH | sort"];
    let (theirs, ours) = watch_both(
        &m,
        &exec,
        &[&["put", "wk", "10"], &["put", "wk", "done"]],
        |l| l == "ETCD_WATCH_VALUE=\"done\"",
    );
    assert_eq!(theirs, ours);
    assert!(
        theirs.contains(&"ETCD_WATCH_VALUE=\"10\"".to_string()),
        "{theirs:?}"
    );

    for i in 0..5 {
        m.etcdctl(&["put", "c", &i.to_string()]).ok();
    }
    m.etcdctl(&["compaction", "5"]).ok();
    let theirs = Running::start(false, &m.endpoint(), &["watch", "c", "--rev=2"]).finish();
    let ours = Running::start(true, &m.endpoint(), &["watch", "c", "--rev=2"]).finish();
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .map(String::from)
            .collect()
    };
    assert_eq!((theirs.0, lines(&theirs.1)), (ours.0, lines(&ours.1)));
    assert!(theirs
        .1
        .contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"));
}

#[test]
fn lease_commands_match_etcdctl() {
    let m = Member::start(Kind::Oxetcd);
    let granted = m.etcdctl(&["lease", "grant", "600"]);
    let id = granted.granted_lease_id();
    m.etcdctl(&["put", "--lease", &id, "lk1", "v"]).ok();
    assert_eq!(
        m.oxetcdctl(&["put", "--lease", &id, "lk2", "v"]).ok(),
        "OK\n"
    );
    for cmd in [
        vec!["lease", "timetolive", &id],
        vec!["lease", "timetolive", "--keys", &id],
        vec!["lease", "timetolive", "--keys", "-w", "json", &id],
        vec!["lease", "keep-alive", "--once", &id],
        vec!["lease", "keep-alive", "--once", "-w", "json", &id],
        vec!["lease", "list"],
        vec!["lease", "list", "-w", "json"],
        vec!["get", "lk1", "-w", "json"],
    ] {
        let (t, o) = (m.etcdctl(&cmd), m.oxetcdctl(&cmd));
        // The remaining TTL may tick between the two calls.
        let tidy = |s: &str| {
            s.replace("remaining(599s)", "remaining(600s)")
                .replace("\"ttl\":599", "\"ttl\":600")
        };
        assert_eq!(tidy(&t.stdout), tidy(&o.stdout), "{cmd:?}");
        assert_eq!(t.code, o.code, "{cmd:?}");
    }
    assert_eq!(
        m.oxetcdctl(&["lease", "revoke", &id]).ok(),
        format!("lease {id} revoked\n")
    );
    for cmd in [
        vec!["lease", "revoke", &id],
        vec!["lease", "timetolive", &id],
        vec!["lease", "keep-alive", "--once", &id],
        vec!["put", "--lease", &id, "k", "v"],
    ] {
        let (t, o) = (m.etcdctl(&cmd), m.oxetcdctl(&cmd));
        assert_eq!(
            (t.code, &t.stdout, t.error_line()),
            (o.code, &o.stdout, o.error_line()),
            "{cmd:?}"
        );
    }
    let g = m.oxetcdctl(&["lease", "grant", "1"]);
    assert!(g.ok().ends_with(" granted with TTL(2s)\n"), "{g:?}");
}

#[test]
fn oxetcdctl_lock_and_elect_interoperate_with_etcdctl() {
    let m = Member::start(Kind::Oxetcd);
    // etcdctl holds the lock (client-side recipe); oxetcdctl (server-side API) must wait.
    let mut holder = Running::start(false, &m.endpoint(), &["lock", "--ttl=2", "mylock"]);
    let held = holder.next_line();
    assert!(held.starts_with("mylock/"), "{held}");
    let mut second = Running::start(
        true,
        &m.endpoint(),
        &["lock", "mylock", "--", "echo", "second-acquired"],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "oxetcdctl acquired a held lock"
    );
    drop(holder); // kill -9: its session lease expires after 2 s
    assert_eq!(second.next_line(), "second-acquired");
    assert_eq!(second.finish().0, 0);

    // oxetcdctl elect -l observes leaders elected by etcdctl and by oxetcdctl.
    // (etcdctl 3.4's elect has no --ttl, so the candidate that dies is ours, with a 2 s session.)
    let mut observer = Running::start(true, &m.endpoint(), &["elect", "-l", "pres"]);
    let mut etcd_observer = Running::start(false, &m.endpoint(), &["elect", "-l", "pres"]);
    let mut alice = Running::start(true, &m.endpoint(), &["elect", "--ttl=2", "pres", "alice"]);
    let alice_key = alice.next_line();
    assert_eq!(alice.next_line(), "alice");
    assert_eq!(observer.next_line(), alice_key);
    assert_eq!(observer.next_line(), "alice");
    assert_eq!(etcd_observer.next_line(), alice_key);
    assert_eq!(etcd_observer.next_line(), "alice");
    let mut bob = Running::start(false, &m.endpoint(), &["elect", "pres", "bob"]);
    drop(alice); // kill -9: alice's session expires, bob takes over
    let bob_key = bob.next_line();
    assert_eq!(bob.next_line(), "bob");
    assert_eq!(observer.next_line(), bob_key);
    assert_eq!(observer.next_line(), "bob");
    assert_eq!(etcd_observer.next_line(), bob_key);
    assert_eq!(etcd_observer.next_line(), "bob");
}

/// Streaming calls must work against real etcd too: grpc-go sends response headers only with
/// its first message, so a client that waits for headers before sending deadlocks.
#[test]
fn oxetcdctl_streams_work_against_real_etcd() {
    let m = Member::start(Kind::Etcd);
    let granted = m.oxetcdctl(&["lease", "grant", "60"]);
    let id = granted.granted_lease_id();
    assert_eq!(
        m.oxetcdctl(&["lease", "keep-alive", "--once", &id]).ok(),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    assert_eq!(
        m.oxetcdctl(&["lock", "l1", "--", "echo", "locked"]).ok(),
        "locked\n"
    );
    m.etcdctl(&["put", "wq", "1"]).ok();
    let mut w = Running::start(true, &m.endpoint(), &["watch", "wq", "--rev=1"]);
    assert_eq!(w.read_until("1"), ["PUT", "wq", "1"]);
    let r = m.oxetcdctl(&[
        "bench",
        "watch-latency",
        "--watchers",
        "4",
        "--streams",
        "2",
        "--put-total",
        "20",
        "--put-rate",
        "0",
    ]);
    assert!(r.ok().contains("Watch latency summary:"), "{r:?}");
    assert!(!r.stdout.contains("missing"), "{r:?}");
}
