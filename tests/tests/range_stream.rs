//! etcd 3.7's `KV.RangeStream`: a Range answered in chunks of about `--max-request-bytes`,
//! all at the revision of the first. Merging the chunks must give what the unary Range gives
//! (etcd 3.4 has no RangeStream, so the oracle is our own Range, itself checked against etcd
//! elsewhere); the rules are etcd's `rangeStream` and `checkRangeStreamRequest`.

use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::{
    range_request, CompactionRequest, PutRequest, RangeRequest, RangeResponse,
};
use oxetcd_tests::{channel, Kind, Member, Proxy};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Small, so a few hundred keys make many chunks.
const MAX_REQUEST_BYTES: &str = "16384";

async fn kv(endpoint: &str) -> KvClient<Channel> {
    KvClient::new(channel(endpoint).await).max_decoding_message_size(64 << 20)
}

/// The stream's chunks, in order.
async fn chunks(
    kv: &mut KvClient<Channel>,
    req: RangeRequest,
) -> Result<Vec<RangeResponse>, tonic::Status> {
    let mut stream = kv.range_stream(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        out.push(
            msg?.range_response
                .expect("a chunk carries a range_response"),
        );
    }
    Ok(out)
}

/// The chunks merged as a client merges them (proto.Merge: kvs appended, scalars from the
/// last chunk that set them).
fn merged(chunks: &[RangeResponse]) -> RangeResponse {
    let mut out = RangeResponse::default();
    for c in chunks {
        out.kvs.extend(c.kvs.iter().cloned());
        if c.header.is_some() {
            out.header = c.header;
        }
        out.more |= c.more;
        if c.count != 0 {
            out.count = c.count;
        }
    }
    out
}

async fn put(kv: &mut KvClient<Channel>, key: String, value: Vec<u8>) -> i64 {
    kv.put(PutRequest {
        key: key.into_bytes(),
        value,
        ..Default::default()
    })
    .await
    .expect("put")
    .into_inner()
    .header
    .expect("header")
    .revision
}

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn range_stream_chunks_merge_into_the_range_answer() {
    let member = Member::start_with(Kind::Oxetcd, &["--max-request-bytes", MAX_REQUEST_BYTES]);
    let mut kv = kv(&member.endpoint()).await;
    // 300 keys of 200 B to 1.4 KB: about 240 KB, some 15 chunks of 16 KiB.
    let mut first_rev = 0;
    for i in 0..300 {
        let rev = put(
            &mut kv,
            format!("key/{i:04}"),
            vec![b'v'; 200 + (i % 7) * 200],
        )
        .await;
        if i == 0 {
            first_rev = rev;
        }
    }
    put(&mut kv, "other".into(), b"x".to_vec()).await;
    for i in 0..50 {
        put(&mut kv, format!("key/{:04}", i * 3), b"rewritten".to_vec()).await;
    }

    let cases = [
        range("key/", "key0"),
        range("\0", "\0"),
        RangeRequest {
            limit: 120,
            ..range("key/", "key0")
        },
        RangeRequest {
            limit: 10,
            ..range("key/", "key0")
        },
        RangeRequest {
            limit: 1000,
            ..range("key/", "key0")
        },
        RangeRequest {
            keys_only: true,
            serializable: true,
            ..range("key/", "key0")
        },
        RangeRequest {
            revision: first_rev + 100,
            ..range("key/", "key0")
        },
        RangeRequest {
            sort_target: range_request::SortTarget::Key as i32,
            sort_order: range_request::SortOrder::Ascend as i32,
            ..range("key/0100", "key/0200")
        },
        RangeRequest {
            count_only: true,
            ..range("key/", "key0")
        },
        range("key/0007", ""),
        range("missing", ""),
        range("key/0200", "key/0100"),
    ];
    for req in cases {
        let want = kv.range(req.clone()).await.expect("range").into_inner();
        let got = chunks(&mut kv, req.clone()).await.expect("range stream");
        assert_eq!(merged(&got), want, "{req:?}");
        // Only the last chunk says where it stands; the chunks before carry keys alone, in
        // order, none twice.
        let (last, before) = got.split_last().expect("at least one chunk");
        assert!(last.header.is_some(), "{req:?}");
        for c in before {
            assert!(c.header.is_none() && !c.more && c.count == 0, "{req:?}");
        }
        let keys: Vec<_> = got
            .iter()
            .flat_map(|c| c.kvs.iter().map(|kv| kv.key.clone()))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{req:?}");
        if req.limit == 0 && !req.count_only && !req.keys_only && want.kvs.len() > 100 {
            let sizes: Vec<_> = got
                .iter()
                .map(|c| (c.kvs.len(), prost::Message::encoded_len(c)))
                .collect();
            assert!(
                got.len() > 5,
                "a large range comes in many chunks, got {sizes:?}"
            );
            // No chunk grows past twice the target, as etcd adjusts them.
            for c in &got {
                assert!(
                    prost::Message::encoded_len(c) < 4 * 16384,
                    "a chunk of {} bytes",
                    prost::Message::encoded_len(c)
                );
            }
        }
    }
}

