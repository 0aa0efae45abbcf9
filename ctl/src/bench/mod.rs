//! `oxetcdctl bench`: a load generator with the flags and the report of etcd's `tools/benchmark`
//! (`put`, `txn-put`, `range`, `lease-keepalive` in `lease`, `watch-get` in `watch_get`, and
//! our `watch-latency`). It is an ordinary etcd v3 client, so the same numbers can be taken
//! against real etcd and against oxetcd.

mod lease;
mod watch_get;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{self, Conn, Dialer, Token};
use crate::error::Failure;
use anyhow::bail;
use clap::{Args, Subcommand};
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::{PutRequest, RangeRequest};

// `--conns` and `--clients` are global, as in etcd's benchmark (cobra persistent flags): they go
// before or after the subcommand. `--endpoints`, `--dial-timeout` and the TLS flags are the
// global flags of `oxetcdctl` itself.
#[derive(Args, Debug, PartialEq)]
pub(crate) struct BenchArgs {
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) conns: usize,
    /// Total number of gRPC clients
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) clients: usize,
    /// Send put, txn-put and range as HTTP+JSON to the gateway (`/v3/kv/...`), one HTTP/1.1
    /// keep-alive connection per client (`--conns` is then unused)
    #[arg(long, global = true)]
    pub(crate) gateway: bool,
    #[command(subcommand)]
    pub(crate) command: BenchCommand,
}

