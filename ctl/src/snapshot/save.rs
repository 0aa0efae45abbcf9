//! `snapshot save <file>`: etcdctl 3.4's `snapshot.v3Manager.Save`. The stream goes to
//! `<file>.part`, which must end with the sha256 etcd appends (its size is then 32 more than a
//! multiple of 512), is synced and renamed to `<file>`. Every failure exits with
//! ExitInterrupted, as etcdctl's do, and leaves no `.part` behind.
//!
//! Logging: etcdctl writes zap JSON lines on stderr while saving. They are reproduced (same
//! level, caller, msg and fields, in the same order; `ts` in the same two forms: epoch seconds
//! for the snapshot manager's logger, ISO 8601 for clientv3's) so that stderr compares once the
//! times are masked.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxetcd_common::etcdserverpb::SnapshotRequest;

use crate::client::Dialer;
use crate::error::{go_errno_text, go_path_error, status_text, Failure, EXIT_INTERRUPTED};
use crate::output::humanize_bytes;

use oxetcd_member::snapshot::has_checksum;

fn interrupted(message: impl Into<String>) -> Failure {
    Failure::new(EXIT_INTERRUPTED, message)
}

/// Saves the snapshot of the one endpoint to `path`. `timeout`: etcdctl's, only when
/// `--command-timeout` was given; otherwise the stream may take as long as it needs.
pub(crate) async fn save(d: &Dialer, path: &str, timeout: Option<Duration>) -> Result<(), Failure> {
    let [ep] = d.endpoints.as_slice() else {
        return Err(interrupted(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            d.endpoints.join(" ")
        )));
    };
    // clientv3.New authenticates (with `--user`) before the file is made.
    let token = d
        .authenticate(&d.endpoints)
        .await
        .map_err(|f| interrupted(f.message))?;
    let part = format!("{path}.part");
    let res = async {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| {
                interrupted(format!(
                    "could not open {part} ({})",
                    go_path_error("open", &part, &e)
                ))
            })?;
        log_epoch(
            "info",
            119,
            "created temporary db file",
            &[("path", s(&part))],
        );
        let started = Instant::now();
        let size = fetch(d, ep, &token, timeout, &part, &mut file).await?;
        if !has_checksum(size) {
            return Err(interrupted(format!(
                "sha256 checksum not found [bytes: {size}]"
            )));
        }
        file.sync_all()
            .map_err(|e| interrupted(go_path_error("sync", &part, &e)))?;
        drop(file);
        log_epoch(
            "info",
            142,
            "fetched snapshot",
            &[
                ("endpoint", s(ep)),
                ("size", s(&humanize_bytes(size))),
                ("took", Field::Float(started.elapsed().as_secs_f64())),
            ],
        );
        std::fs::rename(&part, path).map_err(|e| {
            interrupted(format!(
                "could not rename {part} to {path} (rename {part} {path}: {})",
                go_errno_text(&e)
            ))
        })?;
        log_epoch("info", 152, "saved", &[("path", s(path))]);
        Ok(())
    }
    .await;
    if res.is_err() {
        // etcdctl's deferred os.RemoveAll(partpath).
        let _ = std::fs::remove_file(&part);
    }
    res?;
    println!("Snapshot saved at {path}");
    Ok(())
}

/// Streams the snapshot into `file`; its size in bytes.
async fn fetch(
    d: &Dialer,
    ep: &str,
    token: &crate::client::Token,
    timeout: Option<Duration>,
    part: &str,
    file: &mut File,
) -> Result<u64, Failure> {
    let mut c = d
        .connect_timed(ep, token, timeout)
        .await
        .map_err(|f| interrupted(f.message))?;
    let mut stream = c
        .maintenance
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|s| interrupted(status_text(&s)))?
        .into_inner();
    log_iso(
        "info",
        "clientv3/maintenance.go:200",
        "opened snapshot stream; downloading",
        &[],
    );
    log_epoch("info", 127, "fetching snapshot", &[("endpoint", s(ep))]);
    let mut size = 0u64;
    loop {
        match stream.message().await {
            Ok(Some(r)) => {
                file.write_all(&r.blob)
                    .map_err(|e| interrupted(go_path_error("write", part, &e)))?;
                size += r.blob.len() as u64;
            }
            Ok(None) => {
                log_iso(
                    "info",
                    "clientv3/maintenance.go:208",
                    "completed snapshot read; closing",
                    &[],
                );
                return Ok(size);
            }
            Err(st) => {
                let err = status_text(&st);
                log_iso(
                    "warn",
                    "clientv3/maintenance.go:210",
                    "failed to receive from snapshot stream; closing",
                    &[("error", s(&err))],
                );
                return Err(interrupted(err));
            }
        }
    }
}

// ---- zap's JSON lines --------------------------------------------------------------------------

/// A field of a log line.
pub(super) enum Field {
    Str(String),
    /// zap writes floats (and, in production, durations as seconds) without an exponent.
    Float(f64),
}

pub(super) fn s(v: &str) -> Field {
    Field::Str(v.to_string())
}

/// A line of the snapshot manager's logger (zap.NewProduction: `ts` in epoch seconds), from
/// `snapshot/v3_snapshot.go` at `line`.
pub(super) fn log_epoch(level: &str, line: u32, msg: &str, fields: &[(&str, Field)]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let caller = format!("snapshot/v3_snapshot.go:{line}");
    log_line(level, &now.to_string(), &caller, msg, fields);
}

/// A line of clientv3's logger (`ts` in ISO 8601, milliseconds, UTC).
fn log_iso(level: &str, caller: &str, msg: &str, fields: &[(&str, Field)]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ts = serde_json::Value::String(iso8601(now)).to_string();
    log_line(level, &ts, caller, msg, fields);
}

fn log_line(level: &str, ts: &str, caller: &str, msg: &str, fields: &[(&str, Field)]) {
    let q = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    let mut line = format!(
        "{{\"level\":{},\"ts\":{ts},\"caller\":{},\"msg\":{}",
        q(level),
        q(caller),
        q(msg)
    );
    for (k, v) in fields {
        let v = match v {
            Field::Str(x) => q(x),
            Field::Float(x) => x.to_string(),
        };
        line.push_str(&format!(",{}:{v}", q(k)));
    }
    line.push('}');
    eprintln!("{line}");
}

/// `2026-12-01T16:00:58.116Z` for a time since the Unix epoch.
fn iso8601(t: Duration) -> String {
    let secs = t.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_rule_and_times() {
        assert!(has_checksum(20512));
        assert!(!has_checksum(20480));
        assert_eq!(
            iso8601(Duration::from_millis(1_796_140_858_116)),
            "2026-12-01T16:00:58.116Z"
        );
        assert_eq!(iso8601(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
