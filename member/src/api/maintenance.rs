//! etcdserverpb.Maintenance: Status, Alarm and Defragment for now.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use oxetcd_common::etcdserverpb::maintenance_server::Maintenance;
use oxetcd_common::etcdserverpb::AlarmType;
use oxetcd_common::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use oxetcd_common::oxetcdpb::internal_raft_request::Request as Proposal;
use oxetcd_common::version::{ETCD_SERVER_VERSION, ETCD_STORAGE_VERSION};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::identity::Credentials;
use crate::server::EtcdServer;

pub(super) struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }

    /// With auth enabled, defragment, hashes, snapshots, move-leader and downgrade are root
    /// only (etcd's authMaintenanceServer); status and alarms are open to all, as in 3.4.
    async fn require_admin<T>(&self, r: &Request<T>) -> Result<(), Status> {
        Credentials::of(&self.server, r)
            .require_admin(&self.server)
            .await
    }

    fn not_yet(what: &str) -> Status {
        Status::unimplemented(format!(
            "etcdserver: {what} is not supported by this oxetcd version yet"
        ))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Every action goes through raft, as in etcd: a GET sees every alarm applied before it.
    /// Open to every user, and answered without a header, as etcd 3.4 does.
    async fn alarm(&self, r: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let (bytes, _) = self.server.propose(Proposal::Alarm(r.into_inner())).await?;
        let resp = AlarmResponse::decode(bytes.as_slice())
            .map_err(crate::error::ServerError::bad_apply_result)?;
        Ok(Response::new(resp))
    }

    async fn status(&self, _r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (rev, applied, alarms) = {
            let state = self.server.read_state()?;
            (
                state.mvcc.current_rev(),
                state.applied.map(|l| l.index).unwrap_or(0),
                state.alarms.get(AlarmType::None as i32),
            )
        };
        let m = self.server.raft.metrics().borrow().clone();
        let db_size = self.server.storage.size_on_disk();
        // etcd lists "no leader" and each raised alarm (as gogo's compact text of AlarmMember).
        let mut errors = Vec::new();
        let leader = self.server.reported_leader();
        if leader.is_none() {
            errors.push(crate::error::ServerError::NoLeader.to_string());
        }
        errors.extend(alarms.iter().map(|a| {
            format!(
                "memberID:{} alarm:{} ",
                a.member_id,
                AlarmType::try_from(a.alarm)
                    .map(|t| t.as_str_name())
                    .unwrap_or("NONE")
            )
        }));
        let mut resp = Response::new(StatusResponse {
            header: self.server.header(rev, m.current_term),
            version: ETCD_SERVER_VERSION.to_string(),
            db_size,
            leader: leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: applied,
            errors,
            db_size_in_use: db_size,
            is_learner: false,
            storage_version: ETCD_STORAGE_VERSION.to_string(),
            db_size_quota: crate::quota::reported_quota(self.server.limits.quota_backend_bytes),
            downgrade_info: None,
        });
        // Tells oxetcd-proxy this member deduplicates retried writes by request ID.
        resp.metadata_mut().insert(
            oxetcd_common::OXETCD_VERSION_HEADER,
            tonic::metadata::MetadataValue::from_static(oxetcd_common::version::OXETCD_VERSION),
        );
        Ok(resp)
    }

    async fn defragment(
        &self,
        r: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.require_admin(&r).await?;
        let storage = self.server.storage.clone();
        tokio::task::spawn_blocking(move || storage.compact_all())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DefragmentResponse {
            header: self.server.header(0, self.server.term()),
        }))
    }

    /// etcd's Hash: the whole backend as etcd's buckets (see `snapshot::backend`), read from a
    /// RocksDB snapshot; equal on members that applied the same entries.
    async fn hash(&self, r: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.require_admin(&r).await?;
        let server = self.server.clone();
        let (hash, rev) = tokio::task::spawn_blocking(move || {
            let view = crate::snapshot::capture(&server.storage, &server.state)?;
            Ok::<_, crate::snapshot::SnapshotError>((view.hash()?, view.captured.current_rev))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashResponse {
            header: self.server.header(rev, self.server.term()),
            hash,
        }))
    }

    async fn hash_kv(&self, r: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.require_admin(&r).await?;
        let rev = r.into_inner().revision;
        let (hash, plan) = crate::corrupt::hash_kv_async(&self.server, rev).await?;
        Ok(Response::new(HashKvResponse {
            header: self.server.header(plan.current, self.server.term()),
            hash,
            compact_revision: plan.compacted,
            // etcd >= 3.5: the revision hashed.
            hash_revision: plan.at,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        r: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.require_admin(&r).await?;
        let rx =
            crate::snapshot::save::stream(self.server.storage.clone(), self.server.state.clone());
        let stream =
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| item.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(
        &self,
        r: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.require_admin(&r).await?;
        self.server.move_leader(r.into_inner().target_id).await?;
        let rev = self.server.read_state()?.mvcc.current_rev();
        Ok(Response::new(MoveLeaderResponse {
            header: self.server.header(rev, self.server.term()),
        }))
    }

    async fn downgrade(
        &self,
        r: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        self.require_admin(&r).await?;
        Err(Self::not_yet("downgrade"))
    }
}
