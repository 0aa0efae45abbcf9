//! What the proxy's own streams to members (coalesced watches and lease keep-alives) share:
//! the identity a client stream is read under, the hub task each identity's client streams
//! share ([`Hubs`]), and which failures move a stream to another member rather than end the
//! clients' streams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// The metadata a client stream is read under upstream: client streams share an upstream
/// stream only with streams that have the same.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Identity {
    headers: Vec<(&'static str, String)>,
    /// `hasleader: true` (clientv3's `WithRequireLeader`): the member ends the stream when it
    /// has no leader, and so does the proxy.
    pub require_leader: bool,
}

/// Metadata that changes what a member lets a watch stream see, or when it ends it.
const IDENTITY_HEADERS: [&str; 3] = [
    "authorization",
    oxetcd_common::FORWARDED_CN_HEADER,
    "hasleader",
];

impl Identity {
    pub fn of(metadata: &MetadataMap) -> Identity {
        let mut headers = Vec::new();
        for name in IDENTITY_HEADERS {
            if let Some(v) = metadata.get(name).and_then(|v| v.to_str().ok()) {
                headers.push((name, v.to_string()));
            }
        }
        let require_leader = metadata
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "true");
        Identity {
            headers,
            require_leader,
        }
    }

    pub fn apply(&self, metadata: &mut MetadataMap) {
        for (name, value) in &self.headers {
            if let Ok(v) = MetadataValue::try_from(value.as_str()) {
                metadata.insert(*name, v);
            }
        }
    }
}

/// Whether a stream that ended with `status` should move to another member (the member or
/// the connection failed) rather than end the clients' streams.
pub fn failover(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
            | Code::DeadlineExceeded
    )
}

pub fn is_no_leader(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().contains("no leader")
}

/// The hub task of each identity, by the sender of its commands `C`: started by the first
/// client stream of an identity, gone once it retires idle.
pub(crate) struct Hubs<C> {
    hubs: Mutex<HashMap<Identity, mpsc::UnboundedSender<C>>>,
    /// Numbers the client streams, across every hub.
    next_stream: AtomicU64,
}

impl<C> Default for Hubs<C> {
    fn default() -> Self {
        Hubs {
            hubs: Mutex::default(),
            next_stream: AtomicU64::new(1),
        }
    }
}

impl<C> Hubs<C> {
    /// Numbers a new client stream and attaches it to its identity's hub with the command
    /// `attach` makes of its number (see [`Hubs::send`]); the hub, and the stream's number.
    pub(crate) fn attach(
        &self,
        identity: &Identity,
        attach: impl FnOnce(u64) -> C,
        start: impl FnMut() -> mpsc::UnboundedSender<C>,
    ) -> (mpsc::UnboundedSender<C>, u64) {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        (self.send(identity, attach(stream), start), stream)
    }

    /// Sends `cmd` to the hub of `identity`, started with `start` if there is none or the last
    /// one ended; returns that hub. Sent under the lock, so a hub that retires cannot miss it.
    pub(crate) fn send(
        &self,
        identity: &Identity,
        mut cmd: C,
        mut start: impl FnMut() -> mpsc::UnboundedSender<C>,
    ) -> mpsc::UnboundedSender<C> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let hub = hubs.entry(identity.clone()).or_insert_with(&mut start);
            match hub.send(cmd) {
                Ok(()) => return hub.clone(),
                Err(mpsc::error::SendError(back)) => {
                    cmd = back;
                    hubs.remove(identity);
                }
            }
        }
    }

    /// The hub `hub` of `identity` leaves if it still is that identity's hub and `idle` holds
    /// under the lock (commands are sent under it, so none can be on its way).
    pub(crate) fn retire(
        &self,
        identity: &Identity,
        hub: &mpsc::UnboundedSender<C>,
        idle: impl FnOnce() -> bool,
    ) -> bool {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if hubs.get(identity).is_some_and(|h| h.same_channel(hub)) && idle() {
            hubs.remove(identity);
            return true;
        }
        false
    }
}
