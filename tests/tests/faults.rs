//! Faults under load: a paused leader or follower (SIGSTOP, then SIGCONT) must never leave the
//! cluster unable to serve. etcd recovers within a few election timeouts; so must we.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use oxetcd_tests::{client, Cluster, Kind};

/// The members' `--election-timeout` (etcd's default).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the leader stays paused: long enough for the others to elect a new leader.
const PAUSE: Duration = Duration::from_secs(3);
/// Every member must serve a write and a linearizable read again within this long after the
/// old leader resumes: a few election timeouts.
const RECOVERY: Duration = Duration::from_secs(5);
/// Each client request gives up after this long (etcd clients use a few seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    Put,
    Get,
    Cas,
}

/// A request that succeeded: which member served it, what it was, when it started and ended.
type Success = (usize, Op, Instant, Instant);

/// One worker's loop against one member: puts, linearizable gets and compare-and-swap txns on
/// its own key until told to stop. Failures are expected while there is no leader; only the
/// successes are recorded.
async fn worker(
    member: usize,
    endpoint: String,
    id: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<Vec<Success>>>,
) {
    let mut c = client(&endpoint).await;
    let key = format!("w{member}-{id}");
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for op in [Op::Put, Op::Get, Op::Cas] {
            let start = Instant::now();
            let ok = match op {
                Op::Put => tokio::time::timeout(REQUEST_TIMEOUT, c.put(key.clone(), "v", None))
                    .await
                    .is_ok_and(|r| r.is_ok()),
                Op::Get => tokio::time::timeout(REQUEST_TIMEOUT, c.get(key.clone(), None))
                    .await
                    .is_ok_and(|r| r.is_ok()),
                Op::Cas => {
                    let txn = Txn::new()
                        .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                        .and_then([TxnOp::put(key.clone(), format!("{i}"), None)]);
                    tokio::time::timeout(REQUEST_TIMEOUT, c.txn(txn))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
            };
            if ok {
                log.lock()
                    .unwrap()
                    .push((member, op, start, Instant::now()));
            }
            i += 1;
        }
    }
}

/// The first moment by which every member has served each kind of request started after `t0`.
fn recovered_by(log: &[Success], members: usize, t0: Instant) -> Option<Instant> {
    let mut latest = t0;
    for m in 0..members {
        for op in [Op::Put, Op::Get, Op::Cas] {
            let first = log
                .iter()
                .filter(|(mm, o, start, _)| *mm == m && *o == op && *start >= t0)
                .map(|(_, _, _, end)| *end)
                .min()?;
            latest = latest.max(first);
        }
    }
    Some(latest)
}

#[tokio::test]
async fn a_paused_member_never_stalls_the_cluster() {
    let et = ELECTION_TIMEOUT.as_millis().to_string();
    let c = Cluster::start_with(Kind::Oxetcd, 3, &["--election-timeout", &et]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Success>>> = Arc::default();
    let mut workers = Vec::new();
    for (m, member) in c.members.iter().enumerate() {
        for id in 0..2 {
            workers.push(tokio::spawn(worker(
                m,
                member.endpoint(),
                id,
                stop.clone(),
                log.clone(),
            )));
        }
    }
    // A prefix watcher on every member sees the load go on.
    let mut watcher = client(&c.members[0].endpoint()).await;
    let mut events = watcher
        .watch("w", Some(etcd_client::WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    events.message().await.expect("watch").expect("open");

    // Four rounds pause the leader; two in between pause a follower (its peers' calls to it,
    // and its own to the leader, must not hang either).
    for round in 0..6 {
        // Wait until the whole cluster serves (the previous round's recovery), then pause the
        // leader under load.
        let t0 = Instant::now();
        let deadline = t0 + RECOVERY;
        loop {
            if recovered_by(&log.lock().unwrap(), 3, t0).is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: not serving before the pause"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leader = c.leader().expect("a leader");
        let victim = if round % 3 == 2 {
            (leader + 1) % 3
        } else {
            leader
        };
        c.members[victim].pause();
        tokio::time::sleep(PAUSE).await;
        c.members[victim].resume();
        let resumed = Instant::now();
        let deadline = resumed + RECOVERY;
        let recovered = loop {
            if let Some(at) = recovered_by(&log.lock().unwrap(), 3, resumed) {
                break at;
            }
            if Instant::now() > deadline {
                let served: Vec<_> = log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, _, s, _)| *s >= resumed)
                    .map(|(m, o, _, _)| (*m, *o))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                panic!(
                    "round {round}: {RECOVERY:?} after member {victim} resumed, only these \
                     (member, request) kinds were served: {served:?}\n{}",
                    c.members
                        .iter()
                        .map(|m| m.log())
                        .collect::<Vec<_>>()
                        .join("\n-----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "round {round}: member {victim} (leader: {}) paused {PAUSE:?}; every member served again {:?} \
             after it resumed",
            victim == leader,
            recovered - resumed
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    // The watcher saw writes from after the last round.
    let mut c0 = client(&c.members[0].endpoint()).await;
    let now = c0
        .get("w", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    let mut seen = 0;
    while seen < now {
        let resp = events.message().await.expect("watch").expect("open");
        seen = resp.header().map(|h| h.revision()).unwrap_or(seen);
    }
}
