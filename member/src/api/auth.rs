//! etcdserverpb.Auth: users, roles, enabling auth, and logging in. Changes go through raft
//! (checked at apply: root only once auth is enabled); reads are linearizable and checked
//! here. Passwords are hashed here, before proposing, so neither the raft log nor a snapshot
//! ever holds one; bcrypt runs on the blocking pool, away from the request tasks.

use std::sync::Arc;

use oxetcd_common::etcdserverpb::auth_server::Auth;
use oxetcd_common::etcdserverpb::*;
use oxetcd_common::oxetcdpb::internal_raft_request::Request as Proposal;
use oxetcd_common::oxetcdpb::Authenticate;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::auth::{AuthError, Tokens};
use crate::error::ServerError;
use crate::identity::Credentials;
use crate::server::EtcdServer;

/// How often a login is tried again when the auth store changed while its password was
/// being checked (etcd retries without bound; a change per bcrypt check is not plausible).
const LOGIN_ATTEMPTS: usize = 5;

pub(super) struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub(super) fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }

    /// Proposes an auth change as the caller; the response with this member's header.
    async fn change<R: Message + Default + WithHeader, T>(
        &self,
        request: &Request<T>,
        p: Proposal,
    ) -> Result<Response<R>, Status> {
        Ok(Response::new(self.propose(request, p).await?))
    }

    async fn propose<R: Message + Default + WithHeader, T>(
        &self,
        request: &Request<T>,
        p: Proposal,
    ) -> Result<R, ServerError> {
        let who = Credentials::of(&self.server, request)
            .who(&self.server)
            .await?;
        let (bytes, term) = self
            .server
            .propose_for(p, String::new(), who.as_ref())
            .await?;
        let mut resp = R::decode(bytes.as_slice()).map_err(ServerError::bad_apply_result)?;
        let rev = resp.header_mut().as_ref().map(|h| h.revision).unwrap_or(0);
        *resp.header_mut() = self.server.header(rev, term);
        Ok(resp)
    }

    /// A linearizable read of the auth state, allowed by `check`.
    async fn read<T, R>(
        &self,
        request: &Request<T>,
        check: impl FnOnce(&crate::auth::AuthStore, &crate::auth::AuthInfo) -> Result<(), AuthError>,
        read: impl FnOnce(&crate::auth::AuthStore) -> Result<R, AuthError>,
    ) -> Result<(R, Option<ResponseHeader>), Status> {
        self.server.read_barrier().await?;
        Credentials::of(&self.server, request)
            .require(&self.server, check)
            .await?;
        let st = self.server.read_state()?;
        let out = read(&st.auth).map_err(ServerError::from)?;
        let header = self
            .server
            .header(st.mvcc.current_rev(), self.server.term());
        Ok((out, header))
    }

    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.server.auth_settings.bcrypt_cost;
        tokio::task::spawn_blocking(move || {
            bcrypt::hash_with_result(password, cost)
                .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        })
        .await
        .map_err(|e| ServerError::Internal(format!("bcrypt: {e}")))?
        .map_err(|e| Status::from(ServerError::Internal(format!("bcrypt: {e}"))))
    }

    /// Hashing is slow by design: refuse a caller who may not change users before doing it.
    async fn require_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        Credentials::of(&self.server, request)
            .require_admin(&self.server)
            .await
    }
}

