//! Auth tokens, member-local as in etcd: `--auth-token simple` (the default) or
//! `--auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`.
//!
//! A simple token is `<16 random letters>.<log index of its Authenticate entry>`. Every member
//! registers it when it applies that entry (so it works on any member once applied there) and
//! forgets it after `--auth-token-ttl` without use, when the user is deleted or changes
//! password, and when auth is disabled. A restarted member knows no simple tokens: clients
//! authenticate again on "invalid auth token", as with etcd.
//!
//! A JWT carries the user name, the auth revision and an expiry, signed by the member that
//! issued it; any member with the public key verifies it without shared state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::AuthInfo;

const SIMPLE_PREFIX_LEN: usize = 16;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// etcd's JWT claims.
#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

struct Jwt {
    algorithm: Algorithm,
    /// `None`: verify-only (no `priv-key`).
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
}

enum Kind {
    Simple,
    Jwt(Box<Jwt>),
}

/// What a token says about its holder.
pub(crate) enum TokenInfo {
    /// Known: the user (the auth revision comes from the store for simple tokens).
    Simple {
        username: String,
    },
    Jwt(AuthInfo),
    /// A simple token of an Authenticate entry this member has not applied yet.
    NotYetApplied {
        index: u64,
    },
    Invalid,
}

pub(crate) struct Tokens {
    kind: Kind,
    simple_ttl: Duration,
    /// Simple token -> (user, last use).
    simple: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tokens {
    /// From `--auth-token` and `--auth-token-ttl` (seconds, simple tokens only).
    pub(crate) fn from_flags(spec: &str, simple_ttl_secs: u64) -> anyhow::Result<Self> {
        let simple_ttl = Duration::from_secs(if simple_ttl_secs == 0 {
            300
        } else {
            simple_ttl_secs
        });
        let mut parts = spec.split(',');
        let kind = match parts.next().unwrap_or_default() {
            "" | "simple" => Kind::Simple,
            "jwt" => Kind::Jwt(Box::new(jwt_from_options(parts)?)),
            other => bail!("unknown token type {other:?} in --auth-token (simple or jwt)"),
        };
        Ok(Self {
            kind,
            simple_ttl,
            simple: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.simple.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The random part of a new simple token (chosen by the member that checked the password).
    pub(crate) fn simple_prefix() -> String {
        let mut rng = rand::rng();
        (0..SIMPLE_PREFIX_LEN)
            .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
            .collect()
    }

    /// Applying an Authenticate entry: the token for `username`. A simple token is
    /// registered here (on every member); a JWT is signed (the answer of the member that
    /// proposed it is the one the client gets).
    pub(crate) fn assign(
        &self,
        username: &str,
        prefix: &str,
        index: u64,
        revision: u64,
    ) -> Result<String, String> {
        match &self.kind {
            Kind::Simple => {
                let token = format!("{prefix}.{index}");
                let now = Instant::now();
                let mut table = self.table();
                let ttl = self.simple_ttl;
                table.retain(|_, (_, used)| now.duration_since(*used) < ttl);
                table.insert(token.clone(), (username.to_string(), now));
                Ok(token)
            }
            Kind::Jwt(jwt) => {
                let Some(key) = &jwt.sign else {
                    return Err("auth: token signing attempted with verify-only key".into());
                };
                let exp = SystemTime::now()
                    .checked_add(jwt.ttl)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(u64::MAX);
                let claims = Claims {
                    username: username.to_string(),
                    revision,
                    exp,
                };
                jsonwebtoken::encode(&Header::new(jwt.algorithm), &claims, key)
                    .map_err(|e| format!("auth: failed to sign a token: {e}"))
            }
        }
    }

    /// Who holds `token`. A simple token's TTL starts again with each use.
    pub(crate) fn info(&self, token: &str, applied_index: u64) -> TokenInfo {
        match &self.kind {
            Kind::Simple => {
                let Some(index) = token
                    .split_once('.')
                    .and_then(|(_, i)| i.parse::<u64>().ok())
                else {
                    return TokenInfo::Invalid;
                };
                let now = Instant::now();
                let mut table = self.table();
                match table.get_mut(token) {
                    Some((user, used)) if now.duration_since(*used) < self.simple_ttl => {
                        *used = now;
                        TokenInfo::Simple {
                            username: user.clone(),
                        }
                    }
                    Some(_) => {
                        table.remove(token);
                        TokenInfo::Invalid
                    }
                    None if index > applied_index => TokenInfo::NotYetApplied { index },
                    None => TokenInfo::Invalid,
                }
            }
            Kind::Jwt(jwt) => {
                let mut validation = Validation::new(jwt.algorithm);
                validation.leeway = 0;
                match jsonwebtoken::decode::<Claims>(token, &jwt.verify, &validation) {
                    Ok(data) => TokenInfo::Jwt(AuthInfo {
                        username: data.claims.username,
                        revision: data.claims.revision,
                    }),
                    Err(_) => TokenInfo::Invalid,
                }
            }
        }
    }

    /// A deleted user, or a new password: their simple tokens stop working (a JWT lives
    /// until it expires, but its auth revision is now old).
    pub(crate) fn invalidate_user(&self, username: &str) {
        self.table().retain(|_, (user, _)| user != username);
    }

    /// Auth disabled: every simple token is forgotten.
    pub(crate) fn clear(&self) {
        self.table().clear();
    }
}

/// `pub-key=…,priv-key=…,sign-method=…,ttl=…` (etcd's option names).
fn jwt_from_options<'a>(options: impl Iterator<Item = &'a str>) -> anyhow::Result<Jwt> {
    let mut opts = HashMap::new();
    for o in options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("invalid --auth-token option {o:?}"))?;
        opts.insert(k.trim(), v.trim());
    }
    let method = opts.get("sign-method").copied().unwrap_or_default();
    let algorithm: Algorithm = method
        .parse()
        .ok()
        .with_context(|| format!("auth: invalid auth signature method {method:?}"))?;
    let ttl = match opts.get("ttl") {
        Some(t) => oxetcd_common::duration::parse_go_duration(t)
            .map_err(|e| anyhow::anyhow!("invalid jwt ttl {t:?}: {e}"))?,
        None => Duration::from_secs(300),
    };
    let read = |name: &str| -> anyhow::Result<Option<Vec<u8>>> {
        match opts.get(name) {
            Some(path) => std::fs::read(path)
                .map(Some)
                .with_context(|| format!("reading {name} {path}")),
            None => Ok(None),
        }
    };
    let (private, public) = (read("priv-key")?, read("pub-key")?);
    use Algorithm::*;
    let (sign, verify) = match algorithm {
        HS256 | HS384 | HS512 => {
            let secret = private
                .or(public)
                .context("auth: missing key data (priv-key holds the HMAC secret)")?;
            (
                Some(EncodingKey::from_secret(&secret)),
                DecodingKey::from_secret(&secret),
            )
        }
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            let public = public.context("auth: missing key data (pub-key)")?;
            let sign = private.map(|p| EncodingKey::from_rsa_pem(&p)).transpose()?;
            (sign, DecodingKey::from_rsa_pem(&public)?)
        }
        ES256 | ES384 => {
            let public = public.context("auth: missing key data (pub-key)")?;
            let sign = private.map(|p| EncodingKey::from_ec_pem(&p)).transpose()?;
            (sign, DecodingKey::from_ec_pem(&public)?)
        }
        EdDSA => {
            let public = public.context("auth: missing key data (pub-key)")?;
            let sign = private.map(|p| EncodingKey::from_ed_pem(&p)).transpose()?;
            (sign, DecodingKey::from_ed_pem(&public)?)
        }
    };
    Ok(Jwt {
        algorithm,
        sign,
        verify,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_wait_for_their_entry_and_die_with_their_user() {
        let t = Tokens::from_flags("simple", 300).expect("simple");
        let prefix = Tokens::simple_prefix();
        assert_eq!(prefix.len(), 16);
        assert!(matches!(
            t.info(&format!("{prefix}.9"), 8),
            TokenInfo::NotYetApplied { index: 9 }
        ));
        let token = t.assign("alice", &prefix, 9, 3).expect("assign");
        assert_eq!(token, format!("{prefix}.9"));
        assert!(matches!(t.info(&token, 9), TokenInfo::Simple { username } if username == "alice"));
        t.invalidate_user("alice");
        assert!(matches!(t.info(&token, 9), TokenInfo::Invalid));
        assert!(matches!(t.info("garbage", 9), TokenInfo::Invalid));
    }

    #[test]
    fn an_unknown_token_kind_is_refused() {
        assert!(Tokens::from_flags("magic", 300).is_err());
        assert!(Tokens::from_flags("jwt,sign-method=XX256", 300).is_err());
    }
}
