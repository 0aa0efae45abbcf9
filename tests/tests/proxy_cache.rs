//! The proxy's read cache and read-your-writes: an answer through the proxy is the state of
//! the keys at the revision it names, whoever wrote them and wherever, and a linearizable one
//! is no older than any write acknowledged before it was asked; a write made on a member
//! reaches serializable readers of the proxy within a bound; a client sees its own writes; and
//! nothing is served from the cache while the cluster runs with auth.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, GetResponse};
use oxetcd_tests::{client, Cluster, Kind, Member, Proxy, Rng};

const KEYS: u64 = 8;

fn key(i: u64) -> String {
    format!("c/{i}")
}

fn serializable() -> Option<GetOptions> {
    Some(GetOptions::new().with_serializable())
}

/// What a read saw: its header revision and (key, mod revision, value) of each key.
type Seen = (i64, Vec<(String, i64, Vec<u8>)>);

fn seen(r: &GetResponse) -> Seen {
    let rev = r.header().map_or(0, |h| h.revision());
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.mod_revision(),
                kv.value().to_vec(),
            )
        })
        .collect();
    (rev, kvs)
}

/// A client of each member.
async fn clients_of(c: &Cluster) -> Vec<etcd_client::Client> {
    let mut clients = Vec::new();
    for m in &c.members {
        clients.push(client(&m.endpoint()).await);
    }
    clients
}

/// Puts `key` = `value`; returns the write's revision.
async fn put_at(cl: &mut etcd_client::Client, key: &str, value: &str) -> i64 {
    cl.put(key, value, None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision()
}

/// A change to a key: its revision, and its value (`None`: deleted).
type Change = (i64, Option<Vec<u8>>);

/// Random puts and deletes on `c/*` through `cl` until `n` were made; returns each change as
/// (revision, key, value or deleted). `acked` is raised to each answer's revision.
async fn write(
    mut cl: etcd_client::Client,
    who: String,
    n: usize,
    mut rng: Rng,
    acked: Arc<AtomicI64>,
) -> Vec<(i64, String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let k = key(rng.below(KEYS));
        if rng.below(5) == 0 {
            let r = cl.delete(k.as_str(), None).await.expect("delete");
            let rev = r.header().expect("header").revision();
            acked.fetch_max(rev, Ordering::SeqCst);
            if r.deleted() > 0 {
                out.push((rev, k, None));
            }
        } else {
            let v = format!("{who}-{i}").into_bytes();
            let r = cl.put(k.as_str(), v.clone(), None).await.expect("put");
            let rev = r.header().expect("header").revision();
            acked.fetch_max(rev, Ordering::SeqCst);
            out.push((rev, k, Some(v)));
        }
    }
    out
}

