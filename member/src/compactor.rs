//! Auto compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), as etcd 3.4's
//! `v3compactor`:
//!
//! - **periodic** (retention a duration, hours without a unit): the revision is sampled every
//!   tenth of the period (the period capped at one hour); once a whole retention has passed
//!   since the last compaction, compact to the revision sampled a retention ago. With
//!   `24h` that compacts every hour, keeping a day of history.
//! - **revision** (retention a number): every 5 minutes, compact to `current - retention`
//!   unless that is what was compacted last time.
//!
//! Every member runs the loop; only the leader proposes (etcd pauses the compactor on
//! followers), so a new leader carries on with its own samples.

use std::sync::Weak;
use std::time::{Duration, Instant};

use oxetcd_common::etcdserverpb::CompactionRequest;
use oxetcd_common::oxetcdpb::internal_raft_request::Request;

use crate::error::ServerError;
use crate::mvcc::KvError;
use crate::server::EtcdServer;

/// What the flags ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    Periodic(Duration),
    Revision { keep: i64, every: Duration },
}

/// Parses the flags as etcd's `parseCompactionRetention`; `None`: auto compaction is off.
pub(crate) fn policy(
    mode: &str,
    retention: &str,
    revision_interval: Duration,
) -> Result<Option<Policy>, String> {
    let number = retention.trim().parse::<i64>().ok().filter(|n| *n >= 0);
    let policy = match (mode, number) {
        ("revision", Some(n)) => Policy::Revision {
            keep: n,
            every: revision_interval,
        },
        ("periodic", Some(h)) => Policy::Periodic(Duration::from_secs(h as u64 * 3600)),
        ("periodic", None) | ("revision", None) => {
            let d = oxetcd_common::duration::parse_go_duration(retention)
                .map_err(|e| format!("error parsing CompactionRetention: {e}"))?;
            match mode {
                "periodic" => Policy::Periodic(d),
                // etcd reads a duration in revision mode as its nanoseconds.
                _ => Policy::Revision {
                    keep: d.as_nanos() as i64,
                    every: revision_interval,
                },
            }
        }
        (other, _) => {
            return Err(format!(
                "unknown auto-compaction-mode {other:?} (expected 'periodic' or 'revision')"
            ))
        }
    };
    let off = match policy {
        Policy::Periodic(d) => d.is_zero(),
        Policy::Revision { keep, .. } => keep == 0,
    };
    Ok((!off).then_some(policy))
}

/// The compactor's loop, until the server goes away.
pub(crate) async fn run(server: Weak<EtcdServer>, policy: Policy) {
    match policy {
        Policy::Periodic(period) => periodic(server, period).await,
        Policy::Revision { keep, every } => by_revision(server, keep, every).await,
    }
}

fn current_rev(server: &EtcdServer) -> Option<i64> {
    server.read_state().ok().map(|s| s.mvcc.current_rev())
}

/// Proposes the compaction if this member leads; a revision compacted already counts as done.
async fn compact(server: &EtcdServer, rev: i64) -> Result<bool, ServerError> {
    if !server.is_leader() {
        return Ok(false);
    }
    tracing::info!(revision = rev, "starting auto compaction");
    let req = Request::Compaction(CompactionRequest {
        revision: rev,
        physical: false,
    });
    match server.propose(req).await {
        Ok(_) | Err(ServerError::Kv(KvError::Compacted)) => {
            tracing::info!(revision = rev, "completed auto compaction");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

async fn periodic(server: Weak<EtcdServer>, period: Duration) {
    let interval = period.min(Duration::from_secs(3600));
    let retry = interval / 10;
    let keep = (period.as_nanos() / retry.as_nanos().max(1)) as usize + 1;
    let mut revs: std::collections::VecDeque<i64> = Default::default();
    let mut last_success = Instant::now();
    // The first compaction waits a whole retention, later ones the interval.
    let mut base = period;
    loop {
        let Some(s) = server.upgrade() else { return };
        if let Some(rev) = current_rev(&s) {
            revs.push_back(rev);
            if revs.len() > keep {
                revs.pop_front();
            }
        }
        drop(s);
        tokio::time::sleep(retry).await;
        let Some(s) = server.upgrade() else { return };
        if last_success.elapsed() < base || !s.is_leader() {
            continue;
        }
        base = interval;
        let Some(&rev) = revs.front() else { continue };
        match compact(&s, rev).await {
            Ok(true) => last_success = Instant::now(),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(revision = rev, retry_in = ?retry, "failed auto compaction: {e}")
            }
        }
    }
}

async fn by_revision(server: Weak<EtcdServer>, keep: i64, every: Duration) {
    let mut prev = 0;
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = server.upgrade() else { return };
        let Some(rev) = current_rev(&s).map(|r| r - keep) else {
            continue;
        };
        if rev <= 0 || rev == prev {
            continue;
        }
        match compact(&s, rev).await {
            Ok(true) => prev = rev,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(revision = rev, retry_in = ?every, "failed auto compaction: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_as_etcd_reads_it() {
        let five = Duration::from_secs(300);
        assert_eq!(policy("periodic", "0", five), Ok(None));
        assert_eq!(
            policy("periodic", "1", five),
            Ok(Some(Policy::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            policy("periodic", "90s", five),
            Ok(Some(Policy::Periodic(Duration::from_secs(90))))
        );
        assert_eq!(
            policy("revision", "1000", five),
            Ok(Some(Policy::Revision {
                keep: 1000,
                every: five
            }))
        );
        assert!(policy("periodic", "soon", five).is_err());
        assert!(policy("weekly", "1", five).is_err());
    }
}
