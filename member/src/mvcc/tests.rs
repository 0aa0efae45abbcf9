//! MVCC rules checked against what etcd 3.4 answers for the same history
//! (see shared/etcd-reference/kv-single.txt).

use oxetcd_common::etcdserverpb::{
    compare, range_request, request_op, response_op, CompactionRequest, Compare,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use prost::Message;
use rocksdb::WriteBatch;

use super::*;
use crate::storage::Storage;

/// A deterministic stream of numbers: `next(n)` is in `0..n`.
pub(super) fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    }
}

struct NoLeases;
impl LeaseCheck for NoLeases {
    fn exists(&self, _: i64) -> bool {
        false
    }

    fn attached(&self, _: &[u8]) -> i64 {
        0
    }
}

/// (key, value, create revision, mod revision, version)
type Row = (String, String, i64, i64, i64);

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Storage,
    store: Mvcc,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let store = Mvcc::open(storage.clone()).unwrap();
        Self {
            _dir: dir,
            storage,
            store,
        }
    }

    fn reopen(&mut self) {
        self.store = Mvcc::open(self.storage.clone()).unwrap();
    }

    fn write<T>(
        &mut self,
        f: impl FnOnce(&Mvcc, &mut WriteTxn) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let mut txn = self.store.write_txn();
        let out = f(&self.store, &mut txn)?;
        let mut batch = WriteBatch::default();
        self.store.commit(txn, &mut batch);
        self.store.seal(&mut batch);
        self.storage.db().write(batch).unwrap();
        self.store.batch_written();
        Ok(out)
    }

    fn put(&mut self, k: &str, v: &str) -> i64 {
        let req = PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        self.write(|s, t| put(s, t, &req, &NoLeases))
            .unwrap()
            .header
            .unwrap()
            .revision
    }

    fn del(&mut self, k: &str, end: &str) -> i64 {
        let req = DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        };
        self.write(|s, t| delete_range(s, t, &req, &NoLeases))
            .unwrap()
            .deleted
    }

    fn get(&self, req: RangeRequest) -> Result<Vec<Row>, KvError> {
        Ok(range(&self.store, &req)?
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8(kv.key).unwrap(),
                    String::from_utf8(kv.value).unwrap(),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                )
            })
            .collect())
    }

    fn compact(&mut self, rev: i64) -> Result<(), KvError> {
        let mut batch = WriteBatch::default();
        compact(
            &mut self.store,
            &CompactionRequest {
                revision: rev,
                physical: true,
            },
            &mut batch,
        )?;
        // The physical part, one key at a time (the member runs it in the background).
        let mut from = None;
        loop {
            from = self
                .store
                .compact_some(rev, from.as_deref(), 1, &mut batch)
                .unwrap();
            if from.is_none() {
                break;
            }
        }
        self.storage.db().write(batch).unwrap();
        Ok(())
    }
}

fn key(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        ..Default::default()
    }
}

fn prefix(k: &str) -> RangeRequest {
    let mut end = k.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: k.into(),
        range_end: end,
        ..Default::default()
    }
}

#[test]
fn revisions_versions_and_history() {
    let mut f = Fixture::new();
    assert_eq!(f.store.current_rev(), 1);
    assert_eq!(f.put("foo", "bar"), 2);
    assert_eq!(f.put("foo", "bar2"), 3);
    f.put("foo1", "v1");
    f.put("foo2", "v2");
    f.put("zoo", "z");
    assert_eq!(
        f.get(key("foo")).unwrap(),
        vec![("foo".into(), "bar2".into(), 2, 3, 2)]
    );
    assert_eq!(
        f.get(RangeRequest {
            revision: 2,
            ..key("foo")
        })
        .unwrap()[0]
            .1,
        "bar"
    );
    assert_eq!(f.get(prefix("foo")).unwrap().len(), 3);
    // from-key and all keys
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(f.get(all).unwrap().len(), 4);
    assert_eq!(
        f.get(RangeRequest {
            revision: 100,
            ..key("foo")
        }),
        Err(KvError::FutureRev)
    );
}

