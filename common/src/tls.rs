//! TLS for client and peer links, with rustls, as etcd's `transport` package configures it:
//!
//! - **Rotation without restart.** The certificate, key and CA bundle are read from their
//!   files again when a file changes (checked at each handshake: one `stat` per file), so new
//!   connections use replaced files; established ones keep theirs. etcd reloads the
//!   certificate and key the same way, but not the CA bundle (etcd #11555): here a replaced
//!   CA is picked up too. A file that does not parse (half written) leaves the previous one in
//!   use, with a warning, until it changes again.
//! - **Versions and cipher suites**: `--tls-min-version`/`--tls-max-version` (`TLS1.2`,
//!   `TLS1.3`) and `--cipher-suites` with Go's names (they apply to TLS 1.2, as in Go).
//! - **Peer names**: `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname` are checked
//!   on the certificate a peer presents, after its chain.
//! - **Auto TLS** (`--auto-tls`, `--peer-auto-tls`): self-signed certificates, and no check of
//!   the other side's certificate, as etcd does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    client::WebPkiServerVerifier, ClientConfig, DigitallySignedStruct, DistinguishedName,
    RootCertStore, ServerConfig, SignatureScheme, SupportedProtocolVersion,
};

/// Where the certificate material is.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA bundle the other side's certificate must chain to.
    pub trusted_ca_file: Option<PathBuf>,
}

/// How a link checks the other side and what it negotiates.
#[derive(Clone, Debug, Default)]
pub struct TlsPolicy {
    /// Server side: require a client certificate that chains to the CA.
    pub client_cert_auth: bool,
    /// The other side's certificate must have this common name.
    pub allowed_cn: Option<String>,
    /// The other side's certificate must be valid for this host name.
    pub allowed_hostname: Option<String>,
    /// `TLS1.2` or `TLS1.3`; empty: no bound.
    pub min_version: String,
    pub max_version: String,
    /// Go names of TLS 1.2 cipher suites; empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// Accept any certificate from the other side (auto TLS).
    pub insecure_skip_verify: bool,
}

/// A file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

type Loader<T> = Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>;

/// A value built from files, built again when one of them changes (checked at each
/// [`Reloading::current`]). Public for the proxy's upstream certificates, which pingora holds
/// in its own types.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    cached: Mutex<(Vec<Stamp>, Arc<T>)>,
    /// Bumped by every successful reload, for holders of things built from the value.
    generation: std::sync::atomic::AtomicU64,
}

impl<T> Reloading<T> {
    /// Loads now: a file that is missing or invalid at start-up is an error.
    pub fn new(what: &'static str, paths: Vec<PathBuf>, load: Loader<T>) -> anyhow::Result<Self> {
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        let value = load()?;
        Ok(Self {
            what,
            paths,
            load,
            cached: Mutex::new((stamps, Arc::new(value))),
            generation: Default::default(),
        })
    }

    /// How many times the value was reloaded.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn current(&self) -> Arc<T> {
        let stamps: Vec<Stamp> = self.paths.iter().map(|p| stamp(p)).collect();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != stamps {
            cached.0 = stamps;
            match (self.load)() {
                Ok(v) => {
                    tracing::info!(files = ?self.paths, "reloaded the {}", self.what);
                    cached.1 = Arc::new(v);
                    self.generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(
                    files = ?self.paths,
                    "cannot reload the {} (still using the previous one): {e:#}",
                    self.what
                ),
            }
        }
        cached.1.clone()
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let certs = read_certs(cert)?;
    let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let der = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing {}", key.display()))?
        .with_context(|| format!("no private key in {}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .with_context(|| format!("loading {}", key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().with_context(|| {
        format!(
            "{} and {} do not belong together",
            cert.display(),
            key.display()
        )
    })?;
    Ok(ck)
}

fn load_roots(ca: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("a CA certificate of {}", ca.display()))?;
    }
    Ok(roots)
}

