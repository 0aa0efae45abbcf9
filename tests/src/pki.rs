//! Test certificates (rcgen): a CA, a server certificate and a client certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

/// A CA, a server certificate for 127.0.0.1 and a client certificate with common name
/// `client_cn` (the user etcd's `--client-cert-auth` sees), as PEM files in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn pki(dir: &Path, client_cn: &str) -> Pki {
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("write pem");
        p
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf = |san: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
        let mut params = CertificateParams::new(san).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (sc, sk) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (cc, ck) = leaf(
        vec!["client".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        client_cn,
    );
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        server_cert: write("server.pem", sc),
        server_key: write("server-key.pem", sk),
        client_cert: write("client.pem", cc),
        client_key: write("client-key.pem", ck),
    }
}

impl Pki {
    /// A member's flags: serve TLS with the server certificate, require client certificates.
    pub fn member_args(&self) -> Vec<String> {
        vec![
            arg("cert-file", &self.server_cert),
            arg("key-file", &self.server_key),
            arg("trusted-ca-file", &self.ca),
            "--client-cert-auth".to_string(),
        ]
    }

    /// etcdctl's (and the proxy's towards members) flags with the client certificate.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            arg("cacert", &self.ca),
            arg("cert", &self.client_cert),
            arg("key", &self.client_key),
        ]
    }
}

pub fn arg(flag: &str, p: &Path) -> String {
    format!("--{flag}={}", p.display())
}

/// A CA that issues member certificates: valid for 127.0.0.1 and localhost, for server and
/// client use (a member presents its peer certificate both ways), with a chosen common name.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
}

impl Default for Ca {
    fn default() -> Self {
        Self::new()
    }
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("ca key");
        let cert_pem = params.self_signed(&key).expect("ca cert").pem();
        Ca {
            params,
            key,
            cert_pem,
        }
    }

    /// (certificate PEM, key PEM) for a member named `cn`.
    pub fn issue(&self, cn: &str) -> (String, String) {
        self.issue_for(cn, &["127.0.0.1", "localhost"])
    }

    /// [`Ca::issue`] valid for the names `sans` (IP addresses or DNS names).
    pub fn issue_for(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `pem` to `dir/name` in one step (a rename), as an operator rotating files should,
/// so a reader sees the old file or the new one.
pub fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, pem).expect("write pem");
    std::fs::rename(&tmp, &p).expect("rename pem");
    p
}
