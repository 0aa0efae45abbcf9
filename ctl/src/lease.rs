//! `lease grant|revoke|timetolive|list|keep-alive`, printed as etcdctl 3.4 prints them.

use clap::Subcommand;
use oxetcd_common::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, ResponseHeader,
};
use serde_json::{json, Map, Value};

use crate::client::Dialer;
use crate::error::status_text;
use crate::error::{Failure, EXIT_BAD_CONNECTION};
use crate::output::{Format, Printer};

#[derive(Subcommand)]
pub(crate) enum LeaseCommand {
    /// Creates leases
    Grant { ttl: String },
    /// Revokes leases
    Revoke { lease_id: String },
    /// Get lease information
    Timetolive {
        lease_id: String,
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive {
        lease_id: String,
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long)]
        once: bool,
    },
}

fn parse_id(s: &str) -> Result<i64, Failure> {
    i64::from_str_radix(s, 16)
        .map_err(|e| Failure::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// clientv3's lease responses embed the header: its fields come first, flattened.
fn flat_header(h: &Option<ResponseHeader>) -> Map<String, Value> {
    match crate::output::header_json(h) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub(crate) async fn run(d: &Dialer, p: Printer, cmd: LeaseCommand) -> Result<(), Failure> {
    let mut c = d.connect().await?;
    let json = p.format == Format::Json;
    match cmd {
        LeaseCommand::Grant { ttl } => {
            let ttl: i64 = ttl
                .parse()
                .map_err(|e| Failure::bad_args(format!("bad TTL ({e})")))?;
            let r = c
                .lease
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await
                .map_err(|s| {
                    Failure::error(format!("failed to grant lease ({})", status_text(&s)))
                })?
                .into_inner();
            if json {
                let mut m = flat_header(&r.header);
                m.insert("ID".into(), json!(r.id));
                m.insert("TTL".into(), json!(r.ttl));
                m.insert("Error".into(), json!(r.error));
                println!("{}", Value::Object(m));
            } else {
                println!("lease {:016x} granted with TTL({}s)", r.id, r.ttl);
            }
        }
        LeaseCommand::Revoke { lease_id } => {
            let id = parse_id(&lease_id)?;
            let r = c
                .lease
                .lease_revoke(LeaseRevokeRequest { id })
                .await
                .map_err(|s| {
                    Failure::error(format!("failed to revoke lease ({})", status_text(&s)))
                })?
                .into_inner();
            if json {
                println!("{}", Value::Object(flat_header(&r.header)));
            } else {
                println!("lease {id:016x} revoked");
            }
        }
        LeaseCommand::Timetolive { lease_id, keys } => {
            let id = parse_id(&lease_id)?;
            let r = c
                .lease
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await
                .map_err(|s| Failure::error(status_text(&s)))?
                .into_inner();
            if json {
                let mut m = flat_header(&r.header);
                m.insert("id".into(), json!(r.id));
                m.insert("ttl".into(), json!(r.ttl));
                m.insert("granted-ttl".into(), json!(r.granted_ttl));
                let ks: Vec<Value> = r.keys.iter().map(|k| crate::output::b64_value(k)).collect();
                m.insert(
                    "keys".into(),
                    if r.keys.is_empty() {
                        Value::Null
                    } else {
                        Value::Array(ks)
                    },
                );
                println!("{}", Value::Object(m));
            } else if r.granted_ttl == 0 && r.ttl == -1 {
                println!("lease {id:016x} already expired");
            } else {
                let mut line = format!(
                    "lease {id:016x} granted with TTL({}s), remaining({}s)",
                    r.granted_ttl, r.ttl
                );
                if keys {
                    let names: Vec<String> = r
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    line.push_str(&format!(", attached keys([{}])", names.join(" ")));
                }
                println!("{line}");
            }
        }
        LeaseCommand::List => {
            let r = c
                .lease
                .lease_leases(LeaseLeasesRequest {})
                .await
                .map_err(|s| {
                    Failure::error(format!("failed to list leases ({})", status_text(&s)))
                })?
                .into_inner();
            if json {
                let mut m = flat_header(&r.header);
                let ls: Vec<Value> = r.leases.iter().map(|l| json!({"id": l.id})).collect();
                m.insert("leases".into(), Value::Array(ls));
                println!("{}", Value::Object(m));
            } else {
                println!("found {} leases", r.leases.len());
                for l in &r.leases {
                    println!("{:016x}", l.id);
                }
            }
        }
        LeaseCommand::KeepAlive { lease_id, once } => {
            let id = parse_id(&lease_id)?;
            // The first request is queued before the call: etcd answers headers only with its
            // first response.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| Failure::error("keep-alive stream closed"))?;
            let mut responses = c
                .lease
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(|s| Failure::error(status_text(&s)))?
                .into_inner();
            let mut first = true;
            loop {
                if !first {
                    tx.send(LeaseKeepAliveRequest { id })
                        .await
                        .map_err(|_| Failure::error("keep-alive stream closed"))?;
                }
                first = false;
                let r = responses
                    .message()
                    .await
                    .map_err(|s| Failure::error(status_text(&s)))?
                    .ok_or_else(|| Failure::error("keep-alive stream closed"))?;
                if r.ttl <= 0 {
                    if once {
                        return Err(Failure::new(
                            EXIT_BAD_CONNECTION,
                            "etcdserver: requested lease not found",
                        ));
                    }
                    println!("lease {id:016x} expired or revoked.");
                    return Ok(());
                }
                if json {
                    let mut m = flat_header(&r.header);
                    m.insert("ID".into(), json!(r.id));
                    m.insert("TTL".into(), json!(r.ttl));
                    println!("{}", Value::Object(m));
                } else {
                    println!("lease {:016x} keepalived with TTL({})", r.id, r.ttl);
                }
                if once {
                    return Ok(());
                }
                // clientv3 renews at a third of the TTL.
                let wait = std::time::Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500));
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(())
}
