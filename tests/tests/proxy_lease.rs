//! Lease keep-alives through `oxetcd-proxy`: the keep-alive streams of many clients share one
//! stream on the leader, every keep-alive is answered for its own lease, and the streams
//! outlive a leader killed under them.

use std::time::{Duration, Instant};

use oxetcd_tests::{client, http_get, Cluster, Kind, Proxy};

/// Sum over `members` of the samples of `name` with every label in `labels`.
fn member_metric(c: &Cluster, name: &str, labels: &[&str]) -> f64 {
    c.members
        .iter()
        .filter(|m| m.running())
        .flat_map(|m| {
            http_get(m.client_port, "/metrics")
                .lines()
                .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

const KEEPALIVE: &str = "grpc_method=\"LeaseKeepAlive\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_keepalive_streams_share_one_stream_on_the_leader() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let before = member_metric(&c, "grpc_server_started_total", &[KEEPALIVE]);
    let mut clients = Vec::new();
    let mut streams = Vec::new();
    // Forty-nine leases, and one more stream keeping the first lease alive beside its owner.
    let mut leases = Vec::new();
    for i in 0..50 {
        let mut cl = client(&p.endpoint()).await;
        let id = if i < 49 {
            cl.lease_grant(60, None).await.expect("grant").id()
        } else {
            leases[0]
        };
        leases.push(id);
        streams.push(cl.lease_keep_alive(id).await.expect("keep-alive stream"));
        clients.push(cl);
    }
    for round in 0..3 {
        for (keeper, _) in streams.iter_mut() {
            keeper.keep_alive().await.expect("send keep-alive");
        }
        for (i, (_, answers)) in streams.iter_mut().enumerate() {
            let r = tokio::time::timeout(Duration::from_secs(10), answers.message())
                .await
                .expect("an answer within 10 s")
                .expect("stream ok")
                .expect("stream open");
            assert_eq!(r.id(), leases[i], "stream {i}, round {round}");
            assert!(r.ttl() > 0, "stream {i}: {r:?}");
        }
    }
    assert_eq!(p.metric_sum("oxetcd_proxy_keepalive_streams", &[]), 50.0);
    assert_eq!(
        p.metric_sum("oxetcd_proxy_upstream_keepalive_streams", &[]),
        1.0
    );
    // 150 keep-alives at least reached the proxy; grants' first keep-alives are the client's.
    assert!(p.metric_sum("oxetcd_proxy_keepalives_total", &[]) >= 150.0);
    let on_members = member_metric(&c, "grpc_server_started_total", &[KEEPALIVE]) - before;
    assert_eq!(on_members, 1.0, "keep-alive streams started on the members");
    // A lease that does not exist is answered with TTL 0, as a member answers it (which
    // etcd-client reports as "lease not found").
    // (etcd-client sends the first keep-alive itself and fails the call on its answer.)
    let r = clients[0].lease_keep_alive(0x7777).await.map(|_| ());
    assert!(
        matches!(&r, Err(etcd_client::Error::LeaseKeepAliveError(e)) if e.contains("not found")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_stream_through_the_proxy_outlives_a_leader_kill() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let mut cl = client(&p.endpoint()).await;
    let id = cl.lease_grant(10, None).await.expect("grant").id();
    let opts = etcd_client::PutOptions::new().with_lease(id);
    cl.put("held", "v", Some(opts)).await.expect("put");
    let (mut keeper, mut answers) = cl.lease_keep_alive(id).await.expect("stream");
    keeper.keep_alive().await.expect("send");
    assert!(answers.message().await.expect("ok").expect("answer").ttl() > 0);
    let leader = c.leader().expect("a leader");
    c.members[leader].kill9();
    let killed = Instant::now();
    // The client stream stays open; a keep-alive is answered once there is a new leader.
    loop {
        keeper.keep_alive().await.expect("send after the kill");
        let r = tokio::time::timeout(Duration::from_millis(500), answers.message()).await;
        match r {
            Ok(r) => {
                let r = r.expect("stream ok after the kill").expect("stream open");
                assert_eq!(r.id(), id);
                if r.ttl() > 0 {
                    break;
                }
                panic!("lease gone after the leader kill: {r:?}");
            }
            Err(_) => assert!(
                killed.elapsed() < Duration::from_secs(15),
                "no keep-alive answered 15 s after the leader kill\n{}",
                p.log()
            ),
        }
    }
    let r = cl.get("held", None).await.expect("get");
    assert_eq!(r.kvs().len(), 1, "the key held by the lease is still there");
}