/// Every answer through the proxy, cached or not, is the state of the keys at its header
/// revision: checked against the history of every change, made on members directly and
/// through the proxy, while readers read single keys and the prefix. A linearizable answer's
/// revision is at least that of every write acknowledged before the read was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_through_the_proxy_is_the_state_at_its_revision() {
    let mut rng = Rng::seeded();
    let c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let acked = Arc::new(AtomicI64::new(0));
    let mut writers = Vec::new();
    for (i, m) in c.members.iter().enumerate() {
        let cl = client(&m.endpoint()).await;
        writers.push(tokio::spawn(write(
            cl,
            format!("m{i}"),
            120,
            rng.fork(),
            acked.clone(),
        )));
    }
    let cl = client(&p.endpoint()).await;
    writers.push(tokio::spawn(write(
        cl,
        "proxy".into(),
        120,
        rng.fork(),
        acked.clone(),
    )));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut cl = client(&p.endpoint()).await;
        let done = done.clone();
        let acked = acked.clone();
        let mut rng = rng.fork();
        readers.push(tokio::spawn(async move {
            // (key, or the prefix; the floor of a linearizable read; what it saw)
            let mut reads: Vec<(Option<String>, Option<i64>, Seen)> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                // Several reads of one key in a row, so some are answered from the cache.
                let k = rng.below(KEYS + 1);
                let linearizable = rng.below(2) == 0;
                for _ in 0..3 {
                    let floor = linearizable.then(|| acked.load(Ordering::SeqCst));
                    let mut opts = GetOptions::new();
                    if !linearizable {
                        opts = opts.with_serializable();
                    }
                    if k == KEYS {
                        let r = cl
                            .get("c/", Some(opts.with_prefix()))
                            .await
                            .expect("get prefix");
                        reads.push((None, floor, seen(&r)));
                    } else {
                        let r = cl.get(key(k), Some(opts)).await.expect("get");
                        reads.push((Some(key(k)), floor, seen(&r)));
                    }
                }
            }
            reads
        }));
    }
    let mut history: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for w in writers {
        for (rev, k, v) in w.await.expect("writer") {
            history.entry(k).or_default().push((rev, v));
        }
    }
    done.store(true, Ordering::Relaxed);
    for changes in history.values_mut() {
        changes.sort_by_key(|(rev, _)| *rev);
    }
    // The key's (mod revision, value) at `rev`, if it exists then.
    let at = |k: &str, rev: i64| -> Option<(i64, Vec<u8>)> {
        let changes = history.get(k)?;
        let (r, v) = changes.iter().rev().find(|(r, _)| *r <= rev)?;
        v.as_ref().map(|v| (*r, v.clone()))
    };
    let mut checked = 0;
    for r in readers {
        for (one, floor, (rev, kvs)) in r.await.expect("reader") {
            if let Some(floor) = floor {
                assert!(
                    rev >= floor,
                    "a linearizable read at revision {rev}, sent after a write at {floor}"
                );
            }
            let keys: Vec<String> = match one {
                Some(k) => vec![k],
                None => (0..KEYS).map(key).collect(),
            };
            for k in keys {
                let got = kvs
                    .iter()
                    .find(|(key, ..)| *key == k)
                    .map(|(_, m, v)| (*m, v.clone()));
                assert_eq!(got, at(&k, rev), "{k} in an answer at revision {rev}");
            }
            checked += 1;
        }
    }
    let hits = p.metric_sum("oxetcd_proxy_cache_hits_total", &[]);
    let barriers = p.metric_sum("oxetcd_proxy_cache_read_barriers_total", &[]);
    println!("{checked} answers checked, {hits} from the cache, {barriers} read barriers");
    assert!(hits > 0.0, "no answer came from the cache\n{}", p.metrics());
    assert!(
        barriers > 0.0,
        "no linearizable read came from the cache\n{}",
        p.metrics()
    );
}

/// A linearizable read through the proxy sees a write acknowledged by a member just before,
/// though the proxy did not see the write pass; reads between writes come from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_through_the_proxy_sees_the_write_just_made_on_a_member() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let mut reader = client(&p.endpoint()).await;
    let mut members = clients_of(&c).await;
    for i in 0..40 {
        let v = format!("v{i}");
        let rev = put_at(&mut members[i % 3], "lin", &v).await;
        for _ in 0..3 {
            let r = reader.get("lin", None).await.expect("get");
            assert!(r.header().expect("header").revision() >= rev);
            assert_eq!(
                r.kvs().first().map(|kv| kv.value()),
                Some(v.as_bytes()),
                "write {i} (revision {rev}) not seen by a linearizable read after it"
            );
        }
    }
    // Each value's second and third reads could come from the cache.
    let hits = p.metric_sum("oxetcd_proxy_cache_hits_total", &[]);
    assert!(hits > 0.0, "no read came from the cache\n{}", p.metrics());
}

