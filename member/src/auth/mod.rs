//! Authentication and role-based access control, as etcd's `auth` package.
//!
//! - [`AuthStore`] (`store.rs`) is replicated state: whether auth is enabled, the auth
//!   revision (bumped by every change), users (bcrypt password hashes, roles) and roles (key
//!   permissions). It changes only by applying raft entries, so every member agrees, and it
//!   lives in the `auth` column family (carried by snapshots). It answers the permission
//!   questions: [`AuthStore::check`] for a key or range, [`AuthStore::check_admin`] for root
//!   operations, and `check_*` for whole requests (`check.rs`), used at apply for writes and
//!   at the API for reads.
//! - [`Tokens`] (`token.rs`) is member-local: simple tokens (registered on every member when
//!   the Authenticate entry is applied, forgotten after `--auth-token-ttl` without use) or
//!   JWTs (signed and verified with the keys of `--auth-token jwt,...`).
//! - `permission.rs`: a user's merged key ranges.
//!
//! Who a request comes from ([`AuthInfo`]: user name and the auth revision it was
//! authenticated at) is found by `api` from the `token` metadata or, with
//! `--client-cert-auth`, the client certificate's common name; writes carry it in the raft
//! entry, so a permission change racing with a write is ordered by the log: a request
//! authenticated before the change is refused with "revision of auth store is old".

mod check;
mod permission;
mod store;
mod token;

pub(crate) use store::AuthStore;
pub(crate) use token::{TokenInfo, Tokens};

use serde::{Deserialize, Serialize};

/// The user every permission check lets through, and the role that makes a user one.
pub(crate) const ROOT: &str = "root";

/// Why an auth request or a permission check failed; the messages are etcd's, so clients
/// recognise them (`api::error` gives each its gRPC code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// RoleGrantPermission without a permission (etcd ≥ 3.5).
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
}

/// Who sent a request: a user, and the auth revision their credentials were checked at
/// (0: no credentials, which an enabled store refuses with "user name is empty").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// What a permission is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}
