//! Connecting to the cluster: etcdctl's endpoints, dial and command timeouts, and its
//! `--user`/`--password` authentication (a token sent with every request).

use std::time::{Duration, Instant};

use oxetcd_common::etcdserverpb::auth_client::AuthClient;
use oxetcd_common::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_common::etcdserverpb::kv_client::KvClient;
use oxetcd_common::etcdserverpb::lease_client::LeaseClient;
use oxetcd_common::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_common::etcdserverpb::watch_client::WatchClient;
use oxetcd_common::etcdserverpb::AuthenticateRequest;
use oxetcd_common::v3electionpb::election_client::ElectionClient;
use oxetcd_common::v3lockpb::lock_client::LockClient;
use std::sync::OnceLock;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{status_text, Failure, EXIT_BAD_CONNECTION, EXIT_ERROR};
use crate::prompt;

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
    connect_timed(ep, dial_timeout, Some(command_timeout)).await
}

/// A channel to `ep` whose requests end after `timeout`, or never (`None`: etcdctl's `snapshot
/// save` without `--command-timeout`, whose stream may take as long as the file needs).
pub(crate) async fn connect_timed(
    ep: &str,
    dial_timeout: Duration,
    timeout: Option<Duration>,
) -> Result<Channel, Failure> {
    let url = endpoint_url(ep);
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Failure::error(format!("invalid endpoint {ep:?}: {e}")))?
        .connect_timeout(dial_timeout)
        .tcp_nodelay(true);
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t);
    }
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

/// The auth token clientv3 sends as `token` metadata on every request once it has
/// authenticated; none without `--user` or when the cluster has auth disabled.
#[derive(Clone, Default)]
pub(crate) struct Token(Option<MetadataValue<Ascii>>);

impl Token {
    fn new(token: &str) -> Result<Self, Failure> {
        let v = MetadataValue::try_from(token)
            .map_err(|e| Failure::error(format!("invalid auth token {token:?}: {e}")))?;
        Ok(Token(Some(v)))
    }

    /// The token itself, for an HTTP `Authorization` header.
    pub(crate) fn value(&self) -> Option<String> {
        self.0
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// `ch`, with this token on every request sent over it.
    pub(crate) fn attach(&self, ch: Channel) -> Conn {
        InterceptedService::new(ch, self.clone())
    }
}

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

/// A connection whose requests carry the auth token: what every client of this crate uses.
pub(crate) type Conn = InterceptedService<Channel, Token>;

/// The user and password clientv3 authenticates with.
#[derive(Clone)]
struct Credentials {
    name: String,
    password: String,
}

/// etcd's answer to `Authenticate` when auth is disabled: clientv3 then goes on without a token.
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";

/// The global connection flags: `--endpoints`, `--dial-timeout`, `--command-timeout`, `--user`
/// and `--password`.
pub(crate) struct Dialer {
    pub(crate) endpoints: Vec<String>,
    pub(crate) dial_timeout: Duration,
    pub(crate) command_timeout: Duration,
    /// `--user` (`name` or `name:password`) and `--password`, as given.
    user: String,
    password: String,
    /// What they make, worked out (the password asked for) at the first connection.
    credentials: OnceLock<Option<Credentials>>,
}

impl Dialer {
    pub(crate) fn new(
        endpoints: Vec<String>,
        dial_timeout: Duration,
        command_timeout: Duration,
        user: String,
        password: String,
    ) -> Self {
        Dialer {
            endpoints,
            dial_timeout,
            command_timeout,
            user,
            password,
            credentials: OnceLock::new(),
        }
    }

    /// etcdctl's authCfgFromCmd: `--user name:password`, `--user name --password p`, or
    /// `--user name` and the password asked for on the terminal. clientv3 authenticates only
    /// with both a name and a password.
    fn credentials(&self) -> Result<Option<Credentials>, Failure> {
        if let Some(c) = self.credentials.get() {
            return Ok(c.clone());
        }
        let (name, password) = if self.user.is_empty() {
            (String::new(), String::new())
        } else if !self.password.is_empty() {
            (self.user.clone(), self.password.clone())
        } else if let Some((name, password)) = self.user.split_once(':') {
            (name.to_string(), password.to_string())
        } else {
            let password = prompt::ask("Password: ").map_err(|e| Failure::new(EXIT_ERROR, e))?;
            (self.user.clone(), password)
        };
        let c =
            (!name.is_empty() && !password.is_empty()).then_some(Credentials { name, password });
        let _ = self.credentials.set(c.clone());
        Ok(c)
    }

