//! Who may use the admin API, and how they prove it.
//!
//! * **Users** sign in with `POST /api/login`; passwords are checked against argon2 hashes (a
//!   plain password from the configuration is compared in constant time, with a warning at start).
//!   A success opens a **server-side session**: the browser holds only a random id in an
//!   `HttpOnly; SameSite=Strict` cookie (`Secure` under TLS); the session ends after
//!   `session_idle_timeout` without a request, `session_lifetime` after the login, or at logout.
//! * **Tokens** for automation are sent as `Authorization: Bearer <token>`; the configuration
//!   holds only their SHA-256 digests.
//! * **CSRF**: a state-changing request authenticated by the cookie must carry an `Origin` equal
//!   to the admin API's own (the scheme and `Host` it was reached at).
//! * **Lockout**: each failed login from an address is answered only after a delay that grows with
//!   the failures; at `lockout_threshold` failures the address is refused for `lockout_duration`.
//!
//! Passwords, hashes, tokens and session ids never reach a log or an answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::runtime::{AdminPassword, AdminPlan, AdminUser};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "pingap_session";

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A session cookie.
    Session,
    /// A bearer token.
    Token,
}

/// The user (or token) a request acts as: a request extension set by the authentication layer.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user's or the token's name.
    pub name: String,
    /// How it was proven.
    pub via: Via,
    /// When a session ends at the latest (unix seconds); `None` for a token.
    pub expires_at: Option<u64>,
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or password.
    #[error("wrong user name or password")]
    Wrong,
    /// The address failed too often; it may try again after this long.
    #[error("too many failed logins from this address; try again in {}s", .0.as_secs().max(1))]
    LockedOut(Duration),
}

/// A session that was opened.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The id for the cookie.
    pub id: String,
    /// The user.
    pub user: String,
    /// When it ends at the latest (unix seconds).
    pub expires_at: u64,
}

