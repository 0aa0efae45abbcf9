//! Alarms (etcd's `v3alarm`): a member that runs out of space raises NOSPACE, one whose key
//! space disagrees with the others' is marked CORRUPT. Alarms are replicated state, changed only
//! by applying `AlarmRequest`s, so every member caps (NOSPACE: no puts, no lease grants) or stops
//! (CORRUPT: no writes) at the same point of the log; `apply/layers.rs` enforces them.
//!
//! Rows live in the `meta` column family (`alarm/<member id BE><type BE>` → empty), so raft
//! snapshots carry them.

use std::collections::BTreeSet;

use oxetcd_common::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
};
use rocksdb::WriteBatch;

use crate::mvcc::KvError;
use crate::storage::{Storage, CF_META};

const PREFIX: &[u8] = b"alarm/";

/// The alarms raised in the cluster, as (alarm type, member ID).
#[derive(Default)]
pub(crate) struct AlarmStore {
    raised: BTreeSet<(i32, u64)>,
}

fn row_key(kind: i32, member: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k.extend_from_slice(&kind.to_be_bytes());
    k
}

impl AlarmStore {
    pub(crate) fn open(storage: &Storage) -> Result<Self, KvError> {
        let mut raised = BTreeSet::new();
        let mode = rocksdb::IteratorMode::From(PREFIX, rocksdb::Direction::Forward);
        for item in storage.db().iterator_cf(storage.cf(CF_META), mode) {
            let (k, _) = item?;
            let Some(rest) = k.strip_prefix(PREFIX) else {
                break;
            };
            let (Some(member), Some(kind)) = (
                rest.get(..8).and_then(|b| b.try_into().ok()),
                rest.get(8..12).and_then(|b| b.try_into().ok()),
            ) else {
                return Err(KvError::Corrupt(format!("bad alarm row {k:?}")));
            };
            raised.insert((i32::from_be_bytes(kind), u64::from_be_bytes(member)));
        }
        Ok(Self { raised })
    }

    /// Whether an alarm of this type is raised by any member.
    pub(crate) fn is_raised(&self, kind: AlarmType) -> bool {
        self.raised.iter().any(|(k, _)| *k == kind as i32)
    }

    /// The raised alarms of one type, or all of them for `NONE` (etcd's `AlarmStore.Get`).
    pub(crate) fn get(&self, kind: i32) -> Vec<AlarmMember> {
        self.raised
            .iter()
            .filter(|(k, _)| kind == AlarmType::None as i32 || *k == kind)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Applies an `AlarmRequest` (etcd's `applierV3backend.Alarm`): GET lists, ACTIVATE answers
    /// the alarm (new or already raised), DEACTIVATE the alarm it removed, if any.
    pub(crate) fn apply(
        &mut self,
        storage: &Storage,
        batch: &mut WriteBatch,
        req: &AlarmRequest,
    ) -> AlarmResponse {
        let member = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => self.get(req.alarm),
            Ok(AlarmAction::Activate) => {
                if self.raised.insert((req.alarm, req.member_id)) {
                    batch.put_cf(storage.cf(CF_META), row_key(req.alarm, req.member_id), []);
                    tracing::warn!(
                        alarm = alarm_name(req.alarm),
                        from = format!("{:x}", req.member_id),
                        "alarm raised"
                    );
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => {
                if self.raised.remove(&(req.alarm, req.member_id)) {
                    batch.delete_cf(storage.cf(CF_META), row_key(req.alarm, req.member_id));
                    tracing::warn!(
                        alarm = alarm_name(req.alarm),
                        from = format!("{:x}", req.member_id),
                        "alarm disarmed"
                    );
                    vec![member]
                } else {
                    Vec::new()
                }
            }
            // etcd answers an unknown action with an empty response.
            Err(_) => Vec::new(),
        };
        AlarmResponse {
            header: None,
            alarms,
        }
    }
}

fn alarm_name(kind: i32) -> &'static str {
    AlarmType::try_from(kind)
        .map(|t| t.as_str_name())
        .unwrap_or("UNKNOWN")
}
