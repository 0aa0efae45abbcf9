//! TLS options of a member's listeners: versions, cipher suites, certificate rotation on the
//! client URLs, auto TLS, and what a client that does not speak TLS gets.

use std::sync::Arc;

use oxetcd_tests::pki::{write_pem, Ca};
use oxetcd_tests::{Cluster, Kind};
use rustls::crypto::ring;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Client TLS flags with a certificate of `ca` in `dir`.
fn client_tls_args(dir: &std::path::Path, ca: &Ca) -> Vec<String> {
    let (cert, key) = ca.issue("member");
    vec![
        format!(
            "--cert-file={}",
            write_pem(dir, "cert.pem", &cert).display()
        ),
        format!("--key-file={}", write_pem(dir, "key.pem", &key).display()),
    ]
}

/// A TLS handshake with 127.0.0.1:`port`: the negotiated (version, suite), or the error.
async fn handshake(
    port: u16,
    ca_pem: &str,
    versions: &[&'static SupportedProtocolVersion],
    suites: Option<&[CipherSuite]>,
) -> Result<(String, CipherSuite), String> {
    let mut provider = ring::default_provider();
    if let Some(only) = suites {
        provider.cipher_suites.retain(|s| only.contains(&s.suite()));
    }
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile_certs(ca_pem) {
        roots.add(c).expect("ca");
    }
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    Ok((
        format!("{:?}", session.protocol_version().expect("version")),
        session.negotiated_cipher_suite().expect("suite").suite(),
    ))
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("pem")
}

fn client_port(c: &Cluster) -> u16 {
    c.members[0].client_port
}

const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

#[tokio::test]
async fn tls_versions_and_cipher_suites_are_bounded_by_the_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let mut args = client_tls_args(dir.path(), &ca);
    args.push("--tls-min-version=TLS1.3".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_tls(Kind::Oxetcd, 1, &args);
    let port = client_port(&c);
    let ok = handshake(port, &ca.cert_pem, TLS13, None).await;
    assert!(ok.is_ok_and(|(v, _)| v == "TLSv1_3"));
    let refused = handshake(port, &ca.cert_pem, TLS12, None).await;
    assert!(refused.is_err(), "TLS 1.2 below the minimum: {refused:?}");
    drop(c);

    let mut args = client_tls_args(dir.path(), &ca);
    args.push("--tls-max-version=TLS1.2".into());
    args.push("--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_tls(Kind::Oxetcd, 1, &args);
    let port = client_port(&c);
    let aes128 = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    let aes256 = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;
    assert_eq!(
        handshake(port, &ca.cert_pem, TLS12, Some(&[aes128])).await,
        Ok(("TLSv1_2".to_string(), aes128))
    );
    assert!(handshake(port, &ca.cert_pem, TLS12, Some(&[aes256]))
        .await
        .is_err());
    assert!(
        handshake(port, &ca.cert_pem, TLS13, None).await.is_err(),
        "TLS 1.3 above the maximum"
    );
    // A bad flag is a clear start-up error, not a member that serves something else.
    for bad in ["--tls-min-version=TLS1.1", "--cipher-suites=TLS_NOPE"] {
        let out = std::process::Command::new(oxetcd_tests::bin("oxetcd"))
            .args([bad, "--data-dir"])
            .arg(dir.path().join("bad"))
            .output()
            .expect("run oxetcd");
        assert!(!out.status.success(), "{bad} was accepted");
    }
}

/// The certificate and key of a client URL replaced on disk: new connections get the new
/// certificate, with no restart; a plaintext client on the TLS port gets nothing, and the
/// member keeps serving TLS clients.
#[tokio::test]
async fn client_certificates_rotate_and_plaintext_gets_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = Ca::new();
    let args = client_tls_args(dir.path(), &old);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_tls(Kind::Oxetcd, 1, &args);
    let port = client_port(&c);
    assert!(handshake(port, &old.cert_pem, TLS13, None).await.is_ok());

    let new = Ca::new();
    let (cert, key) = new.issue("member");
    write_pem(dir.path(), "key.pem", &key);
    write_pem(dir.path(), "cert.pem", &cert);
    assert!(handshake(port, &new.cert_pem, TLS13, None).await.is_ok());
    assert!(
        handshake(port, &old.cert_pem, TLS13, None).await.is_err(),
        "the old certificate is still served"
    );

    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("health"),
        "a plaintext request was answered: {buf:?}"
    );
    let health = c.members[0].etcdctl(&[
        &format!(
            "--cacert={}",
            write_pem(dir.path(), "ca.pem", &new.cert_pem).display()
        ),
        "endpoint",
        "health",
    ]);
    assert_eq!(health.code, 0, "{health:?}");
}