#[test]
fn limit_count_more_and_sort() {
    let mut f = Fixture::new();
    for (k, v) in [("foo", "c"), ("foo1", "b"), ("foo2", "a")] {
        f.put(k, v);
    }
    let resp = range(
        &f.store,
        &RangeRequest {
            limit: 1,
            ..prefix("foo")
        },
    )
    .unwrap();
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (1, true, 3));
    let resp = range(
        &f.store,
        &RangeRequest {
            count_only: true,
            ..prefix("foo")
        },
    )
    .unwrap();
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
    let sorted = f
        .get(RangeRequest {
            sort_target: range_request::SortTarget::Value as i32,
            ..prefix("foo")
        })
        .unwrap();
    assert_eq!(
        sorted.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let desc = f
        .get(RangeRequest {
            sort_order: range_request::SortOrder::Descend as i32,
            sort_target: range_request::SortTarget::Mod as i32,
            limit: 2,
            ..prefix("foo")
        })
        .unwrap();
    assert_eq!(
        desc.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["foo2", "foo1"]
    );
    let keys_only = range(
        &f.store,
        &RangeRequest {
            keys_only: true,
            ..key("foo")
        },
    )
    .unwrap();
    assert!(keys_only.kvs[0].value.is_empty());
    let filtered = f
        .get(RangeRequest {
            min_mod_revision: 3,
            ..prefix("foo")
        })
        .unwrap();
    assert_eq!(filtered.len(), 2);
}

#[test]
fn delete_tombstones_and_recreate() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    assert_eq!(f.del("a", ""), 1);
    assert_eq!(f.store.current_rev(), 4);
    // Deleting nothing does not bump the revision.
    assert_eq!(f.del("a", ""), 0);
    assert_eq!(f.store.current_rev(), 4);
    assert!(f.get(key("a")).unwrap().is_empty());
    assert_eq!(
        f.get(RangeRequest {
            revision: 3,
            ..key("a")
        })
        .unwrap()[0]
            .4,
        2
    );
    f.put("a", "3");
    assert_eq!(
        f.get(key("a")).unwrap(),
        vec![("a".into(), "3".into(), 5, 5, 1)]
    );
}

#[test]
fn put_flags() {
    let mut f = Fixture::new();
    let ignore = PutRequest {
        key: "nokey".into(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        f.write(|s, t| put(s, t, &ignore, &NoLeases)).unwrap_err(),
        KvError::KeyNotFound
    );
    assert_eq!(f.store.current_rev(), 1);
    f.put("k", "v");
    let ignore = PutRequest {
        key: "k".into(),
        ignore_value: true,
        prev_kv: true,
        ..Default::default()
    };
    let resp = f.write(|s, t| put(s, t, &ignore, &NoLeases)).unwrap();
    assert_eq!(resp.prev_kv.unwrap().value, b"v");
    assert_eq!(f.get(key("k")).unwrap()[0].1, "v");
    assert_eq!(f.get(key("k")).unwrap()[0].4, 2);
    let leased = PutRequest {
        key: "k".into(),
        lease: 7,
        ..Default::default()
    };
    assert_eq!(
        f.write(|s, t| put(s, t, &leased, &NoLeases)).unwrap_err(),
        KvError::LeaseNotFound
    );
}

fn cmp(
    k: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    u: compare::TargetUnion,
) -> Compare {
    Compare {
        key: k.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(u),
        ..Default::default()
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            prev_kv: true,
            ..Default::default()
        })),
    }
}

fn op_get(k: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(key(k))),
    }
}

#[test]
fn txn_compares_branches_and_one_revision() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut f = Fixture::new();
    f.put("user1", "bad");
    let req = TxnRequest {
        compare: vec![cmp("user1", T::Value, R::Equal, U::Value(b"bad".to_vec()))],
        success: vec![
            op_get("user1"),
            op_put("user1", "good"),
            op_put("other", "x"),
            op_get("user1"),
        ],
        failure: vec![op_put("user1", "failed")],
    };
    let resp = f.write(|s, t| txn(s, t, &req, &NoLeases)).unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    // One revision for both puts; reads inside the txn see its earlier writes.
    assert_eq!(f.store.current_rev(), 3);
    let rev = |i: usize| match &resp.responses[i].response {
        Some(response_op::Response::ResponseRange(r)) => {
            (r.header.as_ref().unwrap().revision, r.kvs[0].value.clone())
        }
        _ => panic!("not a range"),
    };
    assert_eq!(rev(0), (2, b"bad".to_vec()));
    assert_eq!(rev(3), (3, b"good".to_vec()));
    assert_eq!(f.get(key("other")).unwrap()[0].2, 3);

    // Comparing the value of a missing key fails; other targets compare as zero.
    let req = TxnRequest {
        compare: vec![cmp("nokey", T::Value, R::Equal, U::Value(vec![]))],
        ..Default::default()
    };
    assert!(
        !f.write(|s, t| txn(s, t, &req, &NoLeases))
            .unwrap()
            .succeeded
    );
    let req = TxnRequest {
        compare: vec![cmp("nokey", T::Create, R::Equal, U::CreateRevision(0))],
        success: vec![op_put("nokey", "created")],
        ..Default::default()
    };
    assert!(
        f.write(|s, t| txn(s, t, &req, &NoLeases))
            .unwrap()
            .succeeded
    );
    let req = TxnRequest {
        compare: vec![
            cmp("user1", T::Mod, R::Greater, U::ModRevision(0)),
            cmp("user1", T::Version, R::NotEqual, U::Version(9)),
            cmp("user1", T::Version, R::Less, U::Version(2)),
        ],
        ..Default::default()
    };
    // user1 has version 2: LESS 2 is false.
    assert!(
        !f.write(|s, t| txn(s, t, &req, &NoLeases))
            .unwrap()
            .succeeded
    );
    // A read-only txn does not bump the revision.
    assert_eq!(f.store.current_rev(), 4);
}

