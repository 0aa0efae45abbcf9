//! Connecting to the cluster: etcdctl's endpoints, dial and command timeouts.

use std::time::Duration;

use oxetcd_common::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::lease_client::LeaseClient;
use oxetcd_common::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::v3electionpb::election_client::ElectionClient;
use oxetcd_common::v3lockpb::lock_client::LockClient;
use std::sync::OnceLock;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::Failure;

/// TLS for every connection of this process (`--cacert`, `--cert`, `--key`), set once at start.
static TLS: OnceLock<ClientTlsConfig> = OnceLock::new();

/// Connect with TLS from now on: etcdctl's `--cacert` (and `--cert`/`--key` for a client
/// certificate). `host:port` endpoints then mean `https://`.
pub(crate) fn use_tls(cacert: &str, cert: &str, key: &str) -> Result<(), Failure> {
    let read = |flag: &str, path: &str| {
        std::fs::read(path).map_err(|e| Failure::bad_args(format!("open {path}: {e} ({flag})")))
    };
    let mut tls = ClientTlsConfig::new();
    if !cacert.is_empty() {
        tls = tls.ca_certificate(Certificate::from_pem(read("--cacert", cacert)?));
    }
    if !cert.is_empty() || !key.is_empty() {
        if cert.is_empty() || key.is_empty() {
            return Err(Failure::bad_args("--cert and --key go together"));
        }
        tls = tls.identity(Identity::from_pem(
            read("--cert", cert)?,
            read("--key", key)?,
        ));
    }
    let _ = TLS.set(tls);
    Ok(())
}

/// etcdctl accepts `host:port` as well as URLs.
pub(crate) fn endpoint_url(ep: &str) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else if TLS.get().is_some() {
        format!("https://{ep}")
    } else {
        format!("http://{ep}")
    }
}

pub(crate) async fn connect_one(
    ep: &str,
    dial_timeout: Duration,
    command_timeout: Duration,
) -> Result<Channel, Failure> {
    let url = endpoint_url(ep);
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Failure::error(format!("invalid endpoint {ep:?}: {e}")))?
        .connect_timeout(dial_timeout)
        .timeout(command_timeout)
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let tls = TLS.get().cloned().unwrap_or_default();
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Failure::error(format!("TLS for {ep:?}: {e}")))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|_| Failure::error("context deadline exceeded"))
}

/// The global connection flags: `--endpoints`, `--dial-timeout`, `--command-timeout`.
pub(crate) struct Dialer {
    pub(crate) endpoints: Vec<String>,
    pub(crate) dial_timeout: Duration,
    pub(crate) command_timeout: Duration,
}

impl Dialer {
    /// Connects to the first endpoint that answers, as etcdctl's balancer would pick one.
    pub(crate) async fn connect(&self) -> Result<Clients, Failure> {
        let mut last = Failure::error("no endpoints given");
        for ep in &self.endpoints {
            match connect_one(ep, self.dial_timeout, self.command_timeout).await {
                Ok(ch) => return Ok(Clients::new(ch)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to `ep` only.
    pub(crate) async fn connect_to(&self, ep: &str) -> Result<Clients, Failure> {
        let ch = connect_one(ep, self.dial_timeout, self.command_timeout).await?;
        Ok(Clients::new(ch))
    }
}

pub(crate) struct Clients {
    pub(crate) kv: KvClient<Channel>,
    pub(crate) cluster: ClusterClient<Channel>,
    pub(crate) maintenance: MaintenanceClient<Channel>,
    pub(crate) lease: LeaseClient<Channel>,
    pub(crate) watch: WatchClient<Channel>,
    pub(crate) lock: LockClient<Channel>,
    pub(crate) election: ElectionClient<Channel>,
}

impl Clients {
    pub(crate) fn new(ch: Channel) -> Self {
        Self {
            kv: KvClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
            cluster: ClusterClient::new(ch.clone()),
            maintenance: MaintenanceClient::new(ch.clone()),
            lease: LeaseClient::new(ch.clone()),
            watch: WatchClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
            lock: LockClient::new(ch.clone()),
            election: ElectionClient::new(ch),
        }
    }
}
