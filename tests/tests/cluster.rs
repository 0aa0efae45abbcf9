//! Three oxetcd member processes on loopback: any member serves any request, and a leader
//! killed with kill -9 under a stream of writes loses nothing that was acknowledged.

use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use oxetcd_tests::{client, key_space, rows, Cluster, Kind};

/// Snapshot every 100 entries and keep only 50 log entries behind it, so a member that is
/// a few hundred writes behind must catch up from a snapshot.
const SMALL_SNAPSHOTS: [&str; 4] = [
    "--snapshot-count",
    "100",
    "--experimental-snapshot-catchup-entries",
    "50",
];

#[tokio::test]
async fn any_member_serves_writes_and_linearizable_reads() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    for (i, m) in c.members.iter().enumerate() {
        assert_eq!(
            m.etcdctl(&["put", &format!("k{i}"), &format!("v{i}")]).ok(),
            "OK\n"
        );
    }
    for m in &c.members {
        // Linearizable (the default): a follower asks the leader for a read index first.
        let out = m.etcdctl(&["get", "k", "--prefix", "--keys-only"]);
        assert_eq!(out.ok(), "k0\n\nk1\n\nk2\n\n", "member {}", m.name);
    }
    let list = c.members[1].etcdctl(&["member", "list"]);
    let names: Vec<&str> = list
        .ok()
        .lines()
        .map(|l| l.split(", ").nth(2).unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["m1", "m2", "m3"]);
    // Every member reports the same leader and the same revision.
    let mut leaders = Vec::new();
    for m in &c.members {
        let mut cl = client(&m.endpoint()).await;
        let s = cl.status().await.unwrap();
        leaders.push(s.leader());
        let r = cl
            .get("k", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(r.header().unwrap().revision(), 4);
    }
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0));
}

/// Keep-alives from many streams on a follower reach the leader's lease clock together (one
/// peer call carries every renewal queued meanwhile): each stream is still answered for its
/// own lease, and an unknown lease among them is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_keepalives_on_a_follower_are_each_answered_for_their_own_lease() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let leader = c.leader().expect("leader");
    let follower = c.members[(leader + 1) % 3].endpoint();
    let mut cl = client(&follower).await;
    let mut tasks = Vec::new();
    for i in 0..40i64 {
        let ttl = 30 + i;
        let id = cl.lease_grant(ttl, None).await.expect("grant").id();
        let mut cl = client(&follower).await;
        tasks.push(tokio::spawn(async move {
            let (mut keeper, mut acks) = cl.lease_keep_alive(id).await.expect("keep-alive");
            for _ in 0..25 {
                keeper.keep_alive().await.expect("send");
                let ack = tokio::time::timeout(Duration::from_secs(10), acks.message())
                    .await
                    .expect("answered")
                    .expect("ok")
                    .expect("not ended");
                assert_eq!((ack.id(), ack.ttl()), (id, ttl));
            }
        }));
    }
    let unknown = cl.lease_keep_alive(0x0bad).await.map(|_| ());
    assert!(
        unknown
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not found")),
        "{unknown:?}"
    );
    for t in tasks {
        t.await.expect("every stream answered for its lease");
    }
}

