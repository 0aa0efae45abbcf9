//! Client-facing TLS, terminated by the proxy with rustls: the certificate, key and client CA
//! bundle are read again when their files change (`oxetcd_common::tls`), so they rotate
//! without a restart.

use std::fmt;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::CipherSuite;

use std::path::PathBuf;

use oxetcd_common::tls::Reloading;
use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};

use crate::config::Config;

/// Serves the certificate (read again when its files change: rotation without a restart),
/// and refuses the handshake of a client that cannot speak TLS 1.3 when
/// `--tls-min-version=TLS1.3` (rustls picks 1.3 whenever the client offers it, so a client
/// offering no 1.3 cipher suite is one that would end up below the minimum).
struct Certificate {
    inner: Arc<dyn ResolvesServerCert>,
    tls13_only: bool,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("tls13_only", &self.tls13_only)
            .finish()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.tls13_only && !hello.cipher_suites().iter().any(is_tls13) {
            return None;
        }
        self.inner.resolve(hello)
    }
}

fn is_tls13(s: &CipherSuite) -> bool {
    matches!(
        s,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// The common name of a client's verified certificate, kept with its connection (in pingora's
/// `SslDigest` extension) and sent to the members with each of its requests
/// ([`oxetcd_common::FORWARDED_CN_HEADER`]): members with `--client-cert-auth` and
/// `--trusted-proxy-cn` then see the client's user, not the proxy's.
pub struct ClientCn(pub String);

struct KeepClientCn;

#[async_trait::async_trait]
impl TlsAccept for KeepClientCn {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
        Some(Arc::new(ClientCn(cn.to_string())))
    }
}

/// TLS settings for the gRPC listener: `--cert-file`/`--key-file`, HTTP/2 by ALPN, and client
/// certificates required and checked against `--trusted-ca-file` when it is set.
pub fn client_tls_settings(c: &Config) -> anyhow::Result<TlsSettings> {
    use oxetcd_common::tls::{client_cert_verifier, server_cert_resolver, TlsFiles, TlsPolicy};
    let files = TlsFiles {
        cert_file: c.cert_file.clone().into(),
        key_file: c.key_file.clone().into(),
        trusted_ca_file: None,
    };
    let certificate = Certificate {
        inner: server_cert_resolver(&files).context("--cert-file / --key-file")?,
        tls13_only: c.tls_min_version == "TLS1.3",
    };
    // With client certificates, each connection keeps its client's common name.
    let mut settings = if c.trusted_ca_file.is_empty() {
        TlsSettings::intermediate(&c.cert_file, &c.key_file)
    } else {
        TlsSettings::with_callbacks(Box::new(KeepClientCn))
    }
    .map_err(|e| anyhow!("{e}"))?;
    settings.set_cert_resolver(Arc::new(certificate));
    settings.enable_h2();
    if !c.trusted_ca_file.is_empty() {
        let ca = std::path::Path::new(&c.trusted_ca_file);
        let verifier = client_cert_verifier(ca, &TlsPolicy::default())
            .with_context(|| format!("--trusted-ca-file {}", c.trusted_ca_file))?;
        settings.set_client_cert_verifier(verifier);
    }
    Ok(settings)
}

/// TLS towards members (`--cacert`, and `--cert`/`--key` for a client certificate), read
/// again when the files change: new upstream connections (pingora's, and the control plane's
/// tonic channels) use the new files, established ones keep theirs.
pub struct UpstreamTls {
    material: Reloading<Material>,
}

/// What the files hold, in the forms each user of them wants.
struct Material {
    /// PEM of `--cacert`, for the control plane's tonic channels.
    ca_pem: Vec<u8>,
    /// PEM of `--cert` and `--key`.
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The CA and the client certificate for pingora's data plane.
    ca: Arc<CaType>,
    cert_key: Option<Arc<CertKey>>,
}

impl UpstreamTls {
    /// Reads the files of `--cacert`, `--cert` and `--key`; `None` when `--cacert` is unset
    /// (members are then reached in plaintext).
    pub fn load(c: &Config) -> anyhow::Result<Option<Arc<Self>>> {
        if c.cacert.is_empty() {
            return Ok(None);
        }
        let (cacert, cert, key) = (c.cacert.clone(), c.cert.clone(), c.key.clone());
        let mut paths = vec![PathBuf::from(&cacert)];
        if !cert.is_empty() {
            paths.extend([PathBuf::from(&cert), PathBuf::from(&key)]);
        }
        let load = move || Material::read(&cacert, &cert, &key);
        Ok(Some(Arc::new(UpstreamTls {
            material: Reloading::new("upstream certificates", paths, Box::new(load))?,
        })))
    }

    /// The client certificate to show members, as it is on disk now.
    pub fn cert_key(&self) -> Option<Arc<CertKey>> {
        self.material.current().cert_key.clone()
    }

    /// The CA bundle members' certificates must chain to, as it is on disk now.
    pub fn ca(&self) -> Arc<CaType> {
        self.material.current().ca.clone()
    }

    /// Changes whenever the files were read again (the control plane rebuilds its channels).
    pub fn generation(&self) -> u64 {
        self.material.current();
        self.material.generation()
    }

    /// The same settings for a tonic channel.
    pub fn tonic(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let m = self.material.current();
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(m.ca_pem.clone()));
        if let Some((cert, key)) = &m.identity_pem {
            tls = tls.identity(Identity::from_pem(cert.clone(), key.clone()));
        }
        tls
    }
}

impl Material {
    fn read(cacert: &str, cert: &str, key: &str) -> anyhow::Result<Self> {
        let read =
            |flag: &str, path: &str| std::fs::read(path).with_context(|| format!("{flag} {path}"));
        let ca_pem = read("--cacert", cacert)?;
        let ca: Vec<WrappedX509> = rustls_pemfile::certs(&mut ca_pem.as_slice())
            .map(|c| c.map(|c| WrappedX509::new(c.to_vec(), parse_x509)))
            .collect::<Result<_, _>>()
            .context("--cacert")?;
        if ca.is_empty() {
            return Err(anyhow!("no certificate in --cacert {cacert}"));
        }
        let (identity_pem, cert_key) = if cert.is_empty() {
            (None, None)
        } else {
            let cert_pem = read("--cert", cert)?;
            let key_pem = read("--key", key)?;
            let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<_, _>>()
                .context("--cert")?;
            if certs.is_empty() {
                return Err(anyhow!("no certificate in --cert {cert}"));
            }
            let der = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .context("--key")?
                .ok_or_else(|| anyhow!("no private key in --key {key}"))?;
            let cert_key = CertKey::new(certs, der.secret_der().to_vec());
            (Some((cert_pem, key_pem)), Some(Arc::new(cert_key)))
        };
        Ok(Material {
            ca_pem,
            identity_pem,
            ca: Arc::from(ca.into_boxed_slice()),
            cert_key,
        })
    }
}
