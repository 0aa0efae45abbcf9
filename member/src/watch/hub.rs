//! The feed of committed events from the apply path to watch streams.

use std::sync::Arc;

use oxetcd_common::mvccpb::Event;
use tokio::sync::broadcast;

/// All events of one revision, in the order the revision made them.
#[derive(Debug)]
pub(crate) struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// Fan-out of committed revisions. Publishing never blocks the apply path: a stream that falls
/// more than `capacity` revisions behind is told it lagged and catches up from the store
/// (etcd's unsynced watchers), so a slow consumer costs writers nothing.
#[derive(Clone)]
pub(crate) struct WatchHub {
    tx: broadcast::Sender<Arc<RevisionEvents>>,
}

impl WatchHub {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    pub(crate) fn publish(&self, revision: i64, events: Vec<Event>) {
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(RevisionEvents { revision, events }));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<RevisionEvents>> {
        self.tx.subscribe()
    }
}
