//! kube-apiserver's etcd3 storage layer (k8s.io/apiserver/pkg/storage/etcd3: store.go,
//! watcher.go, compact.go, and etcd's client/v3/kubernetes helpers it calls) as a sequence of
//! gRPC calls through the `etcd-client` crate: Create, Get, GuaranteedUpdate (OptimisticPut),
//! two racing updates, OptimisticDelete, paged and pinned List, Count, the watch from
//! `listRev + 1` with `prev_kv` and progress requests, the compactor's `compact_rev_key` loop
//! and its compacted errors, the health check and event leases. The same deterministic script
//! runs against a fresh real etcd 3.4 member (the oracle) and a fresh oxetcd member, and again
//! through `oxetcd-proxy` in front of a 3-member oxetcd cluster; the transcripts of what the
//! client sees must be equal once what differs between any two clusters (cluster and member
//! IDs, raft terms, lease IDs) is replaced by placeholders.

use std::fmt::Write as _;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, Error, Event, EventType, GetOptions, GetResponse,
    KeyValue, PutOptions, ResponseHeader, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
    WatchResponse, WatchStream,
};
use oxetcd_tests::{client, first_difference, Cluster, Kind, Member, Proxy};
use tokio::time::timeout;

/// Upper bound for anything the script awaits; generous for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(20);

/// The apiserver's key layout: `<prefix>/<resource>/<namespace>/<name>` with the default
/// `--etcd-prefix=/registry`.
const PODS: &str = "/registry/pods/";
const CONFIGMAPS: &str = "/registry/configmaps/";
const EVENTS: &str = "/registry/events/";
/// compact.go's `compactRevKey`, outside the prefix.
const COMPACT_REV_KEY: &str = "compact_rev_key";
/// The storage health check reads `path.Join("/", prefix, "health")`.
const HEALTH: &str = "/registry/health";

fn pod(name: &str) -> String {
    format!("{PODS}{name}")
}

/// `clientv3.GetPrefixRangeEnd`: the prefix with its last byte incremented.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.last_mut().expect("non-empty prefix");
    *last += 1;
    end
}

/// What the client saw, one line per call, plus the lease IDs granted so far: a lease is
/// written by its position (`L1`, `L2`), as etcd derives lease IDs from its member ID and the
/// clock, so two clusters never grant the same IDs.
#[derive(Default)]
struct Transcript {
    out: String,
    leases: Vec<i64>,
}

/// A header field that differs between any two clusters: `N` when set, `0` when not, so an
/// answer that leaves it unset where etcd sets it (or the reverse) still shows.
fn id(v: u64) -> &'static str {
    if v == 0 {
        "0"
    } else {
        "N"
    }
}

fn header(h: Option<&ResponseHeader>) -> String {
    match h {
        None => "header=none".to_string(),
        Some(h) => format!(
            "rev={} [cluster_id={} member_id={} raft_term={}]",
            h.revision(),
            id(h.cluster_id()),
            id(h.member_id()),
            id(h.raft_term())
        ),
    }
}

fn error(e: &Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("error {:?}: {:?}", s.code(), s.message()),
        other => format!("error (not a gRPC status): {other}"),
    }
}

fn event_type(e: &Event) -> &'static str {
    match e.event_type() {
        EventType::Put => "PUT",
        EventType::Delete => "DELETE",
    }
}

