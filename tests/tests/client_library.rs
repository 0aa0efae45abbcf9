//! The `etcd-client` crate (a real etcd client library) against oxetcd.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use oxetcd_tests::{Kind, Member};

#[tokio::test]
async fn kv_txn_and_errors_through_etcd_client() {
    let m = Member::start(Kind::Oxetcd);
    let mut c = Client::connect([m.url()], None).await.expect("connect");

    let r = c.put("a", "1", None).await.expect("put");
    assert_eq!(r.header().unwrap().revision(), 2);
    let r = c
        .put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put prev");
    assert_eq!(r.prev_key().unwrap().value(), b"1");
    c.put("b", "3", None).await.unwrap();
    c.put("c", "4", None).await.unwrap();

    let r = c
        .get(
            "a",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.count(), 1);
    let r = c
        .get("a", Some(GetOptions::new().with_range("c").with_limit(1)))
        .await
        .unwrap();
    assert_eq!((r.kvs().len(), r.more(), r.count()), (1, true, 2));

    // Txn: compare on version and value, both branches.
    let txn = Txn::new()
        .when([
            Compare::version("a", CompareOp::Equal, 2),
            Compare::value("b", CompareOp::Equal, "3"),
        ])
        .and_then([TxnOp::put("a", "txn", None), TxnOp::get("a", None)])
        .or_else([TxnOp::put("a", "else", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 6);
    match &r.op_responses()[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"txn"),
        other => panic!("unexpected {other:?}"),
    }
    let txn = Txn::new()
        .when([Compare::mod_revision("a", CompareOp::Less, 6)])
        .and_then([TxnOp::put("a", "no", None)])
        .or_else([TxnOp::delete(
            "b",
            Some(DeleteOptions::new().with_prev_key()),
        )]);
    let r = c.txn(txn).await.unwrap();
    assert!(!r.succeeded());
    match &r.op_responses()[0] {
        TxnOpResponse::Delete(d) => {
            assert_eq!((d.deleted(), d.prev_kvs()[0].value()), (1, &b"3"[..]))
        }
        other => panic!("unexpected {other:?}"),
    }

    // etcd's errors, code and message.
    let err = c.put("", "x", None).await.unwrap_err();
    assert!(
        err.to_string().contains("etcdserver: key is not provided"),
        "{err}"
    );
    let err = c
        .get("a", Some(GetOptions::new().with_revision(1000)))
        .await
        .unwrap_err();
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::OutOfRange);
            assert_eq!(
                s.message(),
                "etcdserver: mvcc: required revision is a future revision"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    c.compact(4, None).await.unwrap();
    let err = c.compact(3, None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );

    // Cluster and Maintenance.
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].client_urls(), [m.url()]);
    let status = c.status().await.unwrap();
    assert_eq!(status.version(), "3.6.0");
    assert_eq!(status.leader(), members.members()[0].id());
    assert!(status.raft_index() >= 6);
}

/// The Rust `etcd-client` crate, as an application uses auth: an admin sets up users and
/// roles through its API, a user connects with `ConnectOptions::with_user` (the crate logs in
/// and sends the token), is refused outside its role, and a wrong password fails to connect.
#[tokio::test]
async fn etcd_client_crate_with_users_and_roles() {
    use etcd_client::{Client, ConnectOptions, Permission};
    let m = oxetcd_tests::Member::start(oxetcd_tests::Kind::Oxetcd);
    let ep = m.endpoint();
    let mut admin = Client::connect([&ep], None).await.expect("connect");
    admin.user_add("root", "rootpw", None).await.expect("root");
    admin.role_add("root").await.expect("root role");
    admin.user_grant_role("root", "root").await.expect("grant");
    admin.user_add("svc", "svcpw", None).await.expect("svc");
    admin.role_add("svc").await.expect("svc role");
    admin
        .role_grant_permission("svc", Permission::read_write("/svc/").with_prefix())
        .await
        .expect("permission");
    admin
        .user_grant_role("svc", "svc")
        .await
        .expect("grant svc");
    admin.auth_enable().await.expect("enable");

    let options = ConnectOptions::new().with_user("svc", "svcpw");
    let mut svc = Client::connect([&ep], Some(options))
        .await
        .expect("svc connects");
    svc.put("/svc/a", "1", None).await.expect("own prefix");
    let got = svc.get("/svc/a", None).await.expect("read back");
    assert_eq!(got.kvs()[0].value(), b"1");
    match svc.put("/other", "1", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied);
            assert_eq!(s.message(), "etcdserver: permission denied");
        }
        other => panic!("a put outside the role: {other:?}"),
    }
    match svc.user_list().await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied)
        }
        other => panic!("user list as a non-root user: {other:?}"),
    }
    let wrong = ConnectOptions::new().with_user("svc", "nope");
    match Client::connect([&ep], Some(wrong)).await {
        Err(etcd_client::Error::GRpcStatus(s)) => assert_eq!(
            s.message(),
            "etcdserver: authentication failed, invalid user ID or password"
        ),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a wrong password connected"),
    }
    let mut anonymous = Client::connect([&ep], None).await.expect("connect");
    match anonymous.get("/svc/a", None).await {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.message(), "etcdserver: user name is empty")
        }
        other => panic!("an anonymous read: {other:?}"),
    }
}
