//! Leases: a TTL that keys can be attached to; when it ends, its keys are deleted.
//!
//! Split as etcd splits it:
//! - [`LeaseTable`] is replicated state: which leases exist, their granted TTL and attached keys.
//!   It changes only by applying raft entries (grant, revoke, and puts/deletes of attached keys),
//!   so every member deletes the same keys at the same revision.
//! - [`Lessor`] is the leader's clock: when each lease expires. Keep-alives renew it locally (no
//!   raft entry, as in etcd); an expired lease is revoked by proposing a LeaseRevoke. A member
//!   that becomes leader (or restarts) gives every lease a full TTL again, as etcd does.
//!   `expiry` is its loop (revoke what expired, on the leader), `clock` how any member reads or
//!   renews it (a follower asks the leader), `renewals` a follower's keep-alives batched into
//!   one call to the leader.

mod clock;
mod expiry;
mod lessor;
mod renewals;

pub(crate) use expiry::run_expiry;
pub(crate) use lessor::Lessor;
pub(crate) use renewals::{renewals, run_renewals, Renewals};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oxetcd_common::mvccpb::{event::EventType, Event};
use rocksdb::WriteBatch;

use crate::mvcc::{KvError, LeaseCheck};
use crate::storage::{Storage, CF_LEASE};

/// etcd's largest TTL (MaxLeaseTTL).
pub(crate) const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Lease {
    pub id: i64,
    /// The TTL granted, in seconds.
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// Every lease, with its attached keys.
#[derive(Default)]
pub(crate) struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
    /// The lease each attached key is attached to (etcd's `itemMap`): a delete finds a key's
    /// lease here instead of reading the key's value.
    owners: HashMap<Vec<u8>, i64>,
}

impl LeaseCheck for LeaseTable {
    fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    fn attached(&self, key: &[u8]) -> i64 {
        if self.owners.is_empty() {
            return 0;
        }
        self.owners.get(key).copied().unwrap_or(0)
    }
}

impl LeaseTable {
    /// Loads the leases; their keys are attached afterwards from the key space
    /// ([`LeaseTable::attach`] for each live key with a lease).
    pub(crate) fn open(storage: &Storage) -> Result<Self, KvError> {
        let mut leases = BTreeMap::new();
        for item in storage
            .db()
            .iterator_cf(storage.cf(CF_LEASE), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item?;
            let (Ok(id), Ok(ttl)) = (
                <[u8; 8]>::try_from(k.as_ref()),
                <[u8; 8]>::try_from(v.as_ref()),
            ) else {
                return Err(KvError::Corrupt("bad lease row".into()));
            };
            let id = i64::from_be_bytes(id);
            leases.insert(
                id,
                Lease {
                    id,
                    ttl: i64::from_be_bytes(ttl),
                    keys: BTreeSet::new(),
                },
            );
        }
        Ok(Self {
            leases,
            owners: HashMap::new(),
        })
    }

    pub(crate) fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.leases.keys().copied()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub(crate) fn grant(
        &mut self,
        storage: &Storage,
        id: i64,
        ttl: i64,
        batch: &mut WriteBatch,
    ) -> Result<(), KvError> {
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        }
        self.leases.insert(
            id,
            Lease {
                id,
                ttl,
                keys: BTreeSet::new(),
            },
        );
        batch.put_cf(storage.cf(CF_LEASE), id.to_be_bytes(), ttl.to_be_bytes());
        Ok(())
    }

    /// Forgets a lease (its keys are deleted by the caller, in the same revision).
    pub(crate) fn remove(
        &mut self,
        storage: &Storage,
        id: i64,
        batch: &mut WriteBatch,
    ) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        for key in &lease.keys {
            self.owners.remove(key);
        }
        batch.delete_cf(storage.cf(CF_LEASE), id.to_be_bytes());
        Some(lease)
    }

    /// Attaches `key` to lease `id` (if it exists), detaching it from any other first.
    pub(crate) fn attach(&mut self, id: i64, key: &[u8]) {
        self.detach(key);
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
            self.owners.insert(key.to_vec(), id);
        }
    }

    fn detach(&mut self, key: &[u8]) {
        if self.owners.is_empty() {
            return;
        }
        if let Some(id) = self.owners.remove(key) {
            if let Some(l) = self.leases.get_mut(&id) {
                l.keys.remove(key);
            }
        }
    }

    /// Follows key changes: a put moves the key to its new lease, a delete detaches it.
    /// (Events need not carry previous values: the table knows each key's lease.)
    pub(crate) fn observe(&mut self, events: &[Event]) {
        for ev in events {
            let Some(kv) = &ev.kv else { continue };
            if ev.r#type == EventType::Put as i32 && kv.lease != 0 {
                self.attach(kv.lease, &kv.key);
            } else {
                self.detach(&kv.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::mvccpb::KeyValue;

    fn event(kind: EventType, key: &str, lease: i64) -> Event {
        Event {
            r#type: kind as i32,
            kv: Some(KeyValue {
                key: key.into(),
                lease,
                ..Default::default()
            }),
            // As a delete that did not read the value sends it: no previous value.
            prev_kv: None,
        }
    }

    #[test]
    fn keys_follow_puts_and_deletes_without_previous_values() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut table = LeaseTable::default();
        let mut batch = WriteBatch::default();
        table.grant(&storage, 1, 60, &mut batch).unwrap();
        table.grant(&storage, 2, 60, &mut batch).unwrap();
        fn keys(t: &LeaseTable, id: i64) -> Vec<&[u8]> {
            t.get(id)
                .unwrap()
                .keys
                .iter()
                .map(|k| k.as_slice())
                .collect()
        }
        table.observe(&[
            event(EventType::Put, "a", 1),
            event(EventType::Put, "b", 1),
            event(EventType::Put, "c", 0),
        ]);
        assert_eq!(keys(&table, 1), [b"a", b"b"]);
        // A put moves a key to its new lease; a delete detaches it.
        table.observe(&[
            event(EventType::Put, "a", 2),
            event(EventType::Delete, "b", 0),
        ]);
        assert_eq!(keys(&table, 1), Vec::<&[u8]>::new());
        assert_eq!(keys(&table, 2), [b"a"]);
        assert_eq!((table.attached(b"a"), table.attached(b"b")), (2, 0));
        // A put without a lease detaches the key too; so does revoking its lease.
        table.observe(&[event(EventType::Put, "a", 0)]);
        assert_eq!(keys(&table, 2), Vec::<&[u8]>::new());
        table.observe(&[event(EventType::Put, "c", 2)]);
        table.remove(&storage, 2, &mut batch);
        assert_eq!(table.attached(b"c"), 0);
    }
}
