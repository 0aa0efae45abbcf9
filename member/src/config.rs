//! Member configuration: etcd's flag names, `ETCD_*` environment variables, and a YAML
//! `--config-file` with etcd's key names. Precedence: command line, then environment, then the
//! config file, then defaults.

use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "oxetcd",
    about = "An etcd-compatible distributed key-value store",
    disable_version_flag = true
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: "<name>.oxetcd").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// URLs to listen on for client traffic (comma-separated).
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,

    /// URLs for HTTP client traffic only (the JSON gateway, health, metrics); when given, the
    /// client URLs serve gRPC only (etcd ≥ 3.5).
    #[arg(long, env = "ETCD_LISTEN_CLIENT_HTTP_URLS", default_value = "")]
    pub listen_client_http_urls: String,

    /// URLs to serve /metrics and the health endpoints on, besides the client URLs.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,

    /// Client URLs advertised to the rest of the cluster (default: the listen URLs).
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,

    /// URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,

    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peerURL,...
    /// (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Bootstrap from the DNS SRV records of this domain (`_etcd-server._tcp.<domain>`)
    /// instead of `--initial-cluster`.
    #[arg(long, env = "ETCD_DISCOVERY_SRV", default_value = "")]
    pub discovery_srv: String,

    /// Suffix of the SRV service names (`_etcd-server-<name>._tcp`), for several clusters
    /// under one domain.
    #[arg(long, env = "ETCD_DISCOVERY_SRV_NAME", default_value = "")]
    pub discovery_srv_name: String,

    /// Initial cluster token, so that clusters bootstrapped side by side get different IDs.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Initial cluster state ("new" or "existing").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,

    /// Client TLS: this member's certificate, served on `https://` client URLs.
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "")]
    pub cert_file: String,

    /// Client TLS: the key of `--cert-file`.
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "")]
    pub key_file: String,

    /// Client TLS: CA bundle that client certificates must chain to (with `--client-cert-auth`).
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "")]
    pub trusted_ca_file: String,

    /// Client TLS: require a client certificate signed by `--trusted-ca-file`.
    #[arg(
        long,
        env = "ETCD_CLIENT_CERT_AUTH",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub client_cert_auth: bool,

    /// Auth tokens: "simple", or "jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>,ttl=<dur>".
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// Seconds a simple token stays valid without use.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,

    /// bcrypt cost of password hashes (4 to 31).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,

    /// Client TLS with a self-signed certificate (made in the data dir) when no --cert-file.
    #[arg(long, env = "ETCD_AUTO_TLS", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_tls: bool,

    /// Peer TLS: this member's certificate, served on `https://` peer URLs and presented to
    /// the other members.
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "")]
    pub peer_cert_file: String,

    /// Peer TLS: the key of `--peer-cert-file`.
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "")]
    pub peer_key_file: String,

    /// Peer TLS: CA bundle the other members' certificates must chain to.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "")]
    pub peer_trusted_ca_file: String,

    /// Peer TLS: require a certificate from members that connect to this one.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,

    /// Peer TLS: the other members' certificates must have this common name.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "")]
    pub peer_cert_allowed_cn: String,

    /// Peer TLS: the other members' certificates must be valid for this host name.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub peer_cert_allowed_hostname: String,

    /// Peer TLS with a self-signed certificate (made in the data dir) when no
    /// --peer-cert-file; the other members' certificates are then not checked.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,

    /// Years a self-signed certificate of --auto-tls / --peer-auto-tls is valid.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,

    /// TLS 1.2 cipher suites (Go names, comma-separated) for client and peer links.
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,

    /// Lowest TLS version of client and peer links: TLS1.2 or TLS1.3.
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,

    /// Highest TLS version of client and peer links: TLS1.2 or TLS1.3 (default: the highest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,

    /// With --client-cert-auth: common names of proxies (oxetcd-proxy's client certificate
    /// towards the members) whose forwarded client certificate name is taken as the user.
    #[arg(long, env = "ETCD_TRUSTED_PROXY_CN", default_value = "")]
    pub trusted_proxy_cn: String,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1572864)]
    pub max_request_bytes: u64,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,

    /// Raise an alarm when the backend exceeds this size (0: the default 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,

    /// Check at start-up that this member's key space hashes as its peers' (etcd 3.4's
    /// flag; `--feature-gates=InitialCorruptCheck=true` in etcd 3.6).
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,

    /// How often the leader compares the members' hashes (0: never). etcd 3.4's name.
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s",
          value_parser = oxetcd_common::duration::parse_go_duration)]
    pub experimental_corrupt_check_time: std::time::Duration,

    /// etcd 3.6's name for `--experimental-corrupt-check-time`.
    #[arg(long, env = "ETCD_CORRUPT_CHECK_TIME",
          value_parser = oxetcd_common::duration::parse_go_duration)]
    pub corrupt_check_time: Option<std::time::Duration>,

    /// etcd 3.6's feature gates, `Name=true|false,…` (see [`FEATURE_GATES`]).
    #[arg(long, env = "ETCD_FEATURE_GATES", default_value = "")]
    pub feature_gates: String,

    /// How `--auto-compaction-retention` is read: 'periodic' (a duration, hours if it has no
    /// unit) or 'revision' (a number of revisions).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Auto compaction retention for the key space; 0 disables auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// How often revision-mode auto compaction looks at the revision (etcd: every 5 minutes,
    /// fixed). Not an etcd flag.
    #[arg(long, hide = true, default_value = "5m", value_parser = oxetcd_common::duration::parse_go_duration)]
    pub auto_compaction_revision_interval: std::time::Duration,

    /// Number of applied requests that trigger a snapshot (and a raft log purge).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100000)]
    pub snapshot_count: u64,

    /// Raft log entries kept after a snapshot, for slow followers to catch up from the log
    /// rather than from a snapshot.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub experimental_snapshot_catchup_entries: u64,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Log level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// How often a watcher created with `progress_notify` hears the current revision when
    /// quiet. etcd 3.6's name; `--experimental-watch-progress-notify-interval` is 3.4's.
    #[arg(long, env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL",
          value_parser = oxetcd_common::duration::parse_go_duration)]
    pub watch_progress_notify_interval: Option<std::time::Duration>,

    /// etcd 3.4's name for `--watch-progress-notify-interval`.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m",
          value_parser = oxetcd_common::duration::parse_go_duration)]
    pub experimental_watch_progress_notify_interval: std::time::Duration,

    /// `zap`: etcd's structured JSON log lines (level, ts, caller, msg, fields), which log
    /// pipelines written for etcd parse; `capnslog` (etcd 3.4's default): readable lines.
    #[arg(long, env = "ETCD_LOGGER", default_value = "capnslog", value_parser = ["zap", "capnslog"])]
    pub logger: String,

    /// Where logs go, comma-separated: `default` or `stderr`, `stdout`, or file paths
    /// (appended to).
    #[arg(
        long,
        env = "ETCD_LOG_OUTPUTS",
        default_value = "default",
        value_delimiter = ','
    )]
    pub log_outputs: Vec<String>,

    /// Raft's pre-vote before a campaign (etcd ≥ 3.5's default; `raft::election`): a member
    /// cut off from the others does not unseat the leader when it comes back.
    #[arg(long, env = "ETCD_PRE_VOTE", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub pre_vote: bool,

    /// Level of detail of exported metrics: `extensive` adds the gRPC latency histograms
    /// (`grpc_server_handling_seconds`).
    #[arg(long, env = "ETCD_METRICS", default_value = "basic", value_parser = ["basic", "extensive"])]
    pub metrics: String,

    /// Path to a YAML configuration file with etcd's key names.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
}

