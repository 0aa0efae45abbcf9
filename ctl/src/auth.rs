//! `user`, `role` and `auth`: etcdctl 3.4's user and role management and `auth enable|disable`,
//! with its argument checks (made before connecting) and its printers.

use clap::{ArgAction, Subcommand};
use oxetcd_common::authpb::{permission, Permission, UserAddOptions};
use oxetcd_common::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
    AuthUserRevokeRoleRequest,
};
use oxetcd_common::net::prefix_end;

use crate::client::Dialer;
use crate::error::Failure;
use crate::output::Printer;
use crate::prompt;

/// A Go (pflag) boolean: `--flag`, `--flag=true`, `--flag=false`, and strconv.ParseBool's other
/// spellings.
pub(crate) fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Adds a new user
    Add {
        /// <user name or user:password>
        args: Vec<String>,
        /// Read password from stdin instead of interactive terminal
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "true", default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true", value_parser = go_bool)]
        no_password: bool,
    },
    /// Deletes a user
    Delete {
        /// <user name>
        args: Vec<String>,
    },
    /// Gets detailed information of a user
    Get {
        /// <user name>
        args: Vec<String>,
        /// Show permissions of roles granted to the user
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true", value_parser = go_bool)]
        detail: bool,
    },
    /// Lists all users
    List { args: Vec<String> },
    /// Changes password of user
    Passwd {
        /// <user name>
        args: Vec<String>,
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "true", default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
    },
    /// Grants a role to a user
    GrantRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
    /// Revokes a role from a user
    RevokeRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RoleCommand {
    /// Adds a new role
    Add {
        /// <role name>
        args: Vec<String>,
    },
    /// Deletes a role
    Delete {
        /// <role name>
        args: Vec<String>,
    },
    /// Gets detailed information of a role
    Get {
        /// <role name>
        args: Vec<String>,
    },
    /// Lists all roles
    List { args: Vec<String> },
    /// Grants a key to a role
    GrantPermission {
        /// <role name> <permission type> <key> [endkey]
        args: Vec<String>,
        /// grant a prefix permission
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true", value_parser = go_bool)]
        prefix: bool,
        /// grant a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true", value_parser = go_bool)]
        from_key: bool,
    },
    /// Revokes a key from a role
    RevokePermission {
        /// <role name> <key> [endkey]
        args: Vec<String>,
        /// revoke a prefix permission
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true", value_parser = go_bool)]
        prefix: bool,
        /// revoke a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true", value_parser = go_bool)]
        from_key: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuthCommand {
    /// Enables authentication
    Enable { args: Vec<String> },
    /// Disables authentication
    Disable { args: Vec<String> },
}

/// etcd's answer to `AuthEnable` when the root user lacks the root role (rpctypes'
/// ErrRootRoleNotExist): etcdctl then creates the role, grants it and tries again.
const ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";

/// etcdctl's check of a command's argument count.
fn want(ok: bool, message: &str) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::bad_args(message))
    }
}

