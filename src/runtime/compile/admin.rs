//! Compiling `[admin]` into an [`AdminPlan`]: the listen address, the certificate, users and
//! tokens, session and lockout settings, with the `PINGAP_ADMIN_*` variables applied.
//!
//! The variables are read here, at compile, so a container sets the admin listener and its user
//! without a configuration file: `PINGAP_ADMIN_ADDR` enables the API on that address,
//! `PINGAP_ADMIN_USER`/`PINGAP_ADMIN_PASSWORD` set the one user `user`/`password` name.
//! `PINGAP_ADMIN_PASSWORD` alone enables the API too, on the default address, for the user
//! `admin` — so `PINGAP_ADMIN_PASSWORD=… pingap` gives the embedded default a dashboard.

use std::time::Duration;

use super::Compiler;
use crate::config::schema::Admin;
use crate::runtime::{AdminPassword, AdminPlan, AdminUser};
use crate::tls::{certified_key, read_pem};

/// The admin API's address when `[admin]` gives none.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9180";
const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_LOCKOUT_THRESHOLD: u32 = 5;
const DEFAULT_LOCKOUT_DURATION: Duration = Duration::from_secs(15 * 60);

/// The user `PINGAP_ADMIN_PASSWORD` signs in when no user is named.
const DEFAULT_ADMIN_USER: &str = "admin";