    /// clientv3's getToken: `Authenticate` at the first of `endpoints` that answers it, within
    /// the dial timeout. etcdctl cannot make a client when that fails, and exits with
    /// ExitBadConnection.
    pub(crate) async fn authenticate(&self, endpoints: &[String]) -> Result<Token, Failure> {
        let Some(c) = self.credentials()? else {
            return Ok(Token::default());
        };
        let deadline = Instant::now() + self.dial_timeout;
        let mut last = "context deadline exceeded".to_string();
        for ep in endpoints {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Ok(ch) = connect_one(ep, left, self.command_timeout).await else {
                continue;
            };
            let mut req = tonic::Request::new(AuthenticateRequest {
                name: c.name.clone(),
                password: c.password.clone(),
            });
            req.set_timeout(left);
            match AuthClient::new(ch).authenticate(req).await {
                Ok(r) => return Token::new(&r.into_inner().token),
                // Auth is off: clientv3 goes on without a token.
                Err(s) if s.message() == AUTH_NOT_ENABLED => return Ok(Token::default()),
                // Any other failure: the next endpoint, as clientv3 does.
                Err(s) => last = status_text(&s),
            }
        }
        Err(Failure::new(EXIT_BAD_CONNECTION, last))
    }

    /// etcdctl's mustClientFromCmd: authenticates (with `--user`), then connects to the first
    /// endpoint that answers, as etcdctl's balancer would pick one.
    pub(crate) async fn connect(&self) -> Result<Clients, Failure> {
        let token = self.authenticate(&self.endpoints).await?;
        self.connect_first(token).await
    }

    /// A client without credentials even with `--user`, as etcdctl's `endpoint --cluster` asks
    /// for the member list.
    pub(crate) async fn connect_anonymous(&self) -> Result<Clients, Failure> {
        self.connect_first(Token::default()).await
    }

    async fn connect_first(&self, token: Token) -> Result<Clients, Failure> {
        let mut last = Failure::error("no endpoints given");
        for ep in &self.endpoints {
            match connect_one(ep, self.dial_timeout, self.command_timeout).await {
                Ok(ch) => return Ok(Clients::new(ch, token)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A client of `ep` only, authenticated at `ep` (etcdctl's client of one endpoint).
    pub(crate) async fn connect_to(&self, ep: &str) -> Result<Clients, Failure> {
        let token = self.authenticate(&[ep.to_string()]).await?;
        self.connect_with(ep, &token).await
    }

    /// A client of `ep` only, with a token already obtained.
    pub(crate) async fn connect_with(&self, ep: &str, token: &Token) -> Result<Clients, Failure> {
        let ch = connect_one(ep, self.dial_timeout, self.command_timeout).await?;
        Ok(Clients::new(ch, token.clone()))
    }

    /// A client of `ep` only whose requests end after `timeout`, or never.
    pub(crate) async fn connect_timed(
        &self,
        ep: &str,
        token: &Token,
        timeout: Option<Duration>,
    ) -> Result<Clients, Failure> {
        let ch = connect_timed(ep, self.dial_timeout, timeout).await?;
        Ok(Clients::new(ch, token.clone()))
    }
}

/// The clients of one connection; each request they send carries the connection's token.
pub(crate) struct Clients {
    pub(crate) kv: KvClient<Conn>,
    pub(crate) cluster: ClusterClient<Conn>,
    pub(crate) maintenance: MaintenanceClient<Conn>,
    pub(crate) lease: LeaseClient<Conn>,
    pub(crate) watch: WatchClient<Conn>,
    pub(crate) lock: LockClient<Conn>,
    pub(crate) election: ElectionClient<Conn>,
    pub(crate) auth: AuthClient<Conn>,
}

impl Clients {
    fn new(ch: Channel, token: Token) -> Self {
        let conn = token.attach(ch);
        Self {
            kv: KvClient::new(conn.clone()).max_decoding_message_size(usize::MAX),
            cluster: ClusterClient::new(conn.clone()),
            // A snapshot's chunks are as large as the server makes them.
            maintenance: MaintenanceClient::new(conn.clone()).max_decoding_message_size(usize::MAX),
            lease: LeaseClient::new(conn.clone()),
            watch: WatchClient::new(conn.clone()).max_decoding_message_size(usize::MAX),
            lock: LockClient::new(conn.clone()),
            election: ElectionClient::new(conn.clone()),
            auth: AuthClient::new(conn),
        }
    }
}