/// A write made on a member, not through the proxy, is seen by the proxy's readers within a
/// bound, and between writes they are answered from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_member_reaches_the_proxys_readers_promptly() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    let mut reader = client(&p.endpoint()).await;
    let mut members = clients_of(&c).await;
    let mut waits = Vec::new();
    for i in 0..30 {
        let v = format!("v{i}");
        let rev = put_at(&mut members[i % 3], "fresh", &v).await;
        let written = Instant::now();
        loop {
            let r = reader.get("fresh", serializable()).await.expect("get");
            if r.kvs().first().is_some_and(|kv| kv.value() == v.as_bytes()) {
                assert!(r.header().expect("header").revision() >= rev);
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "write {i} not seen through the proxy after 2 s\n{}",
                p.log()
            );
        }
        waits.push(written.elapsed());
        let before = p.metric_sum("oxetcd_proxy_cache_hits_total", &[]);
        for _ in 0..5 {
            let r = reader.get("fresh", serializable()).await.expect("get");
            assert_eq!(r.kvs()[0].value(), v.as_bytes());
        }
        assert!(p.metric_sum("oxetcd_proxy_cache_hits_total", &[]) > before);
    }
    waits.sort();
    println!(
        "seen after: median {:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
}

/// Clients that write through the proxy and read serializably through it see their own
/// writes, under writes made on the members beside them; with the cache and without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_writes_through_the_proxy_under_load() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    let cached = Proxy::start(&c.endpoints(), &[]);
    let uncached = Proxy::start(&c.endpoints(), &["--read-cache=false"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (i, m) in c.members.iter().enumerate() {
        let mut cl = client(&m.endpoint()).await;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                cl.put(format!("load/{i}/{}", n % 50), vec![b'x'; 512], None)
                    .await
                    .expect("load put");
                n += 1;
            }
        }));
    }
    let mut clients = Vec::new();
    for (j, p) in [&cached, &uncached, &cached, &uncached].iter().enumerate() {
        let mut cl = client(&p.endpoint()).await;
        clients.push(tokio::spawn(async move {
            let k = format!("ryw/{j}");
            for i in 0..60 {
                let v = format!("{i}");
                let rev = cl
                    .put(k.as_str(), v.as_str(), None)
                    .await
                    .expect("put")
                    .header()
                    .expect("header")
                    .revision();
                let r = cl.get(k.as_str(), serializable()).await.expect("get");
                let h = r.header().expect("header").revision();
                assert!(h >= rev, "{k}: wrote at {rev}, read at {h}");
                assert_eq!(
                    r.kvs().first().map(|kv| kv.value()),
                    Some(v.as_bytes()),
                    "{k}"
                );
                let r = cl
                    .get(
                        "ryw/",
                        Some(GetOptions::new().with_serializable().with_prefix()),
                    )
                    .await
                    .expect("get prefix");
                let mine = r.kvs().iter().find(|kv| kv.key() == k.as_bytes());
                assert_eq!(
                    mine.map(|kv| kv.value()),
                    Some(v.as_bytes()),
                    "{k} in the prefix"
                );
            }
        }));
    }
    for t in clients {
        t.await.expect("client");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.expect("load");
    }
}