/// Responses whose header the service fills.
trait WithHeader {
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! with_header {
    ($($t:ty),*) => {$(
        impl WithHeader for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    )*};
}

with_header!(
    AuthEnableResponse,
    AuthDisableResponse,
    AuthenticateResponse,
    AuthUserAddResponse,
    AuthUserDeleteResponse,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse
);

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let p = Proposal::AuthEnable(*request.get_ref());
        self.change(&request, p).await
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let p = Proposal::AuthDisable(*request.get_ref());
        self.change(&request, p).await
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let ((enabled, auth_revision), header) = self
            .read(
                &request,
                |_, _| Ok(()),
                |a| Ok((a.is_enabled(), a.revision())),
            )
            .await?;
        Ok(Response::new(AuthStatusResponse {
            header,
            enabled,
            auth_revision,
        }))
    }

    /// etcd's login: the password is checked here against the hash at a known auth revision;
    /// the Authenticate entry then registers the token on every member, unless the store
    /// changed meanwhile (then the password is checked again).
    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        self.server.read_barrier().await?;
        let r = request.get_ref().clone();
        for _ in 0..LOGIN_ATTEMPTS {
            let (hash, checked_revision) = self.server.read_state()?.auth.password_of(&r.name)?;
            let password = r.password.clone();
            let matches = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &String::from_utf8_lossy(&hash)).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if !matches {
                tracing::warn!(user = r.name, "authentication failed: invalid password");
                return Err(AuthError::AuthFailed.into());
            }
            let p = Proposal::Authenticate(Authenticate {
                name: r.name.clone(),
                simple_token: Tokens::simple_prefix(),
                checked_revision,
            });
            match self.propose(&request, p).await {
                // The store changed after the password was checked: check it again.
                Err(ServerError::Auth(AuthError::AuthOldRevision)) => {}
                other => return Ok(Response::new(other?)),
            }
        }
        Err(AuthError::AuthOldRevision.into())
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        self.require_admin(&request).await?;
        let mut r = request.get_ref().clone();
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let password = std::mem::take(&mut r.password);
        if !no_password && r.hashed_password.is_empty() {
            r.hashed_password = self.hash(password).await?;
        }
        self.change(&request, Proposal::UserAdd(r)).await
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let name = request.get_ref().name.clone();
        let (roles, header) = self
            .read(
                &request,
                // A user may read themselves (etcd's UserGet).
                |a, who| {
                    a.check_admin(who).or_else(|e| match who.username == name {
                        true => Ok(()),
                        false => Err(e),
                    })
                },
                |a| {
                    a.user(&request.get_ref().name)
                        .map(|u| u.roles.clone())
                        .ok_or(AuthError::UserNotFound)
                },
            )
            .await?;
        Ok(Response::new(AuthUserGetResponse { header, roles }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let (users, header) = self
            .read(
                &request,
                |a, who| a.check_admin(who),
                |a| Ok(a.user_names()),
            )
            .await?;
        Ok(Response::new(AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let p = Proposal::UserDelete(request.get_ref().clone());
        self.change(&request, p).await
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        self.require_admin(&request).await?;
        let mut r = request.get_ref().clone();
        let password = std::mem::take(&mut r.password);
        if r.hashed_password.is_empty() {
            r.hashed_password = self.hash(password).await?;
        }
        self.change(&request, Proposal::UserChangePassword(r)).await
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let p = Proposal::UserGrantRole(request.get_ref().clone());
        self.change(&request, p).await
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let p = Proposal::UserRevokeRole(request.get_ref().clone());
        self.change(&request, p).await
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let p = Proposal::RoleAdd(request.get_ref().clone());
        self.change(&request, p).await
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let role = request.get_ref().role.clone();
        let (perm, header) = self
            .read(
                &request,
                // A user may read the roles they have (etcd's RoleGet).
                |a, who| {
                    a.check_admin(who)
                        .or_else(|e| match a.has_role(&who.username, &role) {
                            true => Ok(()),
                            false => Err(e),
                        })
                },
                |a| {
                    a.role(&request.get_ref().role)
                        .map(|r| r.key_permission.clone())
                        .ok_or(AuthError::RoleNotFound)
                },
            )
            .await?;
        Ok(Response::new(AuthRoleGetResponse { header, perm }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let (roles, header) = self
            .read(
                &request,
                |a, who| a.check_admin(who),
                |a| Ok(a.role_names()),
            )
            .await?;
        Ok(Response::new(AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let p = Proposal::RoleDelete(request.get_ref().clone());
        self.change(&request, p).await
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let p = Proposal::RoleGrantPermission(request.get_ref().clone());
        self.change(&request, p).await
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let p = Proposal::RoleRevokePermission(request.get_ref().clone());
        self.change(&request, p).await
    }
}
