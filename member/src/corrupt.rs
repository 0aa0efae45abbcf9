//! Corruption checks (etcd's `corrupt.go`): members compare HashKV, their hash of the key space
//! at one revision, which is equal on members that applied the same log.
//!
//! - At start-up (`--experimental-initial-corrupt-check`, or `--feature-gates
//!   InitialCorruptCheck=true`), before raft starts, a member that already has data asks its
//!   peers for their hash at its own revision; a different hash with the same compaction
//!   revision stops it ("found data inconsistency with peers"), as etcd does.
//! - Periodically on the leader (`--experimental-corrupt-check-time`, `--corrupt-check-time`):
//!   the leader hashes, asks every follower at the same revision, and raises the CORRUPT
//!   alarm for a follower whose hash differs (or that claims a revision or compaction ahead
//!   of the leader's), or for itself if its own hash changed under it. The alarm stops writes
//!   cluster-wide (`apply/layers.rs`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use oxetcd_common::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use oxetcd_common::oxetcdpb::internal_raft_request::Request;
use serde::{Deserialize, Serialize};

use crate::apply::{MemberState, StateLock};
use crate::error::ServerError;
use crate::mvcc::{HashPlan, KvError};
use crate::peer::Peers;
use crate::raft::MemberNode;
use crate::server::EtcdServer;
use crate::storage::{Storage, CF_KV};

/// How long a peer's hash may take (etcd: 5 s per peer).
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// A member's HashKV answer to a peer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PeerHash {
    pub member_id: u64,
    /// Its current revision.
    pub revision: i64,
    pub compact_revision: i64,
    pub hash: u32,
}

/// etcd's `HashByRev`: the hash at `rev` (0: the current revision). The index part is read
/// under the state lock, the rows from a RocksDB snapshot taken with it, so applies go on
/// during the scan. Blocking.
pub(crate) fn hash_kv(
    storage: &Storage,
    state: &StateLock,
    rev: i64,
) -> Result<(u32, HashPlan), ServerError> {
    let db = storage.db();
    let (plan, snapshot) = {
        let st = state
            .read()
            .map_err(|e| ServerError::Internal(format!("state lock: {e}")))?;
        (st.mvcc.hash_plan(rev)?, db.snapshot())
    };
    let rows = snapshot.iterator_cf(storage.cf(CF_KV), rocksdb::IteratorMode::Start);
    let hash = crate::mvcc::hash_kv_rows(&plan, storage, &snapshot, rows)?;
    Ok((hash, plan))
}

/// [`hash_kv`] on the blocking pool.
pub(crate) async fn hash_kv_async(
    server: &Arc<EtcdServer>,
    rev: i64,
) -> Result<(u32, HashPlan), ServerError> {
    let server = server.clone();
    tokio::task::spawn_blocking(move || hash_kv(&server.storage, &server.state, rev))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
}

/// A peer asks for our hash at `rev`: wait (briefly) until applied that far, then hash.
pub(crate) async fn answer_peer(
    server: &Arc<EtcdServer>,
    rev: i64,
) -> Result<PeerHash, ServerError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while server.read_state()?.mvcc.current_rev() < rev && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (hash, plan) = hash_kv_async(server, rev).await?;
    Ok(PeerHash {
        member_id: server.member_id,
        revision: plan.current,
        compact_revision: plan.compacted,
        hash,
    })
}

/// The other members and their answers for `rev`.
async fn peer_hashes(
    peers: &Peers,
    others: Vec<(u64, MemberNode)>,
    rev: i64,
) -> Vec<(u64, Result<PeerHash, crate::peer::PeerError>)> {
    let calls = others
        .into_iter()
        .map(|(id, node)| async move { (id, peers.hash_kv(&node, rev, PEER_TIMEOUT).await) });
    futures::future::join_all(calls).await
}