#[derive(Subcommand, Debug, PartialEq)]
pub(crate) enum BenchCommand {
    /// Benchmark put
    Put {
        /// Total number of put requests
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// Key size of put request
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Value size of put request
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Maximum possible keys
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Use sequential keys
        #[arg(long)]
        sequential_keys: bool,
        /// Maximum puts per second (0 is no limit)
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// A different random value for every put, as real data has (etcd's benchmark sends
        /// one random value every time, which a compressing store shrinks unfairly)
        #[arg(long)]
        unique_values: bool,
    },
    /// Benchmark put with transactions
    TxnPut {
        /// Total number of txn requests
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// Key size of txn put
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Value size of txn put
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Maximum possible keys
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Number of puts per txn
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Benchmark put-to-event latency with many watchers on one key
    WatchLatency {
        /// Total number of put requests
        #[arg(long, default_value_t = 1000)]
        put_total: u64,
        /// Number of keys to put per second (0: as fast as possible)
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
        /// Key size of watch response
        #[arg(long, default_value_t = 32)]
        key_size: usize,
        /// Value size of watch response
        #[arg(long, default_value_t = 32)]
        val_size: usize,
        /// Total number of watchers
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Number of watch streams the watchers are spread over
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Extra streams with one watcher each that are never read (slow consumers)
        #[arg(long, default_value_t = 0)]
        slow_watchers: usize,
    },
    /// Benchmark lease keepalive
    LeaseKeepalive {
        /// Total number of lease keepalive requests
        #[arg(long, default_value_t = 10000)]
        total: u64,
    },
    /// Benchmark serializable gets during watch
    WatchGet {
        /// Total number of watchers
        #[arg(long, default_value_t = 10000)]
        watchers: usize,
        /// Total number of watcher streams
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Number of events per watcher
        #[arg(long, default_value_t = 8)]
        events: usize,
    },
    /// Benchmark range
    Range {
        key: String,
        range_end: Option<String>,
        /// Total number of range requests
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// Linearizable(l) or Serializable(s)
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Use RangeStream instead of unary Range
        #[arg(long)]
        stream: bool,
    },
}

/// One request kind, prepared per request number.
#[derive(Clone)]
enum Load {
    Put {
        key_size: usize,
        value: Vec<u8>,
        key_space: u64,
        sequential: bool,
        /// A fresh random value of `value`'s size for every request.
        unique_values: bool,
    },
    TxnPut {
        key_size: usize,
        value: Vec<u8>,
        key_space: u64,
        ops: usize,
    },
    Range(RangeRequest),
    RangeStream(RangeRequest),
}

/// A cheap deterministic scramble (splitmix64) instead of a RNG dependency.
fn scramble(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Key number `k` as a zero-padded decimal of `size` bytes.
/// `size` pseudo-random bytes from `seed` (xorshift): incompressible, a different run of
/// bytes for every seed.
fn random_bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut x = scramble(seed) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn key_bytes(k: u64, size: usize) -> Vec<u8> {
    let mut key = vec![b'0'; size];
    let digits = k.to_string();
    let d = digits.as_bytes();
    let start = key.len().saturating_sub(d.len());
    key[start..].copy_from_slice(&d[d.len().saturating_sub(size)..]);
    key
}

/// One request of a load.
enum Request {
    Put(PutRequest),
    Txn(oxetcd_common::etcdserverpb::TxnRequest),
    Range(RangeRequest),
    RangeStream(RangeRequest),
}

impl Load {
    /// Request number `n`.
    fn request(&self, n: u64) -> Request {
        match self {
            Load::Put {
                key_size,
                value,
                key_space,
                sequential,
                unique_values,
            } => {
                let k = if *sequential {
                    n % key_space
                } else {
                    scramble(n) % key_space
                };
                let value = match unique_values {
                    true => random_bytes(n, value.len()),
                    false => value.clone(),
                };
                Request::Put(PutRequest {
                    key: key_bytes(k, *key_size),
                    value,
                    ..Default::default()
                })
            }
            Load::TxnPut {
                key_size,
                value,
                key_space,
                ops,
            } => {
                use oxetcd_common::etcdserverpb::{request_op, RequestOp, TxnRequest};
                // Distinct keys within one txn (etcd refuses a key written twice).
                let mut keys: Vec<u64> = Vec::with_capacity(*ops);
                let mut i = 0u64;
                while keys.len() < (*ops).min(*key_space as usize) {
                    let k = scramble(n.wrapping_mul(1000).wrapping_add(i)) % key_space;
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                    i += 1;
                }
                let success = keys
                    .into_iter()
                    .map(|k| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key_bytes(k, *key_size),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                Request::Txn(TxnRequest {
                    success,
                    ..Default::default()
                })
            }
            Load::Range(r) => Request::Range(r.clone()),
            Load::RangeStream(r) => Request::RangeStream(r.clone()),
        }
    }
}

/// How a client sends: gRPC over a shared connection, or HTTP+JSON to the gateway.
enum Sender {
    Grpc(KvClient<Conn>),
    Gateway(Gateway),
}

impl Sender {
    async fn send(&mut self, req: Request) -> Result<(), String> {
        match self {
            Sender::Grpc(kv) => {
                let r = match req {
                    Request::Put(p) => kv.put(p).await.map(|_| ()),
                    Request::Txn(t) => kv.txn(t).await.map(|_| ()),
                    Request::Range(r) => kv.range(r).await.map(|_| ()),
                    // The whole stream, as etcd's `GetStream` + `GetStreamToGetResponse`.
                    Request::RangeStream(r) => match kv.range_stream(r).await {
                        Ok(resp) => {
                            let mut chunks = resp.into_inner();
                            loop {
                                match chunks.message().await {
                                    Ok(Some(_)) => {}
                                    Ok(None) => break Ok(()),
                                    Err(e) => break Err(e),
                                }
                            }
                        }
                        Err(e) => Err(e),
                    },
                };
                r.map_err(|e| e.message().to_string())
            }
            Sender::Gateway(g) => {
                let (path, body) = match req {
                    Request::Put(p) => ("/v3/kv/put", serde_json::to_vec(&p)),
                    Request::Txn(t) => ("/v3/kv/txn", serde_json::to_vec(&t)),
                    Request::Range(r) => ("/v3/kv/range", serde_json::to_vec(&r)),
                    Request::RangeStream(_) => {
                        return Err("RangeStream has no gateway path".to_string())
                    }
                };
                g.post(path, &body.map_err(|e| e.to_string())?).await
            }
        }
    }
}

/// One HTTP/1.1 keep-alive connection to a member's gateway.
struct Gateway {
    host: String,
    token: Option<String>,
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Gateway {
    async fn connect(endpoint: &str, token: Option<String>) -> Result<Self, Failure> {
        let host = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| Failure::error(format!("gateway {host}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        Ok(Self {
            host,
            token,
            stream: tokio::io::BufReader::new(tcp),
        })
    }

    /// POSTs `body` and reads the answer; an answer other than 200 is an error (its body).
    async fn post(&mut self, path: &str, body: &[u8]) -> Result<(), String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(body).await.map_err(|e| e.to_string())?;
        let mut status = 0u16;
        let mut length = None;
        loop {
            let mut line = String::new();
            if self
                .stream
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("the gateway closed the connection".into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or("an answer without Content-Length")?;
        let mut answer = vec![0u8; length];
        self.stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        match status {
            200 => Ok(()),
            _ => Err(String::from_utf8_lossy(&answer).into_owned()),
        }
    }
}

/// `n` connections, spread over the endpoints in turn (etcd's benchmark: one endpoint each).
async fn connect_all(
    endpoints: &[String],
    dial: Duration,
    token: &Token,
    n: usize,
) -> Result<Vec<Conn>, Failure> {
    let mut conns = Vec::new();
    for i in 0..n.max(1) {
        let ep = &endpoints[i % endpoints.len()];
        conns.push(token.attach(client::connect_one(ep, dial, Duration::from_secs(60)).await?));
    }
    Ok(conns)
}

pub(crate) async fn run(d: &Dialer, args: BenchArgs, json: bool) -> Result<(), Failure> {
    let (endpoints, dial) = (&d.endpoints, d.dial_timeout);
    if args.clients == 0 || args.conns == 0 {
        return Err(Failure::error("--clients and --conns must be at least 1"));
    }
    if let BenchCommand::WatchLatency {
        put_total,
        put_rate,
        key_size,
        val_size,
        watchers,
        streams,
        slow_watchers,
    } = args.command
    {
        let opts = WatchLatency {
            put_total,
            put_rate,
            key_size,
            val_size,
            watchers,
            streams: streams.max(1),
            slow_watchers,
            conns: args.conns,
        };
        let token = d.authenticate(endpoints).await?;
        return Ok(watch_latency(endpoints, dial, &token, opts, json).await?);
    }
    if let BenchCommand::LeaseKeepalive { total } = args.command {
        let token = d.authenticate(endpoints).await?;
        let conns = connect_all(endpoints, dial, &token, args.conns).await?;
        return Ok(lease::keepalive(&conns, args.clients, total, json).await?);
    }
    if let BenchCommand::WatchGet {
        watchers,
        streams,
        events,
    } = args.command
    {
        let token = d.authenticate(endpoints).await?;
        let conns = connect_all(endpoints, dial, &token, args.conns).await?;
        let opts = watch_get::WatchGet {
            watchers,
            streams: streams.max(1),
            events,
        };
        let getter = watch_get::Getter {
            endpoint: endpoints[0].clone(),
            dial,
            token,
        };
        return Ok(watch_get::run(&conns, getter, opts, json).await?);
    }
    let rate = match args.command {
        BenchCommand::Put { rate, .. } => rate,
        _ => 0,
    };
    let (load, total) = match args.command {
        BenchCommand::Put {
            total,
            key_size,
            val_size,
            key_space_size,
            sequential_keys,
            unique_values,
            ..
        } => (
            Load::Put {
                key_size,
                // etcd's benchmark: one random value.
                value: random_bytes(0, val_size),
                key_space: key_space_size.max(1),
                sequential: sequential_keys,
                unique_values,
            },
            total,
        ),
        BenchCommand::TxnPut {
            total,
            key_size,
            val_size,
            key_space_size,
            txn_ops,
        } => (
            Load::TxnPut {
                key_size,
                value: random_bytes(0, val_size),
                key_space: key_space_size.max(1),
                ops: txn_ops.max(1),
            },
            total,
        ),
        BenchCommand::WatchLatency { .. }
        | BenchCommand::LeaseKeepalive { .. }
        | BenchCommand::WatchGet { .. } => unreachable!("handled above"),
        BenchCommand::Range {
            key,
            range_end,
            total,
            consistency,
            stream,
        } => {
            let req = RangeRequest {
                key: key.into_bytes(),
                range_end: range_end.unwrap_or_default().into_bytes(),
                serializable: consistency == "s",
                ..Default::default()
            };
            let load = match stream {
                true => Load::RangeStream(req),
                false => Load::Range(req),
            };
            (load, total)
        }
    };
    // With `--user`, every connection's requests carry the token (as etcd's benchmark).
    let token = d.authenticate(endpoints).await?;
    let mut conns = Vec::new();
    for i in 0..if args.gateway { 0 } else { args.conns } {
        let ep = &endpoints[i % endpoints.len()];
        conns.push(token.attach(client::connect_one(ep, dial, Duration::from_secs(60)).await?));
    }
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let bar = progress(next.clone(), total);
    let start = Instant::now();
    // With --rate, request n may not start before start + n/rate, whichever client takes it.
    let pace = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut sender = match args.gateway {
            true => Sender::Gateway(
                Gateway::connect(&endpoints[c % endpoints.len()], token.value()).await?,
            ),
            false => Sender::Grpc(KvClient::new(conns[c % conns.len()].clone())),
        };
        let (next, errors, load, first_error) = (
            next.clone(),
            errors.clone(),
            load.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return lat;
                }
                if let Some(p) = pace {
                    tokio::time::sleep_until((start + p.mul_f64(n as f64)).into()).await;
                }
                let t = Instant::now();
                match sender.send(load.request(n)).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64()),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| Failure::error(e.to_string()))?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
        let _ = b.await;
    }
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    print_outcome(
        &mut lat,
        elapsed,
        errors.load(Ordering::Relaxed),
        first_error,
        json,
    );
    Ok(())
}

/// Prints the report of a load: as etcd's benchmark does, or as one JSON object.
fn print_outcome(
    lat: &mut [f64],
    elapsed: f64,
    errors: u64,
    first_error: Option<String>,
    json: bool,
) {
    if json {
        let mut v = report_json(lat, elapsed, errors);
        if let Some(e) = &first_error {
            v["first_error"] = serde_json::json!(e);
        }
        println!("{v}");
        return;
    }
    print!("{}", report(lat, elapsed));
    if errors > 0 {
        println!(
            "\n{errors} requests failed, the first with: {}",
            first_error.unwrap_or_default()
        );
    }
}

/// Counts failures and keeps the first one's words.
#[derive(Clone, Default)]
struct Failures {
    count: Arc<AtomicU64>,
    first: Arc<std::sync::Mutex<Option<String>>>,
}

impl Failures {
    fn add(&self, e: impl std::fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    }

    fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|f| f.clone())
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

struct WatchLatency {
    put_total: u64,
    put_rate: u64,
    key_size: usize,
    val_size: usize,
    watchers: usize,
    streams: usize,
    slow_watchers: usize,
    conns: usize,
}

/// Opens a watch stream with `n` watchers on `key`; returns the sender (kept alive by the
/// caller) and the response stream, once every watcher is created.
async fn open_watchers(
    ch: Conn,
    key: &[u8],
    n: usize,
) -> anyhow::Result<(
    tokio::sync::mpsc::Sender<oxetcd_common::etcdserverpb::WatchRequest>,
    tonic::Streaming<oxetcd_common::etcdserverpb::WatchResponse>,
)> {
    use oxetcd_common::etcdserverpb::watch_client::WatchClient;
    use oxetcd_common::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
    // Queue the creates before opening the stream: grpc-go (etcd) sends response headers only
    // with its first message, so awaiting the call first would wait forever.
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for _ in 0..n {
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.to_vec(),
                    ..Default::default()
                },
            )),
        })
        .await?;
    }
    let mut stream = WatchClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut created = 0;
    while created < n {
        match stream.message().await? {
            Some(r) if r.created => created += 1,
            Some(_) => {}
            None => bail!("watch stream closed while creating watchers"),
        }
    }
    Ok((tx, stream))
}