#[test]
fn txn_checks() {
    let dup = TxnRequest {
        success: vec![op_put("a", "1"), op_put("a", "2")],
        ..Default::default()
    };
    assert_eq!(check_txn(&dup, 128), Err(KvError::DuplicateKey));
    let del_and_put = TxnRequest {
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: "a".into(),
                        range_end: "c".into(),
                        ..Default::default()
                    },
                )),
            },
            op_put("b", "1"),
        ],
        ..Default::default()
    };
    assert_eq!(check_txn(&del_and_put, 128), Err(KvError::DuplicateKey));
    // The same put in both branches of a nested txn is fine.
    let nested = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                success: vec![op_put("a", "1")],
                failure: vec![op_put("a", "2")],
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(check_txn(&nested, 128), Ok(()));
    let many = TxnRequest {
        success: (0..3).map(|i| op_put(&format!("k{i}"), "v")).collect(),
        ..Default::default()
    };
    assert_eq!(check_txn(&many, 2), Err(KvError::TooManyOps));
    let empty = TxnRequest {
        success: vec![op_put("", "v")],
        ..Default::default()
    };
    assert_eq!(check_txn(&empty, 128), Err(KvError::EmptyKey));
}

#[test]
fn compaction_rules() {
    let mut f = Fixture::new();
    f.put("foo", "bar"); // 2
    f.put("foo", "bar2"); // 3
    f.put("gone", "x"); // 4
    f.del("gone", ""); // 5
    f.put("foo", "bar3"); // 6
    assert_eq!(f.compact(7), Err(KvError::FutureRev));
    f.compact(5).unwrap();
    assert_eq!(f.compact(5), Err(KvError::Compacted));
    assert_eq!(f.compact(4), Err(KvError::Compacted));
    assert_eq!(
        f.get(RangeRequest {
            revision: 3,
            ..key("foo")
        }),
        Err(KvError::Compacted)
    );
    // The compaction revision itself is still readable.
    assert_eq!(
        f.get(RangeRequest {
            revision: 5,
            ..key("foo")
        })
        .unwrap()[0]
            .1,
        "bar2"
    );
    assert_eq!(
        f.get(key("foo")).unwrap(),
        vec![("foo".into(), "bar3".into(), 2, 6, 3)]
    );
    assert_eq!(f.store.key_count(), 1);
}

#[test]
fn restart_keeps_everything() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    f.put("b", "1");
    f.del("b", "");
    f.put("c", "1");
    f.compact(3).unwrap();
    f.put("a", "3");
    let before = (
        f.store.current_rev(),
        f.store.compact_rev(),
        f.get(prefix("a")).unwrap(),
    );
    f.reopen();
    let after = (
        f.store.current_rev(),
        f.store.compact_rev(),
        f.get(prefix("a")).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(after.2, vec![("a".into(), "3".into(), 2, 7, 3)]);
    assert!(f.get(key("b")).unwrap().is_empty());
    // The next write continues from the restored revision.
    assert_eq!(f.put("d", "1"), 8);
}

