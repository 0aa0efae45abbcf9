//! The feed of committed events from the apply path to watch streams.

use std::sync::atomic::{AtomicUsize, Ordering};
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
///
/// A delete's event carries the deleted value only while some watcher asks for previous
/// values (reading a million values to delete a million keys is what a DeleteRange would cost
/// otherwise); a watcher that wants one and finds a delete without it reads the revision from
/// the store.
#[derive(Clone)]
pub(crate) struct WatchHub {
    tx: broadcast::Sender<Arc<RevisionEvents>>,
    /// How many watchers ask for previous values.
    prev_kv_watchers: Arc<AtomicUsize>,
}

/// Held by a watcher that asks for previous values, for as long as it lives.
pub(crate) struct WantsPrevKv(Arc<AtomicUsize>);

impl Drop for WantsPrevKv {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WatchHub {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            prev_kv_watchers: Arc::default(),
        }
    }

    /// Registers a watcher that asks for previous values.
    pub(crate) fn want_prev_kv(&self) -> WantsPrevKv {
        self.prev_kv_watchers.fetch_add(1, Ordering::AcqRel);
        WantsPrevKv(self.prev_kv_watchers.clone())
    }

    /// Whether any watcher asks for previous values (deletes then read them for their events).
    pub(crate) fn prev_kv_wanted(&self) -> bool {
        self.prev_kv_watchers.load(Ordering::Acquire) > 0
    }

    pub(crate) fn publish(&self, revision: i64, events: Vec<Event>) {
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(RevisionEvents { revision, events }));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<RevisionEvents>> {
        self.tx.subscribe()
    }
}
