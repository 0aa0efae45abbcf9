//! HashKV: etcd's hash of the key space, computed the way etcd 3.4 computes it (CRC-32C over
//! its bbolt layout of revisions), so the same history hashes the same on etcd and oxetcd, and
//! the members of a cluster agree.

use oxetcd_tests::{write_history, Cluster, Kind, Member, Rng};

/// (hash, compact revision, header revision) of `endpoint hashkv -w json`, at `rev`.
fn hashkv(m: &Member, rev: &str) -> (u64, i64, i64) {
    let out = m.etcdctl(&["endpoint", "hashkv", "-w", "json", &format!("--rev={rev}")]);
    let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("json");
    let h = &v[0]["HashKV"];
    (
        h["hash"].as_u64().expect("hash"),
        h["compact_revision"].as_i64().expect("compact revision"),
        h["header"]["revision"].as_i64().expect("revision"),
    )
}

#[test]
fn hashkv_equals_etcds_for_the_same_history() {
    let run = |kind| {
        let m = Member::start(kind);
        write_history(&m);
        let now = hashkv(&m, "0");
        let at_8 = hashkv(&m, "8");
        let compacted = m.etcdctl(&["endpoint", "hashkv", "--rev=3"]);
        (now, at_8, compacted.error_line().map(str::to_string))
    };
    let reference = run(Kind::Etcd);
    let ours = run(Kind::Oxetcd);
    assert_eq!(reference, ours);
    assert_ne!(
        reference.0 .0, reference.1 .0,
        "different revisions hash differently"
    );
}

#[test]
fn members_of_a_cluster_agree_on_hashkv() {
    let c = Cluster::start(Kind::Oxetcd, 3);
    write_history(&c.members[0]);
    // A linearizable read on each member first: each has applied everything.
    let hashes: Vec<(u64, i64, i64)> = c
        .members
        .iter()
        .map(|m| {
            m.etcdctl(&["get", "a"]);
            hashkv(m, "0")
        })
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// `oxetcdctl endpoint hashkv` prints what etcdctl prints, in every format, and fails as it
/// does for a compacted revision.
#[test]
fn oxetcdctl_endpoint_hashkv_prints_what_etcdctl_prints() {
    let m = Member::start(Kind::Oxetcd);
    write_history(&m);
    for args in [
        &["endpoint", "hashkv"][..],
        &["endpoint", "hashkv", "-w", "json"],
        &["endpoint", "hashkv", "-w", "table"],
        &["endpoint", "hashkv", "-w", "fields", "--rev=8"],
        &["endpoint", "hashkv", "--rev=3"],
        &["endpoint", "hashkv", "--cluster"],
    ] {
        let (theirs, ours) = (m.etcdctl(args), m.oxetcdctl(args));
        assert_eq!(
            (theirs.code, theirs.stdout.clone(), theirs.error_line()),
            (ours.code, ours.stdout.clone(), ours.error_line()),
            "{args:?}"
        );
    }
}

/// A long randomized history (puts, deletes, range deletes, txns, leases, compactions) sent
/// to every member in turn, with one member killed and restarted midway and small raft
/// snapshots so it catches up from one: every member then hashes its key space the same, now
/// and at older revisions, and `Hash` (the whole backend) agrees too.
#[tokio::test]
async fn members_agree_on_every_hash_after_a_long_randomized_run() {
    use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp};
    let mut rng = Rng::seeded();
    let mut c = Cluster::start_with(
        Kind::Oxetcd,
        3,
        &[
            "--snapshot-count",
            "200",
            "--experimental-snapshot-catchup-entries",
            "20",
        ],
    );
    let mut clients = Vec::new();
    for m in &c.members {
        clients.push(oxetcd_tests::client(&m.endpoint()).await);
    }
    let mut rev = 1i64;
    let mut compacted = 0i64;
    for i in 0..1500u64 {
        if i == 500 {
            c.members[2].kill9();
        }
        if i == 1000 {
            c.members[2].restart();
            clients[2] = oxetcd_tests::client(&c.members[2].endpoint()).await;
        }
        let down = (500..1000).contains(&i);
        let which = rng.below(if down { 2 } else { 3 }) as usize;
        let cl = &mut clients[which];
        let key = format!("k{}", rng.below(40));
        let r = match rng.below(20) {
            0..=9 => cl
                .put(key, format!("v{i}"), None)
                .await
                .map(|r| r.header().unwrap().revision()),
            10..=11 => cl
                .delete(key, None)
                .await
                .map(|r| r.header().unwrap().revision()),
            12 => cl
                .delete("k1", Some(DeleteOptions::new().with_range("k3")))
                .await
                .map(|r| r.header().unwrap().revision()),
            13..=15 => {
                let t = Txn::new()
                    .when([Compare::value(key.clone(), CompareOp::Equal, "v1")])
                    .and_then([TxnOp::delete(key.clone(), None)])
                    .or_else([TxnOp::put(key, format!("t{i}"), None)]);
                cl.txn(t).await.map(|r| r.header().unwrap().revision())
            }
            16..=17 => {
                let lease = cl.lease_grant(600, None).await.expect("grant").id();
                let opts = PutOptions::new().with_lease(lease);
                let put = cl.put(key, "leased", Some(opts)).await.expect("put");
                if rng.below(2) == 0 {
                    cl.lease_revoke(lease).await.expect("revoke");
                }
                Ok(put.header().unwrap().revision())
            }
            _ if rev > compacted + 10 => {
                let at = compacted + 1 + rng.below((rev - compacted - 5) as u64) as i64;
                cl.compact(at, None).await.expect("compact");
                compacted = at;
                Ok(rev)
            }
            _ => Ok(rev),
        };
        rev = rev.max(r.expect("request"));
    }
    // A linearizable read on each member: each has applied everything.
    for cl in clients.iter_mut() {
        cl.get("k0", None).await.expect("read");
    }
    let revisions = [0, rev, compacted + 1, (compacted + rev) / 2];
    for at in revisions {
        let hashes: Vec<(u32, i64)> = futures_hashes(&mut clients, at).await;
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "seed {}: HashKV at {at} differs: {hashes:?}",
            rng.seed()
        );
    }
    let mut whole = Vec::new();
    for cl in clients.iter_mut() {
        whole.push(cl.hash().await.expect("hash").hash());
    }
    assert!(
        whole.windows(2).all(|w| w[0] == w[1]),
        "seed {}: Hash differs: {whole:?}",
        rng.seed()
    );
}

async fn futures_hashes(clients: &mut [etcd_client::Client], at: i64) -> Vec<(u32, i64)> {
    let mut out = Vec::new();
    for cl in clients.iter_mut() {
        let h = cl.hash_kv(at).await.expect("hashkv");
        out.push((h.hash(), h.compact_version()));
    }
    out
}
