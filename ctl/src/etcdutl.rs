//! oxetcdutl: etcdutl's offline commands for oxetcd data dirs and etcd snapshot files
//! (`snapshot restore|status`, `defrag --data-dir`, `hashkv`, `version`), with etcdutl's
//! flags, output formats and exit codes. Nothing here talks to a running member.

use std::path::Path;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::error::{Failure, EXIT_ERROR};
use crate::output::{self, Format};
use crate::snapshot::{self, restore::RestoreArgs};

#[derive(Parser)]
#[command(
    name = "oxetcdutl",
    about = "An administrative command line tool for oxetcd (and etcd) files.",
    disable_version_flag = true
)]
struct Cli {
    /// set the output format (fields, json, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    write_out: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manages etcd node snapshots
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Defragments the storage of a stopped member's data dir
    Defrag {
        /// Data directory of the member to defragment
        #[arg(long)]
        data_dir: String,
    },
    /// Prints the KV history hash of a stopped member's data dir
    Hashkv {
        /// the member's data dir
        #[arg(value_name = "data-dir")]
        data_dir: String,
        /// maximum revision to hash (default: latest revision)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
    /// Prints the version of oxetcdutl
    Version,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
    /// Gets backend snapshot status of a given file
    Status {
        /// the snapshot file
        #[arg(value_name = "filename")]
        files: Vec<String>,
    },
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Snapshot { command } => match command {
            SnapshotCommand::Restore(args) => snapshot::restore::run(args),
            SnapshotCommand::Status { files } => snapshot::status(cli.write_out, &files),
        },
        Command::Defrag { data_dir } => {
            // etcdutl prints this on stderr without an `Error:` prefix.
            oxetcd_member::offline::defrag(Path::new(&data_dir)).map_err(|e| {
                eprintln!("Failed to defragment etcd data[{data_dir}] ({e})");
                Failure::quiet(EXIT_ERROR)
            })?;
            println!("Finished defragmenting etcd data[{data_dir}]");
            Ok(())
        }
        Command::Hashkv { data_dir, rev } => {
            let h = oxetcd_member::offline::hash_kv(Path::new(&data_dir), rev)
                .map_err(|e| Failure::error(e.to_string()))?;
            print_hashkv(cli.write_out, &h)
        }
        Command::Version => {
            println!(
                "oxetcdutl version: {}",
                oxetcd_common::version::OXETCD_VERSION
            );
            println!("API version: {}", api_version());
            Ok(())
        }
    }
}

/// etcd's API version: major.minor of the etcd version we implement.
fn api_version() -> String {
    let v = oxetcd_common::version::ETCD_SERVER_VERSION;
    v.rsplit_once('.')
        .map(|(mm, _)| mm)
        .unwrap_or(v)
        .to_string()
}

/// etcdutl 3.6's HashKV printers.
fn print_hashkv(format: Format, h: &oxetcd_member::offline::HashKv) -> Result<(), Failure> {
    let row = vec![
        h.hash.to_string(),
        h.hash_revision.to_string(),
        h.compact_revision.to_string(),
    ];
    let json = json!({
        "hash": h.hash,
        "hashRevision": h.hash_revision,
        "compactRevision": h.compact_revision,
    });
    let fields = [
        ("Hash", h.hash.to_string()),
        ("Hash revision", h.hash_revision.to_string()),
        ("Compact revision", h.compact_revision.to_string()),
    ];
    let header = ["hash", "hash revision", "compact revision"];
    output::print_record(format, &header, row, json, &fields)
}

/// oxetcdutl's entry point.
pub fn main() {
    let cli = Cli::parse();
    if let Err(f) = run(cli) {
        if !f.message.is_empty() {
            eprintln!("Error: {}", f.message);
        }
        std::process::exit(if f.code == 0 { EXIT_ERROR } else { f.code });
    }
}