fn others(state: &MemberState, me: u64) -> Vec<(u64, MemberNode)> {
    state
        .membership
        .membership()
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, n)| (*id, n.clone()))
        .collect()
}

/// etcd's `CheckInitialHashKV`, for a member restarting on its data, before raft starts.
pub(crate) async fn initial_check(
    me: u64,
    storage: &Storage,
    state: &Arc<StateLock>,
    peers: &Peers,
) -> anyhow::Result<()> {
    let (storage2, state2) = (storage.clone(), state.clone());
    let (hash, plan) =
        tokio::task::spawn_blocking(move || hash_kv(&storage2, &state2, 0)).await??;
    let members = {
        let st = state
            .read()
            .map_err(|e| anyhow::anyhow!("state lock: {e}"))?;
        others(&st, me)
    };
    let mut mismatch = 0;
    for (id, answer) in peer_hashes(peers, members, plan.at).await {
        match answer {
            Ok(p) if p.hash != hash && p.compact_revision == plan.compacted => {
                tracing::error!(
                    local = format!("{me:x}"),
                    local_hash = hash,
                    remote = format!("{id:x}"),
                    remote_hash = p.hash,
                    revision = plan.at,
                    compact_revision = plan.compacted,
                    "found different hash values from remote peer"
                );
                mismatch += 1;
            }
            Ok(p) if p.hash != hash => tracing::warn!(
                remote = format!("{id:x}"),
                remote_compact_revision = p.compact_revision,
                local_compact_revision = plan.compacted,
                "cannot check the hash of a peer with a different compact revision"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                remote = format!("{id:x}"),
                "cannot fetch hash from remote peer: {e}"
            ),
        }
    }
    if mismatch > 0 {
        anyhow::bail!("{me:x} found data inconsistency with peers");
    }
    tracing::info!(revision = plan.at, hash, "initial corruption check passed");
    Ok(())
}

/// The leader's periodic check (etcd's `checkHashKV`), every `every`, until the server goes.
pub(crate) async fn run_periodic(server: Weak<EtcdServer>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = server.upgrade() else { return };
        if !s.is_leader() {
            continue;
        }
        if let Err(e) = check_once(&s).await {
            tracing::warn!("corruption check: {e}");
        }
    }
}

async fn check_once(s: &Arc<EtcdServer>) -> Result<(), ServerError> {
    let (hash, plan) = hash_kv_async(s, 0).await?;
    let members = others(&*s.read_state()?, s.member_id);
    let answers = peer_hashes(&s.peers, members, plan.at).await;
    let (hash2, plan2) = hash_kv_async(s, 0).await?;
    let mut corrupt = None;
    // The leader's own hash of the same revision changed: its own store is damaged.
    if hash2 != hash && plan2.at == plan.at && plan2.compacted == plan.compacted {
        corrupt = Some(s.member_id);
    }
    for (id, answer) in answers {
        let p = match answer {
            Ok(p) => p,
            Err(crate::peer::PeerError::Server(ServerError::Kv(
                KvError::Compacted | KvError::FutureRev,
            ))) => continue,
            Err(e) => {
                tracing::warn!(
                    remote = format!("{id:x}"),
                    "cannot fetch hash from remote peer: {e}"
                );
                continue;
            }
        };
        // A follower is never ahead of its leader, in revision or compaction.
        let ahead = p.revision > plan2.current || p.compact_revision > plan2.compacted;
        let differs = p.compact_revision == plan.compacted && p.hash != hash;
        if (ahead || differs) && corrupt.is_none() {
            tracing::error!(
                remote = format!("{id:x}"),
                remote_hash = p.hash,
                local_hash = hash,
                revision = plan.at,
                "found data inconsistency with a peer"
            );
            corrupt = Some(id);
        }
    }
    if let Some(id) = corrupt {
        s.propose(Request::Alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: id,
            alarm: AlarmType::Corrupt as i32,
        }))
        .await?;
    }
    Ok(())
}
