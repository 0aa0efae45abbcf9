//! Read-your-writes across a balancing proxy: the revision of each client's last write.
//!
//! A client pinned to one etcd member sees its own writes in its serializable reads, because
//! that member applied them before answering. Through a proxy its next serializable read may go
//! to a member that has not applied them yet. So the proxy remembers, per client connection
//! (a gRPC client holds one per endpoint), the revision its last write was answered at, and
//! sends its serializable reads only where that revision is known to be applied: the cache once
//! its watch got there, or a member whose answers said so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Connections remembered; past this, those whose writes every member has applied go.
const MAX_CLIENTS: usize = 100_000;

#[derive(Default)]
pub struct Sessions {
    last_write: Mutex<HashMap<SocketAddr, i64>>,
}

impl Sessions {
    /// The revision a serializable read from `client` must reflect (0: any).
    pub fn floor(&self, client: Option<SocketAddr>) -> i64 {
        let Some(client) = client else {
            return 0;
        };
        let map = self.last_write.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&client).copied().unwrap_or(0)
    }

    /// `client`'s write was answered at `revision`. `settled` is a revision every member is
    /// known to have applied: clients whose writes are all below it need nothing remembered.
    pub fn wrote(&self, client: Option<SocketAddr>, revision: i64, settled: impl FnOnce() -> i64) {
        let Some(client) = client else {
            return;
        };
        let mut map = self.last_write.lock().unwrap_or_else(|p| p.into_inner());
        let r = map.entry(client).or_default();
        *r = (*r).max(revision);
        if map.len() > MAX_CLIENTS {
            let settled = settled();
            map.retain(|_, r| *r > settled);
            // Still full: the oldest writes go (their readers may then see an older member).
            while map.len() > MAX_CLIENTS {
                let Some(oldest) = map.iter().min_by_key(|(_, r)| **r).map(|(c, _)| *c) else {
                    break;
                };
                map.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_floor_is_its_last_write() {
        let s = Sessions::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        assert_eq!(s.floor(Some(a)), 0);
        s.wrote(Some(a), 7, || 0);
        s.wrote(Some(a), 5, || 0);
        assert_eq!(s.floor(Some(a)), 7, "a late answer does not lower it");
        assert_eq!(s.floor(Some(b)), 0);
        assert_eq!(s.floor(None), 0);
    }
}
