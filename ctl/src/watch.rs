//! `watch`: one-shot, interactive (`-i`) and exec (`-- cmd`) modes, as etcdctl 3.4 has them.

use std::io::BufRead;

use clap::{Args, Parser};
use oxetcd_common::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use oxetcd_common::mvccpb::event::EventType;
use oxetcd_common::net::prefix_end;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::client::Dialer;
use crate::error::status_text;
use crate::error::{Failure, EXIT_INTERRUPTED};
use crate::output::{go_quote, header_json, kv_json, Format, Printer};

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct WatchArgs {
    /// Interactive mode
    #[arg(short, long)]
    pub(crate) interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub(crate) prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    pub(crate) rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long)]
    pub(crate) prev_kv: bool,
    /// get periodic watch progress notification from server
    #[arg(long)]
    pub(crate) progress_notify: bool,
    /// key or prefix to watch
    pub(crate) key: Option<String>,
    /// end of the range [key, range_end)
    pub(crate) range_end: Option<String>,
    /// -- exec-command arg1 arg2 ...: run for every event, with ETCD_WATCH_* set
    #[arg(last = true)]
    pub(crate) exec: Vec<String>,
}

/// One line of interactive input: `watch [options] key ...`.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct InteractiveWatch {
    #[command(flatten)]
    args: WatchArgs,
}

/// Builds the create request of a `watch` command line.
fn create_request(a: &WatchArgs) -> Result<WatchCreateRequest, Failure> {
    let Some(key) = &a.key else {
        return Err(Failure::bad_args("watch in non-interactive mode requires one or two arguments as key or prefix, with range end"));
    };
    if a.prefix && a.range_end.is_some() {
        return Err(Failure::bad_args("too many arguments"));
    }
    let mut key = key.clone().into_bytes();
    let range_end = if a.prefix {
        if key.is_empty() {
            key = vec![0];
            vec![0]
        } else {
            prefix_end(&key)
        }
    } else {
        a.range_end
            .clone()
            .map(String::into_bytes)
            .unwrap_or_default()
    };
    Ok(WatchCreateRequest {
        key,
        range_end,
        start_revision: a.rev,
        progress_notify: a.progress_notify,
        prev_kv: a.prev_kv,
        ..Default::default()
    })
}

fn event_json(e: &oxetcd_common::mvccpb::Event) -> Value {
    let mut m = Map::new();
    if e.r#type != 0 {
        m.insert("type".into(), json!(e.r#type));
    }
    if let Some(kv) = &e.kv {
        m.insert("kv".into(), kv_json(kv));
    }
    if let Some(p) = &e.prev_kv {
        m.insert("prev_kv".into(), kv_json(p));
    }
    Value::Object(m)
}

fn print_response(p: Printer, r: &WatchResponse) {
    match p.format {
        Format::Json => {
            let mut m = Map::new();
            m.insert("Header".into(), header_json(&r.header));
            m.insert(
                "Events".into(),
                if r.events.is_empty() {
                    Value::Null
                } else {
                    Value::Array(r.events.iter().map(event_json).collect())
                },
            );
            m.insert("CompactRevision".into(), json!(r.compact_revision));
            m.insert("Canceled".into(), json!(r.canceled));
            m.insert("Created".into(), json!(r.created));
            println!("{}", Value::Object(m));
        }
        _ => {
            for e in &r.events {
                println!(
                    "{}",
                    if e.r#type == EventType::Delete as i32 {
                        "DELETE"
                    } else {
                        "PUT"
                    }
                );
                if let Some(prev) = &e.prev_kv {
                    p.print_kv(prev);
                }
                if let Some(kv) = &e.kv {
                    p.print_kv(kv);
                }
            }
        }
    }
}

fn run_exec(exec: &[String], r: &WatchResponse) {
    let rev = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
    for e in &r.events {
        let Some(kv) = &e.kv else { continue };
        let kind = if e.r#type == EventType::Delete as i32 {
            "DELETE"
        } else {
            "PUT"
        };
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", rev.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", go_quote(kind.as_bytes()))
            .env("ETCD_WATCH_KEY", go_quote(&kv.key))
            .env("ETCD_WATCH_VALUE", go_quote(&kv.value))
            .status();
        if let Err(err) = status {
            eprintln!("command {:?} error ({err})", exec.join(" "));
        }
    }
}

pub(crate) async fn run(d: &Dialer, p: Printer, a: WatchArgs) -> Result<(), Failure> {
    let mut c = d.connect().await?;
    let (tx, rx) = mpsc::channel::<WatchRequest>(16);
    let mut exec = Vec::new();
    if !a.interactive {
        let req = create_request(&a)?;
        exec = a.exec.clone();
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(req)),
        })
        .await
        .map_err(|_| Failure::error("watch stream closed"))?;
    } else {
        // Interactive: each stdin line is `watch ...` or `progress`, read on a thread.
        let tx = tx.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                let words = crate::txn::argify(&line);
                let req = match words.first().map(String::as_str) {
                    Some("watch") => match InteractiveWatch::try_parse_from(&words[1..]) {
                        Ok(w) => match create_request(&w.args) {
                            Ok(req) => watch_request::RequestUnion::CreateRequest(req),
                            Err(e) => {
                                eprintln!("Invalid command {line:?} ({})", e.message);
                                continue;
                            }
                        },
                        Err(e) => {
                            eprintln!("Invalid command {line:?} ({})", e.kind());
                            continue;
                        }
                    },
                    Some("progress") => {
                        watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})
                    }
                    _ => {
                        eprintln!("Invalid command {line:?} (only support watch and progress)");
                        continue;
                    }
                };
                if tx
                    .blocking_send(WatchRequest {
                        request_union: Some(req),
                    })
                    .is_err()
                {
                    return;
                }
            }
            eprintln!("Error: Error reading watch request line: EOF");
            std::process::exit(1);
        });
    }
    let mut stream = c
        .watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| Failure::error(status_text(&s)))?
        .into_inner();
    // Keep our side of the stream open for as long as we read.
    let _keep = tx;
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(s) => return Err(Failure::error(status_text(&s))),
        };
        if r.created && r.events.is_empty() && !r.canceled {
            continue;
        }
        if r.canceled {
            // clientv3's `WatchResponse.Err`: a compaction is ErrCompacted whatever the
            // reason says (etcd sends none).
            let reason = if r.compact_revision != 0 {
                "etcdserver: mvcc: required revision has been compacted".to_string()
            } else if r.cancel_reason.is_empty() {
                "watch canceled".to_string()
            } else {
                r.cancel_reason.clone()
            };
            eprintln!("watch was canceled ({reason})");
        }
        let progress = r.events.is_empty() && !r.canceled && !r.created && r.compact_revision == 0;
        if progress {
            let rev = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
            println!("progress notify: {rev}");
        }
        print_response(p, &r);
        if !exec.is_empty() {
            run_exec(&exec, &r);
        }
        if r.canceled && !a.interactive {
            break;
        }
    }
    Err(Failure::new(
        EXIT_INTERRUPTED,
        "watch is canceled by the server",
    ))
}
