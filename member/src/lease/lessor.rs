//! The leader's lease clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each lease expires, as this member sees it. Only the leader's view matters: it alone
/// renews leases and proposes the revoke of expired ones.
pub(crate) struct Lessor {
    expiry: Mutex<HashMap<i64, (Instant, i64)>>,
    /// Smallest TTL granted (etcd: 1.5 election timeouts, rounded up to a second).
    pub min_ttl: i64,
}

impl Lessor {
    pub(crate) fn new(election_timeout: Duration) -> Self {
        let min_ttl = ((election_timeout.as_millis() as i64 * 3) / 2 + 999) / 1000;
        Self {
            expiry: Mutex::new(HashMap::new()),
            min_ttl: min_ttl.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Instant, i64)>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        self.expiry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or restarts) a lease's full TTL from now.
    pub(crate) fn start(&self, id: i64, ttl: i64) {
        let at = Instant::now() + Duration::from_secs(ttl.max(0) as u64);
        self.map().insert(id, (at, ttl));
    }

    pub(crate) fn forget(&self, id: i64) {
        self.map().remove(&id);
    }

    /// Renews a lease for its granted TTL; `None` if this member knows no such lease.
    pub(crate) fn renew(&self, id: i64) -> Option<i64> {
        let mut m = self.map();
        let (at, ttl) = m.get_mut(&id)?;
        *at = Instant::now() + Duration::from_secs((*ttl).max(0) as u64);
        Some(*ttl)
    }

    /// Remaining whole seconds of a lease, `None` if unknown.
    pub(crate) fn remaining(&self, id: i64) -> Option<i64> {
        let m = self.map();
        let (at, _) = m.get(&id)?;
        Some(at.saturating_duration_since(Instant::now()).as_secs() as i64)
    }

    /// Leases whose time is up.
    pub(crate) fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.map()
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets every lease (before a snapshot replaces the lease table).
    pub(crate) fn clear(&self) {
        self.map().clear();
    }

    /// Gives every lease a full TTL again (on becoming leader, as etcd's Promote does).
    pub(crate) fn refresh_all(&self) {
        let now = Instant::now();
        for (at, ttl) in self.map().values_mut() {
            *at = now + Duration::from_secs((*ttl).max(0) as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_like_etcd() {
        assert_eq!(Lessor::new(Duration::from_millis(1000)).min_ttl, 2);
        assert_eq!(Lessor::new(Duration::from_millis(100)).min_ttl, 1);
    }

    #[test]
    fn renew_and_expire() {
        let l = Lessor::new(Duration::from_millis(1000));
        l.start(1, 0);
        l.start(2, 100);
        assert_eq!(l.expired(), vec![1]);
        assert_eq!(l.renew(2), Some(100));
        assert!(l.remaining(2).unwrap() >= 99);
        assert_eq!(l.renew(3), None);
        l.forget(1);
        assert!(l.expired().is_empty());
    }
}