/// etcd's watch-latency: puts to one key at a fixed rate while many watchers watch it; the
/// latency of each (put, watcher) pair is from the put's start to the event's arrival.
async fn watch_latency(
    endpoints: &[String],
    dial: Duration,
    token: &Token,
    o: WatchLatency,
    json: bool,
) -> anyhow::Result<()> {
    let mut conns = Vec::new();
    for i in 0..o.conns.max(1) {
        conns.push(
            token.attach(
                client::connect_one(
                    &endpoints[i % endpoints.len()],
                    dial,
                    Duration::from_secs(60),
                )
                .await?,
            ),
        );
    }
    let key = {
        let mut k = b"watch-latency-".to_vec();
        k.resize(o.key_size.max(k.len()), b'k');
        k
    };
    // Put start times in put order, recorded before each put is sent. One putter writes the key
    // sequentially, so the j-th event every watcher sees is the j-th put.
    let starts: Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let mut keep = Vec::new();
    let mut readers = Vec::new();
    let per_stream = o.watchers.div_ceil(o.streams);
    let mut remaining = o.watchers;
    for s in 0..o.streams {
        let n = per_stream.min(remaining);
        if n == 0 {
            break;
        }
        remaining -= n;
        let (tx, mut stream) = open_watchers(conns[s % conns.len()].clone(), &key, n).await?;
        keep.push(tx);
        let (starts, total) = (starts.clone(), o.put_total as usize * n);
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            let mut seen: std::collections::HashMap<i64, usize> = Default::default();
            while lat.len() < total {
                let Ok(Some(r)) = stream.message().await else {
                    break;
                };
                let now = Instant::now();
                for _ in &r.events {
                    let j = seen.entry(r.watch_id).or_default();
                    let started = starts.lock().ok().and_then(|v| v.get(*j).copied());
                    *j += 1;
                    if let Some(t) = started {
                        lat.push(now.duration_since(t).as_secs_f64());
                    }
                }
            }
            lat
        }));
    }
    // Slow consumers: streams whose responses are never read.
    let mut slow = Vec::new();
    for s in 0..o.slow_watchers {
        slow.push(open_watchers(conns[s % conns.len()].clone(), &key, 1).await?);
    }

    let mut kv = KvClient::new(conns[0].clone());
    let value = vec![b'v'; o.val_size];
    let interval = if o.put_rate > 0 {
        Some(Duration::from_secs_f64(1.0 / o.put_rate as f64))
    } else {
        None
    };
    let begin = Instant::now();
    let mut put_lat = Vec::with_capacity(o.put_total as usize);
    for i in 0..o.put_total {
        if let Some(iv) = interval {
            let due = begin + iv * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let t = Instant::now();
        if let Ok(mut v) = starts.lock() {
            v.push(t);
        }
        kv.put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        })
        .await?;
        put_lat.push(t.elapsed().as_secs_f64());
    }
    let put_secs = begin.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for r in readers {
        if let Ok(Ok(mut l)) = tokio::time::timeout(Duration::from_secs(30), r).await {
            lat.append(&mut l);
        }
    }
    drop(slow);
    let expected = o.put_total as usize * o.watchers;
    if json {
        let mut v = serde_json::json!({
            "put": report_json(&mut put_lat, put_secs, 0),
            "watch": report_json(&mut lat, put_secs, 0),
        });
        v["missing_events"] = serde_json::json!(expected.saturating_sub(lat.len()));
        println!("{v}");
        return Ok(());
    }
    println!(
        "Put summary ({} watchers, {} slow):",
        o.watchers, o.slow_watchers
    );
    print!("{}", report(&mut put_lat, put_secs));
    println!("\nWatch latency summary:");
    print!("{}", report(&mut lat, put_secs));
    if lat.len() < expected {
        println!("\n{} of {expected} events missing", expected - lat.len());
    }
    Ok(())
}