#[tokio::test]
async fn leases_and_watches_through_followers() {
    use etcd_client::{EventType, PutOptions, WatchOptions};
    let c = Cluster::start(Kind::Oxetcd, 3);
    let leader = c.leader().expect("leader");
    let f1 = &c.members[(leader + 1) % 3];
    let f2 = &c.members[(leader + 2) % 3];
    let mut a = client(&f1.endpoint()).await;
    let mut b = client(&f2.endpoint()).await;
    // A watch on one follower sees writes made through the other.
    let mut stream = a
        .watch("w", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    // Grant and keep alive through a follower: the leader's lease clock answers.
    let lease = b.lease_grant(2, None).await.unwrap();
    b.put("wl", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let (mut keeper, mut acks) = b.lease_keep_alive(lease.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ack.ttl(), 2);
    let ttl = a.lease_time_to_live(lease.id(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 2);
    assert!(ttl.ttl() >= 0 && ttl.ttl() <= 2, "remaining {}", ttl.ttl());
    drop(keeper);
    // The leader revokes the expired lease through raft: every member deletes the key.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let r = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.extend(r.events().iter().map(|e| e.event_type()));
    }
    assert_eq!(kinds, [EventType::Put, EventType::Delete]);
    for m in &c.members {
        let mut cl = client(&m.endpoint()).await;
        assert_eq!(
            cl.get("wl", None).await.unwrap().count(),
            0,
            "member {}",
            m.name
        );
    }
}

#[tokio::test]
async fn leader_kill9_under_writes_loses_nothing_acknowledged() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let leader = c.leader().expect("a leader");
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| c.members[i].endpoint())
        .collect();
    let mut clients = Vec::new();
    for ep in &survivors {
        clients.push(client(ep).await);
    }
    let mut leader_client = client(&c.members[leader].endpoint()).await;
    let mut acked = Vec::new();
    // Writes through the leader and both followers, until the kill.
    for i in 0..60 {
        let key = format!("w{i:04}");
        let r = if i % 3 == 0 {
            leader_client.put(key.clone(), "x", None).await
        } else {
            clients[i % 2].put(key.clone(), "x", None).await
        };
        r.expect("put before the kill");
        acked.push(key);
    }
    c.members[leader].kill9();
    let killed = Instant::now();
    // Keep writing through the survivors: a request may fail while there is no leader (never
    // acknowledged, never counted), but writes resume once a new leader is elected.
    let mut first_after: Option<Duration> = None;
    let mut failures = 0;
    let mut i = 60;
    while acked.len() < 200 {
        let key = format!("w{i:04}");
        match clients[i % 2].put(key.clone(), "x", None).await {
            Ok(_) => {
                first_after.get_or_insert(killed.elapsed());
                acked.push(key);
            }
            Err(e) => {
                failures += 1;
                assert!(
                    killed.elapsed() < Duration::from_secs(15),
                    "no new leader after 15 s: {e}"
                );
            }
        }
        i += 1;
    }
    let failover = first_after.expect("writes resumed");
    println!("failover: first acknowledged write {failover:?} after kill -9 of the leader ({failures} failed attempts)");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    // Every acknowledged write is there, read linearizably through each survivor.
    for cl in clients.iter_mut() {
        let r = cl
            .get("w", Some(GetOptions::new().with_prefix().with_keys_only()))
            .await
            .unwrap();
        let present: std::collections::HashSet<Vec<u8>> =
            r.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|k| !present.contains(k.as_bytes()))
            .collect();
        assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
    }
    // The killed member comes back, catches up, and serves the same data.
    c.members[leader].restart();
    let mut back = client(&c.members[leader].endpoint()).await;
    let r = back
        .get("w", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert!(
        r.kvs().len() >= acked.len(),
        "restarted member has {} of {} keys",
        r.kvs().len(),
        acked.len()
    );
}

