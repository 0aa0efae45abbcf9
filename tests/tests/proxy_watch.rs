//! Watches through `oxetcd-proxy`: many client watchers share few upstream watches, and every
//! client still gets every event once, in order, from its own start, through slow clients,
//! progress requests and a member killed under it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::{
    watch_request::RequestUnion, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use oxetcd_common::mvccpb::Event;
use oxetcd_tests::{channel, client, http_get, Cluster, Kind, Member, Proxy, Rng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// One client watch stream, driven by hand.
struct Stream {
    tx: mpsc::UnboundedSender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

impl Stream {
    async fn open(channel: &tonic::transport::Channel) -> Stream {
        let (tx, rx) = mpsc::unbounded_channel();
        // Unbounded, as clientv3's receive limit (a catch-up response may hold many events).
        let rx = WatchClient::new(channel.clone())
            .max_decoding_message_size(usize::MAX)
            .watch(UnboundedReceiverStream::new(rx))
            .await
            .expect("watch stream")
            .into_inner();
        Stream { tx, rx }
    }

    fn create(&self, c: WatchCreateRequest) {
        self.tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(c)),
            })
            .expect("stream open");
    }

    fn progress(&self) {
        self.tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            })
            .expect("stream open");
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(30), self.rx.message())
            .await
            .expect("a watch response within 30 s")
            .expect("stream ok")
            .expect("stream not ended")
    }
}

/// An etcd-client balanced over `endpoints` (comma-separated `host:port`).
async fn client_of(endpoints: &str) -> etcd_client::Client {
    let urls: Vec<String> = endpoints
        .split(',')
        .map(|e| format!("http://{e}"))
        .collect();
    etcd_client::Client::connect(urls, None)
        .await
        .expect("connect")
}

fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn is_progress(r: &WatchResponse) -> bool {
    r.watch_id == -1 && !r.created && !r.canceled && r.events.is_empty()
}