#[test]
fn later_writes_of_one_apply_read_earlier_ones_before_the_batch_is_written() {
    // One apply call commits several requests into one RocksDB batch: the second put of a key
    // must see the first (for its version and prev_kv) although it is not in RocksDB yet.
    let mut f = Fixture::new();
    let mut batch = WriteBatch::default();
    for v in ["1", "2", "3"] {
        let req = PutRequest {
            key: "k".into(),
            value: v.into(),
            prev_kv: true,
            ..Default::default()
        };
        let mut txn = f.store.write_txn();
        let resp = put(&f.store, &mut txn, &req, &NoLeases).unwrap();
        if v != "1" {
            assert!(
                resp.prev_kv.is_some(),
                "put {v} must see the previous value"
            );
        }
        f.store.commit(txn, &mut batch);
    }
    assert_eq!(
        f.get(key("k")).unwrap(),
        vec![("k".into(), "3".into(), 2, 4, 3)]
    );
    f.store.seal(&mut batch);
    f.storage.db().write(batch).unwrap();
    f.store.batch_written();
    assert_eq!(
        f.get(key("k")).unwrap(),
        vec![("k".into(), "3".into(), 2, 4, 3)]
    );
    f.reopen();
    assert_eq!(
        f.get(key("k")).unwrap(),
        vec![("k".into(), "3".into(), 2, 4, 3)]
    );
}

#[test]
fn a_rebuilt_index_answers_as_the_stored_one() {
    // The index is derived from the `kv` rows: rebuilt (a restored snapshot, an older data
    // dir), it must answer every read at every revision as the one kept on every write.
    let mut f = Fixture::new();
    let leased = |f: &mut Fixture, k: &str, lease: i64| {
        f.write(|s, t| {
            let prev = t.get(s, k.as_bytes())?;
            Ok(t.put(k.into(), b"v".to_vec(), lease, prev))
        })
        .unwrap();
    };
    f.put("a", "1");
    f.put("a", "2");
    f.del("a", "");
    f.put("a", "3");
    f.put("b\0x", "1");
    leased(&mut f, "c", 7);
    leased(&mut f, "c", 8);
    leased(&mut f, "d", 7);
    leased(&mut f, "e", 9);
    f.del("e", "");
    f.put("d", "no lease");
    f.compact(5).unwrap();
    f.put("f", "1");
    let seen = |f: &Fixture| {
        let reads: Vec<_> = (f.store.compact_rev()..=f.store.current_rev())
            .map(|rev| {
                f.get(RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    revision: rev,
                    ..Default::default()
                })
                .unwrap()
            })
            .collect();
        let mut leases = f.store.leased_keys().unwrap();
        leases.sort();
        (reads, f.store.key_count(), leases)
    };
    let before = seen(&f);
    assert_eq!(before.1, 5);
    assert_eq!(before.2, vec![(b"c".to_vec(), 8)]);
    clear_derived(&f.storage).unwrap();
    f.reopen();
    assert_eq!(seen(&f), before);
}

/// One-key reads go through the recent keys and the index's Bloom filters (`recent.rs`,
/// `storage.rs`); a range over every key walks the index in total order. Under random puts,
/// deletes, compactions, memtable flushes and reopens (an empty cache), both always agree, at
/// the current revision and at older ones.
#[test]
fn one_key_reads_agree_with_full_scans() {
    // Keys that are prefixes of each other and hold zero bytes: their encodings must stay apart.
    let keys = ["a", "a\0", "a\0b", "ab", "b", "ba", "\0", "zz"];
    let mut f = Fixture::new();
    let mut next = numbers(0x9E37_79B9_7F4A_7C15);
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    for step in 0..400 {
        let k = keys[next(keys.len() as u64) as usize];
        match next(10) {
            0..=5 => {
                f.put(k, &format!("v{step}"));
            }
            6 | 7 => {
                f.del(k, "");
            }
            8 => {
                let rev = f.store.current_rev() - next(3) as i64;
                if rev > f.store.compact_rev() {
                    f.compact(rev).unwrap();
                }
            }
            _ => {
                f.storage
                    .db()
                    .flush_cf(f.storage.cf(crate::storage::CF_INDEX))
                    .unwrap();
                if next(2) == 0 {
                    f.reopen();
                }
            }
        }
        let now = f.store.current_rev();
        let floor = f.store.compact_rev().max(1);
        for rev in [0, now, now - 1, now - 3]
            .into_iter()
            .filter(|r| *r == 0 || *r >= floor)
        {
            let scan = f.get(RangeRequest {
                revision: rev,
                ..all.clone()
            });
            let scan = scan.unwrap();
            for k in keys {
                let one = f
                    .get(RangeRequest {
                        revision: rev,
                        ..key(k)
                    })
                    .unwrap();
                let want: Vec<_> = scan.iter().filter(|r| r.0 == k).cloned().collect();
                assert_eq!(one, want, "key {k:?} at revision {rev}, step {step}");
            }
        }
    }
}