/// etcdctl's readPasswordInteractive: asked twice, compared.
fn read_password_interactive(name: &str) -> Result<String, Failure> {
    let ask = |prompt: String| {
        prompt::ask(&prompt).map_err(|e| Failure::bad_args(format!("failed to ask password: {e}")))
    };
    let first = ask(format!("Password of {name}: "))?;
    if first.is_empty() {
        return Err(Failure::bad_args("empty password"));
    }
    let second = ask(format!("Type password of {name} again for confirmation: "))?;
    if first != second {
        return Err(Failure::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// `user add|delete|get|list|passwd|grant-role|revoke-role`
pub(crate) async fn user(d: &Dialer, p: Printer, cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add {
            args,
            interactive,
            new_user_password,
            no_password,
        } => {
            want(
                args.len() == 1,
                "user add command requires user name as its argument",
            )?;
            let (name, password) = if no_password {
                (args[0].clone(), String::new())
            } else if !new_user_password.is_empty() {
                (args[0].clone(), new_user_password)
            } else if let Some((name, password)) = args[0].split_once(':') {
                if name.is_empty() {
                    return Err(Failure::bad_args("empty user name is not allowed"));
                }
                (name.to_string(), password.to_string())
            } else if !interactive {
                (args[0].clone(), prompt::scan_word())
            } else {
                (args[0].clone(), read_password_interactive(&args[0])?)
            };
            let mut c = d.connect().await?;
            let r = c
                .auth
                .user_add(AuthUserAddRequest {
                    name: name.clone(),
                    password,
                    options: Some(UserAddOptions { no_password }),
                    hashed_password: String::new(),
                })
                .await?
                .into_inner();
            p.auth_done(&r.header, format!("User {name} created\n"))
        }
        UserCommand::Delete { args } => {
            want(
                args.len() == 1,
                "user delete command requires user name as its argument",
            )?;
            let mut c = d.connect().await?;
            let name = args[0].clone();
            let r = c
                .auth
                .user_delete(AuthUserDeleteRequest { name: name.clone() })
                .await?
                .into_inner();
            p.auth_done(&r.header, format!("User {name} deleted\n"))
        }
        UserCommand::Get { args, detail } => {
            want(
                args.len() == 1,
                "user get command requires user name as its argument",
            )?;
            let mut c = d.connect().await?;
            let name = args[0].clone();
            let r = c
                .auth
                .user_get(AuthUserGetRequest { name: name.clone() })
                .await?
                .into_inner();
            if !detail {
                return p.user_get(&name, &r);
            }
            // --detail: the user's name, then each of its roles as `role get` prints it, whatever
            // the output format.
            println!("User: {name}");
            for role in r.roles {
                println!();
                let rr = c
                    .auth
                    .role_get(AuthRoleGetRequest { role: role.clone() })
                    .await?
                    .into_inner();
                p.role_get(&role, &rr)?;
            }
            Ok(())
        }
        UserCommand::List { args } => {
            want(args.is_empty(), "user list command requires no arguments")?;
            let mut c = d.connect().await?;
            let r = c.auth.user_list(AuthUserListRequest {}).await?.into_inner();
            p.user_list(&r)
        }
        UserCommand::Passwd { args, interactive } => {
            want(
                args.len() == 1,
                "user passwd command requires user name as its argument",
            )?;
            let name = args[0].clone();
            let password = if interactive {
                read_password_interactive(&name)?
            } else {
                prompt::scan_word()
            };
            let mut c = d.connect().await?;
            let r = c
                .auth
                .user_change_password(AuthUserChangePasswordRequest {
                    name,
                    password,
                    hashed_password: String::new(),
                })
                .await?
                .into_inner();
            p.auth_done(&r.header, "Password updated\n".to_string())
        }
        UserCommand::GrantRole { args } => {
            want(
                args.len() == 2,
                "user grant command requires user name and role name as its argument",
            )?;
            let mut c = d.connect().await?;
            let (user, role) = (args[0].clone(), args[1].clone());
            let r = c
                .auth
                .user_grant_role(AuthUserGrantRoleRequest {
                    user: user.clone(),
                    role: role.clone(),
                })
                .await?
                .into_inner();
            p.auth_done(
                &r.header,
                format!("Role {role} is granted to user {user}\n"),
            )
        }
        UserCommand::RevokeRole { args } => {
            want(
                args.len() == 2,
                "user revoke-role requires user name and role name as its argument",
            )?;
            let mut c = d.connect().await?;
            let (name, role) = (args[0].clone(), args[1].clone());
            let r = c
                .auth
                .user_revoke_role(AuthUserRevokeRoleRequest {
                    name: name.clone(),
                    role: role.clone(),
                })
                .await?
                .into_inner();
            p.auth_done(
                &r.header,
                format!("Role {role} is revoked from user {name}\n"),
            )
        }
    }
}

/// etcdctl's permRange: the key and range end of `key [endkey]` with `--prefix`/`--from-key`.
/// An empty key means every key ("\x00"), where the flags make it open-ended.
fn perm_range(
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let key = args[0].as_bytes();
    let exclusive = || Failure::bad_args("--from-key and --prefix flags are mutually exclusive");
    if key.is_empty() {
        if prefix && from_key {
            return Err(exclusive());
        }
        let end = if prefix || from_key { vec![0] } else { vec![] };
        return Ok((vec![0], end));
    }
    let end = match args.get(1) {
        None if prefix && from_key => return Err(exclusive()),
        None if prefix => prefix_end(key),
        None if from_key => vec![0],
        None => vec![],
        Some(_) if prefix => {
            return Err(Failure::bad_args(
                "unexpected endkey argument with --prefix flag",
            ))
        }
        Some(_) if from_key => {
            return Err(Failure::bad_args(
                "unexpected endkey argument with --from-key flag",
            ))
        }
        Some(end) => end.as_bytes().to_vec(),
    };
    Ok((key.to_vec(), end))
}

/// clientv3's StrToPermissionType: read, write or readwrite, in any case.
fn permission_type(s: &str) -> Result<permission::Type, Failure> {
    permission::Type::from_str_name(&s.to_uppercase())
        .ok_or_else(|| Failure::bad_args(format!("invalid permission type: {s}")))
}

/// `role add|delete|get|list|grant-permission|revoke-permission`
pub(crate) async fn role(d: &Dialer, p: Printer, cmd: RoleCommand) -> Result<(), Failure> {
    match cmd {
        RoleCommand::Add { args } => {
            want(
                args.len() == 1,
                "role add command requires role name as its argument",
            )?;
            let mut c = d.connect().await?;
            let name = args[0].clone();
            let r = c
                .auth
                .role_add(AuthRoleAddRequest { name: name.clone() })
                .await?
                .into_inner();
            p.auth_done(&r.header, format!("Role {name} created\n"))
        }
        RoleCommand::Delete { args } => {
            want(
                args.len() == 1,
                "role delete command requires role name as its argument",
            )?;
            let mut c = d.connect().await?;
            let role = args[0].clone();
            let r = c
                .auth
                .role_delete(AuthRoleDeleteRequest { role: role.clone() })
                .await?
                .into_inner();
            p.auth_done(&r.header, format!("Role {role} deleted\n"))
        }
        RoleCommand::Get { args } => {
            want(
                args.len() == 1,
                "role get command requires role name as its argument",
            )?;
            let mut c = d.connect().await?;
            let role = args[0].clone();
            let r = c
                .auth
                .role_get(AuthRoleGetRequest { role: role.clone() })
                .await?
                .into_inner();
            p.role_get(&role, &r)
        }
        RoleCommand::List { args } => {
            want(args.is_empty(), "role list command requires no arguments")?;
            let mut c = d.connect().await?;
            let r = c.auth.role_list(AuthRoleListRequest {}).await?.into_inner();
            p.role_list(&r)
        }
        RoleCommand::GrantPermission {
            args,
            prefix,
            from_key,
        } => {
            want(
                args.len() >= 3,
                "role grant command requires role name, permission type, and key [endkey] as its argument",
            )?;
            let perm_type = permission_type(&args[1])?;
            let (key, range_end) = perm_range(&args[2..], prefix, from_key)?;
            let mut c = d.connect().await?;
            let name = args[0].clone();
            let r = c
                .auth
                .role_grant_permission(AuthRoleGrantPermissionRequest {
                    name: name.clone(),
                    perm: Some(Permission {
                        perm_type: perm_type as i32,
                        key,
                        range_end,
                    }),
                })
                .await?
                .into_inner();
            p.auth_done(&r.header, format!("Role {name} updated\n"))
        }
        RoleCommand::RevokePermission {
            args,
            prefix,
            from_key,
        } => {
            want(
                args.len() >= 2,
                "role revoke-permission command requires role name and key [endkey] as its argument",
            )?;
            let (key, range_end) = perm_range(&args[1..], prefix, from_key)?;
            let mut c = d.connect().await?;
            let role = args[0].clone();
            let r = c
                .auth
                .role_revoke_permission(AuthRoleRevokePermissionRequest {
                    role: role.clone(),
                    key,
                    range_end: range_end.clone(),
                })
                .await?
                .into_inner();
            // etcdctl names the key as given and the range end it computed.
            let shown = &args[1];
            let simple = if range_end.is_empty() {
                format!("Permission of key {shown} is revoked from role {role}\n").into_bytes()
            } else if range_end != [0] {
                let mut s = format!("Permission of range [{shown}, ").into_bytes();
                s.extend_from_slice(&range_end);
                s.extend_from_slice(format!(") is revoked from role {role}\n").as_bytes());
                s
            } else {
                format!("Permission of range [{shown}, <open ended> is revoked from role {role}\n")
                    .into_bytes()
            };
            p.auth_done(&r.header, simple)
        }
    }
}

/// `auth enable|disable`: plain sentences whatever the output format, as etcdctl's.
pub(crate) async fn auth(d: &Dialer, cmd: AuthCommand) -> Result<(), Failure> {
    match cmd {
        AuthCommand::Enable { args } => {
            want(
                args.is_empty(),
                "auth enable command does not accept any arguments",
            )?;
            let mut c = d.connect().await?;
            // As etcdctl: when the root user lacks the root role, create the role (which fails
            // if it exists), grant it, and enable again.
            loop {
                match c.auth.auth_enable(AuthEnableRequest {}).await {
                    Ok(_) => break,
                    Err(s) if s.message() == ROOT_ROLE_NOT_EXIST => {
                        c.auth
                            .role_add(AuthRoleAddRequest {
                                name: "root".to_string(),
                            })
                            .await?;
                        c.auth
                            .user_grant_role(AuthUserGrantRoleRequest {
                                user: "root".to_string(),
                                role: "root".to_string(),
                            })
                            .await?;
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            println!("Authentication Enabled");
            Ok(())
        }
        AuthCommand::Disable { args } => {
            want(
                args.is_empty(),
                "auth disable command does not accept any arguments",
            )?;
            let mut c = d.connect().await?;
            c.auth.auth_disable(AuthDisableRequest {}).await?;
            println!("Authentication Disabled");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perm_ranges_like_etcdctl() {
        let r = |a: &[&str], p, f| perm_range(&args(a), p, f).map_err(|e| e.message);
        assert_eq!(r(&["a"], false, false), Ok((b"a".to_vec(), vec![])));
        assert_eq!(
            r(&["a", "c"], false, false),
            Ok((b"a".to_vec(), b"c".to_vec()))
        );
        assert_eq!(r(&["a"], true, false), Ok((b"a".to_vec(), b"b".to_vec())));
        assert_eq!(r(&["a"], false, true), Ok((b"a".to_vec(), vec![0])));
        assert_eq!(r(&[""], false, false), Ok((vec![0], vec![])));
        assert_eq!(r(&["", "zz"], false, false), Ok((vec![0], vec![])));
        assert_eq!(r(&[""], true, false), Ok((vec![0], vec![0])));
        assert_eq!(
            r(&["a", "b"], true, false),
            Err("unexpected endkey argument with --prefix flag".to_string())
        );
        assert_eq!(
            r(&["a"], true, true),
            Err("--from-key and --prefix flags are mutually exclusive".to_string())
        );
    }

    #[test]
    fn permission_types() {
        assert_eq!(
            permission_type("readWrite").ok(),
            Some(permission::Type::Readwrite)
        );
        assert_eq!(
            permission_type("bogus").map_err(|e| e.message).err(),
            Some("invalid permission type: bogus".to_string())
        );
    }
}
