//! Flags, named as `etcd grpc-proxy start` names them, each also read from an `ETCD_GRPC_PROXY_*`
//! environment variable.

use std::time::Duration;

use clap::Parser;
use oxetcd_common::duration::parse_go_duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "oxetcd-proxy",
    version = oxetcd_common::version::OXETCD_VERSION,
    about = "Stateless etcd v3 gRPC proxy: sends writes and linearizable reads to the leader, \
             balances serializable reads, survives leader changes."
)]
pub struct Config {
    /// Comma-separated member client URLs (or host:port) to start discovery from.
    #[arg(
        long,
        env = "ETCD_GRPC_PROXY_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,

    /// Find members from the DNS SRV records of this domain (`_etcd-client._tcp.<domain>`)
    /// instead of `--endpoints`.
    #[arg(long, env = "ETCD_GRPC_PROXY_DISCOVERY_SRV", default_value = "")]
    pub discovery_srv: String,

    /// Suffix of the SRV service name (`_etcd-client-<name>._tcp`).
    #[arg(long, env = "ETCD_GRPC_PROXY_DISCOVERY_SRV_NAME", default_value = "")]
    pub discovery_srv_name: String,

    /// Address the proxy serves gRPC on.
    #[arg(
        long,
        env = "ETCD_GRPC_PROXY_LISTEN_ADDR",
        default_value = "127.0.0.1:23790"
    )]
    pub listen_addr: String,

    /// Address for `/metrics` and `/health` (plain HTTP). Empty: not served.
    #[arg(long, env = "ETCD_GRPC_PROXY_METRICS_ADDR", default_value = "")]
    pub metrics_addr: String,

    /// How often to refresh the member list from the Cluster API. etcd's default, 0, turns
    /// the refresh off; ours defaults to 5s so members that join or leave are picked up.
    #[arg(long, env = "ETCD_GRPC_PROXY_ENDPOINTS_AUTO_SYNC_INTERVAL", default_value = "5s", value_parser = parse_go_duration)]
    pub endpoints_auto_sync_interval: Duration,

    /// How often every member's health and view of the leader is checked.
    #[arg(long, env = "ETCD_GRPC_PROXY_HEALTH_CHECK_INTERVAL", default_value = "1s", value_parser = parse_go_duration)]
    pub health_check_interval: Duration,

    /// How long a leader-bound request that could not reach the leader waits for a new leader
    /// before it fails with Unavailable.
    #[arg(long, env = "ETCD_GRPC_PROXY_LEADER_WAIT_TIMEOUT", default_value = "10s", value_parser = parse_go_duration)]
    pub leader_wait_timeout: Duration,

    /// Client TLS: the proxy's certificate (turns TLS on for clients).
    #[arg(long, env = "ETCD_GRPC_PROXY_CERT_FILE", default_value = "")]
    pub cert_file: String,

    /// Client TLS: the proxy's private key.
    #[arg(long, env = "ETCD_GRPC_PROXY_KEY_FILE", default_value = "")]
    pub key_file: String,

    /// Client TLS: CA that client certificates must chain to; set, a client certificate is
    /// required.
    #[arg(long, env = "ETCD_GRPC_PROXY_TRUSTED_CA_FILE", default_value = "")]
    pub trusted_ca_file: String,

    /// Client TLS: lowest TLS version accepted (TLS1.2 or TLS1.3).
    #[arg(
        long,
        env = "ETCD_GRPC_PROXY_TLS_MIN_VERSION",
        default_value = "TLS1.2"
    )]
    pub tls_min_version: String,

    /// Upstream TLS: client certificate presented to members.
    #[arg(long, env = "ETCD_GRPC_PROXY_CERT", default_value = "")]
    pub cert: String,

    /// Upstream TLS: key of `--cert`.
    #[arg(long, env = "ETCD_GRPC_PROXY_KEY", default_value = "")]
    pub key: String,

    /// Upstream TLS: CA bundle that members' certificates are checked against (turns TLS on
    /// towards members).
    #[arg(long, env = "ETCD_GRPC_PROXY_CACERT", default_value = "")]
    pub cacert: String,

    /// Key prefix isolation, as etcd's `--namespace`.
    #[arg(long, env = "ETCD_GRPC_PROXY_NAMESPACE", default_value = "")]
    pub namespace: String,

    /// Serve watches from the proxy: client watchers of the same key or range share one
    /// watch on a member. `false` passes every watch stream through to a member.
    #[arg(long, env = "ETCD_GRPC_PROXY_COALESCE_WATCHES", default_value_t = true, action = clap::ArgAction::Set)]
    pub coalesce_watches: bool,

    /// Serve lease keep-alives from the proxy: client keep-alive streams share one stream on
    /// the leader. `false` passes each stream through.
    #[arg(long, env = "ETCD_GRPC_PROXY_COALESCE_KEEPALIVES", default_value_t = true, action = clap::ArgAction::Set)]
    pub coalesce_keepalives: bool,

    /// Answer serializable reads, and linearizable ones after a read barrier, from a cache
    /// kept coherent by a watch on the members (off while the cluster runs with auth).
    #[arg(long, env = "ETCD_GRPC_PROXY_READ_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_cache: bool,

    /// Most answers the read cache holds.
    #[arg(
        long,
        env = "ETCD_GRPC_PROXY_READ_CACHE_MAX_ENTRIES",
        default_value_t = 10_000
    )]
    pub read_cache_max_entries: usize,

    /// Most bytes of answers the read cache holds; one answer may take a sixteenth.
    #[arg(long, env = "ETCD_GRPC_PROXY_READ_CACHE_MAX_BYTES", default_value_t = 64 << 20)]
    pub read_cache_max_bytes: usize,

    /// YAML file with these flags' names as keys (`endpoints: ...`); the command line and
    /// the environment win over it.
    #[arg(long, env = "ETCD_GRPC_PROXY_CONFIG_FILE")]
    pub config_file: Option<std::path::PathBuf>,

    /// Log level (error, warn, info, debug).
    #[arg(long, env = "ETCD_GRPC_PROXY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Config {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.discovery_srv.is_empty() && self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--endpoints (or --discovery-srv) must name at least one member".into());
        }
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err("--cert-file and --key-file go together".into());
        }
        if !self.trusted_ca_file.is_empty() && self.cert_file.is_empty() {
            return Err("--trusted-ca-file needs --cert-file and --key-file".into());
        }
        if !matches!(self.tls_min_version.as_str(), "TLS1.2" | "TLS1.3") {
            return Err(format!(
                "unexpected TLS version {:?} (expected TLS1.2 or TLS1.3)",
                self.tls_min_version
            ));
        }
        if self.cert.is_empty() != self.key.is_empty() {
            return Err("--cert and --key go together".into());
        }
        if !self.cert.is_empty() && self.cacert.is_empty() {
            return Err("--cert and --key need --cacert (TLS towards members)".into());
        }
        if self.leader_wait_timeout.is_zero() {
            return Err("--leader-wait-timeout must be positive".into());
        }
        Ok(())
    }
}

