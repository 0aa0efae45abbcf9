//! oxetcdctl: etcdctl's commands, flags and output formats for oxetcd (and any etcd).
//!
//! This file parses the command line and dispatches; each command group lives in its module.

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use oxetcd_common::duration::parse_go_duration as parse_duration;

use crate::client::Dialer;
use crate::error::{Failure, EXIT_ERROR};
use crate::output::{Format, Printer};
use crate::{
    alarm, auth, bench, client, coordination, endpoint, kv, lease, maintenance, member, snapshot,
    txn, version, watch,
};

#[derive(Parser)]
#[command(
    name = "oxetcdctl",
    about = "A simple command line client for oxetcd and etcd.",
    disable_version_flag = true
)]
pub(crate) struct Cli {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub(crate) endpoints: Vec<String>,
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
    pub(crate) dial_timeout: Duration,
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
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_USER",
        hide_env_values = true,
        default_value = ""
    )]
    user: String,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    password: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Prints the version of oxetcdctl
    Version,
    /// Puts the given key into the store
    Put(kv::PutArgs),
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
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
        command: member::MemberCommand,
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
    /// User related commands
    User {
        #[command(subcommand)]
        command: auth::UserCommand,
    },
    /// Role related commands
    Role {
        #[command(subcommand)]
        command: auth::RoleCommand,
    },
    /// Enable or disable authentication
    Auth {
        #[command(subcommand)]
        command: auth::AuthCommand,
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
        command: endpoint::EndpointCommand,
        /// use all endpoints from the cluster member list
        #[arg(long, global = true)]
        cluster: bool,
    },
    /// Defragments the storage of the etcd members with given endpoints
    Defrag {
        /// use all endpoints from the cluster member list
        #[arg(long)]
        cluster: bool,
        // etcdctl ignores arguments here.
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Alarm related commands
    Alarm {
        #[command(subcommand)]
        command: alarm::AlarmCommand,
    },
    /// Manages etcd node snapshots
    Snapshot {
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
}

/// Runs the command. `timeout_given`: whether `--command-timeout` (or its variable) was set,
/// which etcdctl's `snapshot save` asks.
async fn run(cli: Cli, timeout_given: bool) -> Result<(), Failure> {
    let stream_timeout = timeout_given.then_some(cli.command_timeout);
    let printer = Printer {
        format: cli.write_out,
        hex: cli.hex,
        value_only: false,
    };
    if !cli.cacert.is_empty() || !cli.cert.is_empty() || !cli.key.is_empty() {
        client::use_tls(&cli.cacert, &cli.cert, &cli.key)?;
    }
    let d = &Dialer::new(
        cli.endpoints,
        cli.dial_timeout,
        cli.command_timeout,
        cli.user,
        cli.password,
    );
    match cli.command {
        Command::Version => version::run(),
        Command::Put(args) => kv::put(d, printer, args).await,
        Command::Get(args) => kv::get(d, printer, args).await,
        Command::Del(args) => kv::del(d, printer, args).await,
        Command::Txn { interactive } => txn::run(d, printer, interactive).await,
        Command::Compaction { revision, physical } => {
            kv::compaction(d, printer, revision, physical).await
        }
        Command::Watch(args) => watch::run(d, printer, args).await,
        Command::Lease { command } => lease::run(d, printer, command).await,
        Command::Lock {
            lockname,
            exec,
            ttl,
        } => coordination::lock(d, lockname, exec, ttl).await,
        Command::Elect {
            election_name,
            proposal,
            listen,
            ttl,
        } => coordination::elect(d, election_name, proposal, listen, ttl).await,
        Command::User { command } => auth::user(d, printer, command).await,
        Command::Role { command } => auth::role(d, printer, command).await,
        Command::Auth { command } => auth::auth(d, command).await,
        Command::Bench(args) => bench::run(d, args, printer.format == Format::Json).await,
        Command::Member { command } => member::run(d, printer, command).await,
        Command::MoveLeader { transferee_id } => {
            maintenance::move_leader(d, printer, transferee_id).await
        }
        Command::Endpoint { command, cluster } => endpoint::run(d, printer, command, cluster).await,
        Command::Defrag { cluster, args: _ } => maintenance::defrag(d, cluster).await,
        Command::Alarm { command } => alarm::run(d, printer, command).await,
        Command::Snapshot { command } => snapshot::run(d, printer, command, stream_timeout).await,
    }
}

/// oxetcdctl's entry point.
pub fn main() {
    let matches = Cli::command().get_matches();
    let timeout_given = !matches!(
        matches.value_source("command_timeout"),
        None | Some(ValueSource::DefaultValue)
    );
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
    if let Err(f) = rt.block_on(run(cli, timeout_given)) {
        if !f.message.is_empty() {
            eprintln!("Error: {}", f.message);
        }
        std::process::exit(f.code);
    }
}
