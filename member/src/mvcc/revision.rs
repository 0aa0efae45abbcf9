//! Revisions: (main, sub). Every write transaction gets one main revision; the changes inside it
//! are told apart by sub.

use oxetcd_common::mvccpb::KeyValue;
use prost::Message;

use super::error::KvError;

/// A point in the store's history.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Hash)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub(crate) fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The key of this revision in the `kv` column family. Big-endian so that RocksDB orders
    /// entries by revision; a trailing `t` marks a tombstone (as etcd's bbolt layout does).
    pub(crate) fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        k.extend_from_slice(&self.main.to_be_bytes());
        k.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    /// The key-value stored in this revision's `kv` row (`bytes`).
    pub(crate) fn decode_value(self, bytes: &[u8]) -> Result<KeyValue, KvError> {
        KeyValue::decode(bytes).map_err(|e| KvError::Corrupt(format!("bad value at {self:?}: {e}")))
    }

    /// The key of this revision in etcd's `key` bucket: main, `_`, sub (big-endian), and a
    /// trailing `t` for a tombstone. Orders as [`Revision::to_key`] does.
    pub(crate) fn to_etcd_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(18);
        k.extend_from_slice(&self.main.to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    /// Parses a key of etcd's `key` bucket; `None` for anything else.
    pub(crate) fn from_etcd_key(k: &[u8]) -> Option<(Self, bool)> {
        if !(k.len() == 17 || (k.len() == 18 && k[17] == b't')) || k[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(k[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(k[9..17].try_into().ok()?);
        Some((Self { main, sub }, k.len() == 18))
    }

    /// Parses a `kv` column-family key; `None` for a key this layout never writes.
    pub(crate) fn from_key(k: &[u8]) -> Option<(Self, bool)> {
        if k.len() != 16 && !(k.len() == 17 && k[16] == b't') {
            return None;
        }
        let main = i64::from_be_bytes(k[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(k[8..16].try_into().ok()?);
        Some((Self { main, sub }, k.len() == 17))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_order() {
        let a = Revision::new(2, 0);
        let b = Revision::new(2, 1);
        let c = Revision::new(10, 0);
        assert!(a.to_key(false) < b.to_key(false));
        assert!(b.to_key(true) < c.to_key(false));
        assert_eq!(Revision::from_key(&b.to_key(true)), Some((b, true)));
        assert_eq!(Revision::from_key(&c.to_key(false)), Some((c, false)));
        assert_eq!(Revision::from_key(b"short"), None);
        assert!(a.to_etcd_key(false) < b.to_etcd_key(true));
        assert!(b.to_etcd_key(true) < c.to_etcd_key(false));
        assert_eq!(
            Revision::from_etcd_key(&b.to_etcd_key(true)),
            Some((b, true))
        );
        assert_eq!(
            Revision::from_etcd_key(&c.to_etcd_key(false)),
            Some((c, false))
        );
        assert_eq!(Revision::from_etcd_key(&c.to_key(false)), None);
    }
}
