//! Request limits and the plain HTTP endpoints, compared with what etcd answers.

use std::io::{Read, Write};
use std::net::TcpStream;

use etcd_client::Client;
use oxetcd_tests::{bin, Kind, Member};

fn http_get(m: &Member, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", m.client_port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

#[test]
fn health_version_metrics() {
    let m = Member::start(Kind::Oxetcd);
    let (code, body) = http_get(&m, "/health");
    assert_eq!((code, body.as_str()), (200, r#"{"health":"true"}"#));
    let (code, body) = http_get(&m, "/version");
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"etcdserver":"3.6.0","etcdcluster":"3.6.0"}"#)
    );
    m.etcdctl(&["put", "k", "v"]).ok();
    let (code, body) = http_get(&m, "/metrics");
    assert_eq!(code, 200);
    for line in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_leader_changes_seen_total 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in /metrics"
        );
    }
    assert!(body
        .lines()
        .any(|l| l.starts_with("etcd_server_proposals_committed_total ")));
}

#[test]
fn version_flag_names_both_versions() {
    let out = std::process::Command::new(bin("oxetcd"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with("oxetcd Version: 0.1.0\n"), "{text}");
    assert!(text.contains("etcd API Version: 3.6.0\n"), "{text}");
    assert!(text.contains("Rust Version: rustc "), "{text}");
    assert!(text.contains(&format!(
        "Rust OS/Arch: {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )));
}

#[tokio::test]
async fn request_size_limit_like_etcd() {
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let m = Member::start_with(kind, &["--max-request-bytes", "100000"]);
        let mut c = Client::connect([m.url()], None).await.unwrap();
        // Over the limit but under gRPC's slack: etcd's own error.
        let err = c.put("big", vec![b'x'; 200_000], None).await.unwrap_err();
        match err {
            etcd_client::Error::GRpcStatus(s) => {
                assert_eq!(s.code(), tonic::Code::InvalidArgument, "{kind:?}");
                assert_eq!(s.message(), "etcdserver: request is too large", "{kind:?}");
            }
            other => panic!("{kind:?}: unexpected {other:?}"),
        }
        // Just under the limit goes through, and the member is still serving.
        c.put("ok", vec![b'x'; 90_000], None).await.unwrap();
        let r = c.get("ok", None).await.unwrap();
        assert_eq!(r.kvs()[0].value().len(), 90_000, "{kind:?}");
    }
}

#[test]
fn max_txn_ops_flag() {
    let m = Member::start_with(Kind::Oxetcd, &["--max-txn-ops", "2"]);
    let r = m.etcdctl_stdin(&["txn"], "\nput a 1\nput b 2\nput c 3\n\n\n");
    assert_eq!(
        r.error_line(),
        Some("Error: etcdserver: too many operations in txn request")
    );
    let r = m.etcdctl_stdin(&["txn"], "\nput a 1\nput b 2\n\n\n");
    assert_eq!(r.ok(), "SUCCESS\n\nOK\n\nOK\n");
}

#[test]
fn config_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oxetcd.yaml");
    std::fs::write(&cfg, "max-txn-ops: 1\nname: fromfile\n").unwrap();
    // --name on the command line wins over the file; max-txn-ops comes from the file.
    let m = Member::start_with(Kind::Oxetcd, &["--config-file", cfg.to_str().unwrap()]);
    let r = m.etcdctl_stdin(&["txn"], "\nput a 1\nput b 2\n\n\n");
    assert_eq!(
        r.error_line(),
        Some("Error: etcdserver: too many operations in txn request")
    );
    let list = m.etcdctl(&["member", "list"]);
    assert!(list.ok().contains(", started, m1, "), "{list:?}");
}
