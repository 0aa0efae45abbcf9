//! `oxetcdctl bench`: a load generator with the flags and the report of etcd's `tools/benchmark`
//! (first slice: `put` and `range`). It is an ordinary etcd v3 client, so the same numbers can be
//! taken against real etcd and against oxetcd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

use crate::client;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Total number of gRPC connections
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Total number of gRPC clients
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
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
    },
    Range(RangeRequest),
}

impl Load {
    async fn run(&self, kv: &mut KvClient<Channel>, n: u64) -> Result<(), tonic::Status> {
        match self {
            Load::Put {
                key_size,
                value,
                key_space,
                sequential,
            } => {
                let k = if *sequential {
                    n % key_space
                } else {
                    // A cheap deterministic scramble (splitmix64) instead of a RNG dependency.
                    let mut z = n.wrapping_add(0x9e3779b97f4a7c15);
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
                    (z ^ (z >> 31)) % key_space
                };
                let mut key = vec![b'0'; *key_size];
                let digits = k.to_string();
                let d = digits.as_bytes();
                let start = key.len().saturating_sub(d.len());
                key[start..].copy_from_slice(&d[d.len().saturating_sub(*key_size)..]);
                kv.put(PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                })
                .await?;
            }
            Load::Range(r) => {
                kv.range(r.clone()).await?;
            }
        }
        Ok(())
    }
}

pub async fn run(endpoints: &[String], dial: Duration, args: BenchArgs) -> Result<()> {
    if args.clients == 0 || args.conns == 0 {
        bail!("--clients and --conns must be at least 1");
    }
    let (load, total) = match args.command {
        BenchCommand::Put {
            total,
            key_size,
            val_size,
            key_space_size,
            sequential_keys,
        } => (
            Load::Put {
                key_size,
                value: vec![b'x'; val_size],
                key_space: key_space_size.max(1),
                sequential: sequential_keys,
            },
            total,
        ),
        BenchCommand::Range {
            key,
            range_end,
            total,
            consistency,
        } => (
            Load::Range(RangeRequest {
                key: key.into_bytes(),
                range_end: range_end.unwrap_or_default().into_bytes(),
                serializable: consistency == "s",
                ..Default::default()
            }),
            total,
        ),
    };
    let mut conns = Vec::new();
    for i in 0..args.conns {
        let ep = &endpoints[i % endpoints.len()];
        conns.push(client::connect_one(ep, dial, Duration::from_secs(60)).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut kv = KvClient::new(conns[c % conns.len()].clone());
        let (next, errors, load) = (next.clone(), errors.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return lat;
                }
                let t = Instant::now();
                match load.run(&mut kv, n).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    print!("{}", report(&mut lat, elapsed));
    let errors = errors.load(Ordering::Relaxed);
    if errors > 0 {
        println!("\n{errors} requests failed");
    }
    Ok(())
}

/// etcd benchmark's report: summary, histogram, latency distribution.
fn report(lat: &mut [f64], total_secs: f64) -> String {
    let mut out = String::from("\nSummary:\n");
    if lat.is_empty() {
        out.push_str("  no successful requests\n");
        return out;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len() as f64;
    let avg = lat.iter().sum::<f64>() / n;
    let stddev = (lat.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n).sqrt();
    let (fastest, slowest) = (lat[0], lat[lat.len() - 1]);
    out.push_str(&format!("  Total:\t{total_secs:.4} secs.\n"));
    out.push_str(&format!("  Slowest:\t{slowest:.4} secs.\n"));
    out.push_str(&format!("  Fastest:\t{fastest:.4} secs.\n"));
    out.push_str(&format!("  Average:\t{avg:.4} secs.\n"));
    out.push_str(&format!("  Stddev:\t{stddev:.4} secs.\n"));
    out.push_str(&format!("  Requests/sec:\t{:.4}\n", n / total_secs));
    out.push_str("\nResponse time histogram:\n");
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
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, c) in counts.iter().enumerate() {
        let bar = "∎".repeat(c * 40 / max);
        out.push_str(&format!(
            "  {:.4} [{c}]\t|{bar}\n",
            fastest + width * i as f64
        ));
    }
    out.push_str("\nLatency distribution:\n");
    // etcd's definition: the first sample whose rank i*100/n reaches the percentile.
    let mut i = 0;
    for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
        while i + 1 < lat.len() && (i as f64) * 100.0 / n < p {
            i += 1;
        }
        out.push_str(&format!("  {p}% in {:.4} secs.\n", lat[i]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
