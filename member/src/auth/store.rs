//! The replicated auth state: users, roles, the enabled flag and the auth revision, kept in
//! memory and in the `auth` column family (rows staged in the apply batch, so they are
//! durable with the entry that made them). The rules are etcd's `auth/store.go`.

use std::collections::{BTreeMap, HashMap};

use oxetcd_common::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use oxetcd_common::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
};
use prost::Message;
use rocksdb::WriteBatch;

use super::permission::KeySet;
use super::{Access, AuthError, AuthInfo, ROOT};
use crate::storage::{Storage, CF_AUTH};

const ROW_ENABLED: &[u8] = b"enabled";
const ROW_REVISION: &[u8] = b"revision";
const USER_PREFIX: &[u8] = b"user/";
const ROLE_PREFIX: &[u8] = b"role/";

/// One user's permissions, merged over their roles.
#[derive(Default)]
struct UserPerms {
    root: bool,
    read: KeySet,
    write: KeySet,
}

#[derive(Default)]
pub(crate) struct AuthStore {
    enabled: bool,
    /// Bumped by every change of users or roles (and by disabling), as etcd's.
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Derived from users and roles after every change.
    perms: HashMap<String, UserPerms>,
}

fn row(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> String {
    format!("auth store: bad {what} row: {e}")
}

impl AuthStore {
    /// Loads the auth rows. A new store starts at revision 1, as etcd's.
    pub(crate) fn open(storage: &Storage) -> Result<Self, String> {
        let mut store = AuthStore {
            revision: 1,
            ..Default::default()
        };
        let iter = storage
            .db()
            .iterator_cf(storage.cf(CF_AUTH), rocksdb::IteratorMode::Start);
        for item in iter {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if k.as_ref() == ROW_ENABLED {
                store.enabled = v.first() == Some(&1);
            } else if k.as_ref() == ROW_REVISION {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|e| corrupt("revision", e))?;
                store.revision = u64::from_be_bytes(bytes);
            } else if k.starts_with(USER_PREFIX) {
                let user = User::decode(v.as_ref()).map_err(|e| corrupt("user", e))?;
                store
                    .users
                    .insert(String::from_utf8_lossy(&user.name).into_owned(), user);
            } else if k.starts_with(ROLE_PREFIX) {
                let role = Role::decode(v.as_ref()).map_err(|e| corrupt("role", e))?;
                store
                    .roles
                    .insert(String::from_utf8_lossy(&role.name).into_owned(), role);
            }
        }
        store.refresh();
        Ok(store)
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub(crate) fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// User names, sorted.
    pub(crate) fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Role names, sorted.
    pub(crate) fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub(crate) fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// etcd's `IsAdminPermitted`: with auth enabled, only a user with the root role.
    pub(crate) fn check_admin(&self, who: &AuthInfo) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if who.username.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        match self.perms.get(&who.username) {
            None => Err(AuthError::UserNotFound),
            Some(p) if p.root => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }

    /// etcd's `isOpPermitted`: may `who` read or write `key`..`range_end`? Credentials
    /// checked at an older auth revision are refused, so a revoked permission never lets
    /// through a request authenticated before the revocation.
    pub(crate) fn check(
        &self,
        who: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if who.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let Some(perms) = self.perms.get(&who.username) else {
            return Err(AuthError::PermissionDenied);
        };
        let set = match access {
            Access::Read => &perms.read,
            Access::Write => &perms.write,
        };
        if perms.root || set.covers(key, range_end) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// The password hash to check a login against, and the revision it was read at.
    pub(crate) fn password_of(&self, name: &str) -> Result<(Vec<u8>, u64), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        match self.users.get(name) {
            Some(u) if !u.options.as_ref().is_some_and(|o| o.no_password) => {
                Ok((u.password.clone(), self.revision))
            }
            _ => Err(AuthError::AuthFailed),
        }
    }

    // ---- changes, applied in log order on every member ----

    pub(crate) fn enable(&mut self, st: &Storage, batch: &mut WriteBatch) -> Result<(), AuthError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        batch.put_cf(st.cf(CF_AUTH), ROW_ENABLED, [1]);
        Ok(())
    }

    pub(crate) fn disable(&mut self, st: &Storage, batch: &mut WriteBatch) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        batch.put_cf(st.cf(CF_AUTH), ROW_ENABLED, [0]);
        self.commit(st, batch);
    }

    /// Checks that `name` may log in at `checked_revision` (the revision the receiving member
    /// checked the password at).
    pub(crate) fn authenticate(&self, name: &str, checked_revision: u64) -> Result<(), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        self.password_of(name)?;
        if checked_revision != self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        Ok(())
    }

    /// `r.hashed_password` is the bcrypt hash (the receiving member hashed it).
    pub(crate) fn user_add(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        r: &AuthUserAddRequest,
    ) -> Result<(), AuthError> {
        if r.name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password {
            Vec::new()
        } else {
            r.hashed_password.as_bytes().to_vec()
        };
        self.put_user(
            st,
            batch,
            User {
                name: r.name.as_bytes().to_vec(),
                password,
                roles: Vec::new(),
                options: Some(options),
            },
        );
        Ok(())
    }

    pub(crate) fn user_delete(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        name: &str,
    ) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.users.remove(name).is_none() {
            return Err(AuthError::UserNotFound);
        }
        batch.delete_cf(st.cf(CF_AUTH), row(USER_PREFIX, name));
        self.commit(st, batch);
        Ok(())
    }

    pub(crate) fn user_change_password(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        name: &str,
        hashed: &str,
    ) -> Result<(), AuthError> {
        let mut user = self.users.get(name).ok_or(AuthError::UserNotFound)?.clone();
        user.password = hashed.as_bytes().to_vec();
        self.put_user(st, batch, user);
        Ok(())
    }

    pub(crate) fn user_grant_role(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        name: &str,
        role: &str,
    ) -> Result<(), AuthError> {
        let mut user = self.users.get(name).ok_or(AuthError::UserNotFound)?.clone();
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        match user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            // etcd ignores a role granted twice.
            Ok(_) => Ok(()),
            Err(at) => {
                user.roles.insert(at, role.to_string());
                self.put_user(st, batch, user);
                Ok(())
            }
        }
    }

    pub(crate) fn user_revoke_role(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        name: &str,
        role: &str,
    ) -> Result<(), AuthError> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let mut user = self.users.get(name).ok_or(AuthError::UserNotFound)?.clone();
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.put_user(st, batch, user);
        Ok(())
    }

    pub(crate) fn role_add(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        name: &str,
    ) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        self.put_role(
            st,
            batch,
            Role {
                name: name.as_bytes().to_vec(),
                key_permission: Vec::new(),
            },
        );
        Ok(())
    }

    /// Deletes the role and takes it from every user that had it.
    pub(crate) fn role_delete(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        name: &str,
    ) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(AuthError::RoleNotFound);
        }
        batch.delete_cf(st.cf(CF_AUTH), row(ROLE_PREFIX, name));
        let holders: Vec<User> = self
            .users
            .values()
            .filter(|u| u.roles.iter().any(|r| r == name))
            .cloned()
            .collect();
        for mut user in holders {
            user.roles.retain(|r| r != name);
            self.stage_user(st, batch, user);
        }
        self.commit(st, batch);
        Ok(())
    }

    /// Grants a permission, or changes the type of one granted on the same key and range.
    pub(crate) fn role_grant_permission(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        r: &AuthRoleGrantPermissionRequest,
    ) -> Result<(), AuthError> {
        let mut role = self
            .roles
            .get(&r.name)
            .ok_or(AuthError::RoleNotFound)?
            .clone();
        let perm = r.perm.clone().ok_or(AuthError::PermissionNotGiven)?;
        match role
            .key_permission
            .iter_mut()
            .find(|p| p.key == perm.key && p.range_end == perm.range_end)
        {
            Some(p) => p.perm_type = perm.perm_type,
            None => {
                // Sorted by key, as etcd keeps them (a stable sort: same keys stay in order).
                let at = role.key_permission.partition_point(|p| p.key <= perm.key);
                role.key_permission.insert(at, perm);
            }
        }
        self.put_role(st, batch, role);
        Ok(())
    }

    pub(crate) fn role_revoke_permission(
        &mut self,
        st: &Storage,
        batch: &mut WriteBatch,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<(), AuthError> {
        let mut role = self
            .roles
            .get(&r.role)
            .ok_or(AuthError::RoleNotFound)?
            .clone();
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != r.key || p.range_end != r.range_end);
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.put_role(st, batch, role);
        Ok(())
    }

    fn stage_user(&mut self, st: &Storage, batch: &mut WriteBatch, user: User) {
        let name = String::from_utf8_lossy(&user.name).into_owned();
        batch.put_cf(
            st.cf(CF_AUTH),
            row(USER_PREFIX, &name),
            user.encode_to_vec(),
        );
        self.users.insert(name, user);
    }

    fn put_user(&mut self, st: &Storage, batch: &mut WriteBatch, user: User) {
        self.stage_user(st, batch, user);
        self.commit(st, batch);
    }

    fn put_role(&mut self, st: &Storage, batch: &mut WriteBatch, role: Role) {
        let name = String::from_utf8_lossy(&role.name).into_owned();
        batch.put_cf(
            st.cf(CF_AUTH),
            row(ROLE_PREFIX, &name),
            role.encode_to_vec(),
        );
        self.roles.insert(name, role);
        self.commit(st, batch);
    }

    /// A change: the next auth revision, and the permissions derived again.
    fn commit(&mut self, st: &Storage, batch: &mut WriteBatch) {
        self.revision += 1;
        batch.put_cf(st.cf(CF_AUTH), ROW_REVISION, self.revision.to_be_bytes());
        self.refresh();
    }

    fn refresh(&mut self) {
        let mut perms = HashMap::with_capacity(self.users.len());
        for (name, user) in &self.users {
            let granted: Vec<&Permission> = user
                .roles
                .iter()
                .filter_map(|r| self.roles.get(r))
                .flat_map(|r| r.key_permission.iter())
                .collect();
            // An unknown permission type grants nothing, as in etcd.
            let of = |t: PermType| {
                KeySet::new(granted.iter().copied().filter(move |p| {
                    PermType::try_from(p.perm_type)
                        .is_ok_and(|pt| pt == t || pt == PermType::Readwrite)
                }))
            };
            perms.insert(
                name.clone(),
                UserPerms {
                    root: user.roles.iter().any(|r| r == ROOT),
                    read: of(PermType::Read),
                    write: of(PermType::Write),
                },
            );
        }
        self.perms = perms;
    }
}