fn revision(r: &WatchResponse) -> i64 {
    r.header.as_ref().map_or(0, |h| h.revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_on_ten_keys_share_ten_upstream_watches() {
    let m = Member::start(Kind::Oxetcd);
    // The read cache holds a watch of its own on the member: off, to count only these.
    let p = Proxy::start(&m.endpoint(), &["--read-cache=false"]);
    let mut streams = Vec::new();
    for _ in 0..4 {
        let ch = channel(&p.endpoint()).await;
        for _ in 0..5 {
            streams.push(Stream::open(&ch).await);
        }
    }
    // 20 streams × 50 watchers, keys k0..k9 in turn, all from now.
    let mut key_of: Vec<BTreeMap<i64, String>> = Vec::new();
    for s in &streams {
        for i in 0..50 {
            s.create(WatchCreateRequest {
                key: format!("k{}", i % 10).into_bytes(),
                ..Default::default()
            });
        }
    }
    for s in streams.iter_mut() {
        let mut ids = BTreeMap::new();
        for i in 0..50 {
            let r = s.next().await;
            assert!(r.created && !r.canceled, "created: {r:?}");
            ids.insert(r.watch_id, format!("k{}", i % 10));
        }
        assert_eq!(ids.len(), 50, "distinct watch IDs");
        key_of.push(ids);
    }
    assert_eq!(p.metric_sum("oxetcd_proxy_watchers", &[]), 1000.0);
    assert_eq!(p.metric_sum("oxetcd_proxy_upstream_watchers", &[]), 10.0);
    let on_member = metric(m.client_port, "etcd_debugging_mvcc_watcher_total");
    assert!(on_member <= 10.0, "{on_member} watchers on the member");

    let mut kv = client(&m.endpoint()).await;
    let mut written: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for round in 0..5 {
        for k in 0..10 {
            let (key, value) = (format!("k{k}"), format!("v{round}"));
            let put = kv.put(key.clone(), value.clone(), None).await.expect("put");
            let rev = put.header().expect("header").revision();
            written.entry(key).or_default().push((rev, value));
        }
    }
    for (s, ids) in streams.iter_mut().zip(&key_of) {
        let mut seen: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
        while seen.values().map(Vec::len).sum::<usize>() < 50 * 5 {
            let r = s.next().await;
            for ev in &r.events {
                let kv = ev.kv.as_ref().expect("kv");
                assert_eq!(
                    String::from_utf8_lossy(&kv.key),
                    ids[&r.watch_id].as_str(),
                    "an event of the watched key"
                );
                seen.entry(r.watch_id).or_default().push((
                    kv.mod_revision,
                    String::from_utf8_lossy(&kv.value).into_owned(),
                ));
            }
        }
        for (id, events) in &seen {
            assert_eq!(
                events, &written[&ids[id]],
                "watcher {id}: every event once, in order"
            );
        }
    }
}

struct Spec {
    key: String,
    prefix: bool,
    prev_kv: bool,
    start: i64,
}

fn prefix_end(p: &str) -> Vec<u8> {
    let mut end = p.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// What one watcher is owed out of the full history.
fn owed(history: &[Event], spec: &Spec, from: i64) -> Vec<Event> {
    history
        .iter()
        .filter(|e| {
            let kv = e.kv.as_ref().expect("kv");
            let key = String::from_utf8_lossy(&kv.key);
            let matches = if spec.prefix {
                key.starts_with(&spec.key)
            } else {
                key == spec.key
            };
            matches && kv.mod_revision >= from
        })
        .map(|e| {
            let mut e = e.clone();
            if !spec.prev_kv {
                e.prev_kv = None;
            }
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_sees_the_members_history_across_a_member_kill() {
    let mut rng = Rng::seeded();
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let mut kv = client_of(&c.endpoints()).await;
    for i in 0..40 {
        kv.put(format!("k/{}", i % 8), format!("pre{i}"), None)
            .await
            .expect("put");
    }
    let before = kv.get("k/0", None).await.expect("get");
    let before = before.header().expect("header").revision();

    // Streams of watchers with random keys, prefixes, prev_kv and starts (now, or a past
    // revision). The last stream is not read until the end: its watchers must be parked and
    // come back complete.
    let ch = channel(&p.endpoint()).await;
    let mut streams = Vec::new();
    let mut specs: Vec<Vec<Spec>> = Vec::new();
    for s in 0..6 {
        let stream = Stream::open(&ch).await;
        let n = if s == 5 { 100 } else { 25 };
        let mut mine = Vec::new();
        for _ in 0..n {
            // The slow stream watches everything, so it surely overflows.
            let prefix = s == 5 || rng.below(3) == 0;
            let spec = Spec {
                key: if prefix {
                    "k/".to_string()
                } else {
                    format!("k/{}", rng.below(8))
                },
                prefix,
                prev_kv: rng.below(2) == 0,
                start: if rng.below(2) == 0 {
                    0
                } else {
                    1 + rng.below(before as u64) as i64
                },
            };
            stream.create(WatchCreateRequest {
                key: spec.key.clone().into_bytes(),
                range_end: if spec.prefix {
                    prefix_end(&spec.key)
                } else {
                    Vec::new()
                },
                start_revision: spec.start,
                prev_kv: spec.prev_kv,
                ..Default::default()
            });
            mine.push(spec);
        }
        streams.push(stream);
        specs.push(mine);
    }
    // Created answers come first on each stream (before any event of that watcher); the
    // slow stream's are read at the end with everything else.
    let mut created: Vec<BTreeMap<i64, i64>> = vec![BTreeMap::new(); streams.len()];
    let mut events: Vec<BTreeMap<i64, Vec<Event>>> = vec![BTreeMap::new(); streams.len()];
    let mut order: Vec<Vec<i64>> = vec![Vec::new(); streams.len()];
    let record = |i: usize,
                  r: WatchResponse,
                  created: &mut Vec<BTreeMap<i64, i64>>,
                  events: &mut Vec<BTreeMap<i64, Vec<Event>>>,
                  order: &mut Vec<Vec<i64>>| {
        assert!(!r.canceled, "nothing is canceled: {r:?}");
        if r.created {
            created[i].insert(r.watch_id, revision(&r));
            order[i].push(r.watch_id);
        } else if !r.events.is_empty() {
            assert!(created[i].contains_key(&r.watch_id), "events after created");
            events[i].entry(r.watch_id).or_default().extend(r.events);
        }
    };
    for i in 0..5 {
        while created[i].len() < specs[i].len() {
            let r = streams[i].next().await;
            record(i, r, &mut created, &mut events, &mut order);
        }
    }

    // Writes straight to the members, and the member holding the proxy's upstream watches
    // killed a third of the way in (the one with most watchers: the read cache holds one
    // watch of its own, maybe elsewhere).
    let watchers: Vec<f64> = c
        .members
        .iter()
        .map(|m| metric(m.client_port, "etcd_debugging_mvcc_watcher_total"))
        .collect();
    let victim = (0..3)
        .max_by(|a, b| watchers[*a].total_cmp(&watchers[*b]))
        .expect("three members");
    assert!(
        watchers[victim] > 1.0,
        "a member holds the proxy's watches: {watchers:?}"
    );
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| c.members[i].endpoint())
        .collect();
    let mut writer = client_of(&c.endpoints()).await;
    for op in 0..450 {
        if op == 150 {
            c.members[victim].kill9();
            writer = client_of(&survivors.join(",")).await;
        }
        let key = format!("k/{}", rng.below(8));
        // A write that fails while the leader moves may or may not have landed: the
        // member's history below is the truth either way.
        if rng.below(4) == 0 {
            let _ = writer.delete(key, None).await;
        } else {
            // Values large enough that the slow stream overflows every buffer on the way.
            let _ = writer
                .put(key, format!("v{op}-{}", "x".repeat(500)), None)
                .await;
        }
        // The readable streams are drained as we go; the slow one is left alone.
        if op % 10 == 0 {
            for (i, s) in streams.iter_mut().enumerate().take(5) {
                while let Ok(Ok(Some(r))) =
                    tokio::time::timeout(Duration::from_millis(1), s.rx.message()).await
                {
                    if is_progress(&r) {
                        continue;
                    }
                    record(i, r, &mut created, &mut events, &mut order);
                }
            }
        }
    }
    let mut reader = client_of(&survivors.join(",")).await;
    let last = reader.get("k/0", None).await.expect("get");
    let last = last.header().expect("header").revision();

    // The member's own history of every key, from a survivor.
    let history_ch = channel(&survivors[0]).await;
    let mut h = Stream::open(&history_ch).await;
    h.create(WatchCreateRequest {
        key: b"k/".to_vec(),
        range_end: prefix_end("k/"),
        start_revision: 1,
        prev_kv: true,
        ..Default::default()
    });
    let mut history = Vec::new();
    h.progress();
    loop {
        let r = h.next().await;
        history.extend(r.events.clone());
        if is_progress(&r) {
            if revision(&r) >= last {
                break;
            }
            h.progress();
        }
    }

    // Each stream: a progress answer at or past the last revision means every event up to
    // it has been delivered on that stream.
    for (i, s) in streams.iter_mut().enumerate() {
        s.progress();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "stream {i} caught up");
            let r = s.next().await;
            if is_progress(&r) {
                if revision(&r) >= last && created[i].len() == specs[i].len() {
                    break;
                }
                s.progress();
                continue;
            }
            record(i, r, &mut created, &mut events, &mut order);
        }
        for (n, id) in order[i].iter().enumerate() {
            let spec = &specs[i][n];
            let from = if spec.start > 0 {
                spec.start
            } else {
                created[i][id] + 1
            };
            let want = owed(&history, spec, from);
            let got = events[i].get(id).cloned().unwrap_or_default();
            assert_eq!(
                got.len(),
                want.len(),
                "stream {i} watcher {id} (key {} prefix {} from {from}): count",
                spec.key,
                spec.prefix
            );
            assert_eq!(
                got, want,
                "stream {i} watcher {id}: every event once, in order"
            );
        }
    }
    assert!(p.metric_sum("oxetcd_proxy_watch_resumes_total", &[]) >= 1.0);
    assert!(p.metric_sum("oxetcd_proxy_watchers_parked_total", &[]) >= 1.0);
    // Watchers from a past revision started on watches of their own and were folded in.
    assert!(p.metric_sum("oxetcd_proxy_watch_merges_total", &[]) >= 1.0);
    let shared = p.metric_sum("oxetcd_proxy_upstream_watchers", &[]);
    assert!(shared < 250.0, "{shared} upstream watches for 225 watchers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_requests_through_the_proxy_name_the_current_revision() {
    let m = Member::start(Kind::Oxetcd);
    let p = Proxy::start(&m.endpoint(), &[]);
    let mut kv = client(&m.endpoint()).await;
    let put = kv.put("a", "1", None).await.expect("put");
    let rev = put.header().expect("header").revision();
    let ch = channel(&p.endpoint()).await;
    // A stream with no watcher: the store's revision.
    let mut s = Stream::open(&ch).await;
    s.progress();
    let r = s.next().await;
    assert!(is_progress(&r), "{r:?}");
    assert_eq!(revision(&r), rev);
    // A watcher from now joins an existing upstream watch: its created header is current.
    let mut other = Stream::open(&ch).await;
    other.create(WatchCreateRequest {
        key: b"a".to_vec(),
        ..Default::default()
    });
    assert!(other.next().await.created);
    let put = kv.put("b", "2", None).await.expect("put");
    let rev = put.header().expect("header").revision();
    s.create(WatchCreateRequest {
        key: b"a".to_vec(),
        ..Default::default()
    });
    let r = s.next().await;
    assert!(r.created);
    assert_eq!(revision(&r), rev, "created at the current revision");
    let put = kv.put("a", "3", None).await.expect("put");
    s.progress();
    let r = s.next().await;
    assert_eq!(r.events.len(), 1, "the event first: {r:?}");
    let r = s.next().await;
    assert!(is_progress(&r));
    assert_eq!(revision(&r), put.header().expect("header").revision());
}

/// A client that does not read is parked by the bytes it holds up, not only by their count:
/// 40 events of 1 MiB each are far fewer than 1,024 responses, yet it is parked, and it still
/// gets every event in order once it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_parked_by_the_bytes_it_holds_up() {
    let m = Member::start(Kind::Oxetcd);
    let p = Proxy::start(&m.endpoint(), &[]);
    let ch = channel(&p.endpoint()).await;
    let mut fast = Stream::open(&ch).await;
    let slow_ch = channel(&p.endpoint()).await;
    let mut slow = Stream::open(&slow_ch).await;
    for s in [&mut fast, &mut slow] {
        s.create(WatchCreateRequest {
            key: b"big".to_vec(),
            ..Default::default()
        });
        assert!(s.next().await.created);
    }
    let mut kv = client(&m.endpoint()).await;
    let mut revs = Vec::new();
    for i in 0..40u8 {
        let put = kv.put("big", vec![i; 1 << 20], None).await.expect("put");
        revs.push(put.header().expect("header").revision());
        // The reading client keeps up, so only the other one holds bytes up.
        let r = fast.next().await;
        assert_eq!(
            r.events[0].kv.as_ref().expect("kv").mod_revision,
            revs[i as usize]
        );
    }
    assert!(
        p.metric_sum("oxetcd_proxy_watchers_parked_total", &[]) >= 1.0,
        "{}",
        p.metrics()
    );
    let mut got = Vec::new();
    while got.len() < revs.len() {
        let r = slow.next().await;
        for e in r.events {
            let kv = e.kv.expect("kv");
            assert_eq!(kv.value[0] as usize, got.len(), "in order, once");
            got.push(kv.mod_revision);
        }
    }
    assert_eq!(got, revs);
}

/// etcd 3.4 answers a progress request at once, even while a watch from a revision is still
/// catching up (its events come from a sync loop, every 100 ms). In front of it, the proxy must
/// not take that answer for the watch having caught up: a watcher from an old revision, beside
/// a watcher from now that it could be merged into, still gets its whole history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_front_of_etcd_34_a_watcher_from_a_revision_gets_its_whole_history() {
    let m = Member::start(Kind::Etcd);
    let p = Proxy::start(&m.endpoint(), &[]);
    let mut kv = client_of(&m.endpoint()).await;
    let first = kv.put("k/0", "v", None).await.expect("put");
    let first = first.header().expect("header").revision();
    for i in 1..100 {
        kv.put(format!("k/{i}"), "v", None).await.expect("put");
    }
    let ch = channel(&p.endpoint()).await;
    let watch = |start_revision| WatchCreateRequest {
        key: b"k/".to_vec(),
        range_end: prefix_end("k/"),
        start_revision,
        ..Default::default()
    };
    // The watcher from a revision first, then one from now on the same prefix (a group the
    // first could be merged into), then a progress request, all within etcd's 100 ms.
    let mut old = Stream::open(&ch).await;
    old.create(watch(first));
    let mut now = Stream::open(&ch).await;
    now.create(watch(0));
    old.progress();
    assert!(now.next().await.created);
    let mut keys = Vec::new();
    while keys.len() < 100 {
        let r = old.next().await;
        assert!(!r.canceled, "{r:?}");
        if r.created || is_progress(&r) {
            continue;
        }
        keys.extend(
            r.events
                .iter()
                .filter_map(|e| e.kv.as_ref())
                .map(|kv| kv.key.clone()),
        );
    }
    let want: Vec<Vec<u8>> = (0..100).map(|i| format!("k/{i}").into_bytes()).collect();
    assert_eq!(keys, want, "every event once, in order");
}
