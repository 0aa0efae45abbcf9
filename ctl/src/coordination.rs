//! `lock` and `elect`: sessions on a lease kept alive in the background, as etcdctl's.

use std::time::Duration;

use oxetcd_common::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use oxetcd_common::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use oxetcd_common::v3lockpb::{LockRequest, UnlockRequest};

use crate::client::{Clients, Dialer};
use crate::error::status_text;
use crate::error::Failure;

/// A lease kept alive until dropped (or until the process ends), like clientv3's Session.
struct Session {
    id: i64,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn new(c: &mut Clients, ttl: i64) -> Result<Self, Failure> {
        let r = c
            .lease
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(|s| Failure::error(status_text(&s)))?
            .into_inner();
        let id = r.id;
        let mut lease = c.lease.clone();
        let keeper = tokio::spawn(async move {
            // First request queued before the call: etcd sends headers with its first response.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return;
            }
            let Ok(resp) = lease
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            else {
                return;
            };
            let mut responses = resp.into_inner();
            let mut first = true;
            loop {
                if !first && tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    return;
                }
                first = false;
                match responses.message().await {
                    Ok(Some(r)) if r.ttl > 0 => {
                        tokio::time::sleep(Duration::from_millis(
                            (r.ttl as u64 * 1000 / 3).max(300),
                        ))
                        .await
                    }
                    _ => return,
                }
            }
        });
        Ok(Self { id, keeper })
    }

    async fn close(self, c: &mut Clients) {
        self.keeper.abort();
        let _ = c
            .lease
            .lease_revoke(LeaseRevokeRequest { id: self.id })
            .await;
    }
}

fn run_command(exec: &[String]) -> Result<i32, Failure> {
    let status = std::process::Command::new(&exec[0])
        .args(&exec[1..])
        .status()
        .map_err(|e| Failure::error(format!("{e}")))?;
    Ok(status.code().unwrap_or(1))
}

/// `lock <name> [-- cmd...]`: holds the lock until interrupted, or while running the command.
pub(crate) async fn lock(
    d: &Dialer,
    name: String,
    exec: Vec<String>,
    ttl: i64,
) -> Result<(), Failure> {
    let exec: Vec<String> = exec.into_iter().skip_while(|a| a == "--").collect();
    let c = &mut d.connect().await?;
    let session = Session::new(c, ttl).await?;
    let key = tokio::select! {
        r = c.lock.lock(LockRequest { name: name.into_bytes(), lease: session.id }) => {
            r.map_err(|s| Failure::error(status_text(&s)))?.into_inner().key
        }
        _ = oxetcd_common::signal::terminated() => {
            session.close(c).await;
            return Ok(());
        }
    };
    if exec.is_empty() {
        println!("{}", String::from_utf8_lossy(&key));
        oxetcd_common::signal::terminated().await;
        let _ = c.lock.unlock(UnlockRequest { key }).await;
        session.close(c).await;
        return Ok(());
    }
    let code = run_command(&exec)?;
    let _ = c.lock.unlock(UnlockRequest { key }).await;
    session.close(c).await;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// `elect <name> <proposal>` campaigns and holds leadership until interrupted;
/// `elect -l <name>` prints every leader it observes.
pub(crate) async fn elect(
    d: &Dialer,
    name: String,
    proposal: Option<String>,
    listen: bool,
    ttl: i64,
) -> Result<(), Failure> {
    let c = &mut d.connect().await?;
    if listen {
        let mut stream = c
            .election
            .observe(LeaderRequest {
                name: name.into_bytes(),
            })
            .await
            .map_err(|s| Failure::error(status_text(&s)))?
            .into_inner();
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(r)) => {
                        if let Some(kv) = r.kv {
                            println!("{}", String::from_utf8_lossy(&kv.key));
                            println!("{}", String::from_utf8_lossy(&kv.value));
                        }
                    }
                    Ok(None) => return Err(Failure::error("observe stream closed")),
                    Err(s) => return Err(Failure::error(status_text(&s))),
                },
                _ = oxetcd_common::signal::terminated() => return Ok(()),
            }
        }
    }
    let Some(proposal) = proposal else {
        return Err(Failure::bad_args("no proposal argument but -l not set"));
    };
    let session = Session::new(c, ttl).await?;
    let leader = tokio::select! {
        r = c.election.campaign(CampaignRequest { name: name.into_bytes(), lease: session.id, value: proposal.clone().into_bytes() }) => {
            r.map_err(|s| Failure::error(status_text(&s)))?.into_inner().leader
        }
        _ = oxetcd_common::signal::terminated() => {
            session.close(c).await;
            return Ok(());
        }
    };
    let Some(leader) = leader else {
        return Err(Failure::error("campaign returned no leader key"));
    };
    println!("{}", String::from_utf8_lossy(&leader.key));
    println!("{proposal}");
    oxetcd_common::signal::terminated().await;
    let _ = c
        .election
        .resign(ResignRequest {
            leader: Some(leader),
        })
        .await;
    session.close(c).await;
    Ok(())
}
