//! Disk faults: a member whose disk fills up under load stops (fail-stop, non-zero exit, a
//! clear log line), never acknowledges a write it could not make durable, and once the disk
//! is fixed it restarts and catches up with nothing lost.
//!
//! The faulty disk is a small tmpfs mounted over the member's data dir (these tests need
//! root, as CI has), grown to fix the fault. (A disk turning read-only under load cannot be
//! staged this way: Linux refuses to remount read-only while the member has files open for
//! writing. A failing fsync needs a device-mapper error target, which CI lacks.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oxetcd_tests::{etcdctl_at, Cluster, Kind, Member};

/// A tmpfs mounted at a path, unmounted when dropped (after the member using it is gone).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                at.to_str().unwrap(),
            ],
        );
        SmallDisk(at.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        run(
            "mount",
            &["-o", &format!("remount,{opts}"), self.0.to_str().unwrap()],
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {} (these tests need root)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 128 KiB, printable.
fn big_value() -> String {
    (0..128 * 1024)
        .map(|i| char::from(b'a' + ((i * 31) % 26) as u8))
        .collect()
}

/// How many keys `k0..` a linearizable read on `m` sees.
fn keys_seen(m: &Member) -> usize {
    m.etcdctl(&["get", "k", "--prefix", "--keys-only"])
        .ok()
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// A single member on a disk that fills up: the put that cannot be made durable fails, the
/// member exits non-zero saying why, and after the disk grows every acknowledged put is there.
#[test]
fn a_full_disk_stops_the_member_and_loses_nothing_acknowledged() {
    let mut disk = None;
    let mut m = Member::start_prepared(Kind::Oxetcd, &["--quota-backend-bytes=-1"], |m| {
        disk = Some(SmallDisk::mount(m.data_dir(), "24m"));
    });
    let disk = disk.expect("mounted");
    let value = big_value();
    let mut acknowledged = 0;
    loop {
        let out = m.etcdctl_stdin(&["put", &format!("k{acknowledged}")], &value);
        if out.code != 0 {
            break;
        }
        acknowledged += 1;
        assert!(acknowledged < 1000, "24 MiB never filled up");
    }
    let status = m
        .wait_exit(Duration::from_secs(30))
        .expect("the member stops by itself");
    assert!(!status.success());
    let log = m.log();
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("storage failed"), "{log}");
    disk.remount("size=512m");
    m.restart();
    assert_eq!(keys_seen(&m), acknowledged);
    // And it takes writes again.
    m.etcdctl(&["put", "after", "1"]).ok();
    drop(m);
}

/// In a cluster the member with the full disk stops while the others go on; fixed and
/// restarted, it catches up on everything written meanwhile.
#[test]
fn a_member_with_a_full_disk_stops_and_catches_up_once_fixed() {
    full_disk_in_a_cluster(false);
}

/// The same with the leader's disk filling up: the leader fsyncs beside the replication, so
/// its write error may come after the followers have the entry. Writes through a follower
/// must still all succeed (the follower sends them on to the next leader), and none is lost.
#[test]
fn a_leader_with_a_full_disk_stops_and_the_cluster_goes_on() {
    full_disk_in_a_cluster(true);
}

/// m3's data dir is a 24 MiB disk; m3 leads or not as `m3_leads` says, and every put goes
/// through m1 until m3 has stopped.
fn full_disk_in_a_cluster(m3_leads: bool) {
    let disk = std::sync::Mutex::new(None);
    let mut c = Cluster::start_prepared(Kind::Oxetcd, 3, &["--quota-backend-bytes=-1"], |m| {
        if m.name == "m3" {
            *disk.lock().unwrap() = Some(SmallDisk::mount(m.data_dir(), "24m"));
        }
    });
    let disk = disk.into_inner().unwrap().expect("mounted");
    let to = if m3_leads { 2 } else { 0 };
    if c.leader() != Some(to) {
        let id = format!("{:x}", c.members[to].id());
        etcdctl_at(&c.endpoints(), &["move-leader", &id]).ok();
    }
    assert_eq!(c.leader(), Some(to));
    let value = big_value();
    let endpoint = c.members[0].endpoint();
    let mut acknowledged = 0;
    // Every put goes through m1 and succeeds (two members suffice); m3 fills up and stops.
    while c.members[2].exited().is_none() {
        let out = c.members[0].etcdctl_stdin(&["put", &format!("k{acknowledged}")], &value);
        assert_eq!(out.code, 0, "{}", out.stderr);
        acknowledged += 1;
        assert!(acknowledged < 1000, "m3's 24 MiB never filled up");
    }
    assert!(c.members[2].log().contains("storage failed"));
    for i in 0..20 {
        etcdctl_at(
            &endpoint,
            &["put", &format!("k{acknowledged}"), &i.to_string()],
        )
        .ok();
        acknowledged += 1;
    }
    disk.remount("size=512m");
    c.members[2].restart();
    assert_eq!(keys_seen(&c.members[2]), acknowledged);
}
