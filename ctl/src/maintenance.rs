//! `move-leader`.

use oxetcd_common::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use crate::client::Dialer;
use crate::error::Failure;
use crate::output::Printer;

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