/// `--auto-tls` and `--peer-auto-tls`: self-signed certificates on both links, as etcd; a
/// client that skips verification works. The same against real etcd.
#[test]
fn auto_tls_on_both_links_as_etcd() {
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let c = Cluster::start_scheme(
            kind,
            3,
            &["--auto-tls", "--peer-auto-tls"],
            "https",
            "https",
        );
        let insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
        let put = c.members[0].etcdctl(&[insecure[0], insecure[1], "put", "k", "auto"]);
        assert_eq!(put.ok(), "OK\n", "{kind:?}");
        let get =
            c.members[2].etcdctl(&[insecure[0], insecure[1], "get", "k", "--print-value-only"]);
        assert_eq!(get.ok(), "auto\n", "{kind:?}");
    }
}

/// `--client-cert-auth`: a client certificate of another CA, or none, does not get through;
/// a TLS client on a plaintext peer port gets no answer either. The member keeps serving.
#[tokio::test]
async fn wrong_certificates_and_wrong_protocols_get_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let mut args = client_tls_args(dir.path(), &ca);
    let ca_file = write_pem(dir.path(), "ca.pem", &ca.cert_pem);
    args.push(format!("--trusted-ca-file={}", ca_file.display()));
    args.push("--client-cert-auth".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Cluster::start_tls(Kind::Oxetcd, 1, &args);
    let tls_flags = |ca: &Ca, name: &str| {
        let (cert, key) = ca.issue("client");
        vec![
            format!("--cacert={}", ca_file.display()),
            format!(
                "--cert={}",
                write_pem(dir.path(), &format!("{name}.pem"), &cert).display()
            ),
            format!(
                "--key={}",
                write_pem(dir.path(), &format!("{name}-key.pem"), &key).display()
            ),
        ]
    };
    let run = |flags: &[String], cmd: &[&str]| {
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.push("--dial-timeout=2s");
        all.extend_from_slice(cmd);
        c.members[0].etcdctl(&all)
    };
    let good = tls_flags(&ca, "good");
    assert_eq!(run(&good, &["put", "k", "v"]).ok(), "OK\n");
    let other = tls_flags(&Ca::new(), "other");
    let refused = run(&other, &["get", "k"]);
    assert_ne!(refused.code, 0, "a certificate of another CA: {refused:?}");
    let none = [format!("--cacert={}", ca_file.display())];
    let refused = run(&none, &["get", "k"]);
    assert_ne!(refused.code, 0, "no certificate: {refused:?}");
    assert_eq!(run(&good, &["get", "k", "--print-value-only"]).ok(), "v\n");

    // TLS to a plaintext peer port.
    let plain = Cluster::start(Kind::Oxetcd, 1);
    let peer_port = plain.members[0].peer_port;
    assert!(handshake(peer_port, &ca.cert_pem, TLS13, None)
        .await
        .is_err());
    assert_eq!(plain.members[0].etcdctl(&["put", "k", "v"]).ok(), "OK\n");
}

/// etcd's config file nests the TLS settings (`client-transport-security`,
/// `peer-transport-security`, `cipher-suites` as a list): the same file works for oxetcd.
#[tokio::test]
async fn tls_settings_from_an_etcd_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let (cert, key) = ca.issue("member");
    let cert = write_pem(dir.path(), "cert.pem", &cert);
    let key = write_pem(dir.path(), "key.pem", &key);
    let ca_file = write_pem(dir.path(), "ca.pem", &ca.cert_pem);
    let yaml = format!(
        "client-transport-security:\n  cert-file: {c}\n  key-file: {k}\n\
         peer-transport-security:\n  cert-file: {c}\n  key-file: {k}\n  trusted-ca-file: {ca}\n  \
         client-cert-auth: true\n  allowed-cn: member\n\
         tls-max-version: TLS1.2\n\
         cipher-suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n",
        c = cert.display(),
        k = key.display(),
        ca = ca_file.display()
    );
    let cfg = dir.path().join("etcd.yaml");
    std::fs::write(&cfg, yaml).expect("config");
    let c = Cluster::start_scheme(
        Kind::Oxetcd,
        1,
        &["--config-file", cfg.to_str().expect("path")],
        "https",
        "https",
    );
    let aes128 = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    assert_eq!(
        handshake(client_port(&c), &ca.cert_pem, TLS12, None).await,
        Ok(("TLSv1_2".to_string(), aes128))
    );
    let put = c.members[0].etcdctl(&[&format!("--cacert={}", ca_file.display()), "put", "k", "v"]);
    assert_eq!(put.ok(), "OK\n");
}