impl Transcript {
    fn line(&mut self, label: &str, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "{label}: {}", text.as_ref());
    }

    /// The value of a call the rest of the script needs; panics with the transcript so far if
    /// it failed.
    fn must<T>(&self, label: &str, r: Result<T, Error>) -> T {
        r.unwrap_or_else(|e| panic!("{label}: {}\ntranscript so far:\n{}", error(&e), self.out))
    }

    fn lease(&self, id: i64) -> String {
        match self.leases.iter().position(|l| *l == id) {
            _ if id == 0 => "0".to_string(),
            Some(i) => format!("L{}", i + 1),
            None => format!("unknown lease {id}"),
        }
    }

    fn kv(&self, kv: &KeyValue) -> String {
        format!(
            "{}={:?} create={} mod={} version={} lease={}",
            String::from_utf8_lossy(kv.key()),
            String::from_utf8_lossy(kv.value()),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
            self.lease(kv.lease())
        )
    }

    fn range(&self, r: &GetResponse) -> String {
        let kvs: Vec<String> = r.kvs().iter().map(|kv| self.kv(kv)).collect();
        format!(
            "{} count={} more={} kvs=[{}]",
            header(r.header()),
            r.count(),
            r.more(),
            kvs.join(", ")
        )
    }

    fn txn(&self, r: &TxnResponse) -> String {
        let ops: Vec<String> = r
            .op_responses()
            .iter()
            .map(|op| match op {
                TxnOpResponse::Put(p) => format!(
                    "put{{{} prev={}}}",
                    header(p.header()),
                    p.prev_key().map(|kv| self.kv(kv)).unwrap_or_default()
                ),
                TxnOpResponse::Get(g) => format!("range{{{}}}", self.range(g)),
                TxnOpResponse::Delete(d) => {
                    let prev: Vec<String> = d.prev_kvs().iter().map(|kv| self.kv(kv)).collect();
                    format!(
                        "delete{{{} deleted={} prev=[{}]}}",
                        header(d.header()),
                        d.deleted(),
                        prev.join(", ")
                    )
                }
                TxnOpResponse::Txn(t) => format!("txn{{{}}}", self.txn(t)),
            })
            .collect();
        format!(
            "{} succeeded={} ops=[{}]",
            header(r.header()),
            r.succeeded(),
            ops.join(", ")
        )
    }

    /// A watch response without its events (created, canceled, progress).
    fn watch_response(&self, r: &WatchResponse) -> String {
        format!(
            "watch_id={} created={} canceled={} compact_revision={} cancel_reason={:?} {} events={}",
            r.watch_id(),
            r.created(),
            r.canceled(),
            r.compact_revision(),
            r.cancel_reason(),
            header(r.header()),
            r.events().len()
        )
    }

    fn event(&self, watch_id: i64, e: &Event) -> String {
        format!(
            "watch_id={watch_id} {} kv={{{}}} prev_kv={{{}}}",
            event_type(e),
            e.kv().map(|kv| self.kv(kv)).unwrap_or_default(),
            e.prev_kv().map(|kv| self.kv(kv)).unwrap_or_default()
        )
    }
}

// The apiserver's calls, as its storage layer builds them.

/// store.go Create: `If(ModRevision(key) == 0).Then(OpPut(key, value, lease))`, with the
/// `Else(OpGet(key))` of etcd's kubernetes `OptimisticPut(..., 0, GetOnFailure)`.
async fn create(c: &mut Client, key: &str, value: &str, lease: i64) -> Result<TxnResponse, Error> {
    optimistic_put(c, key, value, 0, lease).await
}

/// GuaranteedUpdate through `OptimisticPut(key, value, expectedRevision, GetOnFailure)`:
/// `If(ModRevision(key) == expected).Then(OpPut(key, value, WithLease(lease))).Else(OpGet(key))`.
async fn optimistic_put(
    c: &mut Client,
    key: &str,
    value: &str,
    expected: i64,
    lease: i64,
) -> Result<TxnResponse, Error> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    c.txn(txn).await
}

/// store.go conditionalDelete / `OptimisticDelete`:
/// `If(ModRevision(key) == expected).Then(OpDelete(key)).Else(OpGet(key))`.
async fn optimistic_delete(c: &mut Client, key: &str, expected: i64) -> Result<TxnResponse, Error> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
        .and_then([TxnOp::delete(key, None)])
        .or_else([TxnOp::get(key, None)]);
    c.txn(txn).await
}

/// The kubernetes client's Get: `Get(key, WithRev(rev), WithLimit(1))`.
async fn get(c: &mut Client, key: &str, rev: i64) -> Result<GetResponse, Error> {
    let opts = GetOptions::new().with_revision(rev).with_limit(1);
    c.get(key, Some(opts)).await
}

