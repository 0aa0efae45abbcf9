//! Requests a careless or hostile client may send, answered as real etcd 3.4 answers them
//! (same gRPC code, same message), and never at the cost of the cluster.

use oxetcd_common::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::{
    watch_request, CompactionRequest, MemberAddRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use oxetcd_tests::{channel, Cluster, Kind, Member};

/// (code, message) of a failed call, or "OK".
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> (tonic::Code, String) {
    match r {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// A put through the member works (the cluster is still writable).
async fn writable(endpoint: &str) {
    let mut kv = KvClient::new(channel(endpoint).await);
    kv.put(PutRequest {
        key: b"still-writable".to_vec(),
        value: b"yes".to_vec(),
        ..Default::default()
    })
    .await
    .expect("the cluster takes writes");
}

async fn member_adds(endpoint: &str) -> Vec<(tonic::Code, String)> {
    let mut cluster = ClusterClient::new(channel(endpoint).await);
    let mut out = Vec::new();
    for urls in [
        vec!["not a url"],
        vec![],
        vec!["http://"],
        vec!["ftp://127.0.0.1:1"],
        vec!["http://127.0.0.1"],
    ] {
        let r = cluster
            .member_add(MemberAddRequest {
                peer_ur_ls: urls.iter().map(|u| u.to_string()).collect(),
                is_learner: false,
            })
            .await;
        out.push(outcome(r));
    }
    out
}

#[tokio::test]
async fn member_add_with_bad_peer_urls_is_refused_and_the_cluster_stays_writable() {
    let etcd = Member::start(Kind::Etcd);
    let want = member_adds(&etcd.endpoint()).await;
    assert!(want.iter().all(|(c, _)| *c == tonic::Code::InvalidArgument));
    let ours = Member::start(Kind::Oxetcd);
    assert_eq!(member_adds(&ours.endpoint()).await, want);
    writable(&ours.endpoint()).await;
    let three = Cluster::start(Kind::Oxetcd, 3);
    assert_eq!(member_adds(&three.members[1].endpoint()).await, want);
    for m in &three.members {
        writable(&m.endpoint()).await;
    }
}

async fn kv_probes(endpoint: &str) -> Vec<(tonic::Code, String)> {
    let mut kv = KvClient::new(channel(endpoint).await);
    let compact = |revision| CompactionRequest {
        revision,
        physical: false,
    };
    let empty_op_txn = TxnRequest {
        success: vec![RequestOp { request: None }],
        ..Default::default()
    };
    let mut big = KvClient::new(channel(endpoint).await).max_encoding_message_size(usize::MAX);
    vec![
        // A fresh store has never been compacted: revision 0 is fine once, then compacted.
        outcome(kv.compact(compact(0)).await),
        outcome(kv.compact(compact(0)).await),
        outcome(kv.txn(empty_op_txn).await),
        // Far over the gRPC receive limit (--max-request-bytes plus etcd's 512 KiB).
        outcome(
            big.put(PutRequest {
                key: b"big".to_vec(),
                value: vec![b'x'; 8 << 20],
                ..Default::default()
            })
            .await,
        ),
        outcome(
            kv.range(RangeRequest {
                key: b"big".to_vec(),
                ..Default::default()
            })
            .await,
        ),
        // The same limit on a Range (served by its own path, `api/range.rs`).
        outcome(
            big.range(RangeRequest {
                key: vec![b'k'; 8 << 20],
                ..Default::default()
            })
            .await,
        ),
    ]
}

#[tokio::test]
async fn kv_probes_answer_as_etcd() {
    let etcd = Member::start(Kind::Etcd);
    let want = kv_probes(&etcd.endpoint()).await;
    let ours = Member::start(Kind::Oxetcd);
    let got = kv_probes(&ours.endpoint()).await;
    // grpc-go names the sizes in its message; ours are the same limit, so compare all of it.
    assert_eq!(got, want);
}

/// The next watch response, bounded so a broken stream fails the test instead of hanging it.
async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("a watch response in time")
        .expect("stream open")
        .expect("a response")
}

fn create(key: &[u8], range_end: &[u8]) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// What a watch stream answers: an empty range, an unknown cancel and an empty request, then
/// a watch that must still get its event (the stream survived all of it).
async fn watch_probes(endpoint: &str) -> Vec<(i64, bool, bool, String, usize)> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    // etcd sends the response headers with the first response: ask before awaiting them.
    tx.send(create(b"b", b"a")).await.unwrap();
    let mut watch = WatchClient::new(channel(endpoint).await);
    let mut stream = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let shape = |r: WatchResponse| {
        (
            r.watch_id,
            r.created,
            r.canceled,
            r.cancel_reason,
            r.events.len(),
        )
    };
    let mut out = Vec::new();
    out.push(shape(next(&mut stream).await));
    tx.send(create(b"b", b"b")).await.unwrap();
    out.push(shape(next(&mut stream).await));
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 999 },
        )),
    })
    .await
    .unwrap();
    tx.send(WatchRequest {
        request_union: None,
    })
    .await
    .unwrap();
    tx.send(create(b"k", b"")).await.unwrap();
    out.push(shape(next(&mut stream).await));
    // The client stops sending: the stream still delivers.
    drop(tx);
    let mut kv = KvClient::new(channel(endpoint).await);
    kv.put(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .await
    .expect("put");
    out.push(shape(next(&mut stream).await));
    out
}

#[tokio::test]
async fn watch_probes_answer_as_etcd_and_keep_the_stream() {
    let etcd = Member::start(Kind::Etcd);
    let want = watch_probes(&etcd.endpoint()).await;
    assert_eq!(want.last().map(|w| w.4), Some(1), "etcd delivers the event");
    let ours = Member::start(Kind::Oxetcd);
    assert_eq!(watch_probes(&ours.endpoint()).await, want);
}