/// oxetcd-proxy's client-facing certificate and client CA bundle rotate without a restart
/// too.
#[tokio::test]
async fn the_proxys_certificate_and_client_ca_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let c = Cluster::start(Kind::Oxetcd, 1);
    let old = Ca::new();
    let (cert, key) = old.issue("proxy");
    let cert_file = write_pem(d, "proxy.pem", &cert);
    let key_file = write_pem(d, "proxy-key.pem", &key);
    let ca_file = write_pem(d, "client-ca.pem", &old.cert_pem);
    let args = [
        format!("--cert-file={}", cert_file.display()),
        format!("--key-file={}", key_file.display()),
        format!("--trusted-ca-file={}", ca_file.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = oxetcd_tests::Proxy::start(&c.endpoints(), &args);
    let url = format!("https://{}", p.endpoint());
    let client = |ca: &Ca, name: &str, trust: &Ca| {
        let (cert, key) = ca.issue("client");
        vec![
            format!(
                "--cacert={}",
                write_pem(d, &format!("{name}-trust.pem"), &trust.cert_pem).display()
            ),
            format!(
                "--cert={}",
                write_pem(d, &format!("{name}.pem"), &cert).display()
            ),
            format!(
                "--key={}",
                write_pem(d, &format!("{name}-key.pem"), &key).display()
            ),
        ]
    };
    let run = |flags: Vec<String>| {
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["--dial-timeout=2s", "put", "k", "v"]);
        oxetcd_tests::etcdctl_at(&url, &args)
    };
    assert_eq!(run(client(&old, "a", &old)).ok(), "OK\n");

    let new = Ca::new();
    let (cert, key) = new.issue("proxy");
    write_pem(d, "proxy-key.pem", &key);
    write_pem(d, "proxy.pem", &cert);
    write_pem(d, "client-ca.pem", &new.cert_pem);
    assert_eq!(
        run(client(&new, "b", &new)).ok(),
        "OK\n",
        "new certificate, new client CA"
    );
    assert_ne!(
        run(client(&old, "c", &new)).code,
        0,
        "a client of the old CA"
    );
    assert_ne!(
        run(client(&new, "e", &old)).code,
        0,
        "the old server certificate"
    );
}

/// The whole PKI replaced on disk, members' and the proxy's, while writes go through the
/// proxy: none fails; then, with every member restarted (so the proxy must connect anew), the
/// proxy reaches them with the new files alone.
#[tokio::test]
async fn the_proxy_follows_a_rotation_of_the_members_pki() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let old = Ca::new();
    let issue = |ca: &Ca, name: &str| {
        let (cert, key) = ca.issue(name);
        write_pem(d, &format!("{name}-key.pem"), &key);
        write_pem(d, &format!("{name}.pem"), &cert)
    };
    let member_cert = issue(&old, "member");
    let proxy_cert = issue(&old, "proxy");
    let ca_file = write_pem(d, "ca.pem", &old.cert_pem);
    let member_args = [
        format!("--cert-file={}", member_cert.display()),
        format!("--key-file={}", d.join("member-key.pem").display()),
        format!("--trusted-ca-file={}", ca_file.display()),
        "--client-cert-auth".to_string(),
    ];
    let member_args: Vec<&str> = member_args.iter().map(String::as_str).collect();
    let mut c = Cluster::start_tls(Kind::Oxetcd, 3, &member_args);
    let proxy_args = [
        format!("--cacert={}", ca_file.display()),
        format!("--cert={}", proxy_cert.display()),
        format!("--key={}", d.join("proxy-key.pem").display()),
    ];
    let proxy_args: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    let p = oxetcd_tests::Proxy::start(&c.urls(), &proxy_args);
    let endpoint = format!("http://{}", p.endpoint());

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, done, endpoint) = (stop.clone(), done.clone(), endpoint.clone());
        tokio::spawn(async move {
            let ch = tonic::transport::Channel::from_shared(endpoint)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            let mut kv = oxetcd_common::etcdserverpb::kv_client::KvClient::new(ch);
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                kv.put(oxetcd_common::etcdserverpb::PutRequest {
                    key: format!("rot-{i}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("put {i} through the proxy failed: {e}"));
                i += 1;
                done.fetch_add(1, Relaxed);
            }
            i
        })
    };
    let progress = |n: usize| {
        let done = done.clone();
        async move {
            let target = done.load(Relaxed) + n;
            while done.load(Relaxed) < target {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    progress(20).await;
    let new = Ca::new();
    write_pem(d, "ca.pem", &format!("{}{}", old.cert_pem, new.cert_pem));
    progress(20).await;
    issue(&new, "member");
    issue(&new, "proxy");
    progress(20).await;
    write_pem(d, "ca.pem", &new.cert_pem);
    progress(20).await;
    stop.store(true, Relaxed);
    let written = writer.await.expect("writer");
    assert!(written >= 80);

    for m in c.members.iter_mut() {
        m.kill9();
    }
    c.restart_all();
    let put = oxetcd_tests::etcdctl_at(&p.endpoint(), &["put", "after", "rotation"]);
    assert_eq!(put.ok(), "OK\n", "{}", p.log());
}
