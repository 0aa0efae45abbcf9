//! Answers of several megabytes, against real etcd 3.4, for the same history:
//! - a unary Range: oxetcd sends it as its stored rows, in parts of about a megabyte
//!   (`member/src/api/range.rs`); a client must decode exactly what etcd sends;
//! - a watch replaying that history: oxetcd reads it a megabyte at a time
//!   (`member/src/watch/stream.rs`); the client must see every event once, in order.

use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::{
    range_request, request_op, watch_request, PutRequest, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use oxetcd_common::mvccpb::Event;
use oxetcd_tests::{channel, Kind, Member};
use tonic::transport::Channel;

const KEYS: usize = 3000;
/// Puts per txn (etcd's default `--max-txn-ops` is 128).
const PER_TXN: usize = 100;

async fn kv(endpoint: &str) -> KvClient<Channel> {
    KvClient::new(channel(endpoint).await).max_decoding_message_size(64 << 20)
}

/// 3,000 keys of 1.0 to 2.2 KB (about 4.8 MB) in 30 txns, then 200 of them rewritten;
/// returns the revision after the first txns.
async fn load(kv: &mut KvClient<Channel>) -> i64 {
    let mut middle = 0;
    for (round, keys) in (0..KEYS).collect::<Vec<_>>().chunks(PER_TXN).enumerate() {
        let success = keys
            .iter()
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("key/{i:05}").into_bytes(),
                    value: vec![b'a' + (i % 26) as u8; 1000 + (i % 13) * 100],
                    ..Default::default()
                })),
            })
            .collect();
        let rev = kv
            .txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await
            .expect("txn")
            .into_inner()
            .header
            .expect("header")
            .revision;
        if round == KEYS / PER_TXN / 2 {
            middle = rev;
        }
    }
    for i in (0..KEYS).step_by(15) {
        kv.put(PutRequest {
            key: format!("key/{i:05}").into_bytes(),
            value: b"rewritten".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    }
    middle
}

fn all() -> RangeRequest {
    RangeRequest {
        key: b"key/".to_vec(),
        range_end: b"key0".to_vec(),
        ..Default::default()
    }
}

/// What a Range answers, but the member and cluster IDs and the raft term.
async fn answers(kind: Kind) -> Vec<(String, RangeResponse)> {
    let member = Member::start(kind);
    let mut kv = kv(&member.endpoint()).await;
    let middle = load(&mut kv).await;
    let cases = [
        ("everything", all()),
        (
            "the first 2,000",
            RangeRequest {
                limit: 2000,
                ..all()
            },
        ),
        (
            "serializable",
            RangeRequest {
                serializable: true,
                ..all()
            },
        ),
        (
            "at an older revision",
            RangeRequest {
                revision: middle,
                ..all()
            },
        ),
        (
            "sorted by key, descending",
            RangeRequest {
                sort_target: range_request::SortTarget::Key as i32,
                sort_order: range_request::SortOrder::Descend as i32,
                ..all()
            },
        ),
        (
            "keys only",
            RangeRequest {
                keys_only: true,
                ..all()
            },
        ),
    ];
    let mut out = Vec::new();
    for (name, req) in cases {
        let mut resp = kv.range(req).await.expect(name).into_inner();
        let header = resp.header.as_mut().expect("header");
        header.cluster_id = 0;
        header.member_id = 0;
        header.raft_term = 0;
        out.push((name.to_string(), resp));
    }
    out
}

#[tokio::test]
async fn a_range_of_several_megabytes_answers_what_etcd_answers() {
    let theirs = answers(Kind::Etcd).await;
    let ours = answers(Kind::Oxetcd).await;
    let everything = &ours[0].1;
    assert_eq!(everything.kvs.len(), KEYS);
    let size: usize = everything.kvs.iter().map(|kv| kv.value.len()).sum();
    assert!(size > 4 << 20, "only {size} B of values: not several parts");
    for ((name, want), (_, got)) in theirs.iter().zip(&ours) {
        assert_eq!(got.header, want.header, "{name}: header");
        assert_eq!((got.count, got.more), (want.count, want.more), "{name}");
        assert_eq!(got.kvs.len(), want.kvs.len(), "{name}: number of keys");
        assert!(got.kvs == want.kvs, "{name}: the key-values differ");
    }
}

/// Every event a watch from revision 1 on `key/` receives up to the store's revision after
/// the load: without and with previous values.
async fn replays(kind: Kind) -> Vec<Vec<Event>> {
    let member = Member::start(kind);
    let ch = channel(&member.endpoint()).await;
    let mut kv = KvClient::new(ch.clone());
    load(&mut kv).await;
    let last = kv
        .range(RangeRequest {
            key: b"key/".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner()
        .header
        .expect("header")
        .revision;
    let mut out = Vec::new();
    for prev_kv in [false, true] {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"key/".to_vec(),
                    range_end: b"key0".to_vec(),
                    start_revision: 1,
                    prev_kv,
                    ..Default::default()
                },
            )),
        };
        let requests = tokio_stream::iter(vec![create]).chain(tokio_stream::pending());
        let mut stream = WatchClient::new(ch.clone())
            .max_decoding_message_size(64 << 20)
            .watch(requests)
            .await
            .expect("watch")
            .into_inner();
        let mut events: Vec<Event> = Vec::new();
        // Bounds a replay that misses events: the test fails rather than hangs.
        let replay = async {
            while events
                .last()
                .and_then(|e| e.kv.as_ref())
                .is_none_or(|kv| kv.mod_revision < last)
            {
                let resp = stream.message().await.expect("watch").expect("an answer");
                assert!(!resp.canceled, "{kind:?}: canceled: {}", resp.cancel_reason);
                events.extend(resp.events);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), replay)
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: the replay did not reach revision {last}"));
        out.push(events);
    }
    out
}

use tokio_stream::StreamExt;

#[tokio::test]
async fn a_watch_replaying_megabytes_of_history_sees_what_etcd_sends() {
    let theirs = replays(Kind::Etcd).await;
    let ours = replays(Kind::Oxetcd).await;
    for (prev_kv, (want, got)) in theirs.iter().zip(&ours).enumerate() {
        // 3,000 puts and 200 rewrites, each a few hundred bytes to 2.2 KB: several reads.
        assert_eq!(want.len(), KEYS + KEYS / 15, "prev_kv {prev_kv}");
        assert_eq!(got.len(), want.len(), "prev_kv {prev_kv}: number of events");
        assert!(got == want, "prev_kv {prev_kv}: the events differ");
    }
}