/// The kubernetes client's List: `Get(continue or prefix, WithRange(GetPrefixRangeEnd(prefix)),
/// WithLimit(limit), WithRev(rev))`.
async fn list(
    c: &mut Client,
    prefix: &str,
    start: Vec<u8>,
    limit: i64,
    rev: i64,
) -> Result<GetResponse, Error> {
    let opts = GetOptions::new()
        .with_range(prefix_end(prefix))
        .with_limit(limit)
        .with_revision(rev);
    c.get(start, Some(opts)).await
}

/// The kubernetes client's Count: `Get(prefix, WithPrefix(), WithCountOnly())`.
async fn count(c: &mut Client, prefix: &str) -> Result<GetResponse, Error> {
    c.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await
}

/// compact.go's compact(): `If(Version(compact_rev_key) == expectVersion)
/// .Then(OpPut(compact_rev_key, rev)).Else(OpGet(compact_rev_key))`, then, if the CAS won and
/// `rev != 0`, `Compact(rev)`. Returns the compactor's next (version, rev).
async fn compactor_round(
    t: &mut Transcript,
    label: &str,
    c: &mut Client,
    expect_version: i64,
    rev: i64,
) -> (i64, i64) {
    let txn = Txn::new()
        .when([Compare::version(
            COMPACT_REV_KEY,
            CompareOp::Equal,
            expect_version,
        )])
        .and_then([TxnOp::put(COMPACT_REV_KEY, rev.to_string(), None)])
        .or_else([TxnOp::get(COMPACT_REV_KEY, None)]);
    let r = t.must(label, c.txn(txn).await);
    t.line(
        &format!("{label}: txn version({COMPACT_REV_KEY})=={expect_version} put {rev}"),
        t.txn(&r),
    );
    let current_rev = r.header().expect("txn header").revision();
    if !r.succeeded() {
        let version = match &r.op_responses()[0] {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.version()).unwrap_or(0),
            other => panic!("{label}: a failed compaction CAS answered {other:?}"),
        };
        return (version, current_rev);
    }
    if rev != 0 {
        let compacted = c.compact(rev, None).await;
        let text = match &compacted {
            Ok(resp) => header(resp.header()),
            Err(e) => error(e),
        };
        t.line(&format!("{label}: compact {rev}"), text);
    }
    (expect_version + 1, current_rev)
}

/// The next response on a watch stream.
async fn next(t: &Transcript, stream: &mut WatchStream, what: &str) -> WatchResponse {
    match timeout(WAIT, stream.message()).await {
        Err(_) => panic!(
            "{what}: no watch response in {WAIT:?}\ntranscript:\n{}",
            t.out
        ),
        Ok(Err(e)) => panic!(
            "{what}: watch stream: {}\ntranscript:\n{}",
            error(&e),
            t.out
        ),
        Ok(Ok(None)) => panic!("{what}: watch stream ended\ntranscript:\n{}", t.out),
        Ok(Ok(Some(r))) => r,
    }
}

/// Reads the stream until it has delivered the events up to revision `rev`, recording each
/// event on its own line (how the server groups events into responses is its business) and
/// any response that is not events.
async fn events_until(t: &mut Transcript, stream: &mut WatchStream, rev: i64, what: &str) {
    let mut seen = 0;
    while seen < rev {
        let r = next(t, stream, what).await;
        if r.events().is_empty() || r.created() || r.canceled() {
            let line = t.watch_response(&r);
            t.line(&format!("{what}: unexpected response"), line);
        }
        for e in r.events() {
            let line = t.event(r.watch_id(), e);
            t.line(what, line);
            seen = seen.max(e.kv().map(|kv| kv.mod_revision()).unwrap_or(0));
        }
    }
}

/// The revision in a response's header.
fn rev(h: Option<&ResponseHeader>) -> i64 {
    h.expect("response header").revision()
}

fn txn_rev(r: &TxnResponse) -> i64 {
    rev(r.header())
}

/// The kv a failed OptimisticPut/Delete read back (its `Else(OpGet(key))`).
fn read_back(r: &TxnResponse) -> Option<KeyValue> {
    match r.op_responses().first() {
        Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
        _ => None,
    }
}