/// This side's certificate and key, for servers and clients alike.
struct Certificate(Reloading<CertifiedKey>);

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({:?})", self.0.paths)
    }
}

impl Certificate {
    fn new(files: &TlsFiles, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let (cert, key) = (files.cert_file.clone(), files.key_file.clone());
        let paths = vec![cert.clone(), key.clone()];
        let load = move || load_certified_key(&cert, &key, &provider);
        Ok(Self(Reloading::new("certificate", paths, Box::new(load))?))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl ResolvesClientCert for Certificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The other side's certificate: CN and host name, as etcd's allowed-CN/hostname checks.
fn check_names(end_entity: &CertificateDer<'_>, policy: &TlsPolicy) -> Result<(), rustls::Error> {
    if policy.allowed_cn.is_none() && policy.allowed_hostname.is_none() {
        return Ok(());
    }
    let refuse = |why: String| rustls::Error::General(why);
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .map_err(|e| refuse(format!("unparsable certificate: {e}")))?;
    if let Some(cn) = &policy.allowed_cn {
        let got = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok());
        if got != Some(cn.as_str()) {
            return Err(refuse(format!(
                "certificate common name {got:?} is not the allowed {cn:?}"
            )));
        }
    }
    if let Some(host) = &policy.allowed_hostname {
        if !valid_for_host(&cert, host) {
            return Err(refuse(format!("certificate is not valid for {host:?}")));
        }
    }
    Ok(())
}

fn valid_for_host(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|n| match (n, ip) {
        (GeneralName::DNSName(d), None) => {
            let d = d.to_ascii_lowercase();
            let h = host.to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(suffix) => h.split_once('.').is_some_and(|(_, rest)| rest == suffix),
                None => d == h,
            }
        }
        (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
            std::net::IpAddr::V4(v4) => *bytes == v4.octets().as_slice(),
            std::net::IpAddr::V6(v6) => *bytes == v6.octets().as_slice(),
        },
        _ => false,
    })
}

/// The handshake signature checks both verifiers share: the provider's algorithms.
fn tls12_signature(
    p: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &p.signature_verification_algorithms)
}

fn tls13_signature(
    p: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &p.signature_verification_algorithms)
}

