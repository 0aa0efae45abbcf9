//! `oxetcd-proxy --namespace` against etcd 3.4's `etcd grpc-proxy start --namespace`: the same
//! etcdctl commands through each print the same, and the keys land under the prefix.

use std::process::{Child, Command, Stdio};

use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};
use oxetcd_tests::{etcdctl_at, free_port, Cluster, Kind, Member, Proxy, Running};

const NS: &str = "/ns/";

/// etcd's own grpc-proxy in front of a real etcd member.
struct EtcdProxy {
    child: Child,
    endpoint: String,
}

impl EtcdProxy {
    fn start(member: &Member, namespace: &str) -> Self {
        let endpoint = format!("127.0.0.1:{}", free_port());
        let child = Command::new("etcd")
            .args([
                "grpc-proxy",
                "start",
                &format!("--endpoints={}", member.endpoint()),
                &format!("--listen-addr={endpoint}"),
                &format!("--namespace={namespace}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd grpc-proxy");
        // Owned from here: dropped (killed and reaped) on every path, panics included.
        let proxy = EtcdProxy { child, endpoint };
        // etcd's proxy tells nobody it is ready: ask it until it answers (bounded).
        for _ in 0..100 {
            if etcdctl_at(&proxy.endpoint, &["get", "probe"]).code == 0 {
                return proxy;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("etcd grpc-proxy did not answer on {}", proxy.endpoint);
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (exit code, stdout, the `Error:` line) of one etcdctl run.
fn run(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let out = match stdin {
        Some(input) => {
            let mut cmd = Command::new("etcdctl");
            cmd.env("ETCDCTL_API", "3")
                .env("ETCDCTL_ENDPOINTS", endpoint)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("etcdctl");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
            let o = child.wait_with_output().expect("etcdctl output");
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        }
        None => {
            let c = etcdctl_at(endpoint, args);
            (c.code, c.stdout, c.stderr)
        }
    };
    let error = out
        .2
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or("")
        .to_string();
    (out.0, out.1, error)
}

#[test]
fn namespace_rewrites_keys_as_etcds_grpc_proxy_does() {
    let etcd = Member::start(Kind::Etcd);
    let theirs = EtcdProxy::start(&etcd, NS);
    let ox = Cluster::start(Kind::Oxetcd, 1);
    let ours = Proxy::start(&ox.endpoints(), &[&format!("--namespace={NS}")]);
    let ours_ep = ours.endpoint();

    // A watch on the whole (namespaced) key space, from the first revision, through each proxy.
    let mut watch_theirs = Running::start(
        false,
        &theirs.endpoint,
        &["watch", "--prefix", "", "--rev", "1"],
    );
    let mut watch_ours = Running::start(false, &ours_ep, &["watch", "--prefix", "", "--rev", "1"]);

    let txn = "value(\"a\") = \"3\"\n\nput c 4\nget a\n\nput d 5\n\n";
    let script: &[(&[&str], Option<&str>)] = &[
        (&["put", "a", "1"], None),
        (&["put", "b", "2"], None),
        (&["put", "--prev-kv", "a", "3"], None),
        (&["get", "a"], None),
        (&["get", "--prefix", ""], None),
        (&["get", "--from-key", "a"], None),
        (&["get", "a", "c"], None),
        (&["txn"], Some(txn)),
        (&["del", "--prev-kv", "b"], None),
        (&["get", ""], None),
        (&["del", "--prefix", "zz"], None),
        (&["get", "--prefix", "", "--keys-only"], None),
    ];
    for (args, stdin) in script {
        let want = run(&theirs.endpoint, args, *stdin);
        let got = run(&ours_ep, args, *stdin);
        assert_eq!(got, want, "etcdctl {args:?}");
    }

    // The keys really live under the prefix, and keys outside it stay invisible.
    let inside = |ep: &str| etcdctl_at(ep, &["get", "--prefix", "", "--keys-only"]);
    assert_eq!(
        inside(&ox.members[0].endpoint()).ok(),
        inside(&etcd.endpoint()).ok()
    );
    assert_eq!(inside(&ox.members[0].endpoint()).ok(), "/ns/a\n\n/ns/c\n\n");
    for ep in [etcd.endpoint(), ox.members[0].endpoint()] {
        assert_eq!(etcdctl_at(&ep, &["put", "outside", "x"]).ok(), "OK\n");
    }
    assert_eq!(
        run(&ours_ep, &["get", "--prefix", ""], None),
        run(&theirs.endpoint, &["get", "--prefix", ""], None)
    );

    // The watches saw the same events, keys without the prefix, nothing from outside.
    for ep in [&theirs.endpoint, &ours_ep] {
        assert_eq!(etcdctl_at(ep, &["put", "z", "end"]).ok(), "OK\n");
    }
    let seen_theirs = watch_theirs.read_until("end");
    let seen_ours = watch_ours.read_until("end");
    assert_eq!(seen_ours, seen_theirs);
    assert!(!seen_ours
        .iter()
        .any(|l| l.contains("outside") || l.starts_with(NS)));

    // Lease keys come back without the prefix.
    let grant = etcdctl_at(&ours_ep, &["lease", "grant", "60"]);
    let id = grant.granted_lease_id();
    assert_eq!(
        etcdctl_at(&ours_ep, &["put", "--lease", &id, "leased", "v"]).ok(),
        "OK\n"
    );
    let ttl = etcdctl_at(&ours_ep, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.ok().contains("attached keys([leased])"), "{ttl:?}");
}

/// etcdctl's `lock` and `elect` work on KV (clientv3's concurrency package), so the test above
/// covers them. The Lock and Election services (what etcd-client's `lock` and `campaign` call)
/// are namespaced too, unlike with etcd 3.4's proxy (see `proxy/src/namespace.rs`).
#[tokio::test]
async fn namespace_covers_the_lock_and_election_services() {
    let ox = Cluster::start(Kind::Oxetcd, 1);
    let ours = Proxy::start(&ox.endpoints(), &[&format!("--namespace={NS}")]);
    let member = ox.members[0].endpoint();
    let stored = |prefix: &str| {
        etcdctl_at(&member, &["get", "--prefix", prefix])
            .ok()
            .to_string()
    };
    let mut c = Client::connect([format!("http://{}", ours.endpoint())], None)
        .await
        .expect("connect");
    let lease = c.lease_grant(60, None).await.expect("grant").id();

    let lock = c
        .lock("mylock", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("lock");
    let key = String::from_utf8(lock.key().to_vec()).expect("utf-8 key");
    assert!(key.starts_with("mylock/"), "lock key {key:?}");
    assert_eq!(stored("/ns/mylock/"), format!("{NS}{key}\n\n"));
    c.unlock(key.as_str()).await.expect("unlock");
    assert_eq!(stored("/ns/mylock/"), "");

    let won = c
        .campaign("myelection", "p1", lease)
        .await
        .expect("campaign");
    let leader = won.leader().expect("leader key").clone();
    assert_eq!(leader.name(), b"myelection");
    assert!(leader.key().starts_with(b"myelection/"));
    let seen = c.leader("myelection").await.expect("leader");
    let kv = seen.kv().expect("leader kv");
    assert_eq!((kv.key(), kv.value()), (leader.key(), &b"p1"[..]));
    c.proclaim(
        "p2",
        Some(ProclaimOptions::new().with_leader(leader.clone())),
    )
    .await
    .expect("proclaim");
    assert_eq!(
        stored("/ns/myelection/"),
        format!("{NS}{}\np2\n", String::from_utf8_lossy(leader.key()))
    );
    c.resign(Some(ResignOptions::new().with_leader(leader)))
        .await
        .expect("resign");
    assert_eq!(stored("/ns/myelection/"), "");
}

/// With `--namespace` the read cache watches the namespace: a write made on the member under
/// the prefix reaches readers of the proxy, and a write outside it changes nothing they see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_cache_follows_writes_under_the_namespace() {
    use etcd_client::GetOptions;
    let m = Member::start(Kind::Oxetcd);
    let p = Proxy::start(&m.endpoint(), &[&format!("--namespace={NS}")]);
    let mut direct = Client::connect([m.url()], None).await.expect("connect");
    let mut cl = Client::connect([format!("http://{}", p.endpoint())], None)
        .await
        .expect("connect");
    let ser = || Some(GetOptions::new().with_serializable());
    let prefix = || Some(GetOptions::new().with_serializable().with_prefix());
    for i in 0..20 {
        let v = format!("v{i}");
        direct
            .put(format!("{NS}k"), v.as_str(), None)
            .await
            .expect("put under the namespace");
        // Outside the namespace: never seen through the proxy.
        direct.put("k", "outside", None).await.expect("put outside");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let r = cl.get("k", ser()).await.expect("get");
            let got = r.kvs().first().map(|kv| kv.value().to_vec());
            assert_ne!(got.as_deref(), Some(&b"outside"[..]));
            if got.as_deref() == Some(v.as_bytes()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "write {i} not seen\n{}",
                p.log()
            );
        }
        // Read again: answered from the cache, the same.
        for _ in 0..3 {
            let r = cl.get("k", ser()).await.expect("get");
            assert_eq!(r.kvs()[0].value(), v.as_bytes());
            let r = cl.get("", prefix()).await.expect("get prefix");
            let keys: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
            assert_eq!(
                keys,
                [b"k"],
                "the namespace holds one key, without its prefix"
            );
            assert_eq!(r.kvs()[0].value(), v.as_bytes());
        }
    }
    assert!(
        p.metric_sum("oxetcd_proxy_cache_hits_total", &[]) > 0.0,
        "{}\n{}",
        p.metrics(),
        p.log()
    );
}