/// The whole script against one endpoint (a member or a proxy); the transcript.
async fn script(endpoint: &str) -> String {
    let mut t = Transcript::default();
    // One apiserver's client, a second apiserver's, and the watch client: the apiserver
    // watches with `clientv3.WithRequireLeader(ctx)`.
    let mut c = client(endpoint).await;
    let mut c2 = client(endpoint).await;
    let mut w = Client::connect(
        [format!("http://{endpoint}")],
        Some(ConnectOptions::new().with_require_leader(true)),
    )
    .await
    .expect("connect the watch client");

    // 1. Create: pods, and an event on a lease (the apiserver's lease manager grants leases
    // for objects with a TTL, events above all).
    let mut created_all = 0;
    for name in [
        "default/a",
        "default/b",
        "default/c",
        "kube-system/d",
        "kube-system/e",
        "kube-system/f",
    ] {
        let r = t.must(
            "create",
            create(&mut c, &pod(name), &format!("{name} v1"), 0).await,
        );
        t.line(&format!("create {name}"), t.txn(&r));
        created_all = txn_rev(&r);
    }
    let l1 = t.must("lease grant", c.lease_grant(60, None).await);
    t.leases.push(l1.id());
    t.line(
        "lease grant 60",
        format!("{} ttl={} id=L1", header(l1.header()), l1.ttl()),
    );
    let event_a = format!("{EVENTS}default/a.1");
    let r = t.must(
        "create event",
        create(&mut c, &event_a, "event a", l1.id()).await,
    );
    t.line("create event with L1", t.txn(&r));
    let r = t.must(
        "create again",
        create(&mut c, &pod("default/a"), "dup", 0).await,
    );
    t.line("create default/a again", t.txn(&r));

    // 2. Get, of a key that is there, one that is not, and at an older revision.
    let r = t.must("get", get(&mut c, &pod("default/a"), 0).await);
    t.line("get default/a", t.range(&r));
    let known_a = r.kvs()[0].mod_revision();
    let r = t.must("get missing", get(&mut c, &pod("default/missing"), 0).await);
    t.line("get default/missing", t.range(&r));
    // default/b at the revision that created default/a: before default/b was created.
    let r = t.must("get at rev", get(&mut c, &pod("default/b"), known_a).await);
    t.line(&format!("get default/b at {known_a}"), t.range(&r));
    let r = t.must("get at rev", get(&mut c, &pod("default/a"), known_a).await);
    t.line(&format!("get default/a at {known_a}"), t.range(&r));

    // 3. GuaranteedUpdate: with the revision just read (wins), then with it again (stale:
    // loses and reads back the current object).
    let r = t.must(
        "update",
        optimistic_put(&mut c, &pod("default/a"), "a v2", known_a, 0).await,
    );
    t.line(&format!("update default/a if mod=={known_a}"), t.txn(&r));
    let r = t.must(
        "stale",
        optimistic_put(&mut c, &pod("default/a"), "a v3", known_a, 0).await,
    );
    t.line(
        &format!("update default/a if mod=={known_a} (stale)"),
        t.txn(&r),
    );

    // 4. Two apiservers update the same object from the same revision at the same time.
    let b = pod("default/b");
    let r1 = t.must("get b", get(&mut c, &b, 0).await);
    let r2 = t.must("get b", get(&mut c2, &b, 0).await);
    let known_b = r1.kvs()[0].mod_revision();
    t.line(
        "both read default/b",
        format!(
            "mod={known_b} same={}",
            r2.kvs()[0].mod_revision() == known_b
        ),
    );
    let (x, y) = tokio::join!(
        optimistic_put(&mut c, &b, "b from apiserver 1", known_b, 0),
        optimistic_put(&mut c2, &b, "b from apiserver 2", known_b, 0)
    );
    let (x, y) = (t.must("race 1", x), t.must("race 2", y));
    let winners = [&x, &y].iter().filter(|r| r.succeeded()).count();
    let mut revs = [txn_rev(&x), txn_rev(&y)];
    revs.sort();
    let loser_read = [&x, &y]
        .iter()
        .find(|r| !r.succeeded())
        .and_then(|r| read_back(r));
    t.line(
        "racing updates",
        format!(
            "succeeded={winners} header revs={revs:?} loser read back {}",
            loser_read
                .as_ref()
                .map(|kv| format!("mod={} version={}", kv.mod_revision(), kv.version()))
                .unwrap_or_default()
        ),
    );
    let r = t.must("get b", get(&mut c, &b, 0).await);
    let kv = &r.kvs()[0];
    t.line(
        "get default/b after the race",
        format!(
            "{} mod={} version={} value is a racer's={}",
            header(r.header()),
            kv.mod_revision(),
            kv.version(),
            kv.value().starts_with(b"b from apiserver ")
        ),
    );
    // GuaranteedUpdate's conflict loop: the loser tries again from the object it read back.
    let known = loser_read.map(|kv| kv.mod_revision()).unwrap_or(0);
    let r = t.must("retry", optimistic_put(&mut c, &b, "b v3", known, 0).await);
    t.line(
        "the loser updates default/b again from what it read back",
        t.txn(&r),
    );

    // 5. Delete: stale revision (reads back), right revision, and again once gone.
    let cpod = pod("default/c");
    let r = t.must("get c", get(&mut c, &cpod, 0).await);
    let known_c = r.kvs()[0].mod_revision();
    for expected in [known_c - 1, known_c, known_c] {
        let r = t.must("delete", optimistic_delete(&mut c, &cpod, expected).await);
        t.line(&format!("delete default/c if mod=={expected}"), t.txn(&r));
    }

    // 6. List in pages of 2 pinned to the first page's revision (with a write between pages
    // that the pinned pages must not show), Count, and Lists at older and future revisions.
    let first = t.must("list", list(&mut c, PODS, PODS.into(), 2, 0).await);
    t.line("list page 1", t.range(&first));
    let list_rev = rev(first.header());
    let r = t.must(
        "create b2",
        create(&mut c, &pod("default/b2"), "b2 v1", 0).await,
    );
    t.line("create default/b2 between pages", t.txn(&r));
    let mut page = first;
    let mut n = 1;
    while page.more() {
        let mut cont = page
            .kvs()
            .last()
            .expect("a page with more has keys")
            .key()
            .to_vec();
        cont.push(0);
        n += 1;
        page = t.must("list page", list(&mut c, PODS, cont, 2, list_rev).await);
        t.line(&format!("list page {n} at {list_rev}"), t.range(&page));
        assert!(n < 10, "the list does not end:\n{}", t.out);
    }
    let r = t.must("count", count(&mut c, PODS).await);
    t.line("count pods", t.range(&r));
    let r = t.must(
        "list old",
        list(&mut c, PODS, PODS.into(), 0, created_all).await,
    );
    t.line(&format!("list at {created_all}"), t.range(&r));
    let future = rev(r.header()) + 100;
    let text = match list(&mut c, PODS, PODS.into(), 0, future).await {
        Ok(r) => t.range(&r),
        Err(e) => error(&e),
    };
    t.line(&format!("list at {future}"), text);

    // 7. Watch: the watch cache of a quiet resource (configmaps) and of pods from
    // `listRev + 1` with prev_kv and progress_notify, on one stream (the Go client shares a
    // stream between watches with the same context); writes before and after it was created.
    let r = t.must("count configmaps", count(&mut c, CONFIGMAPS).await);
    let cm_rev = rev(r.header());
    let mut stream = t.must(
        "watch configmaps",
        w.watch(
            CONFIGMAPS,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(cm_rev + 1)
                    .with_prev_key()
                    .with_progress_notify(),
            ),
        )
        .await,
    );
    let r = next(&t, &mut stream, "configmaps watch created").await;
    t.line(
        &format!("watch configmaps from {}", cm_rev + 1),
        t.watch_response(&r),
    );
    t.must(
        "watch pods",
        stream
            .watch(
                PODS,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(list_rev + 1)
                        .with_prev_key()
                        .with_progress_notify(),
                ),
            )
            .await,
    );
    let r = next(&t, &mut stream, "pods watch created").await;
    t.line(
        &format!("watch pods from {}", list_rev + 1),
        t.watch_response(&r),
    );
    let g = pod("default/g");
    let r = t.must("create g", create(&mut c, &g, "g v1", 0).await);
    t.line("create default/g", t.txn(&r));
    let r = t.must(
        "update g",
        optimistic_put(&mut c, &g, "g v2", txn_rev(&r), 0).await,
    );
    t.line("update default/g", t.txn(&r));
    let svc = "/registry/services/specs/default/kubernetes";
    let r = t.must("create svc", create(&mut c, svc, "svc v1", 0).await);
    t.line("create a service (outside the watch)", t.txn(&r));
    let r = t.must("get g", get(&mut c, &g, 0).await);
    let r = t.must(
        "delete g",
        optimistic_delete(&mut c, &g, r.kvs()[0].mod_revision()).await,
    );
    t.line("delete default/g", t.txn(&r));
    let current = txn_rev(&r);
    events_until(&mut t, &mut stream, current, "pods watch").await;
    // Quiet now: a progress request is answered with the current revision, after every event
    // up to it (all read above).
    t.must("request progress", stream.request_progress().await);
    let p = next(&t, &mut stream, "progress").await;
    t.line("progress request", t.watch_response(&p));
    let progress_rev = rev(p.header());
    t.line(
        "progress revision",
        format!(
            "{progress_rev} is the current revision={}",
            progress_rev == current
        ),
    );
    let r = t.must("get a", get(&mut c, &pod("default/a"), 0).await);
    let r = t.must(
        "update a",
        optimistic_put(
            &mut c,
            &pod("default/a"),
            "a v3",
            r.kvs()[0].mod_revision(),
            0,
        )
        .await,
    );
    t.line("update default/a after the progress", t.txn(&r));
    let after = txn_rev(&r);
    events_until(&mut t, &mut stream, after, "pods watch").await;
    t.line(
        "next event after the progress",
        format!("rev {after} > progress rev={}", after > progress_rev),
    );

    // 8. The compactor: two apiservers' loops share compact_rev_key's version as their clock;
    // the one that wins the CAS compacts to the revision it saw a round earlier.
    let (v1, r1) = compactor_round(&mut t, "compactor 1 round 1", &mut c, 0, 0).await;
    let r = t.must("get d", get(&mut c, &pod("kube-system/d"), 0).await);
    let r = t.must(
        "update d",
        optimistic_put(
            &mut c,
            &pod("kube-system/d"),
            "d v2",
            r.kvs()[0].mod_revision(),
            0,
        )
        .await,
    );
    t.line("update kube-system/d", t.txn(&r));
    events_until(&mut t, &mut stream, txn_rev(&r), "pods watch").await;
    let (v2, r2) = compactor_round(&mut t, "compactor 2 round 1", &mut c2, 0, 0).await;
    let (v1, _) = compactor_round(&mut t, "compactor 1 round 2", &mut c, v1, r1).await;
    let (v2, _) = compactor_round(&mut t, "compactor 2 round 2", &mut c2, v2, r2).await;
    t.line(
        "compactor clocks",
        format!("compactor 1={v1} compactor 2={v2}"),
    );
    let compacted = r1;
    let below = compacted - 1;
    let text = match get(&mut c, &pod("default/a"), below).await {
        Ok(r) => t.range(&r),
        Err(e) => error(&e),
    };
    t.line(&format!("get default/a at {below}"), text);
    let text = match list(&mut c, PODS, PODS.into(), 2, below).await {
        Ok(r) => t.range(&r),
        Err(e) => error(&e),
    };
    t.line(&format!("list at {below}"), text);
    let r = t.must(
        "list at compacted",
        list(&mut c, PODS, PODS.into(), 2, compacted).await,
    );
    t.line(&format!("list at {compacted}"), t.range(&r));
    // A watch from below the compaction: created, then canceled with the compact revision.
    let mut old = t.must(
        "watch compacted",
        w.watch(
            PODS,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(below)
                    .with_prev_key()
                    .with_progress_notify(),
            ),
        )
        .await,
    );
    for i in 0.. {
        let r = next(&t, &mut old, "compacted watch").await;
        t.line(&format!("watch pods from {below}"), t.watch_response(&r));
        if r.canceled() {
            break;
        }
        assert!(i < 5, "the compacted watch is not canceled:\n{}", t.out);
    }
    drop(old);

    // 9. The storage health check.
    let r = t.must("health", c.get(HEALTH, None).await);
    t.line(&format!("get {HEALTH}"), t.range(&r));

    // 10. An event on its own lease, the lease revoked: the event is gone, L1's is not.
    let l2 = t.must("lease grant", c.lease_grant(60, None).await);
    t.leases.push(l2.id());
    t.line(
        "lease grant 60",
        format!("{} ttl={} id=L2", header(l2.header()), l2.ttl()),
    );
    let event_b = format!("{EVENTS}default/b.1");
    let r = t.must(
        "create event",
        create(&mut c, &event_b, "event b", l2.id()).await,
    );
    t.line("create event with L2", t.txn(&r));
    let r = t.must("revoke", c.lease_revoke(l2.id()).await);
    t.line("lease revoke L2", header(r.header()));
    let r = t.must("get event b", get(&mut c, &event_b, 0).await);
    t.line("get event b", t.range(&r));
    let r = t.must("get event a", get(&mut c, &event_a, 0).await);
    t.line("get event a", t.range(&r));
    // The pods watch saw none of it, and its progress is the revision the revoke made.
    t.must("request progress", stream.request_progress().await);
    let p = next(&t, &mut stream, "progress").await;
    t.line("progress request after the revoke", t.watch_response(&p));

    // What the key space holds at the end.
    let r = t.must(
        "everything",
        c.get("", Some(GetOptions::new().with_all_keys())).await,
    );
    t.line("all keys", t.range(&r));
    t.out
}