/// Server side: client certificates checked against the (reloaded) CA bundle.
struct ClientVerifier {
    inner: Reloading<Arc<dyn ClientCertVerifier>>,
    policy: TlsPolicy,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientVerifier({:?})", self.inner.paths)
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle may change under us; no hint lets the client send its certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .current()
            .verify_client_cert(end_entity, intermediates, now)?;
        check_names(end_entity, &self.policy)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client side: the server's certificate checked against the (reloaded) CA bundle, or not at
/// all with auto TLS.
struct ServerVerifier {
    inner: Option<Reloading<Arc<WebPkiServerVerifier>>>,
    policy: TlsPolicy,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerVerifier")
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(inner) = &self.inner {
            inner.current().verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?;
            check_names(end_entity, &self.policy)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// rustls' ring provider, limited to the TLS 1.2 suites named by `--cipher-suites` (all TLS
/// 1.3 suites stay: Go does not let them be configured either).
fn provider(policy: &TlsPolicy) -> anyhow::Result<Arc<CryptoProvider>> {
    let mut p = ring::default_provider();
    if !policy.cipher_suites.is_empty() {
        let all = ring::ALL_CIPHER_SUITES;
        let mut chosen: Vec<_> = all
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in &policy.cipher_suites {
            let name = name.trim();
            // IANA names, as Go uses them; Go also has short CHACHA20 names without `_SHA256`.
            let suite = all
                .iter()
                .find(|s| {
                    let iana = format!("{:?}", s.suite());
                    iana == name || iana.strip_suffix("_SHA256") == Some(name)
                })
                .with_context(|| format!("unsupported cipher suite {name:?}"))?;
            chosen.push(*suite);
        }
        p.cipher_suites = chosen;
    }
    Ok(Arc::new(p))
}

fn versions(policy: &TlsPolicy) -> anyhow::Result<Vec<&'static SupportedProtocolVersion>> {
    let rank = |v: &str, default: u8| -> anyhow::Result<u8> {
        match v {
            "" => Ok(default),
            "TLS1.2" => Ok(2),
            "TLS1.3" => Ok(3),
            "TLS1.0" | "TLS1.1" => bail!("{v} is not supported (TLS1.2 or TLS1.3)"),
            other => bail!("unknown TLS version {other:?} (TLS1.2 or TLS1.3)"),
        }
    };
    let (min, max) = (rank(&policy.min_version, 2)?, rank(&policy.max_version, 3)?);
    if min > max {
        bail!("the TLS minimum version is above the maximum");
    }
    let mut out = Vec::new();
    if min <= 3 && max >= 3 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 2 && max >= 2 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// This side's certificate for a server whose rustls configuration is built elsewhere (the
/// proxy's, by pingora), reloaded when its files change.
pub fn server_cert_resolver(files: &TlsFiles) -> anyhow::Result<Arc<dyn ResolvesServerCert>> {
    Ok(Arc::new(Certificate::new(
        files,
        Arc::new(ring::default_provider()),
    )?))
}

/// Client certificates checked against the CA bundle `ca` (reloaded when it changes) and the
/// names of `policy`, for a server whose configuration is built elsewhere.
pub fn client_cert_verifier(
    ca: &Path,
    policy: &TlsPolicy,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let provider = provider(policy)?;
    let (path, p) = (ca.to_path_buf(), provider.clone());
    let load = move || -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
        WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(&path)?), p.clone())
            .build()
            .context("client certificate verifier")
    };
    Ok(Arc::new(ClientVerifier {
        inner: Reloading::new("CA bundle", vec![ca.to_path_buf()], Box::new(load))?,
        policy: policy.clone(),
        provider,
    }))
}

/// Checks the versions and cipher suites of `policy` (a bad flag is a start-up error even
/// where no TLS is served yet).
pub fn check_policy(policy: &TlsPolicy) -> anyhow::Result<()> {
    provider(policy)?;
    versions(policy)?;
    Ok(())
}

/// A server configuration: this side's certificate (reloaded), client certificates required
/// and verified against the CA bundle (reloaded) when `client_cert_auth`, ALPN `alpn`.
pub fn server_config(
    files: &TlsFiles,
    policy: &TlsPolicy,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = provider(policy)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(policy)?)
        .context("TLS versions")?;
    let builder = if policy.client_cert_auth && !policy.insecure_skip_verify {
        let ca = files
            .trusted_ca_file
            .as_deref()
            .context("client certificate authentication needs a trusted CA file")?;
        builder.with_client_cert_verifier(client_cert_verifier(ca, policy)?)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(Certificate::new(files, provider)?));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client configuration: the server's certificate verified against the CA bundle (reloaded;
/// not at all with `insecure_skip_verify`), this side's certificate (reloaded) presented when
/// `files` names one, ALPN h2.
pub fn client_config(files: &TlsFiles, policy: &TlsPolicy) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = provider(policy)?;
    let inner = if policy.insecure_skip_verify {
        None
    } else {
        let ca = files
            .trusted_ca_file
            .clone()
            .context("verifying the other side needs a trusted CA file")?;
        let p = provider.clone();
        let load = move || -> anyhow::Result<Arc<WebPkiServerVerifier>> {
            WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(&ca)?), p.clone())
                .build()
                .context("server certificate verifier")
        };
        let paths = files.trusted_ca_file.iter().cloned().collect();
        Some(Reloading::new("CA bundle", paths, Box::new(load))?)
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(policy)?)
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier {
            inner,
            policy: policy.clone(),
            provider: provider.clone(),
        }));
    let mut cfg = if files.cert_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_resolver(Arc::new(Certificate::new(files, provider)?))
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
