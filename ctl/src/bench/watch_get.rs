//! etcd benchmark's `watch-get`: `--events` puts to `watchkey`, then `--watchers` watchers from
//! the first put's revision (so the member replays history to each), spread over `--streams`
//! streams on the connections in turn; once the first watcher is created, one client on a
//! connection of its own sends serializable gets of `abc`, one after another, until every
//! watcher has seen every event. The report is of the gets.
//!
//! The getter runs on a thread and runtime of its own, connection included. On the shared
//! runtime its task and its connection's waited in the queues behind the ten streams' readers
//! (tokio does not preempt), so the gets timed the load generator's backlog as much as the
//! server; Go's scheduler, which etcd's tool runs on, preempts busy goroutines.

use std::time::Instant;

use anyhow::bail;
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::{
    watch_request, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};

use super::{print_outcome, Failures};
use crate::client::{self, Conn, Token};

const KEY: &[u8] = b"watchkey";

/// Where the getter connects (the first endpoint, as etcd's tool).
pub(super) struct Getter {
    pub endpoint: String,
    pub dial: std::time::Duration,
    pub token: Token,
}

pub(super) struct WatchGet {
    pub watchers: usize,
    pub streams: usize,
    pub events: usize,
}

pub(super) async fn run(
    conns: &[Conn],
    getter: Getter,
    o: WatchGet,
    json: bool,
) -> anyhow::Result<()> {
    let mut kv = KvClient::new(conns[0].clone());
    let mut from = 0;
    for i in 0..o.events {
        let put = PutRequest {
            key: KEY.to_vec(),
            value: i.to_string().into_bytes(),
            ..Default::default()
        };
        let rev = kv.put(put).await?.into_inner().header.map(|h| h.revision);
        if i == 0 {
            from = rev.unwrap_or_default();
        }
    }
    let (first_created, created) = tokio::sync::oneshot::channel::<()>();
    let mut first_created = Some(first_created);
    let (all_done, done) = tokio::sync::watch::channel(false);

    // The gets, from the first watcher's creation until every watcher is done.
    let (report, getter_report) = tokio::sync::oneshot::channel();
    let get_conn = {
        let (connected, conn) = tokio::sync::oneshot::channel();
        let mut done = done.clone();
        std::thread::Builder::new()
            .name("getter".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = connected.send(Err(anyhow::anyhow!("getter runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let ch = client::connect_one(
                        &getter.endpoint,
                        getter.dial,
                        std::time::Duration::from_secs(60),
                    )
                    .await;
                    let mut kv = match ch {
                        Ok(ch) => KvClient::new(getter.token.attach(ch)),
                        Err(e) => {
                            let _ = connected.send(Err(anyhow::anyhow!("{e}")));
                            return;
                        }
                    };
                    let _ = connected.send(Ok(()));
                    let failures = Failures::default();
                    let mut lat = Vec::new();
                    if created.await.is_err() {
                        let _ = report.send((lat, 0.0, failures));
                        return;
                    }
                    let start = Instant::now();
                    loop {
                        let get = RangeRequest {
                            key: b"abc".to_vec(),
                            serializable: true,
                            ..Default::default()
                        };
                        let t = Instant::now();
                        tokio::select! {
                            r = kv.range(get) => match r {
                                Ok(_) => lat.push(t.elapsed().as_secs_f64()),
                                Err(e) => failures.add(e.message()),
                            },
                            // A get cut short by the end is not recorded, as etcd's.
                            _ = done.wait_for(|d| *d) => break,
                        }
                    }
                    let _ = report.send((lat, start.elapsed().as_secs_f64(), failures));
                });
            })?;
        conn
    };
    get_conn.await??;

    let mut readers = Vec::new();
    let mut keep = Vec::new();
    let per_stream = o.watchers.div_ceil(o.streams);
    let mut left = o.watchers;
    for s in 0..o.streams {
        let n = per_stream.min(left);
        if n == 0 {
            break;
        }
        left -= n;
        let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
        for _ in 0..n {
            let create = WatchCreateRequest {
                key: KEY.to_vec(),
                start_revision: from,
                ..Default::default()
            };
            tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .await?;
        }
        keep.push(tx);
        let mut stream = WatchClient::new(conns[s % conns.len()].clone())
            .max_decoding_message_size(usize::MAX)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        // Wait for this stream's first creation before going on, so the gets start with the
        // first watcher as etcd's do.
        let mut events = std::collections::HashMap::<i64, usize>::new();
        loop {
            match stream.message().await? {
                Some(r) if r.created => {
                    events.entry(r.watch_id).or_default();
                    break;
                }
                Some(r) => *events.entry(r.watch_id).or_default() += r.events.len(),
                None => bail!("watch stream closed while creating watchers"),
            }
        }
        if let Some(tx) = first_created.take() {
            let _ = tx.send(());
        }
        let wanted = o.events;
        readers.push(tokio::spawn(async move {
            let finished = |e: &std::collections::HashMap<i64, usize>| {
                e.len() == n && e.values().all(|c| *c >= wanted)
            };
            while !finished(&events) {
                match stream.message().await {
                    Ok(Some(r)) => *events.entry(r.watch_id).or_default() += r.events.len(),
                    _ => return false,
                }
            }
            true
        }));
    }
    let mut complete = true;
    for r in readers {
        complete &= r.await.unwrap_or(false);
    }
    let _ = all_done.send(true);
    drop((keep, first_created));
    let (mut lat, elapsed, failures) = getter_report.await?;
    if !complete {
        failures.add("a watch stream ended before its watchers saw every event");
    }
    if !json {
        println!("Get during watch summary:");
    }
    print_outcome(&mut lat, elapsed, failures.count(), failures.first(), json);
    Ok(())
}
