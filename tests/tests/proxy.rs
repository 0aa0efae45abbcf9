//! `oxetcd-proxy` in front of a 3-member oxetcd cluster, driven by real etcdctl and the
//! etcd-client crate.

use etcd_client::{Client, GetOptions};
use oxetcd_tests::{Cluster, Kind, Proxy, Running};

async fn client(endpoint: &str) -> Client {
    Client::connect([format!("http://{endpoint}")], None)
        .await
        .expect("connect")
}

fn leader_name(c: &Cluster) -> String {
    let i = c.leader().expect("a leader");
    c.members[i].name.clone()
}

/// KV, txn, watch, lease keep-alive, lock, elect, member list: the same etcdctl output through
/// the proxy as from a member.
#[test]
fn etcdctl_through_the_proxy() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);

    assert_eq!(p.etcdctl(&["put", "foo", "bar"]).ok(), "OK\n");
    assert_eq!(p.etcdctl(&["get", "foo"]).ok(), "foo\nbar\n");
    assert_eq!(
        p.etcdctl(&["get", "foo", "--consistency=s", "--print-value-only"])
            .ok(),
        "bar\n"
    );
    let txn = p.etcdctl_stdin(
        &["txn"],
        "value(\"foo\") = \"bar\"\n\nput foo baz\nput other x\n\n\n",
    );
    assert_eq!(txn.ok(), "SUCCESS\n\nOK\n\nOK\n");
    assert_eq!(
        c.members[2]
            .etcdctl(&["get", "foo", "--print-value-only"])
            .ok(),
        "baz\n"
    );
    // Revisions and headers are the members' own.
    let direct = c.members[1].etcdctl(&["get", "foo", "-w", "json"]);
    let proxied = p.etcdctl(&["get", "foo", "-w", "json"]);
    let rev = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(s).expect("json");
        (
            v["header"]["revision"].clone(),
            v["kvs"][0]["mod_revision"].clone(),
        )
    };
    assert_eq!(rev(direct.ok()), rev(proxied.ok()));

    // member list: same members as a member answers.
    let mut a: Vec<String> = p
        .etcdctl(&["member", "list"])
        .ok()
        .lines()
        .map(String::from)
        .collect();
    let mut b: Vec<String> = c.members[0]
        .etcdctl(&["member", "list"])
        .ok()
        .lines()
        .map(String::from)
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Watch through the proxy sees a write made through a member (from the next revision on,
    // so it cannot matter when the stream is registered).
    let now = rev(c.members[0].etcdctl(&["get", "foo", "-w", "json"]).ok()).0;
    let from = (now.as_u64().expect("revision") + 1).to_string();
    let mut w = Running::start(false, &p.endpoint(), &["watch", "wk", "--rev", &from]);
    assert_eq!(c.members[2].etcdctl(&["put", "wk", "seen"]).ok(), "OK\n");
    assert_eq!(w.read_until("seen"), ["PUT", "wk", "seen"]);
    drop(w);

    // elect: the candidate becomes leader and prints its proposal.
    let mut e = Running::start(false, &p.endpoint(), &["elect", "myelection", "p1"]);
    let won = e.read_until("p1");
    assert!(won[0].starts_with("myelection/"), "{won:?}");
    drop(e);

    // Lease grant, keep-alive once, time-to-live.
    let grant = p.etcdctl(&["lease", "grant", "60"]);
    let id = grant
        .ok()
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let ka = p.etcdctl(&["lease", "keep-alive", "--once", &id]);
    assert!(ka.ok().contains("keepalived with TTL"), "{ka:?}");
    let ttl = p.etcdctl(&["lease", "timetolive", &id]);
    assert!(ttl.ok().contains("granted with TTL(60s)"), "{ttl:?}");

    // Lock and elect: a command run while holding.
    let lock = p.etcdctl(&["lock", "mylock", "echo", "holding"]);
    assert_eq!(lock.ok(), "holding\n");

    // Every leader-bound request went to the leader.
    let leader = leader_name(&c);
    let puts_elsewhere: f64 = c
        .members
        .iter()
        .filter(|m| m.name != leader)
        .map(|m| {
            p.metric_sum(
                "etcd_proxy_requests_total",
                &["grpc_method=\"Put\"", &format!("member=\"{}\"", m.name)],
            )
        })
        .sum();
    assert_eq!(puts_elsewhere, 0.0, "{}", p.metrics());
    assert!(
        p.metric_sum(
            "etcd_proxy_requests_total",
            &["grpc_method=\"Put\"", &format!("member=\"{leader}\"")]
        ) >= 1.0,
        "{}",
        p.metrics()
    );
}

/// Serializable reads are spread over the members; linearizable ones all go to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_reads_are_balanced_linearizable_ones_go_to_the_leader() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let mut cl = client(&p.endpoint()).await;
    cl.put("k", "v", None).await.expect("put");
    for _ in 0..30 {
        let r = cl
            .get("k", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable get");
        assert_eq!(r.kvs()[0].value(), b"v");
        cl.get("k", None).await.expect("linearizable get");
    }
    let leader = leader_name(&c);
    for m in &c.members {
        let ranges = p.metric_sum(
            "etcd_proxy_requests_total",
            &["grpc_method=\"Range\"", &format!("member=\"{}\"", m.name)],
        );
        if m.name == leader {
            assert!(ranges >= 30.0, "{}: {ranges}\n{}", m.name, p.metrics());
        } else {
            // Each follower got some of the 30 serializable reads, and no linearizable one.
            assert!(
                (1.0..30.0).contains(&ranges),
                "{}: {ranges}\n{}",
                m.name,
                p.metrics()
            );
        }
    }
}
