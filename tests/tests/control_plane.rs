//! What a Kubernetes control plane expects of its etcd beyond the key space: kubeadm's
//! command line and probes, etcd's zap log lines, the watch progress interval it sets, and
//! `WithRequireLeader` streams ending when their member loses the leader. Real etcd 3.4 is
//! the reference wherever it has the same flag.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, WatchOptions};
use oxetcd_tests::{free_port, http_request, pki::write_pem, pki::Ca, Cluster, Kind, Member};

/// kubeadm's etcd static pod flags (its `GetEtcdPodSpec`, TLS everywhere, metrics and probes
/// on a plain-HTTP local port) start a member, and its probes answer healthy, for etcd 3.4's
/// flag names on both, and for etcd 3.6's (`--feature-gates`, the plain names) on oxetcd.
#[test]
fn kubeadms_flags_start_a_member_whose_probes_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let (cert, key) = ca.issue("m1");
    let ca_file = write_pem(dir.path(), "ca.crt", &ca.cert_pem);
    let cert_file = write_pem(dir.path(), "server.crt", &cert);
    let key_file = write_pem(dir.path(), "server.key", &key);
    let tls = |prefix: &str| {
        vec![
            format!("--{prefix}cert-file={}", cert_file.display()),
            format!("--{prefix}key-file={}", key_file.display()),
            format!("--{prefix}trusted-ca-file={}", ca_file.display()),
            format!("--{prefix}client-cert-auth=true"),
        ]
    };
    let etcd34 = [
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
    ];
    let etcd36 = [
        "--feature-gates=InitialCorruptCheck=true",
        "--watch-progress-notify-interval=5s",
    ];
    for (kind, flags) in [
        (Kind::Etcd, &etcd34),
        (Kind::Oxetcd, &etcd34),
        (Kind::Oxetcd, &etcd36),
    ] {
        let metrics = free_port();
        let mut args = tls("");
        args.extend(tls("peer-"));
        args.extend(flags.iter().map(|s| s.to_string()));
        args.push(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"));
        args.push("--snapshot-count=10000".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = Cluster::start_scheme(kind, 1, &args, "https", "https");
        // kubeadm's liveness and startup probes.
        let (status, body) = http_request(
            metrics,
            "GET",
            "/health?exclude=NOSPACE&serializable=true",
            "",
        );
        assert_eq!(
            (status, body.trim()),
            (200, r#"{"health":"true"}"#),
            "{kind:?} {flags:?}"
        );
        let (status, metrics_text) = http_request(metrics, "GET", "/metrics", "");
        assert_eq!(status, 200);
        assert!(
            metrics_text.contains("etcd_server_has_leader 1"),
            "{kind:?}: {metrics_text}"
        );
        drop(c);
    }
}

/// `--logger zap`: every line is a JSON object that starts with etcd's four keys, level, ts,
/// caller and msg, in that order, with zap's level names and time format, as etcd's own
/// lines (read from a real etcd's `--log-outputs` file) do.
#[test]
fn zap_logs_are_etcds_json_lines() {
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("log.json");
        let out = format!("--log-outputs={}", file.display());
        let m = Member::start_with(kind, &["--logger=zap", &out]);
        m.etcdctl(&["put", "k", "v"]).ok();
        drop(m);
        let text = std::fs::read_to_string(&file).expect("the log file");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 2, "{kind:?}: {text}");
        for line in lines {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{kind:?} {line}: {e}"));
            // The first four keys, in the line's order.
            let at: Vec<Option<usize>> = ["level", "ts", "caller", "msg"]
                .iter()
                .map(|k| line.find(&format!("\"{k}\":")))
                .collect();
            assert!(
                line.starts_with("{\"level\":") && at.windows(2).all(|w| w[0] < w[1]),
                "{kind:?} {line}"
            );
            let level = v["level"].as_str().unwrap_or_default();
            assert!(
                ["debug", "info", "warn", "error"].contains(&level),
                "{kind:?} {line}"
            );
            let ts = v["ts"].as_str().unwrap_or_default();
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{kind:?} {line}"
            );
            let caller = v["caller"].as_str().unwrap_or_default();
            assert!(caller.contains(':'), "{kind:?} {line}");
        }
    }
}

