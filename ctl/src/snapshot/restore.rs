//! `snapshot restore`: a new member's data dir from a snapshot file taken from oxetcd or from
//! a real etcd (the work is `oxetcd_member::snapshot::restore`), with etcdctl 3.4's flags and
//! etcdutl 3.5's `--bump-revision`/`--mark-compacted`. Like etcdctl it logs what it does as
//! zap JSON lines on stderr and prints nothing on stdout.

use std::path::PathBuf;

use clap::Args;
use oxetcd_member::snapshot::restore::{restore as restore_data_dir, RestoreConfig};

use super::save::{log_epoch, s};
use crate::error::Failure;

#[derive(Args)]
pub(crate) struct RestoreArgs {
    /// the snapshot file
    #[arg(value_name = "filename")]
    files: Vec<String>,
    /// Path to the data directory
    #[arg(long, default_value = "")]
    data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "")]
    wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long)]
    skip_hash_check: bool,
    /// How much to increase the latest revision after restore
    #[arg(long, default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction (required
    /// if --bump-revision > 0, disallowed otherwise)
    #[arg(long)]
    mark_compacted: bool,
}

pub(crate) fn run(args: RestoreArgs) -> Result<(), Failure> {
    let [path] = args.files.as_slice() else {
        return Err(Failure::bad_args(
            "snapshot restore requires exactly one argument",
        ));
    };
    if !args.wal_dir.is_empty() {
        // Our raft log lives in the member's one database, under the data dir.
        return Err(Failure::error(
            "--wal-dir is not supported: oxetcd keeps its log in the data dir",
        ));
    }
    let data_dir = match args.data_dir.is_empty() {
        true => format!("{}.oxetcd", args.name),
        false => args.data_dir.clone(),
    };
    let cfg = RestoreConfig {
        snapshot: PathBuf::from(path),
        name: args.name,
        data_dir: PathBuf::from(&data_dir),
        initial_cluster: args.initial_cluster,
        initial_cluster_token: args.initial_cluster_token,
        initial_advertise_peer_urls: args.initial_advertise_peer_urls,
        skip_hash_check: args.skip_hash_check,
        bump_revision: args.bump_revision,
        mark_compacted: args.mark_compacted,
    };
    let fields = |data_dir: &str| {
        [
            ("path", s(path)),
            ("data-dir", s(data_dir)),
            ("snap-dir", s(&format!("{data_dir}/member/snap"))),
        ]
    };
    log_epoch("info", 296, "restoring snapshot", &fields(&data_dir));
    restore_data_dir(&cfg).map_err(|e| Failure::error(e.to_string()))?;
    log_epoch("info", 309, "restored snapshot", &fields(&data_dir));
    Ok(())
}
