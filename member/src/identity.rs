//! Who a client request comes from (etcd's `AuthInfoFromCtx`): the user of its `token`
//! metadata (`authorization` from the HTTP gateway), or else, with `--client-cert-auth`, the
//! common name of its verified client certificate. Used by `api` for every request and by
//! `watch` for every watch a stream creates.

use std::time::Duration;

use tonic::Status;

use crate::auth::{AuthError, AuthInfo, AuthStore, TokenInfo};
use crate::error::ServerError;
use crate::server::{EtcdServer, REQUEST_TIMEOUT};

/// What a request presented, taken from it before its body is consumed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Credentials {
    token: Option<String>,
    common_name: Option<String>,
}

impl Credentials {
    pub(crate) fn of<T>(server: &EtcdServer, request: &tonic::Request<T>) -> Self {
        let md = request.metadata();
        let token = md
            .get("token")
            .or_else(|| md.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let settings = &server.auth_settings;
        let common_name = if token.is_none() && settings.client_cert_auth {
            let own = request
                .peer_certs()
                .and_then(|certs| certs.first().and_then(|c| common_name(c.as_ref())));
            // A trusted proxy speaks for the client whose certificate it verified.
            let forwarded = md
                .get(oxetcd_common::FORWARDED_CN_HEADER)
                .and_then(|v| v.to_str().ok());
            // A trusted proxy speaks for its clients only: without a forwarded name (a
            // client that showed no certificate) the request has no user, never the proxy's.
            match own {
                Some(own) if settings.trusted_proxy_cns.contains(&own) => {
                    forwarded.map(str::to_string)
                }
                own => own,
            }
        } else {
            None
        };
        Self { token, common_name }
    }

    /// The user, if the request named one; "invalid auth token" for a token this member does
    /// not know (expired, of a deleted user, garbage, or from before a restart). A simple
    /// token from an Authenticate entry not applied here yet waits for it, as etcd's.
    pub(crate) async fn who(&self, server: &EtcdServer) -> Result<Option<AuthInfo>, ServerError> {
        if let Some(token) = &self.token {
            let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
            loop {
                let (applied, revision) = {
                    let st = server.read_state()?;
                    (st.applied.map(|l| l.index).unwrap_or(0), st.auth.revision())
                };
                match server.tokens.info(token, applied) {
                    TokenInfo::Simple { username } => {
                        return Ok(Some(AuthInfo { username, revision }))
                    }
                    TokenInfo::Jwt(info) => return Ok(Some(info)),
                    TokenInfo::Invalid => return Err(AuthError::InvalidAuthToken.into()),
                    TokenInfo::NotYetApplied { index } => {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        if left.is_zero() {
                            return Err(AuthError::InvalidAuthToken.into());
                        }
                        let _ = server
                            .raft
                            .wait(Some(left.min(Duration::from_secs(1))))
                            .applied_index_at_least(Some(index), "auth token's entry")
                            .await;
                    }
                }
            }
        }
        if let Some(cn) = &self.common_name {
            let revision = server.read_state()?.auth.revision();
            return Ok(Some(AuthInfo {
                username: cn.clone(),
                revision,
            }));
        }
        Ok(None)
    }

    /// Checks the caller with `check` against the current auth state: for what the API
    /// decides itself (reads, root-only operations); writes are checked again at apply.
    pub(crate) async fn require(
        &self,
        server: &EtcdServer,
        check: impl FnOnce(&AuthStore, &AuthInfo) -> Result<(), AuthError>,
    ) -> Result<Option<AuthInfo>, Status> {
        let who = self.who(server).await?;
        let st = server.read_state()?;
        if st.auth.is_enabled() {
            check(&st.auth, &who.clone().unwrap_or_default())
                .map_err(|e| Status::from(ServerError::from(e)))?;
        }
        Ok(who)
    }

    /// Root only (with auth enabled).
    pub(crate) async fn require_admin(&self, server: &EtcdServer) -> Result<(), Status> {
        self.require(server, |auth, who| auth.check_admin(who))
            .await
            .map(|_| ())
    }
}

/// The subject common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
