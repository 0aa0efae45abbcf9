//! A write acknowledged to a client survives kill -9: the raft log entry is fsynced before the
//! member acknowledges, and restart replays what the state machine had not yet persisted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use etcd_client::{Client, GetOptions};
use oxetcd_tests::{client, key_space, Kind, Member};

#[tokio::test]
async fn kill9_and_restart_keeps_keys_revisions_and_compaction() {
    let mut m = Member::start(Kind::Oxetcd);
    let mut c = client(&m.endpoint()).await;
    for i in 0..200 {
        c.put(format!("key{:03}", i % 50), format!("value{i}"), None)
            .await
            .expect("put");
    }
    c.delete("key007", None).await.expect("delete");
    c.compact(100, None).await.expect("compact");
    let before = key_space(&mut c).await;
    assert_eq!(before.0, 202);
    assert_eq!(before.1.len(), 49);

    m.kill9();
    m.restart();
    let mut c = client(&m.endpoint()).await;
    let after = key_space(&mut c).await;
    assert_eq!(before, after, "state after kill -9 differs");
    // The compaction point survived too.
    let err = c
        .get("key001", Some(GetOptions::new().with_revision(50)))
        .await
        .expect_err("compacted revision must be refused");
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );
    // And the revision counter continues where it was.
    let put = c.put("next", "1", None).await.expect("put after restart");
    assert_eq!(put.header().expect("header").revision(), 203);
}

#[tokio::test]
async fn acknowledged_writes_survive_kill9_under_load() {
    let mut m = Member::start(Kind::Oxetcd);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    // Four concurrent writers, so entries are in flight (batched, not yet acknowledged) at the
    // moment of the kill.
    for w in 0..4 {
        let (acked, stop, url) = (acked.clone(), stop.clone(), m.url());
        writers.push(tokio::spawn(async move {
            let mut c = Client::connect([url], None).await.expect("connect");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                match c.put(key.clone(), "x", None).await {
                    Ok(_) => acked.lock().expect("lock").push(key),
                    Err(_) => return,
                }
                i += 1;
            }
        }));
    }
    // Kill once enough writes have been acknowledged (awaited, not slept on).
    loop {
        if acked.lock().expect("lock").len() >= 300 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    m.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    m.restart();
    let mut c = client(&m.endpoint()).await;
    let (_, kvs) = key_space(&mut c).await;
    let present: std::collections::HashSet<Vec<u8>> = kvs.into_iter().map(|kv| kv.0).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|k| !present.contains(k.as_bytes()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}
