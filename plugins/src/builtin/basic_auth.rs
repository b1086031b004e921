//! `basic_auth`: HTTP Basic authentication against bcrypt or argon2 password hashes.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `users` | — | `"user:hash"` entries; hashes are bcrypt (`$2b$…`, e.g. from `htpasswd -nbB`) or argon2 (`$argon2id$…`) |
//! | `allow_plaintext` | `false` | accept `"user:password"` entries with a plain password (refused otherwise) |
//! | `realm` | `"pingap"` | realm of the `WWW-Authenticate` challenge |
//! | `user_header` | — | header set on the upstream request to the authenticated user (removed from the client's request first) |
//! | `hide_credentials` | `false` | remove `Authorization` from the request sent upstream |
//!
//! A request without valid credentials gets 401 with `WWW-Authenticate: Basic realm="…"`, the same
//! answer for an unknown user, a wrong password or a malformed header; an unknown user costs the
//! same hashing work as a known one. Hashes are checked on a blocking thread (they are slow by
//! design), and a success is remembered for five minutes so that a client sending the same
//! credentials on every request does not pay for hashing each time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora_http::RequestHeader;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "basic_auth",
    default_priority: 6000,
    summary: "HTTP Basic authentication against bcrypt or argon2 hashes",
    build,
};

/// How long a successful check is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// How many successes are remembered at most.
const REMEMBERED: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    users: Vec<String>,
    #[serde(default)]
    allow_plaintext: bool,
    #[serde(default = "default_realm")]
    realm: String,
    user_header: Option<String>,
    #[serde(default)]
    hide_credentials: bool,
}

fn default_realm() -> String {
    "pingap".to_string()
}

#[derive(Clone)]
enum Password {
    Bcrypt(String),
    Argon2(String),
    Plain(String),
}

impl Password {
    fn parse(text: &str, allow_plaintext: bool) -> Result<Password, String> {
        if text.starts_with("$2a$") || text.starts_with("$2b$") || text.starts_with("$2y$") {
            text.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("invalid bcrypt hash: {e}"))?;
            Ok(Password::Bcrypt(text.to_string()))
        } else if text.starts_with("$argon2") {
            argon2::PasswordHash::new(text).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            Ok(Password::Argon2(text.to_string()))
        } else if allow_plaintext {
            Ok(Password::Plain(text.to_string()))
        } else {
            Err(
                "not a bcrypt or argon2 hash; plain passwords need allow_plaintext = true"
                    .to_string(),
            )
        }
    }

    /// Slow for hashes: call on a blocking thread.
    fn verify(&self, candidate: &str) -> bool {
        match self {
            Password::Bcrypt(hash) => bcrypt::verify(candidate, hash).unwrap_or(false),
            Password::Argon2(hash) => argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
                use argon2::PasswordVerifier as _;
                argon2::Argon2::default()
                    .verify_password(candidate.as_bytes(), &parsed)
                    .is_ok()
            }),
            Password::Plain(password) => secret::equal(password, candidate),
        }
    }
}

struct BasicAuth {
    users: HashMap<String, Password>,
    /// Hashed for unknown users, so that they cost as much as known ones.
    decoy: Password,
    challenge: HeaderValue,
    user_header: Option<HeaderName>,
    hide_credentials: bool,
    remembered: Mutex<HashMap<[u8; 32], Instant>>,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let mut users = HashMap::new();
    for (index, entry) in config.users.iter().enumerate() {
        let key = format!("users[{index}]");
        let (user, password) = entry
            .split_once(':')
            .filter(|(user, _)| !user.is_empty())
            .ok_or_else(|| BuildError::at(&key, "write \"user:hash\""))?;
        let password = Password::parse(password, config.allow_plaintext)
            .map_err(|e| BuildError::at(&key, e))?;
        if users.insert(user.to_string(), password).is_some() {
            return Err(BuildError::at(
                key,
                format!("user \"{user}\" is listed twice"),
            ));
        }
    }
    let decoy = config
        .users
        .first()
        .and_then(|entry| entry.split_once(':'))
        .and_then(|(user, _)| users.get(user).cloned())
        .ok_or_else(|| BuildError::at("users", "give at least one user"))?;
    let challenge = HeaderValue::from_str(&format!(
        "Basic realm=\"{}\", charset=\"UTF-8\"",
        config.realm
    ))
    .map_err(|_| BuildError::at("realm", "not usable in a header"))?;
    let user_header = config
        .user_header
        .map(|name| {
            HeaderName::try_from(name)
                .map_err(|_| BuildError::at("user_header", "not a valid header name"))
        })
        .transpose()?;
    Ok(Arc::new(BasicAuth {
        users,
        decoy,
        challenge,
        user_header,
        hide_credentials: config.hide_credentials,
        remembered: Mutex::new(HashMap::new()),
    }))
}

