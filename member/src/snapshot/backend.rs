//! Our state in etcd's backend layout (the buckets of etcd 3.4's bbolt file), and back.
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `alarm` | `etcdserverpb.AlarmMember` | empty |
//! | `auth` | `authEnabled`, `authRevision` | `[0|1]`, u64 BE |
//! | `authRoles`, `authUsers` | name | `authpb.Role`, `authpb.User` |
//! | `cluster` | `clusterVersion` | `3.4.0` |
//! | `key` | main BE, `_`, sub BE (+ `t`) | `mvccpb.KeyValue` |
//! | `lease` | id BE | `leasepb.Lease` |
//! | `members` | member ID in hex | etcd's member JSON |
//! | `members_removed` | – | – |
//! | `meta` | `consistent_index`, `finishedCompactRev`, `scheduledCompactRev` | u64 BE, revision key |
//!
//! Our `kv` rows already are etcd's `key` bucket (same value bytes, same order), so both
//! directions stream the key space row by row.

use oxetcd_common::etcdserverpb::AlarmMember;
use prost::Message;
use rocksdb::{IteratorMode, DB};

use super::SnapshotError;
use crate::apply::MemberState;
use crate::mvcc::{kept_at, Revision};
use crate::storage::{Storage, CF_AUTH, CF_KV, CF_LEASE};
use oxetcd_common::mvccpb::KeyValue;

pub(crate) const KEY: &str = "key";
pub(crate) const META: &str = "meta";
pub(crate) const LEASE: &str = "lease";
pub(crate) const ALARM: &str = "alarm";
pub(crate) const AUTH: &str = "auth";
pub(crate) const AUTH_USERS: &str = "authUsers";
pub(crate) const AUTH_ROLES: &str = "authRoles";
pub(crate) const MEMBERS: &str = "members";
pub(crate) const MEMBERS_REMOVED: &str = "members_removed";
pub(crate) const CLUSTER: &str = "cluster";

/// Every bucket of etcd 3.4's backend, in bbolt's (byte) order.
pub(crate) const BUCKETS: [&str; 10] = [
    ALARM,
    AUTH,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
];

