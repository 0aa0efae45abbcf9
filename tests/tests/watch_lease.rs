//! Watch and Lease through a real etcd client library: events in order, none missed or
//! doubled, across history replay, live delivery and a slow consumer; lease expiry through
//! raft; keep-alive; leases across a restart.

use std::time::Duration;

use etcd_client::{
    Client, EventType, GetOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions, WatchStream,
};
use oxetcd_tests::{client, Kind, Member};
use tokio::time::timeout;

/// Upper bound for anything a test awaits; generous for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(20);

/// (type, key, mod revision) of the next `n` events on a stream.
async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<(EventType, String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = timeout(WAIT, stream.message())
            .await
            .expect("events in time")
            .expect("watch stream")
            .expect("stream open");
        assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
        for ev in resp.events() {
            let kv = ev.kv().expect("kv");
            out.push((
                ev.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.mod_revision(),
            ));
        }
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

#[tokio::test]
async fn watch_sees_exactly_the_changes_of_other_clients() {
    let m = Member::start(Kind::Oxetcd);
    let mut watcher = client(&m.endpoint()).await;
    let mut writer = client(&m.endpoint()).await;
    let mut stream = watcher
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    writer.put("other", "x", None).await.unwrap(); // outside the prefix
    let mut expected = Vec::new();
    for i in 0..30 {
        let r = writer
            .put(format!("w/{}", i % 7), format!("v{i}"), None)
            .await
            .unwrap();
        expected.push((
            EventType::Put,
            format!("w/{}", i % 7),
            r.header().unwrap().revision(),
        ));
    }
    let r = writer
        .delete("w/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    // One revision for the 7 deletes, in key order.
    for k in 0..7 {
        expected.push((
            EventType::Delete,
            format!("w/{k}"),
            r.header().unwrap().revision(),
        ));
    }
    assert_eq!(next_events(&mut stream, expected.len()).await, expected);
}

#[tokio::test]
async fn historical_watch_replays_then_follows_without_gap() {
    let m = Member::start(Kind::Oxetcd);
    let mut c = client(&m.endpoint()).await;
    for i in 0..20 {
        c.put("h", format!("{i}"), None).await.unwrap();
    }
    // Keep writing while the watch is created, so the switch from replay to live is exercised.
    let url = m.url();
    let writer = tokio::spawn(async move {
        let mut c = Client::connect([url], None).await.unwrap();
        for i in 20..220 {
            c.put("h", format!("{i}"), None).await.unwrap();
        }
    });
    let mut stream = c
        .watch("h", Some(WatchOptions::new().with_start_revision(2)))
        .await
        .unwrap();
    let events = next_events(&mut stream, 220).await;
    writer.await.unwrap();
    let revs: Vec<i64> = events.iter().map(|e| e.2).collect();
    assert_eq!(
        revs,
        (2..222).collect::<Vec<_>>(),
        "revisions must be contiguous"
    );
}

#[tokio::test]
async fn slow_consumer_does_not_block_writes_and_misses_nothing() {
    let m = Member::start(Kind::Oxetcd);
    let mut watcher = client(&m.endpoint()).await;
    let mut stream = watcher
        .watch("s", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    // Nobody reads the stream while 3000 revisions of 2 KB values are written: far more than
    // the watch feed buffers (1024 revisions), the stream's send buffer and HTTP/2's windows.
    let mut writer = client(&m.endpoint()).await;
    let value = vec![b'v'; 2048];
    for i in 0..3000 {
        timeout(
            WAIT,
            writer.put(format!("s{}", i % 10), value.clone(), None),
        )
        .await
        .expect("a put must not wait for a slow watcher")
        .unwrap();
    }
    let events = next_events(&mut stream, 3000).await;
    let revs: Vec<i64> = events.iter().map(|e| e.2).collect();
    assert_eq!(revs, (2..3002).collect::<Vec<_>>());
    // The stream really fell behind the feed and caught up from the store.
    let metrics = oxetcd_tests::http_get(m.client_port, "/metrics");
    let lagged: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oxetcd_watch_stream_lagged_total "))
        .and_then(|v| v.parse().ok())
        .expect("lag metric");
    assert!(
        lagged >= 1,
        "the slow consumer never lagged: the test did not test the catch-up path"
    );
}

/// A watch from below the compaction is created, then canceled with the compaction
/// revision, as etcd's: no reason, header revision 0.
#[tokio::test]
async fn watch_from_a_compacted_revision_is_canceled() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Oxetcd] {
        let m = Member::start(kind);
        let mut c = client(&m.endpoint()).await;
        for i in 0..5 {
            c.put("k", format!("{i}"), None).await.unwrap();
        }
        c.compact(4, None).await.unwrap();
        let mut stream = c
            .watch("k", Some(WatchOptions::new().with_start_revision(2)))
            .await
            .unwrap();
        loop {
            let resp = timeout(WAIT, stream.message())
                .await
                .unwrap()
                .unwrap()
                .expect("response");
            assert!(resp.events().is_empty(), "no events from a compacted watch");
            if resp.canceled() {
                let rev = resp.header().map(|h| h.revision());
                answers.push((
                    resp.compact_revision(),
                    resp.cancel_reason().to_string(),
                    rev,
                ));
                break;
            }
        }
    }
    assert_eq!(answers[0].0, 4);
    assert_eq!(answers[0], answers[1], "etcd's, then ours");
}

#[tokio::test]
async fn lease_expiry_deletes_keys_and_fires_delete_events() {
    let m = Member::start(Kind::Oxetcd);
    let mut c = client(&m.endpoint()).await;
    let lease = c.lease_grant(1, None).await.unwrap();
    // etcd's minimum TTL with the default election timeout.
    assert_eq!(lease.ttl(), 2);
    c.put("e1", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    c.put("e2", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let mut stream = c
        .watch("e", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let events = next_events(&mut stream, 2).await;
    assert!(events.iter().all(|e| e.0 == EventType::Delete));
    // Both keys went in one revision.
    assert_eq!(events[0].2, events[1].2);
    let r = c
        .get("e", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 0);
    let ttl = c.lease_time_to_live(lease.id(), None).await.unwrap();
    assert_eq!(ttl.ttl(), -1);
    let err = c
        .put("e3", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("requested lease not found"),
        "{err}"
    );
}

#[tokio::test]
async fn keep_alive_holds_a_lease_past_its_ttl() {
    let m = Member::start(Kind::Oxetcd);
    let mut c = client(&m.endpoint()).await;
    let lease = c.lease_grant(2, None).await.unwrap();
    c.put("held", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let (mut keeper, mut responses) = c.lease_keep_alive(lease.id()).await.unwrap();
    let start = tokio::time::Instant::now();
    // Renew every half second for three TTLs (this interval is the keep-alive cadence a client
    // uses, not a synchronisation).
    while start.elapsed() < Duration::from_secs(6) {
        keeper.keep_alive().await.unwrap();
        let r = timeout(WAIT, responses.message())
            .await
            .unwrap()
            .unwrap()
            .expect("keep-alive response");
        assert_eq!((r.id(), r.ttl()), (lease.id(), 2));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = c.get("held", None).await.unwrap();
    assert_eq!(
        r.count(),
        1,
        "key expired although its lease was kept alive"
    );
    let ttl = c
        .lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 2);
    assert_eq!(ttl.keys(), [b"held".to_vec()]);
}

#[tokio::test]
async fn leases_survive_a_restart() {
    let mut m = Member::start(Kind::Oxetcd);
    let mut c = client(&m.endpoint()).await;
    let lease = c.lease_grant(600, None).await.unwrap();
    c.put("a", "1", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    c.put("b", "2", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    c.put("b", "3", None).await.unwrap(); // moves b off the lease
    drop(c);
    m.kill9();
    m.restart();
    let mut c = client(&m.endpoint()).await;
    let ttl = c
        .lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 600);
    assert!(
        ttl.ttl() > 590,
        "a restarted member gives leases a full TTL"
    );
    assert_eq!(ttl.keys(), [b"a".to_vec()]);
    let leases = c.leases().await.unwrap();
    assert_eq!(
        leases.leases().iter().map(|l| l.id()).collect::<Vec<_>>(),
        [lease.id()]
    );
    c.lease_revoke(lease.id()).await.unwrap();
    assert_eq!(c.get("a", None).await.unwrap().count(), 0);
    assert_eq!(c.get("b", None).await.unwrap().count(), 1);
    let err = c.lease_revoke(lease.id()).await.unwrap_err();
    assert!(
        err.to_string().contains("requested lease not found"),
        "{err}"
    );
}

#[tokio::test]
async fn large_watch_responses_are_fragmented_on_request() {
    use oxetcd_common::etcdserverpb::watch_client::WatchClient;
    use oxetcd_common::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};

    let m = Member::start_with(Kind::Oxetcd, &["--max-request-bytes", "10000"]);
    let mut c = client(&m.endpoint()).await;
    for k in ["f1", "f2", "f3"] {
        c.put(k, vec![b'x'; 6000], None).await.unwrap();
    }
    // Replaying revisions 2..=4 is one response of about 18 KB: over the 10 KB limit.
    // (etcd-client hides the fragment flag, so this uses the raw gRPC client.)
    let replay = |fragment: bool| {
        let url = m.url();
        async move {
            let mut w = WatchClient::connect(url).await.unwrap();
            let create = WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: b"f".to_vec(),
                        range_end: b"g".to_vec(),
                        start_revision: 2,
                        fragment,
                        ..Default::default()
                    },
                )),
            };
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(create).await.unwrap();
            let mut stream = w
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let (mut flags, mut keys) = (Vec::new(), Vec::new());
            while keys.len() < 3 {
                let r = timeout(WAIT, stream.message())
                    .await
                    .unwrap()
                    .unwrap()
                    .expect("response");
                if r.events.is_empty() {
                    continue;
                }
                flags.push(r.fragment);
                keys.extend(
                    r.events
                        .iter()
                        .map(|e| String::from_utf8(e.kv.clone().unwrap().key).unwrap()),
                );
            }
            drop(tx);
            (flags, keys)
        }
    };
    let (flags, keys) = replay(true).await;
    assert_eq!(keys, ["f1", "f2", "f3"]);
    assert!(flags.len() > 1, "not fragmented: {flags:?}");
    assert_eq!(flags.last(), Some(&false));
    assert!(flags[..flags.len() - 1].iter().all(|f| *f));
    // Without the flag the same replay is one response.
    let (flags, keys) = replay(false).await;
    assert_eq!((flags, keys.len()), (vec![false], 3));
}
