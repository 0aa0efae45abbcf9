//! etcd benchmark's `lease-keepalive`: every client grants one lease (TTL 100 s), then the
//! clients share `--total` keep-alives. Each is clientv3's `KeepAliveOnce`: a keep-alive stream
//! opened, one request, its answer, the stream closed; timed from the opening. An answer with
//! TTL 0 (no such lease) is a failure, as `KeepAliveOnce` makes it one. The elapsed time runs
//! from before the grants, as etcd's report does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use oxetcd_common::etcdserverpb::lease_client::LeaseClient;
use oxetcd_common::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};

use super::{print_outcome, progress, Failures};
use crate::client::Conn;

/// Grants and keep-alives ride on `conns`, client `i` on connection `i % conns`.
pub(super) async fn keepalive(
    conns: &[Conn],
    clients: usize,
    total: u64,
    json: bool,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let failures = Failures::default();
    let bar = progress(next.clone(), total);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let mut lease = LeaseClient::new(conns[c % conns.len()].clone());
        let (next, failures) = (next.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let grant = LeaseGrantRequest { ttl: 100, id: 0 };
            let id = match lease.lease_grant(grant).await {
                Ok(r) => r.into_inner().id,
                Err(e) => {
                    failures.add(e.message());
                    return lat;
                }
            };
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                match keep_alive_once(&mut lease, id).await {
                    Ok(ttl) if ttl > 0 => lat.push(t.elapsed().as_secs_f64()),
                    Ok(_) => failures.add("etcdserver: requested lease not found"),
                    Err(e) => failures.add(e.message()),
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
        let _ = b.await;
    }
    print_outcome(&mut lat, elapsed, failures.count(), failures.first(), json);
    Ok(())
}

/// One keep-alive on a stream of its own; the TTL answered.
async fn keep_alive_once(lease: &mut LeaseClient<Conn>, id: i64) -> Result<i64, tonic::Status> {
    // Queued before the call: grpc-go (etcd) sends response headers only with its first
    // message, so the call would not return before a request went out.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let mut answers = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let answer = answers
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unavailable("keep-alive stream closed"))?;
    Ok(answer.ttl)
}