pub(crate) const CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub(crate) const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub(crate) const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
/// etcd 3.5's raft term in `meta`: read, never written (3.4's layout).
pub(crate) const TERM: &[u8] = b"term";
pub(crate) const AUTH_ENABLED: &[u8] = b"authEnabled";
pub(crate) const AUTH_REVISION: &[u8] = b"authRevision";
pub(crate) const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// The cluster version a snapshot declares: the layout is etcd 3.4's, and a later etcd
/// restoring it upgrades from there (a higher one would stop an older etcd).
const SNAPSHOT_CLUSTER_VERSION: &str = "3.4.0";

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseRow {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// etcd's `membership.Member` as it stores it in the `members` bucket.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct MemberRow {
    pub id: u64,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(
        rename = "isLearner",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_learner: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

/// What a view takes from the applied state under its lock (the rest comes from a RocksDB
/// snapshot taken at the same moment).
pub(crate) struct Captured {
    pub applied_index: u64,
    /// The revision at capture (the header of a Hash answer).
    pub current_rev: i64,
    /// etcd's compacted revision; `None` before the first compaction.
    pub compacted: Option<i64>,
    pub members: Vec<MemberRow>,
    pub alarms: Vec<AlarmMember>,
    /// While a compaction's rows are still being removed: which rows at or below it to keep.
    pub unswept: Option<i64>,
}

impl Captured {
    /// Call with the state lock held, together with taking the RocksDB snapshot.
    pub(crate) fn of(state: &MemberState) -> Self {
        let floor = state.mvcc.compaction_floor();
        let mut members: Vec<MemberRow> = state
            .members()
            .into_iter()
            .map(|m| MemberRow {
                id: m.id,
                peer_urls: m.peer_urls,
                is_learner: m.is_learner,
                name: m.name,
                client_urls: m.client_urls,
            })
            .collect();
        members.sort_by_key(|m| format!("{:x}", m.id));
        let mut alarms = state.alarms.get(0);
        alarms.sort_by_key(|a| a.encode_to_vec());
        Captured {
            applied_index: state.applied.map(|l| l.index).unwrap_or(0),
            current_rev: state.mvcc.current_rev(),
            compacted: (floor >= 0).then_some(floor),
            members,
            alarms,
            unswept: state.mvcc.unswept(),
        }
    }
}

/// A row of the backend: bucket, key, value.
pub(crate) type Visit<'a> = dyn FnMut(&str, &[u8], &[u8]) -> Result<(), SnapshotError> + 'a;

/// The state in etcd's layout, as `captured` with the rows of a RocksDB snapshot taken with it.
pub(crate) struct View<'a> {
    pub storage: &'a Storage,
    pub snapshot: rocksdb::SnapshotWithThreadMode<'a, DB>,
    pub captured: Captured,
}

impl View<'_> {
    /// Walks every bucket (see [`BUCKETS`]), key by key in bbolt's order.
    pub(crate) fn visit(&self, f: &mut Visit<'_>) -> Result<(), SnapshotError> {
        for bucket in BUCKETS {
            self.visit_bucket(bucket, f)?;
        }
        Ok(())
    }

    /// etcd's `Hash`: CRC-32C over every bucket name and every key and value, in order,
    /// without the keys that differ between members of the same state (`consistent_index`,
    /// `term`).
    pub(crate) fn hash(&self) -> Result<u32, SnapshotError> {
        let mut crc = 0u32;
        for bucket in BUCKETS {
            crc = crc32c::crc32c_append(crc, bucket.as_bytes());
            self.visit_bucket(bucket, &mut |bucket, k, v| {
                if bucket == META && (k == CONSISTENT_INDEX || k == TERM) {
                    return Ok(());
                }
                crc = crc32c::crc32c_append(crc, k);
                crc = crc32c::crc32c_append(crc, v);
                Ok(())
            })?;
        }
        Ok(crc)
    }

    /// One bucket's rows in key order.
    fn visit_bucket(&self, bucket: &str, f: &mut Visit<'_>) -> Result<(), SnapshotError> {
        let (storage, snapshot, captured) = (self.storage, &self.snapshot, &self.captured);
        match bucket {
            ALARM => {
                for a in &captured.alarms {
                    f(ALARM, &a.encode_to_vec(), &[])?;
                }
            }
            AUTH => {
                let enabled = snapshot.get_cf(storage.cf(CF_AUTH), b"enabled")?;
                let enabled = u8::from(enabled.and_then(|v| v.first().copied()) == Some(1));
                f(AUTH, AUTH_ENABLED, &[enabled])?;
                let rev = snapshot
                    .get_cf(storage.cf(CF_AUTH), b"revision")?
                    .unwrap_or_else(|| 1u64.to_be_bytes().to_vec());
                f(AUTH, AUTH_REVISION, &rev)?;
            }
            AUTH_ROLES | AUTH_USERS => {
                let prefix: &[u8] = if bucket == AUTH_ROLES {
                    b"role/"
                } else {
                    b"user/"
                };
                let mode = IteratorMode::From(prefix, rocksdb::Direction::Forward);
                for row in snapshot.iterator_cf(storage.cf(CF_AUTH), mode) {
                    let (k, v) = row?;
                    let Some(name) = k.strip_prefix(prefix) else {
                        break;
                    };
                    f(bucket, name, &v)?;
                }
            }
            CLUSTER => f(
                CLUSTER,
                CLUSTER_VERSION,
                SNAPSHOT_CLUSTER_VERSION.as_bytes(),
            )?,
            KEY => {
                for row in snapshot.iterator_cf(storage.cf(CF_KV), IteratorMode::Start) {
                    let (k, v) = row?;
                    let Some((rev, tombstone)) = Revision::from_key(&k) else {
                        return Err(SnapshotError::Corrupt(format!("kv row {k:?}")));
                    };
                    if let Some(compacted) = captured.unswept {
                        if rev.main <= compacted {
                            let kv = KeyValue::decode(v.as_ref()).map_err(|e| {
                                SnapshotError::Corrupt(format!("kv row {k:?}: {e}"))
                            })?;
                            let kept = !tombstone
                                && kept_at(snapshot, storage, &kv.key, rev, compacted)
                                    .map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
                            if !kept {
                                continue;
                            }
                        }
                    }
                    f(KEY, &rev.to_etcd_key(tombstone), &v)?;
                }
            }
            LEASE => {
                for row in snapshot.iterator_cf(storage.cf(CF_LEASE), IteratorMode::Start) {
                    let (k, v) = row?;
                    let (Ok(id), Ok(ttl)) = (<[u8; 8]>::try_from(&*k), <[u8; 8]>::try_from(&*v))
                    else {
                        return Err(SnapshotError::Corrupt(format!("lease row {k:?}")));
                    };
                    let lease = LeaseRow {
                        id: i64::from_be_bytes(id),
                        ttl: i64::from_be_bytes(ttl),
                        remaining_ttl: 0,
                    };
                    f(LEASE, &k, &lease.encode_to_vec())?;
                }
            }
            MEMBERS => {
                for m in &captured.members {
                    let json =
                        serde_json::to_vec(m).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
                    f(MEMBERS, format!("{:x}", m.id).as_bytes(), &json)?;
                }
            }
            META => {
                f(
                    META,
                    CONSISTENT_INDEX,
                    &captured.applied_index.to_be_bytes(),
                )?;
                if let Some(rev) = captured.compacted {
                    let key = Revision::new(rev, 0).to_etcd_key(false);
                    f(META, FINISHED_COMPACT, &key)?;
                    f(META, SCHEDULED_COMPACT, &key)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
