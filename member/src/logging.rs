//! The member's logs: `--logger zap` writes etcd's structured JSON lines (`level`, `ts`,
//! `caller`, `msg`, then the event's fields with etcd's dashed names), so log pipelines
//! written for etcd parse ours; `capnslog` (the default, as in etcd 3.4) writes readable
//! lines. `--log-outputs` sends them to stderr, stdout and files at once; `--log-level` and
//! `RUST_LOG` filter.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Config;

/// Installs the process's logger from the flags.
pub fn init(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},openraft=warn", cfg.log_level))
    });
    let outputs = Outputs::open(&cfg.log_outputs)?;
    let ansi = outputs.is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(outputs);
    match cfg.logger.as_str() {
        "zap" => builder.event_format(Zap).init(),
        _ => builder.with_ansi(ansi).init(),
    }
    Ok(())
}

/// Where log lines go (`--log-outputs`).
#[derive(Clone)]
struct Outputs(Arc<Vec<Output>>);

enum Output {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

impl Outputs {
    fn open(names: &[String]) -> anyhow::Result<Self> {
        let mut outputs = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            outputs.push(match name {
                "default" | "stderr" => Output::Stderr,
                "stdout" => Output::Stdout,
                "systemd/journal" => anyhow::bail!(
                    "--log-outputs systemd/journal is not supported: use stderr, which systemd \
                     sends to the journal"
                ),
                path => Output::File(Mutex::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("cannot open log output {path}"))?,
                )),
            });
        }
        if outputs.is_empty() {
            outputs.push(Output::Stderr);
        }
        Ok(Outputs(Arc::new(outputs)))
    }

    /// Colours only when every output is a terminal.
    fn is_terminal(&self) -> bool {
        self.0.iter().all(|o| match o {
            Output::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            Output::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
            Output::File(_) => false,
        })
    }
}

impl Write for Outputs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for o in self.0.iter() {
            // One output failing (a full disk) must not silence the others.
            let _ = match o {
                Output::Stderr => std::io::stderr().write_all(buf),
                Output::Stdout => std::io::stdout().write_all(buf),
                Output::File(f) => f
                    .lock()
                    .map_err(|_| std::io::Error::other("log file lock poisoned"))
                    .and_then(|mut f| f.write_all(buf)),
            };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = Outputs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// zap's production JSON encoder as etcd configures it.
struct Zap;

impl<S, N> FormatEvent<S, N> for Zap
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("level".into(), Value::from(level(meta.level())));
        line.insert("ts".into(), Value::from(timestamp()));
        if let (Some(file), Some(number)) = (meta.file(), meta.line()) {
            line.insert(
                "caller".into(),
                Value::from(format!("{}:{number}", caller(file))),
            );
        }
        line.insert(
            "msg".into(),
            Value::from(fields.message.unwrap_or_default()),
        );
        for (name, value) in fields.rest {
            line.insert(name, value);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// zap's level names (it has no trace level).
fn level(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// zap's ISO 8601 time, in UTC to the millisecond: `2026-12-01T18:51:13.323Z`.
fn timestamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// zap's short caller: the package directory and the file (`member/member.rs`), as etcd's
/// `etcdserver/server.go`.
fn caller(file: &str) -> String {
    let parts: Vec<&str> = file
        .split('/')
        .filter(|p| *p != "src" && !p.is_empty())
        .collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}

/// An event's message and fields; field names as etcd writes them (`member-id`, not
/// `member_id`).
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = Some(value.as_str().map_or(value.to_string(), str::to_string))
            }
            name => self.rest.push((name.replace('_', "-"), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.add(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_short_as_zaps() {
        assert_eq!(caller("member/src/member.rs"), "member/member.rs");
        assert_eq!(caller("member/src/api/watch.rs"), "api/watch.rs");
        assert_eq!(
            caller("/root/.cargo/registry/src/x/openraft-0.9.25/src/core/raft_core.rs"),
            "core/raft_core.rs"
        );
    }

    #[test]
    fn timestamps_are_utc_milliseconds() {
        let ts = timestamp();
        assert_eq!(ts.len(), "2026-12-01T18:51:13.323Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }
}