/// Runs the script against `endpoint` on a runtime of its own.
fn run(endpoint: &str) -> String {
    tokio::runtime::Runtime::new()
        .expect("tokio runtime")
        .block_on(script(endpoint))
}

fn assert_same(what: &str, etcd: &str, ours: &str) {
    assert!(
        etcd == ours,
        "{what} answers the apiserver's calls differently from etcd at {}\n\
         --- etcd:\n{etcd}\n--- {what}:\n{ours}",
        first_difference(etcd, ours)
    );
}

/// The apiserver's storage calls against a fresh oxetcd member get the answers a fresh real
/// etcd member gives: revisions, kvs, succeeded flags, counts, `more`, watch events and
/// progress, compaction errors, lease deletions.
#[test]
fn apiserver_storage_calls_get_etcds_answers() {
    let etcd = {
        let m = Member::start(Kind::Etcd);
        run(&m.endpoint())
    };
    let m = Member::start(Kind::Oxetcd);
    let ours = run(&m.endpoint());
    assert_same("oxetcd", &etcd, &ours);
}

/// The same calls through `oxetcd-proxy` in front of a 3-member oxetcd cluster get the
/// answers of one real etcd member: revisions count key-space writes only, so the members'
/// raft entries for membership and leadership change nothing a client sees.
#[test]
fn apiserver_storage_calls_through_the_proxy_get_etcds_answers() {
    let etcd = {
        let m = Member::start(Kind::Etcd);
        run(&m.endpoint())
    };
    let cluster = Cluster::start(Kind::Oxetcd, 3);
    let proxy = Proxy::start(&cluster.endpoints(), &[]);
    let ours = run(&proxy.endpoint());
    assert_same("oxetcd-proxy", &etcd, &ours);
}

/// Prints the transcript against real etcd, for a human to read.
#[test]
#[ignore = "prints the transcript for a human to read"]
fn dump_kubernetes_transcript() {
    let m = Member::start(Kind::Etcd);
    println!("{}", run(&m.endpoint()));
}
