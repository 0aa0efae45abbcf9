//! Client TLS terminated by the proxy: certificates made by the test (rcgen), real etcdctl as
//! the client.

use oxetcd_tests::pki::{arg, pki};
use oxetcd_tests::{etcdctl_at, Cluster, Kind, Proxy};

#[test]
fn tls_with_and_without_client_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki(dir.path(), "client");
    let c = Cluster::start(Kind::Oxetcd, 3);

    // Server certificate only.
    let p = Proxy::start(
        &c.endpoints(),
        &[
            &arg("cert-file", &pki.server_cert),
            &arg("key-file", &pki.server_key),
        ],
    );
    let url = format!("https://{}", p.endpoint());
    let cacert = arg("cacert", &pki.ca);
    assert_eq!(etcdctl_at(&url, &[&cacert, "put", "tls", "1"]).ok(), "OK\n");
    assert_eq!(
        etcdctl_at(&url, &[&cacert, "get", "tls", "--print-value-only"]).ok(),
        "1\n"
    );
    // Plaintext to a TLS listener does not get through.
    let plain = etcdctl_at(&p.endpoint(), &["--dial-timeout=2s", "get", "tls"]);
    assert_ne!(plain.code, 0, "{plain:?}");

    // Client certificates required.
    let mtls = Proxy::start(
        &c.endpoints(),
        &[
            &arg("cert-file", &pki.server_cert),
            &arg("key-file", &pki.server_key),
            &arg("trusted-ca-file", &pki.ca),
        ],
    );
    let url = format!("https://{}", mtls.endpoint());
    let with_cert = etcdctl_at(
        &url,
        &[
            &cacert,
            &arg("cert", &pki.client_cert),
            &arg("key", &pki.client_key),
            "get",
            "tls",
            "--print-value-only",
        ],
    );
    assert_eq!(with_cert.ok(), "1\n");
    let without = etcdctl_at(&url, &[&cacert, "--dial-timeout=2s", "get", "tls"]);
    assert_ne!(
        without.code, 0,
        "a client without a certificate is refused: {without:?}"
    );

    // TLS 1.3 minimum: still fine for etcdctl (Go offers TLS 1.3).
    let tls13 = Proxy::start(
        &c.endpoints(),
        &[
            &arg("cert-file", &pki.server_cert),
            &arg("key-file", &pki.server_key),
            "--tls-min-version=TLS1.3",
        ],
    );
    let url = format!("https://{}", tls13.endpoint());
    assert_eq!(
        etcdctl_at(&url, &[&cacert, "get", "tls", "--print-value-only"]).ok(),
        "1\n"
    );
}

/// Members serving TLS with client certificates required (`--client-cert-auth`): the proxy
/// reaches them with `--cacert`, `--cert`, `--key` and serves plaintext clients. Against real
/// etcd members too, the same way.
#[test]
fn the_proxy_reaches_tls_members_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki(dir.path(), "client");
    let member_tls = pki.member_args();
    let member_tls: Vec<&str> = member_tls.iter().map(String::as_str).collect();
    let client_tls = pki.client_args();
    let client_tls: Vec<&str> = client_tls.iter().map(String::as_str).collect();
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let c = Cluster::start_tls(kind, 3, &member_tls);
        let urls = c.urls();
        // As etcdctl sees the members: a certificate gets through, none does not.
        let with = |args: &[&str]| {
            let mut all = client_tls.clone();
            all.extend_from_slice(args);
            etcdctl_at(&urls, &all)
        };
        assert_eq!(with(&["put", "k", "v"]).ok(), "OK\n", "{kind:?}");
        let without = etcdctl_at(
            &urls,
            &[&arg("cacert", &pki.ca), "--dial-timeout=1s", "get", "k"],
        );
        assert_ne!(
            without.code, 0,
            "{kind:?}: no client certificate: {without:?}"
        );
        let plain = etcdctl_at(&c.endpoints(), &["--dial-timeout=1s", "get", "k"]);
        assert_ne!(plain.code, 0, "{kind:?}: plaintext to TLS: {plain:?}");
        // oxetcdctl has etcdctl's TLS flags: host:port then means https.
        let mut ours = client_tls.clone();
        ours.extend_from_slice(&["get", "k", "--print-value-only"]);
        assert_eq!(c.members[0].oxetcdctl(&ours).ok(), "v\n", "{kind:?}");

        let p = Proxy::start(&urls, &client_tls);
        assert_eq!(
            p.etcdctl(&["get", "k", "--print-value-only"]).ok(),
            "v\n",
            "{kind:?}"
        );
        assert_eq!(p.etcdctl(&["put", "k2", "v2"]).ok(), "OK\n");
        assert_eq!(
            p.etcdctl(&["get", "k2", "--consistency=s", "--print-value-only"])
                .ok(),
            "v2\n"
        );
        let members = p.etcdctl(&["member", "list"]);
        assert_eq!(
            members.ok().matches("https://127.0.0.1:").count(),
            3,
            "{kind:?}: {}",
            members.stdout
        );
    }
}

/// TLS members found by DNS (`_etcd-client-ssl._tcp`): the proxy reaches them with the same
/// TLS settings as members given with `--endpoints`.
#[test]
fn the_proxy_reaches_tls_members_found_by_dns() {
    use oxetcd_tests::dns::{DnsServer, SrvTable};
    const DOMAIN: &str = "oxetcd-tls.test";
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki(dir.path(), "client");
    let member_tls = pki.member_args();
    let member_tls: Vec<&str> = member_tls.iter().map(String::as_str).collect();
    let c = Cluster::start_tls(Kind::Oxetcd, 3, &member_tls);
    let mut table = SrvTable::new();
    table.insert(
        format!("_etcd-client-ssl._tcp.{DOMAIN}"),
        c.members
            .iter()
            .map(|m| (m.client_port, "127.0.0.1".to_string()))
            .collect(),
    );
    let dns = DnsServer::start(table);
    let mut args = vec!["--discovery-srv".to_string(), DOMAIN.to_string()];
    args.extend(pki.client_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proxy::start_with_env("", &args, &[("OXETCD_DNS_SERVER", dns.addr.as_str())]);
    assert_eq!(
        p.etcdctl(&["put", "k", "via-dns"]).ok(),
        "OK\n",
        "{}",
        p.log()
    );
    assert_eq!(
        p.etcdctl(&["get", "k", "--consistency=s", "--print-value-only"])
            .ok(),
        "via-dns\n"
    );
}