/// An answer past the bytes built under the lock is read again as it is sent; joined, the
/// parts are what prost encodes for the decoded answer.
#[test]
fn an_encoded_range_is_the_decoded_one_encoded() {
    let mut f = Fixture::new();
    for i in 0..3000 {
        f.put(&format!("k{i:05}"), &"v".repeat(500 + i % 1000));
    }
    f.put("k00007", "rewritten");
    for (name, req) in [
        ("one key", key("k00042")),
        ("every key", prefix("k")),
        (
            "the first 2,500",
            RangeRequest {
                limit: 2500,
                ..prefix("k")
            },
        ),
        ("none", key("missing")),
    ] {
        let want = range(&f.store, &req).unwrap().encode_to_vec();
        let encoded = range_encoded(&f.store, &req)
            .unwrap()
            .expect("a plain range");
        let header = Some(ResponseHeader {
            revision: encoded.revision,
            ..Default::default()
        });
        let (parts, rest) = EncodedRange::Encoded {
            header,
            kvs: encoded,
        }
        .into_parts(b"");
        let mut got = parts.concat();
        let mut later = 0;
        if let Some(mut rest) = rest {
            while let Some(part) = rest.next_part() {
                got.extend_from_slice(&part.unwrap());
                later += 1;
            }
        }
        assert!(got == want, "{name}: the encodings differ");
        // About 3 MB: past what is built under the lock.
        assert_eq!(
            later > 0,
            name.starts_with("every") || name.starts_with("the first"),
            "{name}"
        );
    }
}

/// A compaction while a large answer is sent removes rows it still has to read: the answer
/// ends with etcd's compaction error, never with other rows.
#[test]
fn a_compaction_during_a_large_answer_ends_it_with_compacted() {
    let mut f = Fixture::new();
    for i in 0..3000 {
        f.put(&format!("k{i:05}"), &"v".repeat(1000));
    }
    let encoded = range_encoded(&f.store, &prefix("k"))
        .unwrap()
        .expect("a plain range");
    let (_, rest) = EncodedRange::Encoded {
        header: None,
        kvs: encoded,
    }
    .into_parts(b"");
    let mut rest = rest.expect("3 MB is past what is kept");
    // The last key rewritten, then history compacted: its old row is gone.
    let rev = f.put("k02999", "new");
    f.compact(rev).unwrap();
    let mut outcome = None;
    while let Some(part) = rest.next_part() {
        if let Err(e) = part {
            outcome = Some(e);
            break;
        }
    }
    assert!(matches!(outcome, Some(KvError::Compacted)), "{outcome:?}");
}

/// A view reads the store as it was when taken, whatever is applied and compacted after:
/// the keys, values, count, header revision, and older revisions it could read then.
#[test]
fn a_view_reads_the_store_as_it_was_when_taken() {
    let mut f = Fixture::new();
    for i in 0..300 {
        f.put(&format!("k{i:03}"), &format!("v{i}"));
    }
    let before = f.put("k001", "rewritten");
    let (all, older) = (
        prefix("k"),
        RangeRequest {
            revision: before - 1,
            ..prefix("k")
        },
    );
    let want: Vec<_> = [&all, &older]
        .map(|req| range(&f.store, req).unwrap())
        .to_vec();
    let storage = f.storage.clone();
    let view = View::of(&f.store, &storage);
    f.put("k000", "changed");
    f.put("k500", "new");
    f.del("k002", "k010");
    let rev = f.put("k001", "again");
    f.compact(rev).unwrap();
    assert_eq!(range(&f.store, &older), Err(KvError::Compacted));
    for (req, want) in [&all, &older].into_iter().zip(&want) {
        assert_eq!(&range(&view, req).unwrap(), want);
        let encoded = range_encoded(&view, req).unwrap().expect("a plain range");
        let (parts, rest) = EncodedRange::Encoded {
            header: want.header,
            kvs: encoded,
        }
        .into_parts(b"");
        assert!(rest.is_none(), "a small answer is built at once");
        assert!(
            parts.concat() == want.encode_to_vec(),
            "the encodings differ"
        );
    }
}