impl Config {
    /// Parses the command line and environment, then fills what neither set from the config file.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(
            std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        )
    }

    pub fn load_from(args: Vec<String>) -> anyhow::Result<Self> {
        oxetcd_common::config_file::parse_with_config_file(args)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.oxetcd", self.name)))
    }

    pub fn client_urls(&self) -> Vec<String> {
        split_urls(&self.listen_client_urls)
    }

    pub fn advertised_client_urls(&self) -> Vec<String> {
        match &self.advertise_client_urls {
            Some(u) => split_urls(u),
            None => self.client_urls(),
        }
    }

    pub fn peer_urls(&self) -> Vec<String> {
        split_urls(&self.initial_advertise_peer_urls)
    }

    /// The initial cluster as (name, peer URLs), in the order given.
    pub fn initial_members(&self) -> anyhow::Result<Vec<(String, Vec<String>)>> {
        let spec = match &self.initial_cluster {
            Some(s) => s.clone(),
            None => format!("{}={}", self.name, self.initial_advertise_peer_urls),
        };
        parse_initial_cluster(&spec, &self.name)
    }
}

/// The feature gates of etcd 3.6 this member accepts.
pub const FEATURE_GATES: [&str; 7] = [
    "CompactHashCheck",
    "InitialCorruptCheck",
    "LeaseCheckpoint",
    "LeaseCheckpointPersist",
    "SetMemberLocalAddr",
    "StopGRPCServiceOnDefrag",
    "TxnModeWriteWithSharedBuffer",
];

