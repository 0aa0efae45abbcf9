//! Raft traffic between members.
//!
//! A single-member cluster never sends a raft message, so this first version has no peer
//! transport: every RPC reports the peer unreachable, which openraft treats like a dead peer
//! (it backs off and retries). The gRPC transport on the peer URLs replaces it with the
//! multi-member work.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{MemberNode, TypeConfig};

#[derive(Clone, Default)]
pub struct Network;

pub struct PeerClient {
    target: u64,
}

impl PeerClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, MemberNode, E> {
        let e = std::io::Error::other(format!(
            "no peer transport yet: member {:x} is unreachable",
            self.target
        ));
        RPCError::Unreachable(Unreachable::new(&e))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, _node: &MemberNode) -> Self::Network {
        PeerClient { target }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MemberNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