/// History read a few bytes at a time comes in whole revisions, and the reads together are
/// the history read at once: a watcher replaying far back never holds all of it, and never
/// sees part of a revision.
#[test]
fn history_read_in_parts_is_whole_revisions() {
    let mut f = Fixture::new();
    for i in 0..40 {
        f.put(&format!("k{:02}", i % 7), &"v".repeat(100 + i));
        if i % 5 == 0 {
            // Several keys in one revision.
            let req = TxnRequest {
                success: (0..4).map(|j| op_put(&format!("t{i}-{j}"), "x")).collect(),
                ..Default::default()
            };
            f.write(|s, t| txn(s, t, &req, &NoLeases)).unwrap();
        }
        if i % 9 == 0 {
            f.del("k00", "k03");
        }
    }
    let current = f.store.current_rev();
    for (start, end, prev_kv) in [("\0", "\0", false), ("k", "l", true)] {
        let whole = f
            .store
            .events(
                2,
                current,
                start.as_bytes(),
                end.as_bytes(),
                prev_kv,
                usize::MAX,
            )
            .unwrap();
        assert_eq!(whole.through, current);
        assert!(whole.events.len() > 40);
        for max_bytes in [0, 150, 1000] {
            let (mut from, mut joined, mut reads) = (2, Vec::new(), 0);
            while from <= current {
                let part = f
                    .store
                    .events(
                        from,
                        current,
                        start.as_bytes(),
                        end.as_bytes(),
                        prev_kv,
                        max_bytes,
                    )
                    .unwrap();
                assert!(part.through >= from, "every read moves on");
                for e in &part.events {
                    let rev = e.kv.as_ref().unwrap().mod_revision;
                    assert!((from..=part.through).contains(&rev));
                }
                joined.extend(part.events);
                from = part.through + 1;
                reads += 1;
            }
            assert_eq!(joined, whole.events, "{start:?} by {max_bytes} B");
            if max_bytes < 1000 {
                assert!(reads > 10, "{max_bytes} B a read: {reads} reads");
            }
        }
    }
}

/// A txn without writes answers the same through `read_txn` (read-only, from the store or a
/// view) as through the write path: compares of every target over keys and ranges, ranges
/// with options, at older revisions, nested txns, and the errors.
#[test]
fn a_read_only_txn_answers_as_the_write_path_does() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut f = Fixture::new();
    for i in 0..30 {
        f.put(&format!("k{:02}", i % 12), &format!("v{i}"));
    }
    f.del("k03", "k05");
    let old = f.put("k00", "again") - 5;
    let op = |r: RangeRequest| RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    };
    let ranges = vec![
        op(key("k01")),
        op(key("missing")),
        op(RangeRequest {
            limit: 3,
            ..prefix("k")
        }),
        op(RangeRequest {
            sort_target: range_request::SortTarget::Mod as i32,
            sort_order: range_request::SortOrder::Descend as i32,
            limit: 4,
            ..prefix("k")
        }),
        op(RangeRequest {
            count_only: true,
            ..prefix("k")
        }),
        op(RangeRequest {
            keys_only: true,
            min_mod_revision: old,
            ..prefix("k")
        }),
        op(RangeRequest {
            revision: old,
            ..prefix("k")
        }),
    ];
    let nested = RequestOp {
        request: Some(request_op::Request::RequestTxn(TxnRequest {
            compare: vec![cmp("k02", T::Version, R::Greater, U::Version(1))],
            success: vec![op_get("k02")],
            failure: vec![op_get("k05")],
        })),
    };
    let compares = [
        vec![cmp("k01", T::Value, R::Equal, U::Value(b"v13".to_vec()))],
        vec![cmp("k01", T::Value, R::Equal, U::Value(b"v1".to_vec()))],
        vec![cmp("missing", T::Create, R::Equal, U::CreateRevision(0))],
        vec![cmp("missing", T::Value, R::Equal, U::Value(vec![]))],
        vec![Compare {
            range_end: b"k1".to_vec(),
            ..cmp("k0", T::Mod, R::Less, U::ModRevision(old + 10))
        }],
        vec![
            cmp("k02", T::Version, R::Greater, U::Version(1)),
            cmp("k06", T::Mod, R::NotEqual, U::ModRevision(3)),
        ],
    ];
    let mut cases: Vec<TxnRequest> = compares
        .into_iter()
        .map(|compare| TxnRequest {
            compare,
            success: ranges.clone(),
            failure: vec![nested.clone(), op_get("k07")],
        })
        .collect();
    // Errors: a future and a compacted revision.
    let current = f.store.current_rev();
    for revision in [current + 1, 1] {
        cases.push(TxnRequest {
            success: vec![op(RangeRequest {
                revision,
                ..key("k01")
            })],
            ..Default::default()
        });
    }
    f.compact(2).unwrap();
    let storage = f.storage.clone();
    let mut succeeded = 0;
    for req in &cases {
        let want = f.write(|s, t| txn(s, t, req, &NoLeases));
        assert_eq!(
            f.store.current_rev(),
            current,
            "a read-only txn writes nothing"
        );
        assert_eq!(read_txn(&f.store, req), want, "{req:?}");
        assert_eq!(
            read_txn(&View::of(&f.store, &storage), req),
            want,
            "{req:?}"
        );
        succeeded += want.is_ok_and(|r| r.succeeded) as usize;
    }
    assert!(
        (2..cases.len() - 2).contains(&succeeded),
        "both branches taken"
    );
}

