//! Linearizable reads from the read cache: a read barrier shared by concurrent readers.
//!
//! A linearizable read must see every write completed before it began. A linearizable
//! count-only `Range` on the feed's member answers a revision `R` that covers all of them
//! (the member confirms its leader and applies up to the commit index first). Once the cache's
//! position `W` has reached `R`, an entry the cache holds is the answer at `W`: current at some
//! moment between the read's start and its answer, which is what linearizable means. So a
//! linearizable read costs the proxy one barrier, not one member read each: like a member's
//! read index, readers queued while a round is in flight share the next one (a reader that came
//! after a round was sent cannot use it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::RangeRequest;
use prometheus::IntCounter;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// How long one barrier round may take before its readers go to a member themselves.
const ROUND_TIMEOUT: Duration = Duration::from_secs(1);

type Reader = oneshot::Sender<Option<i64>>;

#[derive(Default)]
struct Rounds {
    /// A round task is running: it takes `waiting` when its current round ends.
    running: bool,
    waiting: Vec<Reader>,
}

pub struct Barrier {
    /// The feed's member and the key it watches from, while the feed is live.
    member: Mutex<Option<(Channel, Vec<u8>)>>,
    rounds: Mutex<Rounds>,
    /// Rounds sent.
    sent: IntCounter,
}

impl Barrier {
    pub fn new(sent: IntCounter) -> Arc<Self> {
        Arc::new(Barrier {
            member: Mutex::new(None),
            rounds: Mutex::new(Rounds::default()),
            sent,
        })
    }

    /// The feed follows the member on `channel` (watching from `key`), or none.
    pub fn follow(&self, member: Option<(Channel, Vec<u8>)>) {
        *self.member.lock().unwrap_or_else(|p| p.into_inner()) = member;
    }

    /// A revision covering every write completed before this call; `None` if the round
    /// failed (no feed, the member did not answer in time).
    pub async fn revision(self: &Arc<Self>) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut r = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
            r.waiting.push(tx);
            !std::mem::replace(&mut r.running, true)
        };
        if start {
            // A task of its own: a reader that gives up must not strand the others.
            tokio::spawn(self.clone().run());
        }
        rx.await.ok().flatten()
    }

    async fn run(self: Arc<Self>) {
        loop {
            let readers = {
                let mut r = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
                if r.waiting.is_empty() {
                    r.running = false;
                    return;
                }
                std::mem::take(&mut r.waiting)
            };
            let revision = self.round().await;
            for reader in readers {
                let _ = reader.send(revision);
            }
        }
    }

    async fn round(&self) -> Option<i64> {
        let (channel, key) = self
            .member
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        self.sent.inc();
        let mut kv = KvClient::new(channel);
        let read = kv.range(RangeRequest {
            key,
            count_only: true,
            ..Default::default()
        });
        let answer = tokio::time::timeout(ROUND_TIMEOUT, read).await.ok()?.ok()?;
        answer.into_inner().header.map(|h| h.revision)
    }
}