/// What etcd's benchmark reports about a set of request latencies (seconds).
struct Stats {
    total: f64,
    slowest: f64,
    fastest: f64,
    average: f64,
    stddev: f64,
    rps: f64,
    histogram: Vec<(f64, usize)>,
    percentiles: Vec<(f64, f64)>,
}

impl Stats {
    fn new(lat: &mut [f64], total_secs: f64) -> Option<Self> {
        if lat.is_empty() {
            return None;
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        let n = lat.len() as f64;
        let average = lat.iter().sum::<f64>() / n;
        let stddev = (lat.iter().map(|x| (x - average).powi(2)).sum::<f64>() / n).sqrt();
        let (fastest, slowest) = (lat[0], lat[lat.len() - 1]);
        let buckets = 10;
        let width = (slowest - fastest) / buckets as f64;
        let mut counts = vec![0usize; buckets + 1];
        for &x in lat.iter() {
            let i = if width > 0.0 {
                ((x - fastest) / width) as usize
            } else {
                0
            };
            counts[i.min(buckets)] += 1;
        }
        let histogram = counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| (fastest + width * i as f64, c))
            .collect();
        // etcd's definition: the first sample whose rank i*100/n reaches the percentile.
        let mut percentiles = Vec::new();
        let mut i = 0;
        for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
            while i + 1 < lat.len() && (i as f64) * 100.0 / n < p {
                i += 1;
            }
            percentiles.push((p, lat[i]));
        }
        Some(Self {
            total: total_secs,
            slowest,
            fastest,
            average,
            stddev,
            rps: n / total_secs,
            histogram,
            percentiles,
        })
    }

    fn text(&self) -> String {
        let mut out = String::from("\nSummary:\n");
        out.push_str(&format!("  Total:\t{:.4} secs.\n", self.total));
        out.push_str(&format!("  Slowest:\t{:.4} secs.\n", self.slowest));
        out.push_str(&format!("  Fastest:\t{:.4} secs.\n", self.fastest));
        out.push_str(&format!("  Average:\t{:.4} secs.\n", self.average));
        out.push_str(&format!("  Stddev:\t{:.4} secs.\n", self.stddev));
        out.push_str(&format!("  Requests/sec:\t{:.4}\n", self.rps));
        out.push_str("\nResponse time histogram:\n");
        let max = self.histogram.iter().map(|h| h.1).max().unwrap_or(1).max(1);
        for (mark, c) in &self.histogram {
            let bar = "∎".repeat(c * 40 / max);
            out.push_str(&format!("  {mark:.4} [{c}]\t|{bar}\n"));
        }
        out.push_str("\nLatency distribution:\n");
        for (p, v) in &self.percentiles {
            out.push_str(&format!("  {p}% in {v:.4} secs.\n"));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.total,
            "slowest": self.slowest,
            "fastest": self.fastest,
            "average": self.average,
            "stddev": self.stddev,
            "requests_per_sec": self.rps,
            "histogram": self.histogram.iter().map(|(m, c)| serde_json::json!({"mark": m, "count": c})).collect::<Vec<_>>(),
            "latency_distribution": self.percentiles.iter().map(|(p, v)| serde_json::json!({"percent": p, "latency": v})).collect::<Vec<_>>(),
        })
    }
}