struct Session {
    user: String,
    created: Instant,
    last_seen: Instant,
    /// `created` as unix seconds plus the lifetime, for the API to show.
    expires_at: u64,
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Users, tokens, sessions and failed logins of one admin listener.
pub struct Auth {
    users: Vec<AdminUser>,
    tokens: Vec<(String, [u8; 32])>,
    idle_timeout: Duration,
    lifetime: Duration,
    lockout_threshold: u32,
    lockout_duration: Duration,
    /// Sessions by the SHA-256 digest of their id.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// The most sessions kept at once; the oldest is closed to make room.
const MAX_SESSIONS: usize = 10_000;
/// The most addresses whose failures are remembered at once.
const MAX_TRACKED_ADDRESSES: usize = 100_000;
/// The delay before a failed login is answered, per failure so far (capped at two seconds).
const FAILURE_DELAY: Duration = Duration::from_millis(200);

impl Auth {
    /// The authentication of the admin API that `plan` describes.
    pub fn new(plan: &AdminPlan) -> Auth {
        Auth {
            users: plan.users.clone(),
            tokens: plan.tokens.clone(),
            idle_timeout: plan.session_idle_timeout,
            lifetime: plan.session_lifetime,
            lockout_threshold: plan.lockout_threshold,
            lockout_duration: plan.lockout_duration,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anyone can sign in or use a token.
    pub fn has_credentials(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// How long a session may stay idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Checks `user`/`password` from `client`, delaying failures, and opens a session.
    pub async fn login(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<NewSession, LoginError> {
        if let Some(wait) = client.and_then(|ip| self.locked_for(ip)) {
            return Err(LoginError::LockedOut(wait));
        }
        let account = self.users.iter().find(|u| u.name == user).cloned();
        let password = password.to_string();
        // argon2 is slow on purpose: off the async workers. An unknown user costs the same.
        let matches = tokio::task::spawn_blocking(move || verify(account.as_ref(), &password))
            .await
            .unwrap_or(false);
        if !matches {
            let delay = client.map_or(FAILURE_DELAY, |ip| self.failed(ip));
            tokio::time::sleep(delay).await;
            tracing::warn!(client = ?client, user = %printable(user), "admin login failed");
            return Err(LoginError::Wrong);
        }
        if let Some(ip) = client {
            self.lock_failures().remove(&ip);
        }
        tracing::info!(client = ?client, user = %user, "admin login");
        Ok(self.open_session(user))
    }

    fn open_session(&self, user: &str) -> NewSession {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut sessions = self.lock_sessions();
        self.expire(&mut sessions, now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        let expires_at = unix_now() + self.lifetime.as_secs();
        sessions.insert(
            digest(id.as_bytes()),
            Session {
                user: user.to_string(),
                created: now,
                last_seen: now,
                expires_at,
            },
        );
        NewSession {
            id,
            user: user.to_string(),
            expires_at,
        }
    }

    /// Who session `id` signs in, if it is open; the request counts as activity.
    pub fn session(&self, id: &str) -> Option<Identity> {
        let now = Instant::now();
        let mut sessions = self.lock_sessions();
        let key = digest(id.as_bytes());
        let session = sessions.get_mut(&key)?;
        if self.ended(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(Identity {
            name: session.user.clone(),
            via: Via::Session,
            expires_at: Some(session.expires_at),
        })
    }

    /// Closes session `id`.
    pub fn logout(&self, id: &str) -> bool {
        self.lock_sessions()
            .remove(&digest(id.as_bytes()))
            .is_some()
    }

    /// The token's name, if `token` is one of the configured tokens.
    pub fn token(&self, token: &str) -> Option<String> {
        let presented = digest(token.as_bytes());
        // Every digest is compared, in constant time each.
        let mut found = None;
        for (name, expected) in &self.tokens {
            if constant_time_eq(&presented, expected) {
                found = Some(name.clone());
            }
        }
        found
    }

    fn ended(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) > self.idle_timeout
            || now.duration_since(session.created) > self.lifetime
    }

    fn expire(&self, sessions: &mut HashMap<[u8; 32], Session>, now: Instant) {
        sessions.retain(|_, session| !self.ended(session, now));
    }

    fn locked_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.lock_failures();
        let until = failures.get(&ip)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure from `ip`; returns how long to wait before answering.
    fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut failures = self.lock_failures();
        if failures.len() >= MAX_TRACKED_ADDRESSES {
            let window = self.lockout_duration;
            failures.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now)
                    || f.last.is_some_and(|l| now.duration_since(l) < window)
            });
        }
        let entry = failures.entry(ip).or_default();
        // Failures older than the lockout duration are forgotten.
        if entry
            .last
            .is_some_and(|last| now.duration_since(last) > self.lockout_duration)
        {
            *entry = Failures::default();
        }
        entry.count += 1;
        entry.last = Some(now);
        if entry.count >= self.lockout_threshold {
            entry.locked_until = Some(now + self.lockout_duration);
            entry.count = 0;
            tracing::warn!(client = %ip, duration = ?self.lockout_duration, "admin logins from this address locked out after repeated failures");
        }
        (FAILURE_DELAY * entry.count.max(1)).min(Duration::from_secs(2))
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stand-in hash, checked for unknown users so that they take as long as known ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vf0IUxlm1Ktr4qLiHE3yNBiq3jf/2ka3Bv5w9cyp5bA";

fn verify(account: Option<&AdminUser>, password: &str) -> bool {
    use argon2::PasswordVerifier as _;
    let argon2 = argon2::Argon2::default();
    match account.map(|a| &a.password) {
        Some(AdminPassword::Argon2(hash)) => argon2
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok(),
        Some(AdminPassword::Plain(expected)) => {
            constant_time_eq(&digest(password.as_bytes()), &digest(expected.as_bytes()))
        }
        None => {
            let _ = argon2.verify_password(password.as_bytes(), DUMMY_HASH);
            false
        }
    }
}

/// An argon2id hash of `password` in PHC form, with a random salt and argon2's default costs.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher as _;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A new random API token and the SHA-256 digest (hex) the configuration keeps of it.
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let token = format!(
        "pgt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let hex = digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (token, hex)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A user name as typed, safe for a log line (failed logins log what was tried).
fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::AdminPlan;

    fn plan(users: Vec<AdminUser>, threshold: u32) -> AdminPlan {
        AdminPlan {
            addr: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            tls: None,
            users,
            tokens: vec![("ci".into(), digest(b"secret-token"))],
            session_idle_timeout: Duration::from_secs(60),
            session_lifetime: Duration::from_secs(3600),
            lockout_threshold: threshold,
            lockout_duration: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn sessions_tokens_and_lockout() {
        let hash = hash_password("right").unwrap_or_default();
        let auth = Auth::new(&plan(
            vec![AdminUser {
                name: "alice".into(),
                password: AdminPassword::Argon2(hash),
            }],
            2,
        ));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let session = auth.login(Some(ip), "alice", "right").await;
        let Ok(session) = session else {
            panic!("login failed: {session:?}")
        };
        let identity = auth.session(&session.id);
        assert_eq!(identity.as_ref().map(|i| i.name.as_str()), Some("alice"));
        assert_eq!(
            identity.and_then(|i| i.expires_at),
            Some(session.expires_at)
        );
        assert!(auth.logout(&session.id));
        assert!(auth.session(&session.id).is_none());

        assert_eq!(auth.token("secret-token").as_deref(), Some("ci"));
        assert_eq!(auth.token("secret-tokem"), None);

        assert_eq!(
            auth.login(Some(ip), "alice", "wrong").await.err(),
            Some(LoginError::Wrong)
        );
        assert_eq!(
            auth.login(Some(ip), "nobody", "wrong").await.err(),
            Some(LoginError::Wrong)
        );
        // Locked out now, even with the right password; other addresses are not.
        assert!(matches!(
            auth.login(Some(ip), "alice", "right").await,
            Err(LoginError::LockedOut(_))
        ));
        assert!(
            auth.login(Some([10, 0, 0, 2].into()), "alice", "right")
                .await
                .is_ok()
        );
    }
}