/// The user and password of a `Basic` authorization header.
fn credentials(req: &RequestHeader) -> Option<(String, String)> {
    let value = req
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

impl BasicAuth {
    fn fingerprint(user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    fn remembered(&self, fingerprint: &[u8; 32]) -> bool {
        let remembered = match self.remembered.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        remembered
            .get(fingerprint)
            .is_some_and(|until| *until > Instant::now())
    }

    fn remember(&self, fingerprint: [u8; 32]) {
        let mut remembered = match self.remembered.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if remembered.len() >= REMEMBERED {
            remembered.retain(|_, until| *until > now);
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(fingerprint, now + REMEMBER);
    }

    async fn check(&self, user: &str, password: &str) -> bool {
        let fingerprint = Self::fingerprint(user, password);
        if self.remembered(&fingerprint) {
            return true;
        }
        let (known, stored) = match self.users.get(user) {
            Some(stored) => (true, stored.clone()),
            None => (false, self.decoy.clone()),
        };
        let candidate = password.to_string();
        let verified = match stored {
            Password::Plain(_) => stored.verify(&candidate),
            _ => tokio::task::spawn_blocking(move || stored.verify(&candidate))
                .await
                .unwrap_or(false),
        };
        let ok = known && verified;
        if ok {
            self.remember(fingerprint);
        }
        ok
    }

    fn refuse(&self) -> Flow {
        Flow::Respond(
            Response::refuse(StatusCode::UNAUTHORIZED, "authentication is required")
                .header(header::WWW_AUTHENTICATE, self.challenge.clone()),
        )
    }
}

#[async_trait]
impl Plugin for BasicAuth {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        if let Some(name) = &self.user_header {
            req.remove_header(name);
        }
        let Some((user, password)) = credentials(req) else {
            return Ok(self.refuse());
        };
        if !self.check(&user, &password).await {
            tracing::debug!("basic_auth: refused a user");
            return Ok(self.refuse());
        }
        if let Some(name) = &self.user_header
            && let Ok(value) = HeaderValue::from_str(&user)
        {
            let _ = req.insert_header(name.clone(), value);
        }
        if self.hide_credentials {
            req.remove_header(&header::AUTHORIZATION);
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::{build_error, built};

    fn basic(user: &str, password: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req.insert_header("authorization", format!("Basic {token}"))
            .unwrap();
        req
    }

    async fn admits(plugin: &dyn Plugin, req: &mut RequestHeader) -> bool {
        matches!(
            plugin
                .request(req, &mut PluginCtx::default())
                .await
                .unwrap(),
            Flow::Continue
        )
    }

    #[tokio::test]
    async fn checks_bcrypt_and_argon2_hashes() {
        use argon2::PasswordHasher as _;
        let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
        let salt = argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let argon_hash = argon2::Argon2::default()
            .hash_password(b"hunter2", &salt)
            .unwrap()
            .to_string();
        let settings = format!(
            "users = ['alice:{bcrypt_hash}', 'bob:{argon_hash}']\nuser_header = 'X-User'\nhide_credentials = true"
        );
        let plugin = built(build, &settings);
        let mut req = basic("alice", "s3cret");
        req.insert_header("x-user", "mallory").unwrap();
        assert!(admits(plugin.as_ref(), &mut req).await);
        assert_eq!(req.headers["x-user"], "alice");
        assert!(req.headers.get("authorization").is_none());
        assert!(admits(plugin.as_ref(), &mut basic("bob", "hunter2")).await);
        assert!(
            admits(plugin.as_ref(), &mut basic("alice", "s3cret")).await,
            "remembered"
        );
        assert!(!admits(plugin.as_ref(), &mut basic("alice", "wrong")).await);
        assert!(!admits(plugin.as_ref(), &mut basic("carol", "s3cret")).await);
        let Flow::Respond(response) = plugin
            .request(
                &mut RequestHeader::build("GET", b"/", None).unwrap(),
                &mut PluginCtx::default(),
            )
            .await
            .unwrap()
        else {
            panic!("no credentials");
        };
        assert_eq!(response.status, 401);
        assert_eq!(
            response.headers[0].1,
            "Basic realm=\"pingap\", charset=\"UTF-8\""
        );
    }

    #[test]
    fn plaintext_only_when_allowed() {
        let err = build_error(build, "users = ['a:plain']");
        assert_eq!(err.key(), Some("users[0]"));
        assert!(err.to_string().contains("allow_plaintext"));
        assert!(
            build(
                &"users = ['a:plain']\nallow_plaintext = true"
                    .parse()
                    .unwrap(),
                &BuildEnv::default()
            )
            .is_ok()
        );
        let err = build_error(build, "users = ['a:$2b$bad']");
        assert!(err.to_string().contains("invalid bcrypt hash"), "{err}");
        let err = build_error(build, "users = ['a:x', 'a:y']\nallow_plaintext = true");
        assert_eq!(err.key(), Some("users[1]"));
    }
}
