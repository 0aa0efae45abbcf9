//! `--discovery-srv`: members bootstrap from DNS SRV records, and the proxy finds them the
//! same way, against a DNS server the test runs on loopback.

use oxetcd_tests::dns::{DnsServer, SrvTable};
use oxetcd_tests::{etcdctl_at, free_port, Cluster, Proxy};

const DOMAIN: &str = "oxetcd.test";

#[test]
fn members_and_proxy_bootstrap_from_dns_srv() {
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let srv = |ports: &[u16]| -> Vec<(u16, String)> {
        ports
            .iter()
            .map(|p| (*p, "127.0.0.1".to_string()))
            .collect()
    };
    let mut table = SrvTable::new();
    table.insert(format!("_etcd-server._tcp.{DOMAIN}"), srv(&peers));
    table.insert(format!("_etcd-client._tcp.{DOMAIN}"), srv(&clients));
    let dns = DnsServer::start(table);

    let c = Cluster::start_srv(&peers, &clients, DOMAIN, &dns.addr);

    // One cluster of three, each member named as it named itself once it published.
    let list = etcdctl_at(&c.endpoints(), &["member", "list"]);
    let mut names: Vec<String> = list
        .ok()
        .lines()
        .map(|l| l.split(", ").nth(2).unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["m1", "m2", "m3"], "{}", list.stdout);
    let peer_urls: Vec<String> = peers
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for url in &peer_urls {
        assert!(
            list.stdout.contains(url.as_str()),
            "{url} missing: {}",
            list.stdout
        );
    }
    assert_eq!(c.members[0].etcdctl(&["put", "k", "from-dns"]).ok(), "OK\n");
    assert_eq!(
        c.members[2]
            .etcdctl(&["get", "k", "--print-value-only"])
            .ok(),
        "from-dns\n"
    );

    // The proxy is given no endpoint but the domain.
    let p = Proxy::start_with_env(
        "",
        &["--discovery-srv", DOMAIN],
        &[("OXETCD_DNS_SERVER", dns.addr.as_str())],
    );
    assert_eq!(
        p.etcdctl(&["get", "k", "--print-value-only"]).ok(),
        "from-dns\n"
    );
    assert!(
        p.log().contains("members from DNS SRV"),
        "the proxy did not use DNS: {}",
        p.log()
    );
}

#[test]
fn a_domain_without_records_is_a_clear_startup_error() {
    let dns = DnsServer::start(SrvTable::new());
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(oxetcd_tests::bin("oxetcd"))
        .args(["--discovery-srv", DOMAIN, "--data-dir"])
        .arg(tmp.path().join("d"))
        .env("OXETCD_DNS_SERVER", &dns.addr)
        .output()
        .expect("run oxetcd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error setting up initial cluster from DNS SRV of oxetcd.test")
            && err.contains("no such host"),
        "{err}"
    );
    // Both ways of naming the cluster at once are refused, as etcd refuses them.
    let out = std::process::Command::new(oxetcd_tests::bin("oxetcd"))
        .args([
            "--discovery-srv",
            DOMAIN,
            "--initial-cluster",
            "default=http://127.0.0.1:2380",
        ])
        .output()
        .expect("run oxetcd");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple discovery or bootstrap flags"));
}

/// `_etcd-server-ssl._tcp` records: the members bootstrap with `https://` peer URLs and
/// mutual TLS between them.
#[test]
fn members_bootstrap_from_ssl_srv_records_with_peer_tls() {
    use oxetcd_tests::pki::{write_pem, Ca};
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let (cert, key) = ca.issue("member");
    let args = [
        format!(
            "--peer-trusted-ca-file={}",
            write_pem(dir.path(), "ca.pem", &ca.cert_pem).display()
        ),
        format!(
            "--peer-cert-file={}",
            write_pem(dir.path(), "peer.pem", &cert).display()
        ),
        format!(
            "--peer-key-file={}",
            write_pem(dir.path(), "peer-key.pem", &key).display()
        ),
        "--peer-client-cert-auth".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut table = SrvTable::new();
    let records = peers
        .iter()
        .map(|p| (*p, "127.0.0.1".to_string()))
        .collect();
    table.insert(format!("_etcd-server-ssl._tcp.{DOMAIN}"), records);
    let dns = DnsServer::start(table);
    let c = Cluster::start_srv_with(&peers, &clients, DOMAIN, &dns.addr, "https", &args);
    let list = etcdctl_at(&c.endpoints(), &["member", "list"]);
    for p in &peers {
        let url = format!("https://127.0.0.1:{p}");
        assert!(list.stdout.contains(&url), "{url} missing: {}", list.stdout);
    }
    assert_eq!(c.members[0].etcdctl(&["put", "k", "ssl"]).ok(), "OK\n");
    assert_eq!(
        c.members[2]
            .etcdctl(&["get", "k", "--print-value-only"])
            .ok(),
        "ssl\n"
    );
}
