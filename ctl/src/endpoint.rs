//! `endpoint status|health|hashkv [--cluster]`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use oxetcd_common::etcdserverpb::{HashKvRequest, RangeRequest, StatusRequest};

use crate::client::Dialer;
use crate::error::Failure;
use crate::member::member_list;
use crate::output::{self, Format, Printer};

/// rpctypes.ErrPermissionDenied's text.
const PERMISSION_DENIED: &str = "etcdserver: permission denied";

#[derive(Subcommand)]
pub(crate) enum EndpointCommand {
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints the KV history hash for each endpoint in --endpoints
    #[command(name = "hashkv")]
    HashKv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// `endpoint status|health`; with `cluster`, on every client URL of the member list.
pub(crate) async fn run(
    d: &Dialer,
    printer: Printer,
    command: EndpointCommand,
    cluster: bool,
) -> Result<(), Failure> {
    let endpoints = if cluster {
        // Without credentials, as etcdctl: the member list needs none.
        let mut c = d.connect_anonymous().await?;
        member_list(&mut c)
            .await?
            .members
            .into_iter()
            .flat_map(|m| m.client_ur_ls)
            .collect()
    } else {
        d.endpoints.clone()
    };
    match command {
        EndpointCommand::Status => status(d, printer, &endpoints).await,
        EndpointCommand::Health => health(d, printer, &endpoints).await,
        EndpointCommand::HashKv { rev } => hashkv(d, printer, &endpoints, rev).await,
    }
}

/// etcdctl's `endpoint hashkv`: each endpoint's hash; the last failure is the command's.
async fn hashkv(
    d: &Dialer,
    printer: Printer,
    endpoints: &[String],
    rev: i64,
) -> Result<(), Failure> {
    let token = d.authenticate(&d.endpoints).await?;
    let mut list = Vec::new();
    let mut failed = None;
    for ep in endpoints {
        let res = async {
            let mut c = d.connect_with(ep, &token).await?;
            let r = c
                .maintenance
                .hash_kv(HashKvRequest { revision: rev })
                .await?;
            Ok::<_, Failure>(r.into_inner())
        }
        .await;
        match res {
            Ok(h) => list.push((ep.clone(), h)),
            Err(e) => {
                eprintln!("Failed to get the hash of endpoint {ep} ({})", e.message);
                failed = Some(e);
            }
        }
    }
    printer.endpoint_hashkv(&list);
    match failed {
        Some(e) => Err(Failure::error(e.message)),
        None => Ok(()),
    }
}

async fn status(d: &Dialer, printer: Printer, endpoints: &[String]) -> Result<(), Failure> {
    // etcdctl makes one client (authenticating once, or failing) and asks each endpoint.
    let token = d.authenticate(&d.endpoints).await?;
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints {
        let res = async {
            let mut c = d.connect_with(ep, &token).await?;
            Ok::<_, Failure>(c.maintenance.status(StatusRequest {}).await?.into_inner())
        }
        .await;
        match res {
            Ok(s) => list.push((ep.clone(), s)),
            Err(e) => {
                eprintln!("Failed to get the status of endpoint {ep} ({})", e.message);
                failed = true;
            }
        }
    }
    printer.endpoint_status(&list);
    if failed {
        return Err(Failure::error("one or more endpoints are unreachable"));
    }
    Ok(())
}

async fn health(d: &Dialer, printer: Printer, endpoints: &[String]) -> Result<(), Failure> {
    let mut rows = Vec::new();
    for ep in endpoints {
        let start = Instant::now();
        let res = async {
            let mut c = d.connect_to(ep).await?;
            // A linearizable read goes through the leader and a quorum: the same check etcdctl
            // makes.
            let res =
                c.kv.range(RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                })
                .await;
            match res {
                // Permission denied is fine: the read went through consensus (etcdctl's rule).
                Err(s) if s.message() != PERMISSION_DENIED => Err(Failure::from(s)),
                _ => Ok::<_, Failure>(()),
            }
        }
        .await;
        rows.push((ep.clone(), res.err().map(|e| e.message), start.elapsed()));
    }
    print_health(printer.format, &rows);
    if rows.iter().any(|r| r.1.is_some()) {
        return Err(Failure::error("unhealthy cluster"));
    }
    Ok(())
}

fn print_health(format: Format, rows: &[(String, Option<String>, Duration)]) {
    match format {
        Format::Json => {
            let arr: Vec<serde_json::Value> = rows
                .iter()
                .map(|(ep, err, took)| {
                    let mut m = serde_json::Map::new();
                    m.insert("endpoint".into(), ep.clone().into());
                    m.insert("health".into(), err.is_none().into());
                    m.insert("took".into(), output::go_duration(*took).into());
                    if let Some(e) = err {
                        m.insert("error".into(), e.clone().into());
                    }
                    serde_json::Value::Object(m)
                })
                .collect();
            println!("{}", serde_json::Value::Array(arr));
        }
        Format::Table => {
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|(ep, err, took)| {
                    vec![
                        ep.clone(),
                        err.is_none().to_string(),
                        output::go_duration(*took),
                        err.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["endpoint", "health", "took", "error"], &table_rows)
            );
        }
        _ => {
            for (ep, err, took) in rows {
                match err {
                    None => println!(
                        "{ep} is healthy: successfully committed proposal: took = {}",
                        output::go_duration(*took)
                    ),
                    Some(e) => eprintln!("{ep} is unhealthy: failed to commit proposal: {e}"),
                }
            }
        }
    }
}
