//! `move-leader` and `defrag`.

use oxetcd_common::etcdserverpb::{DefragmentRequest, MoveLeaderRequest, StatusRequest};

use crate::client::Dialer;
use crate::error::{Failure, EXIT_ERROR};
use crate::member::member_list;
use crate::output::Printer;

/// `defrag [--cluster]`: etcdctl's, one endpoint after the other, each within the command
/// timeout. Progress goes to stdout and failures to stderr in every output format; with any
/// failure the exit code is 1, without an `Error:` line.
pub(crate) async fn defrag(d: &Dialer, cluster: bool) -> Result<(), Failure> {
    // etcdctl makes its client (authenticating with `--user`) before anything else.
    let token = d.authenticate(&d.endpoints).await?;
    let endpoints = if cluster {
        // As etcdctl's endpointsFromCluster: the member list needs no credentials.
        let list = async {
            let mut c = d.connect_anonymous().await?;
            member_list(&mut c).await
        };
        list.await
            .map_err(|f| {
                Failure::error(format!(
                    "failed to fetch endpoints from etcd cluster member list: {}",
                    f.message
                ))
            })?
            .members
            .into_iter()
            .flat_map(|m| m.client_ur_ls)
            .collect()
    } else {
        d.endpoints.clone()
    };
    let mut failures = 0;
    for ep in &endpoints {
        let res = async {
            let mut c = d.connect_with(ep, &token).await?;
            c.maintenance.defragment(DefragmentRequest {}).await?;
            Ok::<_, Failure>(())
        }
        .await;
        match res {
            Ok(()) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.message);
                failures += 1;
            }
        }
    }
    if failures != 0 {
        return Err(Failure::quiet(EXIT_ERROR));
    }
    Ok(())
}

/// `move-leader <transferee-id>`: as etcdctl, finds the leader among the given endpoints and
/// asks it.
pub(crate) async fn move_leader(
    d: &Dialer,
    printer: Printer,
    transferee_id: String,
) -> Result<(), Failure> {
    let target = u64::from_str_radix(&transferee_id, 16).map_err(|e| {
        Failure::bad_args(format!("strconv.ParseUint: parsing {transferee_id:?}: {e}"))
    })?;
    let mut leader = None;
    for ep in &d.endpoints {
        let mut c = d.connect_to(ep).await?;
        let s = c.maintenance.status(StatusRequest {}).await?.into_inner();
        if s.header.as_ref().map(|h| h.member_id) == Some(s.leader) {
            leader = Some((c, s.leader));
            break;
        }
    }
    let Some((mut c, leader_id)) = leader else {
        return Err(Failure::bad_args(format!(
            "no leader endpoint given at [{}]",
            d.endpoints.join(" ")
        )));
    };
    let resp = c
        .maintenance
        .move_leader(MoveLeaderRequest { target_id: target })
        .await?
        .into_inner();
    printer.move_leader(leader_id, target, &resp);
    Ok(())
}
