//! Lock and Election: the server-side APIs through the etcd-client crate, and etcdctl's own
//! lock recipe against oxetcd.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};
use oxetcd_tests::{Kind, Member};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn lock_is_exclusive_and_passes_on_when_the_holder_dies() {
    let m = Member::start(Kind::Oxetcd);
    let mut c = Client::connect([m.url()], None).await.unwrap();
    let a = c.lease_grant(60, None).await.unwrap().id();
    let b = c.lease_grant(60, None).await.unwrap().id();
    let first = c
        .lock("job", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    assert_eq!(first.key(), format!("job/{a:x}").as_bytes());

    let url = m.url();
    let mut second = tokio::spawn(async move {
        let mut c = Client::connect([url], None).await.unwrap();
        c.lock("job", Some(LockOptions::new().with_lease(b)))
            .await
            .unwrap()
            .key()
            .to_vec()
    });
    // While the holder lives, the second locker must not get the lock.
    assert!(
        timeout(Duration::from_millis(700), &mut second)
            .await
            .is_err(),
        "second locker acquired a held lock"
    );
    // The holder dies: its lease is revoked, its key deleted, the waiter wakes up.
    c.lease_revoke(a).await.unwrap();
    let key = timeout(WAIT, second)
        .await
        .expect("lock passed on")
        .unwrap();
    assert_eq!(key, format!("job/{b:x}").as_bytes());
    c.unlock(key.clone()).await.unwrap();
    assert_eq!(c.get(key, None).await.unwrap().count(), 0);
    // With an unknown lease, etcd's lease error.
    let err = c
        .lock("job", Some(LockOptions::new().with_lease(12345)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("requested lease not found"),
        "{err}"
    );
}

#[tokio::test]
async fn election_campaign_observe_proclaim_resign() {
    let m = Member::start(Kind::Oxetcd);
    let mut c = Client::connect([m.url()], None).await.unwrap();
    let err = c.leader("pres").await.unwrap_err();
    assert!(err.to_string().contains("election: no leader"), "{err}");

    let a = c.lease_grant(60, None).await.unwrap().id();
    let b = c.lease_grant(60, None).await.unwrap().id();
    let won = c.campaign("pres", "alice", a).await.unwrap();
    let alice = won.leader().unwrap().clone();
    let mut observe = c.observe("pres").await.unwrap();
    let seen = timeout(WAIT, observe.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"alice");

    let url = m.url();
    let mut bob = tokio::spawn(async move {
        let mut c = Client::connect([url], None).await.unwrap();
        c.campaign("pres", "bob", b)
            .await
            .unwrap()
            .leader()
            .unwrap()
            .clone()
    });
    assert!(
        timeout(Duration::from_millis(700), &mut bob).await.is_err(),
        "two leaders at once"
    );

    c.proclaim(
        "alice-2",
        Some(ProclaimOptions::new().with_leader(alice.clone())),
    )
    .await
    .unwrap();
    let seen = timeout(WAIT, observe.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"alice-2");

    c.resign(Some(ResignOptions::new().with_leader(alice.clone())))
        .await
        .unwrap();
    let bob_key = timeout(WAIT, bob).await.expect("bob elected").unwrap();
    assert_eq!(bob_key.key(), format!("pres/{b:x}").as_bytes());
    let seen = timeout(WAIT, observe.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"bob");
    let leader = c.leader("pres").await.unwrap();
    assert_eq!(leader.kv().unwrap().value(), b"bob");

    // Alice's old leadership no longer counts.
    let err = c
        .proclaim("stale", Some(ProclaimOptions::new().with_leader(alice)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("election: not leader"), "{err}");
}

#[test]
fn etcdctl_lock_waits_until_the_holder_dies() {
    let m = Member::start(Kind::Oxetcd);
    // The holder: a 2 s session lease, prints the lock key once it holds the lock, then holds.
    let mut holder = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &m.endpoint(), "lock", "--ttl=2", "mylock"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl lock");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("mylock/"), "holder printed {line:?}");

    let mut second = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &m.endpoint(),
            "lock",
            "mylock",
            "--",
            "echo",
            "second-acquired",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl lock");
    let mut second_out = BufReader::new(second.stdout.take().unwrap());
    // The holder is alive: the second must still be waiting after a while.
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        second.try_wait().unwrap().is_none(),
        "second acquired a held lock"
    );
    let killed = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let mut out = String::new();
    second_out.read_line(&mut out).unwrap();
    assert_eq!(out, "second-acquired\n");
    assert!(second.wait().unwrap().success());
    // Acquired once the dead holder's 2 s lease expired, not before.
    assert!(
        killed.elapsed() >= Duration::from_millis(1000),
        "acquired too early: {:?}",
        killed.elapsed()
    );
}