/// A delete of more keys than the recent-keys cache should take in empties the cache instead
/// of remembering each key: no key it remembered as live is answered after the delete.
#[test]
fn a_large_delete_leaves_no_key_remembered_live() {
    let mut f = Fixture::new();
    let n = 12_000;
    // In txns of 1,000 puts: each small enough to be remembered key by key.
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let req = TxnRequest {
            success: chunk
                .iter()
                .map(|i| op_put(&format!("k{i:05}"), "v"))
                .collect(),
            ..Default::default()
        };
        f.write(|s, t| txn(s, t, &req, &NoLeases)).unwrap();
    }
    assert_eq!(f.del("k", "l"), n as i64);
    for i in [0, 1, n / 2, n - 1] {
        let k = format!("k{i:05}");
        assert_eq!(f.get(key(&k)).unwrap(), vec![], "{k} is deleted");
        let rev = f.put(&k, "again");
        let got = f.get(key(&k)).unwrap();
        assert_eq!(
            got,
            vec![(k.clone(), "again".to_string(), rev, rev, 1)],
            "{k}: a new generation"
        );
    }
}

#[test]
fn a_txn_reads_its_own_writes_among_the_stored_keys_in_key_order() {
    let mut f = Fixture::new();
    for k in ["a", "c", "e", "g"] {
        f.put(k, "stored");
    }
    let keys = |kvs: Vec<oxetcd_common::mvccpb::KeyValue>| {
        kvs.into_iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    String::from_utf8(kv.key).unwrap(),
                    String::from_utf8(kv.value).unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    f.write(|s, t| {
        let prev = t.get(s, b"b")?;
        t.put(b"b".to_vec(), b"staged".to_vec(), 0, prev);
        let prev = t.get(s, b"c")?;
        t.put(b"c".to_vec(), b"staged".to_vec(), 0, prev);
        let prev = t.get(s, b"z")?;
        t.put(b"z".to_vec(), b"staged".to_vec(), 0, prev);
        let (deleted, prev_kvs) = t.delete_range(s, &NoLeases, b"e", b"f", true)?;
        assert_eq!((deleted, keys(prev_kvs)), (1, vec!["e=stored".to_string()]));
        assert_eq!(
            keys(t.range(s, b"", &[0])?),
            ["a=stored", "b=staged", "c=staged", "g=stored", "z=staged"]
        );
        assert_eq!(keys(t.range(s, b"b", b"g")?), ["b=staged", "c=staged"]);
        assert_eq!(keys(t.range(s, b"c", &[])?), ["c=staged"]);
        assert_eq!(keys(t.range(s, b"e", &[])?), Vec::<String>::new());
        assert_eq!(keys(t.range(s, b"y", b"x")?), Vec::<String>::new());
        let (deleted, prev_kvs) = t.delete_range(s, &NoLeases, b"a", b"c", false)?;
        assert_eq!((deleted, prev_kvs.len()), (2, 0));
        assert_eq!(
            keys(t.range(s, b"", &[0])?),
            ["c=staged", "g=stored", "z=staged"]
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(
        f.get(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect::<Vec<_>>(),
        ["c", "g", "z"]
    );
}

/// Leases by key, for deletes that look a key's lease up.
struct Attached(Vec<(&'static str, i64)>);
impl LeaseCheck for Attached {
    fn exists(&self, _: i64) -> bool {
        true
    }

    fn attached(&self, key: &[u8]) -> i64 {
        let found = self.0.iter().find(|(k, _)| k.as_bytes() == key);
        found.map_or(0, |(_, lease)| *lease)
    }
}

#[test]
fn a_delete_that_skips_values_takes_keys_from_the_index_and_leases_from_the_lease_table() {
    for skip in [false, true] {
        let mut f = Fixture::new();
        let stored = [("a", 7), ("c", 0), ("e", 9), ("g", 0)];
        f.write(|s, t| {
            for (k, lease) in stored {
                let prev = t.get(s, k.as_bytes())?;
                t.put(k.into(), b"stored".to_vec(), lease, prev);
            }
            Ok(())
        })
        .unwrap();
        let leases = Attached(vec![("a", 7), ("e", 9)]);
        let mut txn = f.store.write_txn();
        if skip {
            txn.skip_deleted_values();
        }
        let prev = txn.get(&f.store, b"b").unwrap();
        txn.put(b"b".to_vec(), b"staged".to_vec(), 5, prev);
        let one = txn.delete_range(&f.store, &leases, b"c", &[], false);
        assert_eq!(one.unwrap(), (1, vec![]));
        let many = txn.delete_range(&f.store, &leases, b"a", b"f", false);
        assert_eq!(many.unwrap(), (3, vec![]), "a, b (staged) and e");
        let mut batch = WriteBatch::default();
        let events = f.store.commit(txn, &mut batch);
        f.store.seal(&mut batch);
        f.storage.db().write(batch).unwrap();
        f.store.batch_written();
        let deletes: Vec<(String, Option<String>)> = events[1..]
            .iter()
            .map(|e| {
                let key = e.kv.as_ref().unwrap().key.clone();
                let prev = e.prev_kv.as_ref().map(|p| {
                    assert_eq!(p.key, key);
                    String::from_utf8(p.value.clone()).unwrap()
                });
                (String::from_utf8(key).unwrap(), prev)
            })
            .collect();
        let prev = |v: &str| (!skip).then(|| v.to_string());
        assert_eq!(
            deletes,
            [
                ("c".to_string(), prev("stored")),
                ("a".to_string(), prev("stored")),
                ("b".to_string(), prev("staged")),
                ("e".to_string(), prev("stored")),
            ],
            "skip = {skip}"
        );
        // The deleted keys' lease rows went with them.
        assert_eq!(f.store.leased_keys().unwrap(), vec![]);
        let left = f.get(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        });
        assert_eq!(
            left.unwrap().into_iter().map(|r| r.0).collect::<Vec<_>>(),
            ["g"]
        );
    }
}

#[test]
fn a_large_range_reads_values_in_key_order_wherever_they_are_stored() {
    let mut f = Fixture::new();
    let mut next = numbers(0x2545_F491_4F6C_DD1D);
    let mut model = std::collections::BTreeMap::new();
    // Keys written in a scattered order, some rewritten, some deleted: a key's value sits
    // anywhere in revision order, in SST files or in the memtable.
    for step in 0..2500 {
        let k = format!("k{:04}", next(700));
        if next(8) == 0 {
            f.del(&k, "");
            model.remove(&k);
        } else {
            let v = format!("v{step}");
            f.put(&k, &v);
            model.insert(k, v);
        }
        if step % 600 == 599 {
            let kv = f.storage.cf(crate::storage::CF_KV);
            f.storage.db().flush_cf(kv).unwrap();
        }
    }
    // An apply in progress: committed, not written yet.
    let mut txn = f.store.write_txn();
    for i in (0..700).step_by(7) {
        let k = format!("k{i:04}");
        let prev = txn.get(&f.store, k.as_bytes()).unwrap();
        txn.put(k.clone().into(), b"staged".to_vec(), 0, prev);
        model.insert(k, "staged".into());
    }
    let mut batch = WriteBatch::default();
    f.store.commit(txn, &mut batch);
    let expected: Vec<(String, String)> = model.into_iter().collect();
    let pairs = |kvs: Vec<oxetcd_common::mvccpb::KeyValue>| -> Vec<(String, String)> {
        kvs.into_iter()
            .map(|kv| {
                let s = |b| String::from_utf8(b).unwrap();
                (s(kv.key), s(kv.value))
            })
            .collect()
    };
    let reader = f.store.write_txn();
    let during = reader.range(&f.store, b"k", b"l").unwrap();
    assert!(during.len() > 256, "more than one chunk: {}", during.len());
    assert_eq!(pairs(during), expected);
    f.store.seal(&mut batch);
    f.storage.db().write(batch).unwrap();
    f.store.batch_written();
    let after = f.get(RangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        ..Default::default()
    });
    let after: Vec<(String, String)> = after.unwrap().into_iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(after, expected);
}
