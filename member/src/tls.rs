//! TLS on the member's listeners and peer connections, from etcd's flags: the client URLs
//! (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, `--auto-tls`) and
//! the peer URLs (`--peer-*`, `--peer-auto-tls`), both bounded by `--tls-min-version`,
//! `--tls-max-version` and `--cipher-suites`. The rustls configurations themselves (reloaded
//! files, name checks) are `oxetcd_common::tls`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use oxetcd_common::tls::{TlsFiles, TlsPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Config;

/// A handshake that takes longer is dropped (a client that connects and sends nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS of one kind of link (client or peer), resolved from the flags.
#[derive(Clone, Debug)]
pub(crate) struct LinkTls {
    pub files: TlsFiles,
    pub policy: TlsPolicy,
}

fn policy(cfg: &Config) -> anyhow::Result<TlsPolicy> {
    let policy = TlsPolicy {
        min_version: cfg.tls_min_version.clone(),
        max_version: cfg.tls_max_version.clone(),
        cipher_suites: oxetcd_common::net::split_urls(&cfg.cipher_suites),
        ..Default::default()
    };
    oxetcd_common::tls::check_policy(&policy)
        .context("--tls-min-version, --tls-max-version or --cipher-suites")?;
    Ok(policy)
}

/// Client URLs: `None` without a certificate (then `https://` client URLs are refused).
pub(crate) fn client_link(cfg: &Config, data_dir: &Path) -> anyhow::Result<Option<LinkTls>> {
    if cfg.cert_file.is_empty() != cfg.key_file.is_empty() {
        bail!("--cert-file and --key-file go together");
    }
    if cfg.client_cert_auth && cfg.trusted_ca_file.is_empty() {
        bail!("--client-cert-auth needs --trusted-ca-file");
    }
    let mut policy = policy(cfg)?;
    policy.client_cert_auth = cfg.client_cert_auth;
    let files = if !cfg.cert_file.is_empty() {
        TlsFiles {
            cert_file: cfg.cert_file.clone().into(),
            key_file: cfg.key_file.clone().into(),
            trusted_ca_file: non_empty(&cfg.trusted_ca_file),
        }
    } else if cfg.auto_tls {
        let hosts = hosts_of(&cfg.client_urls());
        let dir = data_dir.join("fixtures").join("client");
        self_signed(&dir, &hosts, cfg.self_signed_cert_validity)?
    } else {
        return Ok(None);
    };
    Ok(Some(LinkTls { files, policy }))
}

/// Peer URLs: the same certificate serves the peer listener and is presented to other
/// members; `None` without one (then `https://` peer URLs are refused).
pub(crate) fn peer_link(cfg: &Config, data_dir: &Path) -> anyhow::Result<Option<LinkTls>> {
    if cfg.peer_cert_file.is_empty() != cfg.peer_key_file.is_empty() {
        bail!("--peer-cert-file and --peer-key-file go together");
    }
    let mut policy = policy(cfg)?;
    policy.client_cert_auth = cfg.peer_client_cert_auth;
    policy.allowed_cn = non_empty(&cfg.peer_cert_allowed_cn);
    policy.allowed_hostname = non_empty(&cfg.peer_cert_allowed_hostname);
    let files = if !cfg.peer_cert_file.is_empty() {
        if cfg.peer_trusted_ca_file.is_empty() {
            bail!("TLS on peer URLs needs --peer-trusted-ca-file (to check the other members)");
        }
        TlsFiles {
            cert_file: cfg.peer_cert_file.clone().into(),
            key_file: cfg.peer_key_file.clone().into(),
            trusted_ca_file: non_empty(&cfg.peer_trusted_ca_file),
        }
    } else if cfg.peer_auto_tls {
        // etcd: self-signed, and the other members' certificates are not checked.
        policy.insecure_skip_verify = true;
        let hosts = hosts_of(&oxetcd_common::net::split_urls(&cfg.listen_peer_urls));
        let dir = data_dir.join("fixtures").join("peer");
        self_signed(&dir, &hosts, cfg.self_signed_cert_validity)?
    } else {
        if cfg.peer_client_cert_auth {
            bail!("--peer-client-cert-auth needs --peer-cert-file and --peer-key-file");
        }
        return Ok(None);
    };
    Ok(Some(LinkTls { files, policy }))
}

fn non_empty<T: From<String>>(s: &str) -> Option<T> {
    (!s.is_empty()).then(|| T::from(s.to_string()))
}

fn hosts_of(urls: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| {
            oxetcd_common::net::split_host_port(oxetcd_common::net::url_host_port(u))
                .map(|(h, _)| h.to_string())
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// etcd's `SelfCert`: a self-signed certificate for `hosts` in `dir` (`cert.pem`, `key.pem`),
/// made once and kept.
fn self_signed(dir: &Path, hosts: &[String], validity_years: u32) -> anyhow::Result<TlsFiles> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert.exists() && key.exists()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut params =
            rcgen::CertificateParams::new(hosts.to_vec()).context("self-signed certificate")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "etcd");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + time::Duration::days(365 * i64::from(validity_years.max(1)));
        let key_pair = rcgen::KeyPair::generate().context("self-signed key")?;
        let c = params.self_signed(&key_pair).context("self-signing")?;
        write_private(&key, key_pair.serialize_pem().as_bytes())?;
        std::fs::write(&cert, c.pem()).with_context(|| format!("writing {}", cert.display()))?;
        tracing::info!(dir = %dir.display(), ?hosts, "made a self-signed certificate");
    }
    Ok(TlsFiles {
        cert_file: cert,
        key_file: key,
        trusted_ca_file: None,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// Accepted TLS connections of `listener`, for tonic's `serve_with_incoming`: each handshake
/// runs on its own task (a slow one holds up nobody), a failed one is dropped (a plaintext
/// client on a TLS port, a certificate from another CA) and the listener keeps serving.
pub(crate) fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%addr, "TLS handshake refused: {e}"),
                    Err(_) => tracing::info!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
