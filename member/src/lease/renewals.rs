//! A follower's keep-alives on their way to the leader's lease clock, batched: every renewal
//! asked while a peer call is in flight goes in the next call, so a follower serving many
//! keep-alive streams makes one round trip for all of them instead of one each (etcd's
//! followers send each keep-alive to the leader over `leasehttp` on its own).

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use crate::error::ServerError;
use crate::server::EtcdServer;

/// Renewals in one peer call, at most.
const MAX_BATCH: usize = 1024;

type Answer = oneshot::Sender<Result<Option<i64>, ServerError>>;

/// Where keep-alives queue for the batcher.
pub(crate) struct Renewals {
    tx: mpsc::UnboundedSender<(i64, Answer)>,
}

/// The batcher's end of the queue.
pub(crate) struct RenewalQueue {
    rx: mpsc::UnboundedReceiver<(i64, Answer)>,
}

pub(crate) fn renewals() -> (Renewals, RenewalQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Renewals { tx }, RenewalQueue { rx })
}

impl Renewals {
    /// Renews lease `id` on the leader's clock, with whatever else is queued.
    pub(crate) async fn renew(&self, id: i64) -> Result<Option<i64>, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((id, tx)).map_err(|_| ServerError::Stopped)?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }
}

/// The batcher: one peer call at a time, each carrying every renewal queued meanwhile. Each
/// queued keep-alive stream waits for its answer before it sends the next, so the queue holds
/// at most one renewal per stream.
pub(crate) async fn run_renewals(server: Weak<EtcdServer>, mut queue: RenewalQueue) {
    let mut batch = Vec::new();
    while let Some(first) = queue.rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(server) = server.upgrade() else {
            return;
        };
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        let result = server.lease_clocks(&ids, true).await;
        drop(server);
        match result {
            Ok(ttls) => {
                for ((_, answer), ttl) in batch.drain(..).zip(ttls) {
                    let _ = answer.send(Ok(ttl));
                }
            }
            Err(e) => {
                for (_, answer) in batch.drain(..) {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}