impl Config {
    /// `--feature-gates` as (name, on); an unknown name or value is refused as etcd does.
    pub fn feature_gates(&self) -> anyhow::Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        for part in self
            .feature_gates
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((name, value)) = part.split_once('=') else {
                bail!("missing bool value for {part}");
            };
            let (name, value) = (name.trim(), value.trim());
            if !FEATURE_GATES.contains(&name) {
                bail!("unrecognized feature gate: {name}");
            }
            let on = match value {
                "true" => true,
                "false" => false,
                _ => bail!("invalid value of {name}={value}, err: strconv.ParseBool: parsing {value:?}: invalid syntax"),
            };
            out.push((name.to_string(), on));
        }
        Ok(out)
    }

    /// Whether the start-up corruption check runs (either flag).
    pub fn initial_corrupt_check(&self) -> anyhow::Result<bool> {
        let gate = self
            .feature_gates()?
            .into_iter()
            .find(|(n, _)| n == "InitialCorruptCheck")
            .map(|(_, on)| on);
        Ok(gate.unwrap_or(self.experimental_initial_corrupt_check))
    }

    /// How often quiet `progress_notify` watchers hear the revision (zero: etcd's default,
    /// 10 minutes, as etcd ignores a zero interval).
    pub fn watch_progress_interval(&self) -> std::time::Duration {
        let every = self
            .watch_progress_notify_interval
            .unwrap_or(self.experimental_watch_progress_notify_interval);
        match every.is_zero() {
            true => std::time::Duration::from_secs(600),
            false => every,
        }
    }

    /// How often the leader checks the members' hashes; zero: never.
    pub fn corrupt_check_every(&self) -> std::time::Duration {
        self.corrupt_check_time
            .unwrap_or(self.experimental_corrupt_check_time)
    }
}

/// `--initial-cluster` (`name=url,name=url,…`) as (name, peer URLs), in the order given; `me`
/// must be one of the names.
pub fn parse_initial_cluster(spec: &str, me: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            bail!("--initial-cluster: {part:?} is not name=url");
        };
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if !members.iter().any(|(n, _)| n == me) {
        bail!("couldn't find local name {me:?} in the initial cluster configuration");
    }
    Ok(members)
}

pub use oxetcd_common::net::split_urls;

/// host:port of an `http://host:port` URL.
pub fn url_host_port(url: &str) -> anyhow::Result<String> {
    let hp = oxetcd_common::net::url_host_port(url);
    if hp.is_empty() {
        bail!("bad URL {url:?}");
    }
    Ok(hp.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("oxetcd")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn defaults_match_etcd() {
        let c = Config::load_from(args(&[])).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir(), PathBuf::from("default.oxetcd"));
        assert_eq!(c.client_urls(), vec!["http://127.0.0.1:2379"]);
        assert_eq!(
            c.initial_members().unwrap(),
            vec![(
                "default".to_string(),
                vec!["http://127.0.0.1:2380".to_string()]
            )]
        );
    }

    #[test]
    fn config_file_fills_what_flags_do_not_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "name: infra1\nmax-txn-ops: 64\ndata-dir: /tmp/x\n").unwrap();
        let c = Config::load_from(args(&[
            "--config-file",
            path.to_str().unwrap(),
            "--name",
            "cli",
        ]))
        .unwrap();
        assert_eq!(c.name, "cli");
        assert_eq!(c.max_txn_ops, 64);
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn initial_cluster_must_name_this_member() {
        let c =
            Config::load_from(args(&["--name", "a", "--initial-cluster", "b=http://x:1"])).unwrap();
        assert!(c.initial_members().is_err());
    }
}