/// etcd benchmark's text report: summary, histogram, latency distribution.
fn report(lat: &mut [f64], total_secs: f64) -> String {
    match Stats::new(lat, total_secs) {
        Some(s) => s.text(),
        None => "\nSummary:\n  no successful requests\n".to_string(),
    }
}

fn report_json(lat: &mut [f64], total_secs: f64, errors: u64) -> serde_json::Value {
    let mut v = Stats::new(lat, total_secs)
        .map(|s| s.json())
        .unwrap_or_else(|| serde_json::json!({}));
    v["errors"] = serde_json::json!(errors);
    v["requests"] = serde_json::json!(lat.len());
    v
}

/// While a run lasts, `done/total` on stderr, only when stderr is a terminal.
fn progress(done: Arc<AtomicU64>, total: u64) -> Option<tokio::task::JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let d = done.load(Ordering::Relaxed).min(total);
            eprint!(
                "\r  {d} / {total} ({:.0}%)",
                d as f64 * 100.0 / total.max(1) as f64
            );
            if d >= total {
                eprintln!();
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Parses a whole `oxetcdctl` command line that must be a `bench`.
    fn parse(line: &[&str]) -> (crate::etcdctl::Cli, BenchArgs) {
        let mut cli =
            crate::etcdctl::Cli::try_parse_from(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let command = std::mem::replace(&mut cli.command, crate::etcdctl::Command::Version);
        match command {
            crate::etcdctl::Command::Bench(b) => (cli, b),
            _ => panic!("{line:?} is not a bench"),
        }
    }

    #[test]
    fn global_flags_before_or_after_the_subcommand() {
        let before = parse(&[
            "oxetcdctl",
            "bench",
            "--clients",
            "10",
            "--conns",
            "2",
            "--endpoints",
            "a:1,b:2",
            "--dial-timeout",
            "3s",
            "put",
            "--total",
            "500",
        ]);
        let after = parse(&[
            "oxetcdctl",
            "bench",
            "put",
            "--clients",
            "10",
            "--conns",
            "2",
            "--total",
            "500",
            "--endpoints",
            "a:1,b:2",
            "--dial-timeout",
            "3s",
        ]);
        for (cli, args) in [&before, &after] {
            assert_eq!((args.clients, args.conns), (10, 2));
            assert!(matches!(args.command, BenchCommand::Put { total: 500, .. }));
            assert_eq!(cli.endpoints, ["a:1", "b:2"]);
            assert_eq!(cli.dial_timeout, Duration::from_secs(3));
        }
        assert_eq!(before.1, after.1);

        // The bug report's command line; the defaults stay as they were.
        let (_, args) = parse(&[
            "oxetcdctl",
            "bench",
            "put",
            "--total",
            "500",
            "--clients",
            "10",
        ]);
        assert_eq!((args.clients, args.conns), (10, 1));
        let (_, args) = parse(&["oxetcdctl", "bench", "range", "k", "--conns", "3"]);
        assert_eq!((args.clients, args.conns), (1, 3));
    }

    #[test]
    fn report_percentiles() {
        let mut lat: Vec<f64> = (1..=1000).map(|i| i as f64 / 1000.0).collect();
        let r = report(&mut lat, 2.0);
        assert!(r.contains("Requests/sec:\t500.0000"), "{r}");
        assert!(r.contains("  50% in 0.5010 secs."), "{r}");
        assert!(r.contains("  10% in 0.1010 secs."), "{r}");
        assert!(r.contains("  99.9% in 1.0000 secs."), "{r}");
        assert!(r.contains("  Slowest:\t1.0000 secs."), "{r}");
    }
}
