//! Bootstrapping from DNS (`--discovery-srv`): etcd's `srv.GetCluster`.
//!
//! The initial cluster is read from the `_etcd-server._tcp.<domain>` SRV records (and
//! `_etcd-server-ssl`). The record whose address is one of this member's advertised peer URLs
//! is this member, named `--name`; the others are named by their position, as etcd names them
//! (names of the other members are learned once they publish theirs). Member IDs come from the
//! peer URLs as the records spell them, so every member computes the same IDs.

use std::collections::HashSet;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use oxetcd_common::dns;

use crate::config::{url_host_port, Config};

async fn resolve(url: &str) -> anyhow::Result<HashSet<SocketAddr>> {
    let hp = url_host_port(url)?;
    let addrs = tokio::net::lookup_host(hp.as_str())
        .await
        .with_context(|| format!("cannot resolve {hp}"))?;
    Ok(addrs.collect())
}

/// Fills `initial_cluster` (and this member's advertised peer URLs, spelled as DNS spells
/// them) from the SRV records of `--discovery-srv`.
pub(crate) async fn apply_srv(cfg: &mut Config) -> anyhow::Result<()> {
    let domain = cfg.discovery_srv.clone();
    let urls = dns::service_urls("etcd-server", &cfg.discovery_srv_name, &domain)
        .await
        .with_context(|| format!("error setting up initial cluster from DNS SRV of {domain}"))?;
    let mut mine = HashSet::new();
    let own_urls = cfg.peer_urls();
    for url in &own_urls {
        mine.extend(resolve(url).await?);
    }
    let mut parts = Vec::new();
    let mut ours = Vec::new();
    let mut next_name = 0;
    for url in urls {
        let addrs = match resolve(&url).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%url, "SRV target skipped: {e:#}");
                continue;
            }
        };
        if addrs.is_disjoint(&mine) {
            parts.push(format!("{next_name}={url}"));
            next_name += 1;
            continue;
        }
        let scheme = |u: &str| u.split("://").next().unwrap_or_default().to_string();
        if let Some(own) = own_urls.iter().find(|u| scheme(u) != scheme(&url)) {
            bail!("bootstrap at {url} from DNS has scheme mismatch with expected peer {own}");
        }
        parts.push(format!("{}={url}", cfg.name));
        ours.push(url);
    }
    if ours.is_empty() {
        bail!(
            "no SRV record of {domain} is this member: none resolves to --initial-advertise-peer-urls {:?}",
            cfg.initial_advertise_peer_urls
        );
    }
    let cluster = parts.join(",");
    tracing::info!(%cluster, "initial cluster from DNS SRV");
    cfg.initial_cluster = Some(cluster);
    cfg.initial_advertise_peer_urls = ours.join(",");
    Ok(())
}