pub use oxetcd_common::net::url_host_port as host_port;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_addresses() {
        assert_eq!(host_port("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(host_port("https://m1:2379/"), "m1:2379");
        assert_eq!(host_port("127.0.0.1:2379"), "127.0.0.1:2379");
    }

    #[test]
    fn config_file_fills_what_the_command_line_leaves() {
        let dir = std::env::temp_dir().join(format!("oxetcd-proxy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.yaml");
        std::fs::write(
            &path,
            "endpoints: 10.0.0.1:2379,10.0.0.2:2379\nlisten-addr: 127.0.0.1:3000\nnamespace: /ns/\nunknown-key: 1\n",
        )
        .unwrap();
        let args = |extra: &[&str]| {
            let mut a = vec![
                "oxetcd-proxy".to_string(),
                format!("--config-file={}", path.display()),
            ];
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let c: Config = oxetcd_common::config_file::parse_with_config_file(args(&[])).unwrap();
        assert_eq!(c.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(c.listen_addr, "127.0.0.1:3000");
        assert_eq!(c.namespace, "/ns/");
        let c: Config = oxetcd_common::config_file::parse_with_config_file(args(&[
            "--listen-addr=127.0.0.1:4000",
        ]))
        .unwrap();
        assert_eq!(c.listen_addr, "127.0.0.1:4000", "the command line wins");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_flags_must_pair() {
        let mut c = Config::parse_from(["oxetcd-proxy"]);
        assert!(c.validate().is_ok());
        c.cert_file = "c.pem".into();
        assert!(c.validate().is_err());
        c.key_file = "k.pem".into();
        assert!(c.validate().is_ok());
        c.tls_min_version = "TLS1.0".into();
        assert!(c.validate().is_err());
    }
}
