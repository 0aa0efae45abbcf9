//! `oxetcd-proxy`: a stateless etcd v3 gRPC proxy built on pingora.
//!
//! Clients talk to it as to any member. It knows the members (discovered from `--endpoints`
//! and kept fresh from the Cluster API) and the leader (from `Status`), sends leader-bound
//! calls straight to the leader and balances serializable reads. It holds no state of its own:
//! kill it, restart it, run several.

/// jemalloc: cheaper than glibc's malloc on the per-frame allocations of pingora's h2 paths.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cache;
mod cluster;
mod config;
mod grpc;
mod http;
mod lease;
mod local;
mod metrics;
mod namespace;
mod route;
mod service;
mod sessions;
mod tls;
mod upstream;
mod watch;

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tracing::{error, info};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::http::MetricsApp;
use crate::metrics::Metrics;
use crate::namespace::Namespace;
use crate::service::EtcdProxy;

/// Runs the cluster view's refresh loop on a pingora runtime.
struct Discovery {
    cluster: Arc<Cluster>,
    config: Config,
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let run = self.cluster.clone().run(
            self.config.health_check_interval,
            self.config.endpoints_auto_sync_interval,
        );
        tokio::select! {
            _ = run => {}
            _ = notify_when_serving(&self.cluster, &self.config.listen_addr) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Tells systemd (`Type=notify`) the proxy is ready once it knows a leader and its gRPC
/// listener accepts connections.
async fn notify_when_serving(cluster: &Cluster, listen_addr: &str) {
    while cluster
        .wait_leader(std::time::Duration::from_secs(3600))
        .await
        .is_none()
    {}
    while tokio::net::TcpStream::connect(listen_addr).await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    info!("ready to serve client requests");
    oxetcd_common::systemd::notify_ready();
    // Done; the refresh loop beside this goes on.
    std::future::pending::<()>().await
}

fn main() -> ExitCode {
    let config: Config = match oxetcd_common::config_file::parse_with_config_file(
        std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    ) {
        Ok(c) => c,
        Err(e) => {
            // clap errors (including --help) print themselves with the right exit code.
            if let Some(ce) = e.downcast_ref::<clap::Error>() {
                ce.exit();
            }
            eprintln!("oxetcd-proxy: {e:#}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},pingora_core=warn,pingora_proxy=warn",
        config.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: not in log files and journald, as the member.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = config.validate() {
        eprintln!("oxetcd-proxy: {e}");
        return ExitCode::from(2);
    }
    let mut config = config;
    if !config.discovery_srv.is_empty() {
        match endpoints_from_srv(&config) {
            Ok(eps) => config.endpoints = eps,
            Err(e) => {
                eprintln!("oxetcd-proxy: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Member client URLs from `_etcd-client-ssl._tcp.<--discovery-srv>` (`https://`) and
/// `_etcd-client._tcp.<--discovery-srv>` (`http://`), as etcd's `srv.GetClient`. They take the
/// place of `--endpoints` and go the same way: TLS towards members follows `--cacert`
/// (and `--cert`/`--key`), whatever the URL's scheme.
fn endpoints_from_srv(config: &Config) -> anyhow::Result<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let urls = rt.block_on(oxetcd_common::dns::service_urls(
        "etcd-client",
        &config.discovery_srv_name,
        &config.discovery_srv,
    ))?;
    info!(endpoints = ?urls, "members from DNS SRV");
    Ok(urls)
}

/// `TOKIO_WORKER_THREADS` if set to a number above zero; else one fewer than the cores, at
/// least one. The proxy does no long synchronous work, and two workers on two cores wake each
/// other for most hand-offs: with one, it spent 34 µs of CPU per proxied put, against 46–63 µs
/// with two (`docs/benchmarks.md`, sessions 17 and 18).
fn worker_threads() -> usize {
    let set = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    set.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    })
}

fn run(config: Config) -> anyhow::Result<()> {
    let upstream_tls = tls::UpstreamTls::load(&config)?;
    let conf = ServerConf {
        // The data plane's connector trusts `--cacert` for members' certificates.
        ca_file: upstream_tls.as_ref().map(|_| config.cacert.clone()),
        threads: worker_threads(),
        // A proxy holds no state: on SIGTERM, stop at once rather than after pingora's grace
        // period; clients reconnect to another proxy or this one restarted.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = Metrics::new();
    let cluster = Cluster::new(&config.endpoints, metrics.clone(), upstream_tls.clone());

    let namespace = (!config.namespace.is_empty()).then(|| Namespace::new(&config.namespace));
    let coalesce = route::Coalesce {
        watches: config.coalesce_watches,
        keepalives: config.coalesce_keepalives,
    };
    let local = if coalesce.watches || coalesce.keepalives {
        let watches = coalesce
            .watches
            .then(|| watch::Registry::new(cluster.clone(), metrics.clone()));
        let keepalives = coalesce
            .keepalives
            .then(|| lease::KeepAlives::new(cluster.clone(), metrics.clone()));
        Some(local::LocalServices::bind(watches, keepalives)?)
    } else {
        None
    };
    let feed = config.read_cache.then(|| {
        let (key, range_end) = namespace
            .as_ref()
            .map_or((vec![0], vec![0]), |ns| ns.whole());
        cache::feed::Feed {
            cache: cache::ReadCache::new(
                config.read_cache_max_entries,
                config.read_cache_max_bytes,
                metrics.clone(),
            ),
            cluster: cluster.clone(),
            key,
            range_end,
            client_cert: !config.cert.is_empty(),
        }
    });
    let proxy = EtcdProxy::new(
        cluster.clone(),
        metrics.clone(),
        config.leader_wait_timeout,
        namespace,
        upstream_tls,
        local.as_ref().map(|l| (l.addr, coalesce)),
        feed.as_ref().map(|f| f.cache.clone()),
    );
    let mut grpc = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        proxy,
        "oxetcd-proxy grpc",
    );
    if let Some(app) = grpc.app_logic_mut() {
        let mut opts = pingora::apps::HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    if config.cert_file.is_empty() {
        grpc.add_tcp(&config.listen_addr);
    } else {
        let settings = tls::client_tls_settings(&config)?;
        grpc.add_tls_with_settings(&config.listen_addr, None, settings);
    }
    info!(listen = %config.listen_addr, tls = !config.cert_file.is_empty(), endpoints = ?config.endpoints, "serving gRPC");
    server.add_service(grpc);

    if !config.metrics_addr.is_empty() {
        let addr = config::host_port(&config.metrics_addr).to_string();
        let mut http = Service::new(
            "oxetcd-proxy metrics".to_string(),
            MetricsApp {
                metrics: metrics.clone(),
                cluster: cluster.clone(),
            },
        );
        http.add_tcp(&addr);
        info!(%addr, "serving /metrics and /health");
        server.add_service(http);
    }

    if let Some(local) = local {
        server.add_service(background_service("local services", local));
    }
    if let Some(feed) = feed {
        server.add_service(background_service("read cache", feed));
    }
    server.add_service(background_service(
        "discovery",
        Discovery {
            cluster,
            config: config.clone(),
        },
    ));
    server.run_forever();
}
