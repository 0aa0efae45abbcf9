//! oxetcdctl: etcdctl's commands, flags and output formats for oxetcd (and any etcd).

mod bench;
mod client;
mod coordination;
mod kvargs;
mod lease;
mod output;
mod txn;
mod watch;

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use oxetcd_common::etcdserverpb::{
    CompactionRequest, MemberListRequest, MoveLeaderRequest, RangeRequest, StatusRequest,
};

use client::{status_text, Clients};
use kvargs::{DelArgs, GetArgs, PutArgs};
use output::{Format, Printer};

/// etcdctl's exit codes.
const EXIT_ERROR: i32 = 1;
const EXIT_BAD_ARGS: i32 = 128;

#[derive(Parser)]
#[command(
    name = "oxetcdctl",
    about = "A simple command line client for oxetcd and etcd.",
    disable_version_flag = true
)]
struct Cli {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple"
    )]
    write_out: Format,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX")]
    hex: bool,
    /// dial timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    command_timeout: Duration,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(
        id = "tls_cacert",
        long = "cacert",
        global = true,
        env = "ETCDCTL_CACERT",
        default_value = ""
    )]
    cacert: String,
    /// identify secure client using this TLS certificate file
    #[arg(
        id = "tls_cert",
        long = "cert",
        global = true,
        env = "ETCDCTL_CERT",
        default_value = ""
    )]
    cert: String,
    /// identify secure client using this TLS key file (its own id: `get` has a `key`)
    #[arg(
        id = "tls_key",
        long = "key",
        global = true,
        env = "ETCDCTL_KEY",
        default_value = ""
    )]
    key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the version of oxetcdctl
    Version,
    /// Puts the given key into the store
    Put(PutArgs),
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    Txn {
        /// Input from stdin interactively
        #[arg(short, long)]
        interactive: bool,
    },
    /// Compacts the event history in etcd
    Compaction {
        revision: String,
        /// 'true' to wait for compaction to physically remove all old revisions
        #[arg(long)]
        physical: bool,
    },
    /// Membership related commands
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Lease related commands
    Lease {
        #[command(subcommand)]
        command: lease::LeaseCommand,
    },
    /// Acquires a named lock
    Lock {
        lockname: String,
        /// [exec-command arg1 arg2 ...]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        exec: Vec<String>,
        /// timeout for session
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
    /// Observes and participates in leader election
    Elect {
        election_name: String,
        proposal: Option<String>,
        /// observation mode
        #[arg(short, long)]
        listen: bool,
        /// timeout for session
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
    /// Benchmark: load generator with etcd benchmark's flags and report
    Bench(bench::BenchArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader {
        /// ID of the member to lead (hex, as `member list` prints it)
        transferee_id: String,
    },
    /// Endpoint related commands
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
        /// use all endpoints from the cluster member list
        #[arg(long, global = true)]
        cluster: bool,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
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
        .map_err(|e| bad_args(anyhow!("bad member ID arg ({e}), expecting ID in Hex")))
}

use oxetcd_common::net::split_urls;

#[derive(Subcommand)]
enum EndpointCommand {
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
}

use oxetcd_common::duration::parse_go_duration as parse_duration;

/// A failure with etcdctl's exit code.
struct Failure {
    code: i32,
    message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: EXIT_ERROR,
            message: format!("{e:#}"),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure {
            code: EXIT_ERROR,
            message: status_text(&s),
        }
    }
}

impl From<lease::CmdError> for Failure {
    fn from(e: lease::CmdError) -> Self {
        Failure {
            code: e.code,
            message: e.message,
        }
    }
}

fn bad_args(e: anyhow::Error) -> Failure {
    Failure {
        code: EXIT_BAD_ARGS,
        message: format!("{e:#}"),
    }
}

fn read_stdin_value() -> Option<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let mut s = String::new();
    stdin.lock().read_to_string(&mut s).ok()?;
    Some(s)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let printer = Printer {
        format: cli.write_out,
        hex: cli.hex,
        value_only: false,
    };
    if !cli.cacert.is_empty() || !cli.cert.is_empty() || !cli.key.is_empty() {
        client::use_tls(&cli.cacert, &cli.cert, &cli.key).map_err(bad_args)?;
    }
    let connect = || client::connect(&cli.endpoints, cli.dial_timeout, cli.command_timeout);
    match cli.command {
        Command::Version => {
            println!(
                "oxetcdctl version: {}",
                oxetcd_common::version::OXETCD_VERSION
            );
            println!("API version: 3.6");
        }
        Command::Put(args) => {
            let req = args.request(read_stdin_value).map_err(bad_args)?;
            let mut c = Clients::new(connect().await?);
            let resp = c.kv.put(req).await?.into_inner();
            printer.put(&resp);
        }
        Command::Get(args) => {
            let req = args.request().map_err(bad_args)?;
            let printer = Printer {
                value_only: args.print_value_only,
                ..printer
            };
            let mut c = Clients::new(connect().await?);
            let resp = c.kv.range(req).await?.into_inner();
            printer.get(&resp, args.count_only);
        }
        Command::Del(args) => {
            let req = args.request().map_err(bad_args)?;
            let mut c = Clients::new(connect().await?);
            let resp = c.kv.delete_range(req).await?.into_inner();
            printer.del(&resp);
        }
        Command::Txn { interactive } => {
            let req = txn::read_txn(&mut std::io::stdin().lock(), interactive).map_err(bad_args)?;
            let mut c = Clients::new(connect().await?);
            let resp = c.kv.txn(req).await?.into_inner();
            printer.txn(&resp);
        }
        Command::Compaction { revision, physical } => {
            let rev: i64 = revision
                .parse()
                .map_err(|e| bad_args(anyhow!("bad revision {revision:?}: {e}")))?;
            let mut c = Clients::new(connect().await?);
            let resp =
                c.kv.compact(CompactionRequest {
                    revision: rev,
                    physical,
                })
                .await?
                .into_inner();
            match printer.format {
                Format::Json => println!("{{\"header\":{}}}", output::header_json(&resp.header)),
                _ => println!("compacted revision {rev}"),
            }
        }
        Command::Watch(args) => {
            let mut c = Clients::new(connect().await?);
            watch::run(&mut c, printer, args).await?;
        }
        Command::Lease { command } => {
            let mut c = Clients::new(connect().await?);
            lease::run(&mut c, printer, command).await?;
        }
        Command::Lock {
            lockname,
            exec,
            ttl,
        } => {
            let exec = exec.into_iter().skip_while(|a| a == "--").collect();
            let mut c = Clients::new(connect().await?);
            coordination::lock(&mut c, lockname, exec, ttl).await?;
        }
        Command::Elect {
            election_name,
            proposal,
            listen,
            ttl,
        } => {
            let mut c = Clients::new(connect().await?);
            coordination::elect(&mut c, election_name, proposal, listen, ttl).await?;
        }
        Command::Bench(args) => {
            bench::run(
                &cli.endpoints,
                cli.dial_timeout,
                args,
                printer.format == Format::Json,
            )
            .await?
        }
        Command::Member { command } => {
            let mut c = Clients::new(connect().await?);
            run_member(&mut c, printer, command).await?;
        }
        Command::MoveLeader { transferee_id } => {
            let target = u64::from_str_radix(&transferee_id, 16).map_err(|e| Failure {
                code: EXIT_BAD_ARGS,
                message: format!("strconv.ParseUint: parsing {transferee_id:?}: {e}"),
            })?;
            // As etcdctl: find the leader among the given endpoints, ask it.
            let mut leader = None;
            for ep in &cli.endpoints {
                let ch = client::connect_one(ep, cli.dial_timeout, cli.command_timeout).await?;
                let mut c = Clients::new(ch);
                let s = c.maintenance.status(StatusRequest {}).await?.into_inner();
                if s.header.as_ref().map(|h| h.member_id) == Some(s.leader) {
                    leader = Some((c, s.leader));
                    break;
                }
            }
            let Some((mut c, leader_id)) = leader else {
                return Err(Failure {
                    code: EXIT_BAD_ARGS,
                    message: format!("no leader endpoint given at [{}]", cli.endpoints.join(" ")),
                });
            };
            let resp = c
                .maintenance
                .move_leader(MoveLeaderRequest { target_id: target })
                .await?
                .into_inner();
            printer.move_leader(leader_id, target, &resp);
        }
        Command::Endpoint { command, cluster } => {
            let endpoints = if cluster {
                let mut c = Clients::new(connect().await?);
                member_list(&mut c)
                    .await?
                    .members
                    .into_iter()
                    .flat_map(|m| m.client_ur_ls)
                    .collect()
            } else {
                cli.endpoints.clone()
            };
            match command {
                EndpointCommand::Status => {
                    let mut list = Vec::new();
                    let mut failed = false;
                    for ep in &endpoints {
                        let res = async {
                            let ch = client::connect_one(ep, cli.dial_timeout, cli.command_timeout)
                                .await?;
                            let mut c = Clients::new(ch);
                            Ok::<_, Failure>(
                                c.maintenance.status(StatusRequest {}).await?.into_inner(),
                            )
                        }
                        .await;
                        match res {
                            Ok(s) => list.push((ep.clone(), s)),
                            Err(e) => {
                                eprintln!(
                                    "Failed to get the status of endpoint {ep} ({})",
                                    e.message
                                );
                                failed = true;
                            }
                        }
                    }
                    printer.endpoint_status(&list);
                    if failed {
                        return Err(Failure {
                            code: EXIT_ERROR,
                            message: "one or more endpoints are unreachable".into(),
                        });
                    }
                }
                EndpointCommand::Health => {
                    let mut rows = Vec::new();
                    for ep in &endpoints {
                        let start = Instant::now();
                        let res = async {
                            let ch = client::connect_one(ep, cli.dial_timeout, cli.command_timeout)
                                .await?;
                            let mut c = Clients::new(ch);
                            // A linearizable read goes through the leader and a quorum: the
                            // same check etcdctl makes.
                            c.kv.range(RangeRequest {
                                key: b"health".to_vec(),
                                ..Default::default()
                            })
                            .await?;
                            Ok::<_, Failure>(())
                        }
                        .await;
                        rows.push((ep.clone(), res.err().map(|e| e.message), start.elapsed()));
                    }
                    print_health(printer.format, &rows);
                    if rows.iter().any(|r| r.1.is_some()) {
                        return Err(Failure {
                            code: EXIT_ERROR,
                            message: "unhealthy cluster".into(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

async fn member_list(
    c: &mut Clients,
) -> Result<oxetcd_common::etcdserverpb::MemberListResponse, Failure> {
    Ok(c.cluster
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await?
        .into_inner())
}

/// `member add|remove|update|promote|list`, printed as etcdctl 3.4 prints them.
async fn run_member(c: &mut Clients, printer: Printer, cmd: MemberCommand) -> Result<(), Failure> {
    use oxetcd_common::etcdserverpb::{
        MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
    };
    let cluster_of = |h: &Option<oxetcd_common::etcdserverpb::ResponseHeader>| {
        h.as_ref().map(|h| h.cluster_id).unwrap_or_default()
    };
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

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    if let Err(f) = rt.block_on(run(cli)) {
        eprintln!("Error: {}", f.message);
        std::process::exit(f.code);
    }
}
