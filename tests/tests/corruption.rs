//! Corruption checks: a member whose key space differs from its peers' is caught, at start-up
//! (`--experimental-initial-corrupt-check`: it refuses to start) or by the leader's periodic
//! check (`--experimental-corrupt-check-time`: the CORRUPT alarm stops writes cluster-wide).
//! The damage is done the way a disk would: one stored value changed behind the member's back.

use std::time::{Duration, Instant};

use oxetcd_common::mvccpb::KeyValue;
use oxetcd_tests::{Cluster, Kind, Member};
use prost::Message;

/// Changes the newest stored value of `key` in a stopped oxetcd member's data dir.
fn damage_value(m: &Member, key: &[u8]) {
    let path = m.data_dir().join("member").join("db");
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, &path).expect("column families");
    let db = rocksdb::DB::open_cf(&opts, &path, &cfs).expect("open the member's database");
    let cf = db.cf_handle("kv").expect("kv column family");
    let mut newest = None;
    for row in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (k, v) = row.expect("row");
        let kv = KeyValue::decode(v.as_ref()).expect("a KeyValue");
        if kv.key == key {
            newest = Some((k.to_vec(), kv));
        }
    }
    let (k, mut kv) = newest.expect("the key is stored");
    kv.value = b"flipped bits".to_vec();
    db.put_cf(cf, k, kv.encode_to_vec()).expect("write");
    db.flush_wal(true).expect("sync");
}

fn write(m: &Member, n: usize) {
    for i in 0..n {
        m.etcdctl(&["put", &format!("k{}", i % 10), &i.to_string()])
            .ok();
    }
}

#[test]
fn a_member_whose_data_differs_refuses_to_start() {
    let mut c = Cluster::start_with(Kind::Oxetcd, 3, &["--experimental-initial-corrupt-check"]);
    write(&c.members[0], 30);
    // Every member has applied everything before m3 stops (a linearizable read on it).
    c.members[2].etcdctl(&["get", "k0"]).ok();
    c.members[2].stop();
    // Undamaged, it restarts: the check passes.
    c.members[2].restart();
    c.members[2].etcdctl(&["get", "k0"]).ok();
    c.members[2].stop();
    damage_value(&c.members[2], b"k3");
    c.members[2].relaunch();
    let status = c.members[2]
        .wait_exit(Duration::from_secs(30))
        .expect("the damaged member stops by itself");
    assert!(!status.success());
    let log = c.members[2].log();
    assert!(log.contains("found data inconsistency with peers"), "{log}");
    // The others go on serving.
    c.members[0].etcdctl(&["put", "after", "1"]).ok();
}

#[test]
fn the_leaders_periodic_check_raises_corrupt_for_the_damaged_member() {
    let mut c = Cluster::start_with(
        Kind::Oxetcd,
        3,
        &["--experimental-corrupt-check-time=100ms"],
    );
    // Many rounds of the check run while members apply at different paces: no false alarm.
    write(&c.members[0], 150);
    for m in &c.members {
        assert_eq!(m.etcdctl(&["alarm", "list"]).ok(), "", "{}", m.name);
    }
    // Damage a follower.
    let leader = c.leader().expect("a leader");
    let victim = (leader + 1) % 3;
    let id = c.members[victim].id().to_string();
    c.members[victim].etcdctl(&["get", "k0"]).ok();
    c.members[victim].stop();
    damage_value(&c.members[victim], b"k3");
    c.members[victim].restart();
    // Bounded poll: the alarm is raised by a background check, with no event to wait on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = format!("memberID:{id} alarm:CORRUPT \n");
    loop {
        let listed = c.members[leader].etcdctl(&["alarm", "list"]);
        if listed.stdout == expected {
            break;
        }
        assert!(Instant::now() < deadline, "no CORRUPT alarm: {listed:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for m in &c.members {
        assert_eq!(
            m.etcdctl(&["put", "a", "1"]).error_line(),
            Some("Error: etcdserver: corrupt cluster"),
            "{}",
            m.name
        );
        assert_eq!(m.etcdctl(&["get", "k0"]).code, 0, "{}", m.name);
    }
}
