//! `snapshot status`: what etcdctl 3.4's `snapshot.v3Manager.Status` computes from a snapshot
//! file (a bbolt database in etcd's layout): an integrity check, then a CRC-32C over every
//! bucket name, key and value in bbolt's order, the revision, the key count and the size.

use super::reader::{Bolt, BoltError};

/// etcdctl's `snapshot.Status`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DbStatus {
    /// CRC-32C of every bucket name, key and value, in bbolt's order.
    pub hash: u32,
    /// The main revision of the last key of the `key` bucket: the store's revision.
    pub revision: i64,
    /// Keys of all buckets.
    pub total_key: u64,
    /// Bytes in use: the high-water page times the page size (bbolt's `Tx.Size`).
    pub total_size: u64,
}

/// The status of the snapshot file at `path`, or why it cannot be read: in Go bbolt's words
/// ([`BoltError::Open`]), or damage that makes etcdctl's bbolt panic ([`BoltError::Corrupt`]).
pub fn status(path: &str) -> Result<DbStatus, BoltError> {
    // etcdctl stats the file first; bolt.Open's own checks follow.
    let db = Bolt::open(path)?;
    let problems = db.check()?;
    if !problems.is_empty() {
        return Err(BoltError::Open(format!(
            "snapshot file integrity check failed. {} errors found.\n{}",
            problems.len(),
            problems.join("\n")
        )));
    }
    let mut st = DbStatus {
        total_size: db.size(),
        ..DbStatus::default()
    };
    let mut crc = 0u32;
    for (name, root) in db.buckets()? {
        let Some(root) = root else {
            return Err(BoltError::Open(format!(
                "cannot get hash of bucket {}",
                String::from_utf8_lossy(&name)
            )));
        };
        crc = crc32c::crc32c_append(crc, &name);
        let is_key_bucket = name == b"key";
        db.for_each(&root, &mut |k, v| {
            crc = crc32c::crc32c_append(crc, k);
            // A nested bucket has no value (Go's nil): nothing to hash.
            if let Some(v) = v {
                crc = crc32c::crc32c_append(crc, v);
            }
            // Keys of `key` are revisions: 8 bytes of main revision (big endian), '_', 8 of
            // sub revision. (etcdctl panics on a shorter key; it is counted here.)
            if let (true, Some(main)) = (is_key_bucket, k.get(..8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(main);
                st.revision = i64::from_be_bytes(b);
            }
            st.total_key += 1;
        })?;
    }
    st.hash = crc;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbolt_rs::{BucketRwApi, DbApi, DbRwAPI, TxRwRefApi};

    fn rev(main: i64, sub: i64) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&sub.to_be_bytes());
        k
    }

    /// A small database in etcd's layout, with the 32 bytes a snapshot's sha256 adds.
    #[test]
    fn reads_an_etcd_layout_with_a_trailing_checksum() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        {
            let mut db = bbolt_rs::Bolt::open(&path).expect("create");
            db.update(|mut tx| {
                for b in ["key", "meta"] {
                    tx.create_bucket_if_not_exists(b)?;
                }
                let mut k = tx.bucket_mut("key").expect("key bucket");
                k.put(rev(2, 0), b"v2")?;
                k.put(rev(5, 1), b"v5")?;
                let mut m = tx.bucket_mut("meta").expect("meta bucket");
                m.put("consistent_index", 7u64.to_be_bytes())?;
                Ok(())
            })
            .expect("write");
            db.close();
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut f, &[7u8; 32]).expect("append");
        let p = path.to_str().expect("utf-8 path");
        let st = status(p).expect("status");
        let mut want = 0;
        for part in [
            &b"key"[..],
            &rev(2, 0),
            b"v2",
            &rev(5, 1),
            b"v5",
            b"meta",
            b"consistent_index",
            &7u64.to_be_bytes(),
        ] {
            want = crc32c::crc32c_append(want, part);
        }
        assert_eq!((st.hash, st.revision, st.total_key), (want, 5, 3));
        assert_eq!(st.total_size % 4096, 0);
    }

    /// etcd's databases do not store their freelist (meta `freelist` = all ones): the same
    /// file with its metas saying so reads the same.
    #[test]
    fn reads_a_database_without_a_stored_freelist() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        {
            let mut db = bbolt_rs::Bolt::open(&path).expect("create");
            db.update(|mut tx| {
                let mut k = tx.create_bucket_if_not_exists("key")?;
                for i in 0..2000 {
                    k.put(rev(i + 2, 0), format!("value {i}"))?;
                }
                Ok(())
            })
            .expect("write");
            db.close();
        }
        let p = path.to_str().expect("utf-8 path");
        let stored = status(p).expect("status");
        let mut bytes = std::fs::read(&path).expect("read");
        let page_size = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) as usize;
        for meta in [16, page_size + 16] {
            bytes[meta + 32..meta + 40].copy_from_slice(&u64::MAX.to_le_bytes());
            let sum = bytes[meta..meta + 56]
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
                    (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
                });
            bytes[meta + 56..meta + 64].copy_from_slice(&sum.to_le_bytes());
        }
        std::fs::write(&path, bytes).expect("rewrite");
        assert_eq!(status(p).expect("status"), stored);
        assert_eq!((stored.revision, stored.total_key), (2001, 2000));
    }

    #[test]
    fn refuses_what_bbolt_refuses_with_its_words() {
        let dir = tempfile::tempdir().expect("temp dir");
        let at = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            p.to_str().expect("utf-8 path").to_string()
        };
        let msg = |p: &str| match status(p).map(|_| ()).unwrap_err() {
            BoltError::Open(m) | BoltError::Corrupt(m) => m,
        };
        let missing = dir.path().join("nope.db");
        let missing = missing.to_str().expect("utf-8 path");
        assert_eq!(
            msg(missing),
            format!("stat {missing}: no such file or directory")
        );
        let empty = at("empty.db", b"");
        assert_eq!(msg(&empty), format!("write {empty}: bad file descriptor"));
        assert_eq!(msg(&at("short.db", b"hello\n")), "invalid database");
        assert_eq!(msg(&at("zero.db", &[0u8; 20480])), "invalid database");
        let d = dir.path().to_str().expect("utf-8 path");
        assert_eq!(msg(d), format!("open {d}: is a directory"));
    }
}