#[tokio::test]
async fn range_stream_stays_at_its_first_revision_and_refuses_what_etcd_refuses() {
    let member = Member::start_with(Kind::Oxetcd, &["--max-request-bytes", MAX_REQUEST_BYTES]);
    let mut kv = kv(&member.endpoint()).await;
    for i in 0..200 {
        put(&mut kv, format!("k/{i:04}"), vec![b'v'; 1000]).await;
    }
    let before = kv
        .range(range("k/", "k0"))
        .await
        .expect("range")
        .into_inner();

    // Writes made while the stream is read are not in it: it stays at its first revision.
    let mut stream = kv
        .clone()
        .range_stream(range("k/", "k0"))
        .await
        .expect("range stream")
        .into_inner();
    let first = stream.next().await.expect("a first chunk").expect("chunk");
    let mut got = vec![first.range_response.expect("range_response")];
    for i in 0..200 {
        put(&mut kv, format!("k/{i:04}x"), b"new".to_vec()).await;
    }
    while let Some(msg) = stream.next().await {
        got.push(msg.expect("chunk").range_response.expect("range_response"));
    }
    assert_eq!(merged(&got).kvs, before.kvs);
    assert_eq!(
        merged(&got).header.map(|h| h.revision),
        before.header.map(|h| h.revision)
    );

    let client = kv.clone();
    let refused = |req: RangeRequest| {
        let mut kv = client.clone();
        async move {
            match chunks(&mut kv, req).await {
                Ok(c) => panic!("answered {c:?}"),
                Err(s) => (s.code(), s.message().to_string()),
            }
        }
    };
    assert_eq!(
        refused(RangeRequest {
            sort_target: range_request::SortTarget::Value as i32,
            sort_order: range_request::SortOrder::Descend as i32,
            ..range("k/", "k0")
        })
        .await,
        (
            tonic::Code::Unimplemented,
            "RangeStream does not support custom sort orders".into()
        )
    );
    assert_eq!(
        refused(RangeRequest {
            min_mod_revision: 3,
            ..range("k/", "k0")
        })
        .await,
        (
            tonic::Code::Unimplemented,
            "RangeStream does not support revision filters".into()
        )
    );
    assert_eq!(
        refused(range("", "")).await,
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let rev = before.header.expect("header").revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .expect("compact");
    assert_eq!(
        refused(RangeRequest {
            revision: rev - 1,
            ..range("k/", "k0")
        })
        .await,
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );
}

#[tokio::test]
async fn range_stream_through_a_namespaced_proxy() {
    let member = Member::start_with(Kind::Oxetcd, &["--max-request-bytes", MAX_REQUEST_BYTES]);
    let proxy = Proxy::start(&member.endpoint(), &["--namespace=/ns/"]);
    let mut direct = kv(&member.endpoint()).await;
    for i in 0..100 {
        put(&mut direct, format!("/ns/a/{i:03}"), vec![b'v'; 1000]).await;
    }
    put(&mut direct, "/outside".into(), b"x".to_vec()).await;
    let mut via = kv(&proxy.endpoint()).await;
    let want = via
        .range(range("\0", "\0"))
        .await
        .expect("range")
        .into_inner();
    let got = chunks(&mut via, range("\0", "\0"))
        .await
        .expect("range stream");
    assert!(got.len() > 1);
    assert_eq!(merged(&got).kvs, want.kvs);
    assert_eq!(want.kvs.len(), 100);
    assert!(want.kvs.iter().all(|kv| kv.key.starts_with(b"a/")));
}
