//! `member list|add|remove|update|promote`, printed as etcdctl 3.4 prints them.

use clap::Subcommand;
use oxetcd_common::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberRemoveRequest, MemberUpdateRequest, ResponseHeader,
};
use oxetcd_common::net::split_urls;

use crate::client::{Clients, Dialer};
use crate::error::Failure;
use crate::output::Printer;

#[derive(Subcommand)]
pub(crate) enum MemberCommand {
    /// Lists all members in the cluster
    List,
    /// Adds a member into the cluster
    Add {
        name: String,
        /// comma separated peer URLs for the new member.
        #[arg(long)]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member from the cluster
    Remove { member_id: String },
    /// Updates a member in the cluster
    Update {
        member_id: String,
        /// comma separated peer URLs for the updated member.
        #[arg(long)]
        peer_urls: String,
    },
    /// Promotes a non-voting member in the cluster
    Promote { member_id: String },
}

fn parse_member_id(s: &str) -> Result<u64, Failure> {
    u64::from_str_radix(s, 16)
        .map_err(|e| Failure::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

/// The cluster's members, as `member list` (and `endpoint --cluster`) asks for them.
pub(crate) async fn member_list(c: &mut Clients) -> Result<MemberListResponse, Failure> {
    Ok(c.cluster
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await?
        .into_inner())
}

/// `member add|remove|update|promote|list`
pub(crate) async fn run(d: &Dialer, printer: Printer, cmd: MemberCommand) -> Result<(), Failure> {
    let c = &mut d.connect().await?;
    let cluster_of =
        |h: &Option<ResponseHeader>| h.as_ref().map(|h| h.cluster_id).unwrap_or_default();
    match cmd {
        MemberCommand::List => printer.member_list(&member_list(c).await?),
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => {
            let urls = split_urls(&peer_urls);
            let resp = c
                .cluster
                .member_add(MemberAddRequest {
                    peer_ur_ls: urls.clone(),
                    is_learner: learner,
                })
                .await?
                .into_inner();
            let id = resp.member.as_ref().map(|m| m.id).unwrap_or_default();
            println!(
                "Member {id:16x} added to cluster {:16x}",
                cluster_of(&resp.header)
            );
            // The new member's environment, as etcdctl prints it: every named member's peer URLs.
            let mut conf = Vec::new();
            for m in &resp.members {
                let n = if m.id == id {
                    name.clone()
                } else {
                    m.name.clone()
                };
                if n.is_empty() {
                    continue;
                }
                for u in &m.peer_ur_ls {
                    conf.push(format!("{n}={u}"));
                }
            }
            println!();
            println!("ETCD_NAME=\"{name}\"");
            println!("ETCD_INITIAL_CLUSTER=\"{}\"", conf.join(","));
            println!("ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"", urls.join(","));
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberCommand::Remove { member_id } => {
            let id = parse_member_id(&member_id)?;
            let resp = c
                .cluster
                .member_remove(MemberRemoveRequest { id })
                .await?
                .into_inner();
            println!(
                "Member {id:16x} removed from cluster {:16x}",
                cluster_of(&resp.header)
            );
        }
        MemberCommand::Update {
            member_id,
            peer_urls,
        } => {
            let id = parse_member_id(&member_id)?;
            let resp = c
                .cluster
                .member_update(MemberUpdateRequest {
                    id,
                    peer_ur_ls: split_urls(&peer_urls),
                })
                .await?
                .into_inner();
            println!(
                "Member {id:16x} updated in cluster {:16x}",
                cluster_of(&resp.header)
            );
        }
        MemberCommand::Promote { member_id } => {
            let id = parse_member_id(&member_id)?;
            let resp = c
                .cluster
                .member_promote(MemberPromoteRequest { id })
                .await?
                .into_inner();
            println!(
                "Member {id:16x} promoted in cluster {:16x}",
                cluster_of(&resp.header)
            );
        }
    }
    Ok(())
}