#[tokio::test]
async fn a_member_far_behind_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(Kind::Oxetcd, 3, &SMALL_SNAPSHOTS);
    let leader = c.leader().expect("leader");
    let lagger = (leader + 1) % 3;
    c.members[lagger].kill9();
    let mut cl = client(&c.members[leader].endpoint()).await;
    // Far more entries than the leader keeps in its log: the lagger must get a snapshot.
    for i in 0..1500 {
        cl.put(format!("s{}", i % 300), format!("{i}"), None)
            .await
            .unwrap();
    }
    cl.delete("s0", None).await.unwrap();
    cl.compact(1000, None).await.unwrap();
    let want = cl
        .get("s", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let want_rev = want.header().unwrap().revision();
    c.members[lagger].restart();
    let mut back = client(&c.members[lagger].endpoint()).await;
    // A linearizable read on the restarted member waits until it has applied the leader's
    // index: after that, its own state must equal the leader's, revisions included.
    let got = back
        .get("s", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(got.header().unwrap().revision(), want_rev);
    assert_eq!(rows(got.kvs()), rows(want.kvs()));
    assert_eq!(got.kvs().len(), 299);
    // The compaction point came with the snapshot.
    let err = back
        .get("s1", Some(GetOptions::new().with_revision(500)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );
    // And it keeps following new writes.
    cl.put("after", "1", None).await.unwrap();
    assert_eq!(back.get("after", None).await.unwrap().count(), 1);
    // It caught up from a snapshot, not from the log (which the leader had purged).
    assert!(
        c.members[lagger].log().contains("installed snapshot"),
        "the lagging member never installed a snapshot"
    );
}

#[tokio::test]
async fn peer_messages_from_another_cluster_are_refused() {
    use oxetcd_common::oxetcdpeerpb::raft_peer_client::RaftPeerClient;
    use oxetcd_common::oxetcdpeerpb::PeerMessage;
    let c = Cluster::start(Kind::Oxetcd, 1);
    let m = &c.members[0];
    let cluster_id = client(&m.endpoint())
        .await
        .status()
        .await
        .unwrap()
        .header()
        .unwrap()
        .cluster_id();
    let mut peer = RaftPeerClient::connect(format!("http://127.0.0.1:{}", m.peer_port))
        .await
        .unwrap();
    // Another cluster's ID: refused before the message is even decoded.
    let err = peer
        .append_entries(PeerMessage {
            cluster_id: cluster_id ^ 1,
            data: b"not a raft message".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    // The right cluster ID gets past that check (and then fails to decode the garbage).
    let err = peer
        .append_entries(PeerMessage {
            cluster_id,
            data: b"not a raft message".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // A joining member may ask any member for the cluster ID.
    let id = peer
        .cluster_id(PeerMessage::default())
        .await
        .unwrap()
        .into_inner()
        .cluster_id;
    assert_eq!(id, cluster_id);
}

#[tokio::test]
async fn restarting_every_member_keeps_the_data_and_the_revision() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let mut cl = client(&c.members[0].endpoint()).await;
    for i in 0..200 {
        cl.put(format!("r{}", i % 50), format!("{i}"), None)
            .await
            .unwrap();
    }
    cl.delete("r0", None).await.unwrap();
    cl.compact(150, None).await.unwrap();
    let before = key_space(&mut cl).await;
    drop(cl);

    for m in &mut c.members {
        m.kill9();
    }
    c.restart_all();

    for m in &c.members {
        let mut cl = client(&m.endpoint()).await;
        assert_eq!(key_space(&mut cl).await, before, "{}", m.name);
        let err = cl
            .get("r1", Some(GetOptions::new().with_revision(100)))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("required revision has been compacted"),
            "{err}"
        );
    }
    // Writing goes on from the next revision.
    let mut cl = client(&c.members[1].endpoint()).await;
    let put = cl.put("after", "1", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), before.0 + 1);
}

#[tokio::test]
async fn a_member_that_lost_its_data_dir_is_replaced_and_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(Kind::Oxetcd, 3, &SMALL_SNAPSHOTS);
    let leader = c.leader().expect("leader");
    let lost = (leader + 1) % 3;
    let mut cl = client(&c.members[leader].endpoint()).await;
    for i in 0..600 {
        cl.put(format!("d{}", i % 100), format!("{i}"), None)
            .await
            .unwrap();
    }
    let old_list = c.members[leader]
        .etcdctl(&["member", "list"])
        .ok()
        .to_string();

    c.members[lost].kill9();
    std::fs::remove_dir_all(c.members[lost].data_dir()).expect("remove data dir");
    c.replace_member(lost);

    // A new member (new ID), same name and URLs, with everything the others have.
    let new_list = c.members[leader]
        .etcdctl(&["member", "list"])
        .ok()
        .to_string();
    let id_of = |list: &str, name: &str| {
        list.lines()
            .find(|l| l.split(", ").nth(2) == Some(name))
            .and_then(|l| l.split(", ").next())
            .map(str::to_string)
    };
    let name = c.members[lost].name.clone();
    assert!(id_of(&new_list, &name).is_some(), "{new_list}");
    assert_ne!(id_of(&new_list, &name), id_of(&old_list, &name));
    assert_eq!(new_list.lines().count(), 3, "{new_list}");
    let mut back = client(&c.members[lost].endpoint()).await;
    assert_eq!(key_space(&mut back).await, key_space(&mut cl).await);
    assert!(
        c.members[lost].log().contains("installed snapshot"),
        "the replaced member did not catch up from a snapshot"
    );
    // And it votes: with it, losing another member keeps a quorum.
    let other = (lost + 1) % 3;
    c.members[other].kill9();
    let mut via_new = client(&c.members[lost].endpoint()).await;
    via_new.put("quorum", "kept", None).await.unwrap();
}

/// Concurrent writers on the followers while the leader is killed: the forwards in flight are
/// sent again to the new leader (they carry request IDs), so no put fails and none is applied
/// twice (every key has version 1).
#[tokio::test]
async fn forwarded_writes_in_flight_survive_a_leader_kill_exactly_once() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let leader = c.leader().expect("a leader");
    let followers: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| c.members[i].endpoint())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut cl = client(&followers[w % 2]).await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("f{w}-{i:05}");
                match cl.put(key.clone(), "x", None).await {
                    Ok(_) => acked.push(key),
                    Err(e) => failed.push(e.to_string()),
                }
                i += 1;
            }
            (acked, failed)
        }));
    }
    // A reader alternating between the followers: no linearizable read may go back in time,
    // whichever member answers, across the leader change.
    let reader = {
        let stop = stop.clone();
        let mut readers = [client(&followers[0]).await, client(&followers[1]).await];
        tokio::spawn(async move {
            let (mut last, mut reads, mut i) = (0i64, 0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = readers[i % 2]
                    .get("f", Some(GetOptions::new().with_prefix().with_count_only()))
                    .await;
                i += 1;
                // A read may time out while there is no leader; one that answers must be current.
                let Ok(r) = r else { continue };
                let rev = r.header().expect("header").revision();
                assert!(
                    rev >= last,
                    "a linearizable read went back from revision {last} to {rev}"
                );
                last = rev;
                reads += 1;
            }
            reads
        })
    };
    // Let the writers get going, then kill the leader with forwards in flight.
    let mut probe = client(&followers[0]).await;
    let mut watch = probe
        .watch("f", Some(etcd_client::WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let mut seen = 0;
    while seen < 200 {
        let resp = watch.message().await.expect("watch").expect("open");
        seen += resp.events().len();
    }
    c.members[leader].kill9();
    // Writes resume: wait for 200 more events after the kill (bounded by the writers' own
    // request timeouts; a hang fails the test by the harness's timeout).
    let mut after = 0;
    while after < 200 {
        let resp = watch.message().await.expect("watch").expect("open");
        after += resp.events().len();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    assert!(reads > 0, "the reader read nothing");
    let mut acked = Vec::new();
    for w in writers {
        let (a, failed) = w.await.expect("writer");
        assert!(
            failed.is_empty(),
            "puts failed across the leader kill: {failed:?}"
        );
        acked.extend(a);
    }
    let r = probe
        .get("f", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let versions: std::collections::HashMap<Vec<u8>, i64> = r
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.version()))
        .collect();
    for key in &acked {
        assert_eq!(
            versions.get(key.as_bytes()),
            Some(&1),
            "{key}: lost or applied twice"
        );
    }
}

/// Local ports of the established TCP connections to `port` on loopback (the connecting
/// side's entries in /proc/net/tcp and tcp6).
fn connections_to(port: u16) -> std::collections::BTreeSet<u16> {
    let mut out = std::collections::BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st: hex "ADDR:PORT", state 01 = ESTABLISHED
            let port_of = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if f.len() > 3 && f[3] == "01" && port_of(f[2]) == Some(port) {
                if let Some(local) = port_of(f[1]) {
                    out.insert(local);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn followers_keep_one_connection_to_the_leader_under_forwarded_writes() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let leader = c.leader().expect("a leader");
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let peer_port = c.members[leader].peer_port;
    // Writes and linearizable reads through both followers: each forwards batches and asks
    // for read indexes, about a thousand peer calls in all.
    let mut workers = Vec::new();
    for (n, f) in followers.iter().enumerate() {
        for w in 0..4 {
            let mut cl = client(&c.members[*f].endpoint()).await;
            workers.push(tokio::spawn(async move {
                for i in 0..150 {
                    let key = format!("c{n}-{w}-{i}");
                    cl.put(key.clone(), "v", None).await.expect("put");
                    cl.get(key, None).await.expect("get");
                }
            }));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while workers.iter().any(|w| !w.is_finished()) {
        seen.extend(connections_to(peer_port));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in workers {
        w.await.expect("worker");
    }
    // One HTTP/2 connection per follower carries raft, forwards and read indexes alike.
    assert!(
        !seen.is_empty() && seen.len() <= 2,
        "connections to the leader's peer port over the run: {seen:?}"
    );
}