/// The environment variables that configure the admin API.
pub const ADMIN_ADDR_ENV: &str = "PINGAP_ADMIN_ADDR";
const ADMIN_USER_ENV: &str = "PINGAP_ADMIN_USER";
const ADMIN_PASSWORD_ENV: &str = "PINGAP_ADMIN_PASSWORD";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl Compiler<'_> {
    pub(super) fn admin_plan(&mut self) -> Option<AdminPlan> {
        let env_addr = env(ADMIN_ADDR_ENV);
        let enabled_by_env = env_addr.is_some() || env(ADMIN_PASSWORD_ENV).is_some();
        let spec = match &self.config.admin {
            Some(admin) if admin.enabled || enabled_by_env => admin.clone(),
            None if enabled_by_env => Admin::default(),
            _ => return None,
        };
        let addr_text = env_addr
            .or_else(|| spec.addr.clone())
            .unwrap_or_else(|| DEFAULT_ADMIN_ADDR.to_string());
        let addr = match crate::config::validate::parse_listen_addr(&addr_text) {
            Ok(addr) => addr,
            Err(e) => {
                self.error("admin", "addr", e);
                return None;
            }
        };
        let users = self.admin_users(&spec);
        let tokens = self.admin_tokens(&spec);
        if users.is_empty() && tokens.is_empty() && !addr.ip().is_loopback() {
            self.error(
                "admin",
                "users",
                format!(
                    "the admin API listens on {addr}, which is not a loopback address, and has no users: add users (pingap hash-password) or listen on 127.0.0.1"
                ),
            );
        }
        let tls = match (&spec.tls_cert, &spec.tls_key) {
            (Some(cert), Some(key)) => self.admin_certificate(cert, key),
            (None, None) => None,
            (Some(_), None) => {
                self.error("admin", "tls_key", "tls_cert needs tls_key");
                None
            }
            (None, Some(_)) => {
                self.error("admin", "tls_cert", "tls_key needs tls_cert");
                None
            }
        };
        let lockout_threshold = match spec.lockout_threshold {
            Some(0) => {
                self.error("admin", "lockout_threshold", "must be at least 1");
                DEFAULT_LOCKOUT_THRESHOLD
            }
            Some(n) => n,
            None => DEFAULT_LOCKOUT_THRESHOLD,
        };
        let duration = |value: Option<crate::config::values::ConfigDuration>, default| {
            value.map_or(default, |d| d.get())
        };
        let session_idle_timeout =
            duration(spec.session_idle_timeout, DEFAULT_SESSION_IDLE_TIMEOUT);
        let session_lifetime = duration(spec.session_lifetime, DEFAULT_SESSION_LIFETIME);
        for (key, value) in [
            ("session_idle_timeout", session_idle_timeout),
            ("session_lifetime", session_lifetime),
        ] {
            if value < Duration::from_secs(10) {
                self.error("admin", key, "must be at least 10s");
            }
        }
        Some(AdminPlan {
            addr,
            tls,
            users,
            tokens,
            session_idle_timeout,
            session_lifetime,
            lockout_threshold,
            lockout_duration: duration(spec.lockout_duration, DEFAULT_LOCKOUT_DURATION),
        })
    }

    /// The admin listener's own certificate (it does not serve from the certificate store).
    fn admin_certificate(
        &mut self,
        cert: &str,
        key: &str,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        let resolve = |path: &std::path::Path| self.resolve("admin", path);
        let pems = (read_pem(cert, resolve), read_pem(key, resolve));
        let (cert_pem, key_pem) = match pems {
            (Ok(cert_pem), Ok(key_pem)) => (cert_pem, key_pem),
            (cert_pem, key_pem) => {
                if let Err(e) = cert_pem {
                    self.error("admin", "tls_cert", e);
                }
                if let Err(e) = key_pem {
                    self.error("admin", "tls_key", e);
                }
                return None;
            }
        };
        match certified_key(&cert_pem, &key_pem) {
            Ok(certified) => Some(std::sync::Arc::new(certified)),
            Err(e) => {
                self.error("admin", "tls_cert", e);
                None
            }
        }
    }

    fn admin_users(&mut self, spec: &Admin) -> Vec<AdminUser> {
        let mut users = Vec::new();
        for (index, entry) in spec.users.iter().enumerate() {
            let key = format!("users[{index}]");
            let Some((name, hash)) = entry.split_once(':') else {
                self.error("admin", &key, "expected \"name:$argon2id$…\"");
                continue;
            };
            match check_name(name).and_then(|()| check_argon2(hash)) {
                Ok(()) => users.push(AdminUser {
                    name: name.to_string(),
                    password: AdminPassword::Argon2(hash.to_string()),
                }),
                Err(e) => self.error("admin", &key, e),
            }
        }
        let env_password = env(ADMIN_PASSWORD_ENV);
        let user = env(ADMIN_USER_ENV)
            .or_else(|| spec.user.clone())
            .or_else(|| {
                env_password
                    .as_ref()
                    .map(|_| DEFAULT_ADMIN_USER.to_string())
            });
        let password = env_password.or_else(|| spec.password.clone());
        match (user, password) {
            (Some(name), Some(password)) => {
                if let Err(e) = check_name(&name) {
                    self.error("admin", "user", e);
                } else if password.starts_with("$argon2") {
                    match check_argon2(&password) {
                        Ok(()) => users.push(AdminUser {
                            name,
                            password: AdminPassword::Argon2(password),
                        }),
                        Err(e) => self.error("admin", "password", e),
                    }
                } else if password.is_empty() {
                    self.error("admin", "password", "must not be empty");
                } else {
                    self.findings.warnings.push(format!(
                        "admin.password of user \"{name}\" is a plain password: store an argon2 hash instead (pingap hash-password)"
                    ));
                    users.push(AdminUser {
                        name,
                        password: AdminPassword::Plain(password),
                    });
                }
            }
            (Some(_), None) => self.error("admin", "password", "user needs a password"),
            (None, Some(_)) => self.error("admin", "user", "password needs a user"),
            (None, None) => {}
        }
        let mut seen = std::collections::HashSet::new();
        for user in &users {
            if !seen.insert(user.name.clone()) {
                self.error(
                    "admin",
                    "users",
                    format!("user \"{}\" is defined twice", user.name),
                );
            }
        }
        users
    }

    fn admin_tokens(&mut self, spec: &Admin) -> Vec<(String, [u8; 32])> {
        let mut tokens = Vec::new();
        for (index, entry) in spec.tokens.iter().enumerate() {
            let key = format!("tokens[{index}]");
            let parsed = entry
                .split_once(':')
                .ok_or_else(|| "expected \"name:<sha256 hex>\" (pingap hash-token)".to_string())
                .and_then(|(name, hex)| {
                    check_name(name)?;
                    Ok((name.to_string(), parse_digest(hex)?))
                });
            match parsed {
                Ok(token) => tokens.push(token),
                Err(e) => self.error("admin", &key, e),
            }
        }
        tokens
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a user name: 1 to 64 letters, digits, '-', '_', '.' or '@'"
        ))
    }
}

/// Checks that `hash` is an argon2 hash in PHC form (the text itself is never echoed).
fn check_argon2(hash: &str) -> Result<(), String> {
    let parsed = argon2::password_hash::phc::PasswordHash::new(hash).map_err(|e| {
        format!("not an argon2 hash in PHC form ({e}); make one with pingap hash-password")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "{} hashes are not accepted; make an argon2 hash with pingap hash-password",
            parsed.algorithm
        ));
    }
    Ok(())
}

fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(
            "expected the token's SHA-256 digest as 64 hex digits (pingap hash-token)".to_string(),
        );
    }
    let mut digest = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
        digest[i] = u8::from_str_radix(text, 16)
            .map_err(|_| "expected the token's SHA-256 digest as 64 hex digits".to_string())?;
    }
    Ok(digest)
}