/// A quiet `progress_notify` watcher hears the current revision at the interval the flag
/// sets (etcd's default is ten minutes, so any notification here is the flag's doing).
#[tokio::test]
async fn progress_notify_keeps_the_flags_interval() {
    for (kind, flag) in [
        (
            Kind::Etcd,
            "--experimental-watch-progress-notify-interval=1s",
        ),
        (Kind::Oxetcd, "--watch-progress-notify-interval=1s"),
    ] {
        let m = Member::start_with(kind, &[flag]);
        m.etcdctl(&["put", "other", "x"]).ok();
        let mut client = Client::connect([m.endpoint()], None)
            .await
            .expect("connect");
        let options = WatchOptions::new().with_progress_notify();
        let mut stream = client.watch("quiet", Some(options)).await.expect("watch");
        let created = stream.message().await.expect("created").expect("created");
        assert!(created.created());
        let progress = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: no progress notification in 10 s"))
            .expect("progress")
            .expect("progress");
        assert!(progress.events().is_empty(), "{kind:?}");
        let rev = progress.header().map(|h| h.revision());
        assert_eq!(rev, Some(m.revision()), "{kind:?}");
    }
}

/// On a member that loses its leader, a watch made `WithRequireLeader` ends with
/// Unavailable "etcdserver: no leader"; a plain watch on the same member keeps waiting (it
/// still answers a progress request); and a unary request that requires a leader is refused
/// at once. As etcd does.
#[tokio::test]
async fn watches_that_require_a_leader_end_when_it_is_lost() {
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let mut c = Cluster::start(kind, 3);
        let leader = c.leader().expect("a leader");
        let follower = (leader + 1) % 3;
        let endpoint = c.members[follower].endpoint();
        let strict = ConnectOptions::new().with_require_leader(true);
        let mut strict = Client::connect([endpoint.clone()], Some(strict))
            .await
            .expect("connect");
        let mut plain = Client::connect([endpoint], None).await.expect("connect");
        let mut strict_watch = strict.watch("k", None).await.expect("watch");
        let mut plain_watch = plain.watch("k", None).await.expect("watch");
        for w in [&mut strict_watch, &mut plain_watch] {
            assert!(w
                .message()
                .await
                .expect("created")
                .expect("created")
                .created());
        }
        for i in 0..3 {
            if i != follower {
                c.members[i].kill9();
            }
        }
        let ended = tokio::time::timeout(Duration::from_secs(30), strict_watch.message())
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: the strict watch outlived the leader by 30 s"));
        let status = match ended {
            Err(etcd_client::Error::GRpcStatus(s)) => s,
            other => panic!("{kind:?}: {other:?}"),
        };
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unavailable, "etcdserver: no leader"),
            "{kind:?}"
        );
        plain_watch
            .request_progress()
            .await
            .expect("progress request");
        let progress = tokio::time::timeout(Duration::from_secs(10), plain_watch.message())
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: the plain watch is gone"));
        assert!(progress.is_ok(), "{kind:?}: {progress:?}");
        let refused = strict.get("k", None).await.expect_err("no leader");
        let refused = match refused {
            etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("{kind:?}: {other:?}"),
        };
        assert_eq!(
            refused,
            (
                tonic::Code::Unavailable,
                "etcdserver: no leader".to_string()
            ),
            "{kind:?}"
        );
    }
}

/// Under a stream of writes, a progress response never runs ahead of its stream's events: no
/// event at or below its revision arrives after it (what Kubernetes' watch cache relies on).
/// Real etcd 3.4.23 fails this one now and then (etcd #15220, fixed in 3.4.25), so it is not
/// the reference here: the guarantee is.
#[tokio::test]
async fn progress_responses_never_run_ahead_of_events() {
    let kind = Kind::Oxetcd;
    let m = Member::start(kind);
    let mut client = Client::connect([m.endpoint()], None)
        .await
        .expect("connect");
    let options = WatchOptions::new().with_prefix();
    let mut watch = client.watch("p/", Some(options)).await.expect("watch");
    assert!(watch
        .message()
        .await
        .expect("created")
        .expect("created")
        .created());
    let mut writer = client.kv_client();
    let writes = tokio::spawn(async move {
        for i in 0..400 {
            writer
                .put(format!("p/{}", i % 10), "v", None)
                .await
                .expect("put");
        }
    });
    let (mut answered, mut events, mut covered) = (0, 0, 0i64);
    // Progress requests all along the writes, and one after the last.
    let mut last_round = false;
    while !last_round {
        last_round = answered >= 50 && writes.is_finished();
        watch.request_progress().await.expect("progress request");
        loop {
            let resp = watch.message().await.expect("message").expect("open");
            let rev = resp.header().map_or(0, |h| h.revision());
            if resp.events().is_empty() {
                assert!(
                    rev >= covered,
                    "{kind:?}: progress went back from {covered} to {rev}"
                );
                covered = rev;
                answered += 1;
                break;
            }
            for ev in resp.events() {
                let ev_rev = ev.kv().map_or(0, |kv| kv.mod_revision());
                assert!(
                    ev_rev > covered,
                    "{kind:?}: an event at {ev_rev} came after progress at {covered}"
                );
                events += 1;
            }
        }
    }
    writes.await.expect("writer");
    assert!(events > 0, "{kind:?}: the writes raced no progress request");
}
