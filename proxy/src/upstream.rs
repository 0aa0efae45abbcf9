//! What the proxy's own streams to members (coalesced watches and lease keep-alives) share:
//! the identity a client stream is read under, and which failures move a stream to another
//! member rather than end the clients' streams.

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
