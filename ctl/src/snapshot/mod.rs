//! `snapshot save|status|restore`, as etcdctl 3.4 has them (status and restore are also
//! oxetcdutl's). Reading and restoring snapshot files is `oxetcd_member::snapshot`'s.

pub(crate) mod restore;
mod save;

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use oxetcd_member::snapshot::status::DbStatus;
use oxetcd_member::snapshot::BoltError;

use crate::client::Dialer;
use crate::error::{Failure, EXIT_PANIC};
use crate::output::{self, Format, Printer};

#[derive(Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save {
        // A list: etcdctl counts the arguments itself and refuses others with its own message.
        /// the file to save the snapshot to
        #[arg(value_name = "filename")]
        files: Vec<String>,
    },
    /// Gets backend snapshot status of a given file
    #[command(
        long_about = "Gets backend snapshot status of a given file\n\nWhen --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\nThe items in the lists are hash, revision, total keys, total size."
    )]
    Status {
        /// the snapshot file
        #[arg(value_name = "filename")]
        files: Vec<String>,
    },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(restore::RestoreArgs),
}

/// `snapshot save|status`. `timeout`: `--command-timeout`, if it was given (`save` has no
/// timeout otherwise).
pub(crate) async fn run(
    d: &Dialer,
    printer: Printer,
    cmd: SnapshotCommand,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    match cmd {
        SnapshotCommand::Save { files } => match files.as_slice() {
            [path] => save::save(d, path, timeout).await,
            _ => Err(Failure::bad_args("snapshot save expects one argument")),
        },
        SnapshotCommand::Status { files } => status(printer.format, &files),
        SnapshotCommand::Restore(args) => restore::run(args),
    }
}

/// `snapshot status FILE`: etcdctl's exit code 1 for a file bbolt will not open, 2 (a Go
/// panic's) for damage that makes etcdctl's bbolt panic.
pub(crate) fn status(format: Format, files: &[String]) -> Result<(), Failure> {
    let [path] = files else {
        return Err(Failure::bad_args(
            "snapshot status requires exactly one argument",
        ));
    };
    let st = oxetcd_member::snapshot::status::status(path).map_err(|e| match e {
        BoltError::Open(m) => Failure::error(m),
        corrupt @ BoltError::Corrupt(_) => Failure::new(EXIT_PANIC, corrupt.to_string()),
    })?;
    print_status(format, &st)
}

/// etcdctl's DBStatus printers (protobuf has none).
fn print_status(format: Format, st: &DbStatus) -> Result<(), Failure> {
    let row = vec![
        format!("{:x}", st.hash),
        st.revision.to_string(),
        st.total_key.to_string(),
        output::humanize_bytes(st.total_size),
    ];
    let json = json!({
        "hash": st.hash,
        "revision": st.revision,
        "totalKey": st.total_key,
        "totalSize": st.total_size,
    });
    let fields = [
        ("Hash", st.hash.to_string()),
        ("Revision", st.revision.to_string()),
        ("Keys", st.total_key.to_string()),
        ("Size", st.total_size.to_string()),
    ];
    let header = ["hash", "revision", "total keys", "total size"];
    output::print_record(format, &header, row, json, &fields)
}