/// With auth on, the cache answers nothing: a read without a token gets the member's error,
/// not a cached answer from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_off_while_the_cluster_runs_with_auth() {
    let m = Member::start(Kind::Oxetcd);
    let p = Proxy::start(&m.endpoint(), &[]);
    p.etcdctl(&["put", "k", "v"]).ok();
    for _ in 0..3 {
        assert_eq!(
            p.etcdctl(&["get", "k", "--consistency=s", "--print-value-only"])
                .ok(),
            "v\n"
        );
    }
    assert!(p.metric_sum("oxetcd_proxy_cache_hits_total", &[]) >= 1.0);
    m.etcdctl(&["user", "add", "root:pw"]).ok();
    m.etcdctl(&["auth", "enable"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric_sum("oxetcd_proxy_cache_up", &[]) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "cache still up under auth\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let denied = p.etcdctl(&["get", "k", "--consistency=s"]);
    assert!(
        denied
            .error_line()
            .is_some_and(|l| l.contains("user name is empty")),
        "{denied:?}"
    );
    assert_eq!(
        p.etcdctl(&[
            "--user=root:pw",
            "get",
            "k",
            "--consistency=s",
            "--print-value-only"
        ])
        .ok(),
        "v\n"
    );
}

/// An AuthEnable through the proxy turns the cache off before auth can be on (the next read
/// without a token is refused, with nothing waited for); one that fails lets it come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_enabled_through_the_proxy_stops_the_cache_at_once() {
    let m = Member::start(Kind::Oxetcd);
    let p = Proxy::start(&m.endpoint(), &[]);
    p.etcdctl(&["put", "k", "v"]).ok();
    let cached = |p: &Proxy| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let hits = p.metric_sum("oxetcd_proxy_cache_hits_total", &[]);
        loop {
            assert!(Instant::now() < deadline, "no cache hit\n{}", p.log());
            assert_eq!(
                p.etcdctl(&["get", "k", "--consistency=s", "--print-value-only"])
                    .ok(),
                "v\n"
            );
            if p.metric_sum("oxetcd_proxy_cache_hits_total", &[]) > hits {
                return;
            }
        }
    };
    cached(&p);
    let refused = p.etcdctl(&["auth", "enable"]);
    assert!(
        refused
            .error_line()
            .is_some_and(|l| l.contains("root user does not exist")),
        "{refused:?}"
    );
    cached(&p);
    p.etcdctl(&["user", "add", "root:pw"]).ok();
    p.etcdctl(&["auth", "enable"]).ok();
    let denied = p.etcdctl(&["get", "k", "--consistency=s"]);
    assert!(
        denied
            .error_line()
            .is_some_and(|l| l.contains("user name is empty")),
        "{denied:?}"
    );
}

/// With `--namespace` the cache's watch sees no event for a write outside the namespace, yet
/// it moves the revision a linearizable read must reach: the read asks the watch for progress
/// and is still answered from the cache, at a revision covering that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_through_a_namespace_follows_writes_outside_it() {
    let m = Member::start(Kind::Oxetcd);
    let p = Proxy::start(&m.endpoint(), &["--namespace=ns/"]);
    let mut direct = client(&m.endpoint()).await;
    let mut reader = client(&p.endpoint()).await;
    reader.put("k", "v", None).await.expect("put");
    // The first read fills the cache.
    reader.get("k", None).await.expect("get");
    for i in 0..10 {
        let rev = direct
            .put("outside", format!("{i}"), None)
            .await
            .expect("put outside")
            .header()
            .expect("header")
            .revision();
        let hits = p.metric_sum("oxetcd_proxy_cache_hits_total", &[]);
        let r = reader.get("k", None).await.expect("get");
        assert!(r.header().expect("header").revision() >= rev);
        assert_eq!(r.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
        assert!(
            p.metric_sum("oxetcd_proxy_cache_hits_total", &[]) > hits,
            "read {i} not answered from the cache\n{}",
            p.metrics()
        );
    }
}

