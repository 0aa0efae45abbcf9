//! TLS on the peer URLs: members that trust one CA and require each other's certificates
//! (`--peer-client-cert-auth`); nobody else gets raft traffic through; certificates and the CA
//! rotated on disk while writes run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::{PutRequest, RangeRequest};
use oxetcd_common::oxetcdpeerpb::raft_peer_client::RaftPeerClient;
use oxetcd_common::oxetcdpeerpb::PeerMessage;
use oxetcd_tests::pki::{write_pem, Ca};
use oxetcd_tests::{Cluster, Kind};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The files every member uses: one certificate for all (valid for 127.0.0.1).
struct PeerFiles {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn peer_files(dir: &Path, ca: &Ca, cn: &str) -> PeerFiles {
    let (cert, key) = ca.issue(cn);
    PeerFiles {
        ca: write_pem(dir, "peer-ca.pem", &ca.cert_pem),
        cert: write_pem(dir, "peer.pem", &cert),
        key: write_pem(dir, "peer-key.pem", &key),
    }
}

fn peer_args(f: &PeerFiles, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--peer-cert-file={}", f.cert.display()),
        format!("--peer-key-file={}", f.key.display()),
        format!("--peer-trusted-ca-file={}", f.ca.display()),
        "--peer-client-cert-auth".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Does a peer RPC over TLS to `peer_url` get an answer? With a client certificate
/// (`identity`: cert and key PEM) or none, trusting `ca_pem`. A refused handshake is no answer.
async fn peer_answers(peer_url: &str, ca_pem: &str, identity: Option<(&str, &str)>) -> bool {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("127.0.0.1");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let Ok(endpoint) = Channel::from_shared(peer_url.to_string()) else {
        return false;
    };
    let Ok(endpoint) = endpoint.tls_config(tls) else {
        return false;
    };
    let Ok(ch) = endpoint.connect().await else {
        return false;
    };
    RaftPeerClient::new(ch)
        .cluster_id(PeerMessage::default())
        .await
        .is_ok()
}

async fn plaintext_answers(peer_url: &str) -> bool {
    let url = peer_url.replace("https://", "http://");
    let Ok(ch) = Channel::from_shared(url).expect("url").connect().await else {
        return false;
    };
    RaftPeerClient::new(ch)
        .cluster_id(PeerMessage::default())
        .await
        .is_ok()
}

async fn kv(endpoint: &str) -> KvClient<Channel> {
    KvClient::new(
        Channel::from_shared(format!("http://{endpoint}"))
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    )
}

#[tokio::test]
async fn members_on_peer_mtls_refuse_everyone_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let files = peer_files(dir.path(), &ca, "member");
    let args = peer_args(&files, &["--peer-cert-allowed-cn=member"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_peer_tls(Kind::Oxetcd, 3, &args);

    // Raft works over TLS: a write on one member is read linearizably on another.
    kv(&c.members[0].endpoint())
        .await
        .put(PutRequest {
            key: b"over-tls".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    let got = kv(&c.members[2].endpoint())
        .await
        .range(RangeRequest {
            key: b"over-tls".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(got.kvs.len(), 1);

    let peer = c.members[1].peer_url();
    let (cert, key) = (
        std::fs::read_to_string(&files.cert).expect("cert"),
        std::fs::read_to_string(&files.key).expect("key"),
    );
    assert!(
        peer_answers(&peer, &ca.cert_pem, Some((&cert, &key))).await,
        "a member's own certificate gets an answer (the check below can fail)"
    );
    let other_ca = Ca::new();
    let (rogue_cert, rogue_key) = other_ca.issue("member");
    assert!(
        !peer_answers(&peer, &ca.cert_pem, Some((&rogue_cert, &rogue_key))).await,
        "a certificate of another CA is refused"
    );
    let (wrong_cn_cert, wrong_cn_key) = ca.issue("intruder");
    assert!(
        !peer_answers(&peer, &ca.cert_pem, Some((&wrong_cn_cert, &wrong_cn_key))).await,
        "a certificate of the right CA with a CN other than --peer-cert-allowed-cn is refused"
    );
    assert!(
        !peer_answers(&peer, &ca.cert_pem, None).await,
        "no certificate is refused"
    );
    assert!(
        !plaintext_answers(&peer).await,
        "plaintext on a TLS peer port gets nothing"
    );
    // And the cluster still serves.
    kv(&c.members[1].endpoint())
        .await
        .put(PutRequest {
            key: b"still".to_vec(),
            value: b"serving".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put after the refused handshakes");
}

/// Certificates and the CA replaced on disk, without a restart, while writes run on every
/// member: no write fails, and new handshakes use the new files (the old CA is refused once
/// it is gone from the bundle, which etcd cannot do: #11555).
#[tokio::test]
async fn peer_certificates_and_the_ca_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old_ca = Ca::new();
    let files = peer_files(dir.path(), &old_ca, "member");
    let args = peer_args(&files, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_peer_tls(Kind::Oxetcd, 3, &args);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for (w, m) in c.members.iter().enumerate() {
        let (stop, done, endpoint) = (stop.clone(), done.clone(), m.endpoint());
        writers.push(tokio::spawn(async move {
            let mut kv = kv(&endpoint).await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                kv.put(PutRequest {
                    key: format!("w{w}-{i}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("writer {w}, put {i} failed: {e}"));
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            i
        }));
    }
    let wait_for_writes = |n: usize| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::Relaxed) + n;
            while done.load(Ordering::Relaxed) < target {
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    wait_for_writes(50).await;

    // 1. The bundle trusts both CAs. 2. New certificates from the new CA. 3. The old CA goes.
    let new_ca = Ca::new();
    write_pem(
        dir.path(),
        "peer-ca.pem",
        &format!("{}{}", old_ca.cert_pem, new_ca.cert_pem),
    );
    wait_for_writes(50).await;
    let (cert, key) = new_ca.issue("member");
    write_pem(dir.path(), "peer-key.pem", &key);
    write_pem(dir.path(), "peer.pem", &cert);
    wait_for_writes(50).await;
    write_pem(dir.path(), "peer-ca.pem", &new_ca.cert_pem);
    wait_for_writes(50).await;

    let peer = c.members[0].peer_url();
    assert!(
        peer_answers(&peer, &new_ca.cert_pem, Some((&cert, &key))).await,
        "a member serves the new certificate and accepts one of the new CA"
    );
    let (old_cert, old_key) = old_ca.issue("member");
    assert!(
        !peer_answers(&peer, &new_ca.cert_pem, Some((&old_cert, &old_key))).await,
        "a certificate of the removed CA is refused"
    );
    assert!(
        !peer_answers(&peer, &old_ca.cert_pem, Some((&cert, &key))).await,
        "the old certificate is no longer served"
    );
    wait_for_writes(50).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in writers {
        total += w.await.expect("writer");
    }
    assert!(total >= 250, "{total} writes");
    // Nothing acknowledged was lost.
    let mut kv0 = kv(&c.members[0].endpoint()).await;
    let stored = kv0
        .range(RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("count")
        .into_inner()
        .count;
    assert_eq!(stored as u64, total, "acknowledged writes missing");

    // A member restarted now connects to the others, and they to it, with the new files only.
    let mut c = c;
    c.members[2].kill9();
    c.members[2].restart();
    let got = kv(&c.members[2].endpoint())
        .await
        .range(RangeRequest {
            key: b"w0-0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("a linearizable read on the restarted member")
        .into_inner();
    assert_eq!(got.kvs.len(), 1);
}

/// A member whose peer certificate comes from another CA cannot join: it is added (`member
/// add`), started with `--initial-cluster-state existing`, never gets through a handshake,
/// gives up with an error, and the cluster keeps serving.
#[test]
fn a_member_with_a_certificate_of_another_ca_cannot_join() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let files = peer_files(dir.path(), &ca, "member");
    let args = peer_args(&files, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_peer_tls(Kind::Oxetcd, 3, &args);

    let rogue_dir = dir.path().join("rogue");
    std::fs::create_dir_all(&rogue_dir).expect("dir");
    let rogue = peer_files(&rogue_dir, &Ca::new(), "member");
    let peer_port = oxetcd_tests::free_port();
    let peer_url = format!("https://127.0.0.1:{peer_port}");
    let added = c.members[0].etcdctl(&[
        "member",
        "add",
        "m4",
        &format!("--peer-urls={peer_url}"),
        "--learner",
    ]);
    let initial = added
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .expect("member add prints the initial cluster")
        .trim_matches('"')
        .to_string();
    let client_url = format!("http://127.0.0.1:{}", oxetcd_tests::free_port());
    let mut child = std::process::Command::new(oxetcd_tests::bin("oxetcd"))
        .args(["--name", "m4", "--initial-cluster-state", "existing"])
        .args([
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            "e2e",
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .arg("--data-dir")
        .arg(rogue_dir.join("data"))
        .args(peer_args(&rogue, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the rogue member");
    // It gives up by itself (after its join deadline): wait for that exit.
    let status = child.wait().expect("rogue member exits");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut log).ok();
    assert!(!status.success(), "the rogue member joined: {log}");
    // The cluster never saw it start, and serves.
    let list = c.members[1].etcdctl(&["member", "list"]);
    let m4 = list
        .ok()
        .lines()
        .find(|l| l.contains(&peer_url))
        .expect("m4 is listed")
        .to_string();
    assert!(m4.contains(", unstarted, "), "{m4}");
    assert_eq!(c.members[2].etcdctl(&["put", "k", "v"]).ok(), "OK\n");
}

/// `--peer-cert-allowed-hostname`: a peer certificate of the right CA that is not valid for the
/// name is refused; members whose certificates are valid for it form the cluster.
#[tokio::test]
async fn peer_certificates_must_be_valid_for_the_allowed_hostname() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let files = peer_files(dir.path(), &ca, "member");
    let args = peer_args(&files, &["--peer-cert-allowed-hostname=localhost"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_peer_tls(Kind::Oxetcd, 3, &args);
    let peer = c.members[0].peer_url();
    let (good_cert, good_key) = ca.issue_for("anyone", &["localhost"]);
    assert!(peer_answers(&peer, &ca.cert_pem, Some((&good_cert, &good_key))).await);
    let (other_cert, other_key) = ca.issue_for("member", &["elsewhere.example"]);
    assert!(
        !peer_answers(&peer, &ca.cert_pem, Some((&other_cert, &other_key))).await,
        "a certificate not valid for localhost was accepted"
    );
}