/// kill -9 of the member the cache's watch and read barrier are on, under linearizable reads
/// through the proxy and writes made on the members: every read answers the state of its key
/// at its revision, no older than any write acknowledged before it was sent, and the cache
/// serves linearizable reads again from another member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_through_the_proxy_stay_current_across_a_kill_of_the_feeds_member() {
    const READERS: usize = 2;
    let mut rng = Rng::seeded();
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let p = Proxy::start(&c.endpoints(), &[]);
    // The member the feed follows: the last "read cache live" line names it.
    let feed_member = |p: &Proxy| -> Option<String> {
        let log = p.log();
        let line = log.lines().rev().find(|l| l.contains("read cache live"))?;
        let at = line.find("member=")? + "member=".len();
        Some(line[at..].split_whitespace().next()?.to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric_sum("oxetcd_proxy_cache_up", &[]) != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the cache is not live\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fed = feed_member(&p).expect("the feed's member in the log");
    let victim = c
        .members
        .iter()
        .position(|m| m.endpoint() == fed)
        .expect("the feed's member");
    let acked = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writes on the members (a client of all of them, which fails over); only acknowledged
    // ones count.
    let eps: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("http://{}", m.endpoint()))
        .collect();
    let mut wc = etcd_client::Client::connect(eps, None)
        .await
        .expect("connect");
    let writer = {
        let (acked, stop, mut rng) = (acked.clone(), stop.clone(), rng.fork());
        tokio::spawn(async move {
            let mut history: Vec<(i64, String, Vec<u8>)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = key(rng.below(KEYS));
                let v = format!("w-{i}").into_bytes();
                i += 1;
                if let Ok(r) = wc.put(k.as_str(), v.clone(), None).await {
                    let rev = r.header().expect("header").revision();
                    acked.fetch_max(rev, Ordering::SeqCst);
                    history.push((rev, k, v));
                }
            }
            history
        })
    };
    let reads = Arc::new(AtomicI64::new(0));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut cl = client(&p.endpoint()).await;
        let (acked, stop, reads, mut rng) =
            (acked.clone(), stop.clone(), reads.clone(), rng.fork());
        readers.push(tokio::spawn(async move {
            let mut seen_all = Vec::new();
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let k = key(rng.below(KEYS));
                let floor = acked.load(Ordering::SeqCst);
                match cl.get(k.as_str(), None).await {
                    Ok(r) => seen_all.push((k, floor, seen(&r))),
                    Err(e) => failed.push(e.to_string()),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            (seen_all, failed)
        }));
    }
    let until = |n: i64| {
        let reads = reads.clone();
        async move {
            while reads.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    until(300).await;
    c.members[victim].kill9();
    let barriers_at_kill = p.metric_sum("oxetcd_proxy_cache_read_barriers_total", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The feed moves to another member, and linearizable reads come from the cache again.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let moved = feed_member(&p).is_some_and(|m| m != fed);
        if moved
            && p.metric_sum("oxetcd_proxy_cache_read_barriers_total", &[]) > barriers_at_kill + 50.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no linearizable read from the cache after the kill\n{}",
            p.log()
        );
    }
    let after = reads.load(Ordering::Relaxed);
    until(after + 300).await;
    stop.store(true, Ordering::Relaxed);
    let history = writer.await.expect("writer");
    let mut by_key: BTreeMap<String, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for (rev, k, v) in history {
        by_key.entry(k).or_default().push((rev, v));
    }
    for changes in by_key.values_mut() {
        changes.sort_by_key(|(rev, _)| *rev);
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for r in readers {
        let (all, failed) = r.await.expect("reader");
        failures.extend(failed);
        for (k, floor, (rev, kvs)) in all {
            assert!(
                rev >= floor,
                "{k}: a linearizable read at revision {rev}, sent after a write at {floor}"
            );
            // Only acknowledged writes are known: a write that failed may have been applied,
            // so a value must be one written to this key at or before `rev`, and the newest
            // acknowledged one at or before `rev` must not be newer than it.
            let got = kvs.first().map(|(_, m, v)| (*m, v.clone()));
            let known = by_key.get(&k).cloned().unwrap_or_default();
            let newest_acked = known.iter().rev().find(|(r, _)| *r <= rev);
            if let Some((m, v)) = &got {
                assert!(*m <= rev, "{k}: modified at {m}, read at {rev}");
                if let Some(expected) = known.iter().find(|(r, _)| r == m) {
                    assert_eq!(&expected.1, v, "{k} at {m}");
                }
                if let Some((r, _)) = newest_acked {
                    assert!(
                        m >= r,
                        "{k}: read {m} at {rev}, though {r} was acknowledged"
                    );
                }
            } else {
                assert!(newest_acked.is_none(), "{k}: missing at {rev}");
            }
            checked += 1;
        }
    }
    println!("{checked} linearizable reads checked; failed: {failures:?}");
    // A read fails only if its member died while sending the answer (the proxy passes
    // answers on as they come and cannot send them again then): at most one per reader.
    assert!(
        failures.len() <= READERS
            && failures
                .iter()
                .all(|e| e.contains("error reading a body from connection")),
        "failed reads: {failures:?}\n{}",
        p.log()
    );
}
