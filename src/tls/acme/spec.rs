//! The ACME settings of a `[certificates.NAME]` table, checked: which directory, which domains,
//! which challenge, which roots to trust for the directory, how long to wait after a failure.
//!
//! [`compile`] turns the configuration into an [`AcmePlan`]; every problem is reported through
//! the caller's error function with the table and key it belongs to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::config::schema::Config;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// The wait after a first failed order, when `acme_retry_delay` is not set.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(60);
/// The longest wait between two orders after failures (and the most `acme_retry_delay` may be).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How the directory checks that a domain is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// `http-01`: a token answered over plain HTTP at `/.well-known/acme-challenge/TOKEN`.
    Http01,
    /// `tls-alpn-01`: a certificate answered to TLS handshakes offering ALPN `acme-tls/1`.
    TlsAlpn01,
}

impl ChallengeKind {
    /// Parses `"http-01"` or `"tls-alpn-01"`.
    pub fn parse(text: &str) -> Result<ChallengeKind, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            other => Err(format!(
                "\"{other}\" is not a challenge pingap answers: write \"http-01\" or \
                 \"tls-alpn-01\" (dns-01 is not offered)"
            )),
        }
    }

    /// The name ACME gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// One certificate to obtain and keep renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeSpec {
    /// The name of its `[certificates.NAME]` table.
    pub name: String,
    /// The names it is for, lowercase, in the order written.
    pub domains: Vec<String>,
    /// The directory URL.
    pub directory: String,
    /// The account's contact address.
    pub email: Option<String>,
    /// Roots trusted for the directory (`acme_ca_file`); `None`: the system's and Mozilla's.
    pub ca_roots: Option<Arc<[CertificateDer<'static>]>>,
    /// The challenge answered.
    pub challenge: ChallengeKind,
    /// The wait after a first failure.
    pub retry_delay: Duration,
}

impl AcmeSpec {
    /// A spec for `a.example.com` from `https://ca.example/dir`, for tests.
    #[cfg(test)]
    pub(crate) fn example(challenge: ChallengeKind) -> AcmeSpec {
        AcmeSpec {
            name: "site".into(),
            domains: vec!["a.example.com".into()],
            directory: "https://ca.example/dir".into(),
            email: None,
            ca_roots: None,
            challenge,
            retry_delay: Duration::from_secs(60),
        }
    }

    /// Whether `domains` (of an issued certificate) are the domains asked for, in any order.
    pub fn same_domains(&self, domains: &[String]) -> bool {
        let mut wanted: Vec<&str> = self.domains.iter().map(String::as_str).collect();
        let mut have: Vec<&str> = domains.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        have.sort_unstable();
        have.dedup();
        wanted == have
    }
}

/// Every ACME certificate of a configuration and where their material is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcmePlan {
    /// `basic.acme_dir`, resolved against the file that set it.
    pub dir: Option<PathBuf>,
    /// The certificates, in configuration order.
    pub certificates: Vec<Arc<AcmeSpec>>,
}

/// The directory URL `acme` names: `letsencrypt`/`lets_encrypt`, `letsencrypt-staging`/
/// `lets_encrypt_staging`, or an `https://` URL.
pub fn directory_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    match value.to_ascii_lowercase().replace('_', "-").as_str() {
        "letsencrypt" | "lets-encrypt" => return Ok(LETS_ENCRYPT.to_string()),
        "letsencrypt-staging" | "lets-encrypt-staging" => {
            return Ok(LETS_ENCRYPT_STAGING.to_string());
        }
        _ => {}
    }
    let valid_url = value
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|authority| !authority.is_empty())
        && value.parse::<http::Uri>().is_ok();
    if valid_url {
        Ok(value.to_string())
    } else {
        Err(format!(
            "\"{value}\" is not an ACME directory: write \"letsencrypt\", \
             \"letsencrypt-staging\" or the directory's https:// URL"
        ))
    }
}

/// Checks a domain to order, beyond the syntax every certificate domain is checked for (in
/// `runtime::compile`): not a wildcard, which only the dns-01 challenge can prove, and not an IP
/// address. Returns it in lowercase, without a trailing dot.
pub fn check_domain(domain: &str) -> Result<String, String> {
    let lower = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if lower.starts_with("*.") {
        return Err(format!(
            "\"{domain}\" is a wildcard: only the dns-01 challenge can prove one, which pingap \
             does not offer"
        ));
    }
    if lower.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "\"{domain}\" is an IP address: order certificates for domain names"
        ));
    }
    Ok(lower)
}

/// Reads the PEM certificates of `acme_ca_file` (inline PEM or a file `resolve` finds).
pub fn read_roots(
    value: &str,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<Arc<[CertificateDer<'static>]>, String> {
    let pem = crate::tls::read_pem(value, resolve)?;
    Ok(crate::tls::certificates(&pem)?.into())
}

/// What a configuration's servers can answer challenges on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners {
    /// Some server speaks plain HTTP (http-01 can be answered).
    pub plain: bool,
    /// Some server speaks TLS (tls-alpn-01 can be answered).
    pub tls: bool,
}

/// Compiles the ACME settings of `config`: one [`AcmeSpec`] per `[certificates.NAME]` with
/// `acme`. `resolve` turns a path written in a table into a full path; `error` is told each
/// problem as (table, key, message).
pub fn compile(
    config: &Config,
    listeners: Listeners,
    resolve: &dyn Fn(&str, &Path) -> PathBuf,
    error: &mut dyn FnMut(&str, &str, String),
) -> AcmePlan {
    let mut certificates = Vec::new();
    for (name, spec) in &config.certificates {
        let table = format!("certificates.{name}");
        let Some(acme) = &spec.acme else {
            for (key, set) in [
                ("acme_email", spec.acme_email.is_some()),
                ("acme_ca_file", spec.acme_ca_file.is_some()),
                ("acme_challenge", spec.acme_challenge.is_some()),
                ("acme_retry_delay", spec.acme_retry_delay.is_some()),
            ] {
                if set {
                    error(&table, key, "has no effect without acme".to_string());
                }
            }
            continue;
        };
        let mut ok = true;
        let mut fail = |key: &str, message: String| {
            error(&table, key, message);
            ok = false;
        };
        let directory = directory_url(acme).unwrap_or_else(|e| {
            fail("acme", e);
            String::new()
        });
        for key in ["tls_cert", "tls_key"] {
            let set = if key == "tls_cert" {
                spec.tls_cert.is_some()
            } else {
                spec.tls_key.is_some()
            };
            if set {
                fail(
                    key,
                    "a certificate comes from tls_cert and tls_key or from acme, not both"
                        .to_string(),
                );
            }
        }
        let mut domains: Vec<String> = Vec::with_capacity(spec.domains.len());
        for (index, domain) in spec.domains.iter().enumerate() {
            match check_domain(domain) {
                Ok(domain) if !domains.contains(&domain) => domains.push(domain),
                Ok(_) => {}
                Err(e) => fail(&format!("domains[{index}]"), e),
            }
        }
        let email = spec.acme_email.as_deref().map(str::trim);
        if let Some(email) = email {
            let (user, host) = email.split_once('@').unwrap_or_default();
            if user.is_empty()
                || host.is_empty()
                || host.contains('@')
                || email.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                fail(
                    "acme_email",
                    format!("\"{email}\" is not an e-mail address"),
                );
            }
        }
        let ca_roots = match &spec.acme_ca_file {
            Some(value) => match read_roots(value, |path| resolve(&table, path)) {
                Ok(roots) => Some(roots),
                Err(e) => {
                    fail("acme_ca_file", e);
                    None
                }
            },
            None => None,
        };
        let challenge = match spec.acme_challenge.as_deref().map(ChallengeKind::parse) {
            Some(Ok(kind)) => kind,
            Some(Err(e)) => {
                fail("acme_challenge", e);
                ChallengeKind::Http01
            }
            None if listeners.plain || !listeners.tls => ChallengeKind::Http01,
            None => ChallengeKind::TlsAlpn01,
        };
        match challenge {
            ChallengeKind::Http01 if !listeners.plain => fail(
                "acme_challenge",
                "http-01 is answered on a plain HTTP server (port 80 for a public CA), and \
                 there is none"
                    .to_string(),
            ),
            ChallengeKind::TlsAlpn01 if !listeners.tls => fail(
                "acme_challenge",
                "tls-alpn-01 is answered on a TLS server (port 443 for a public CA), and there \
                 is none"
                    .to_string(),
            ),
            _ => {}
        }
        let retry_delay = match spec.acme_retry_delay.map(|d| d.get()) {
            Some(delay) if delay < Duration::from_secs(1) || delay > MAX_RETRY_DELAY => {
                fail("acme_retry_delay", "must be between 1s and 1d".to_string());
                DEFAULT_RETRY_DELAY
            }
            Some(delay) => delay,
            None => DEFAULT_RETRY_DELAY,
        };
        // No domains is reported with the certificates themselves (runtime::compile).
        if ok && !domains.is_empty() {
            certificates.push(Arc::new(AcmeSpec {
                name: name.clone(),
                domains,
                directory,
                email: email.map(str::to_string),
                ca_roots,
                challenge,
                retry_delay,
            }));
        }
    }
    AcmePlan {
        dir: config
            .basic
            .acme_dir
            .as_ref()
            .map(|dir| resolve("basic", dir)),
        certificates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_text;

    fn compile_text(text: &str, listeners: Listeners) -> (AcmePlan, Vec<String>) {
        let loaded = load_text(Path::new("/etc/p.toml"), text, &|_| None).unwrap();
        let mut errors = Vec::new();
        let plan = compile(
            &loaded.config,
            listeners,
            &|_, path| Path::new("/etc").join(path),
            &mut |table, key, message| errors.push(format!("{table}.{key}: {message}")),
        );
        (plan, errors)
    }

    const BOTH: Listeners = Listeners {
        plain: true,
        tls: true,
    };

    #[test]
    fn directories_by_name_or_url() {
        assert_eq!(directory_url("letsencrypt").unwrap(), LETS_ENCRYPT);
        assert_eq!(directory_url("lets_encrypt").unwrap(), LETS_ENCRYPT);
        assert_eq!(
            directory_url("letsencrypt-staging").unwrap(),
            LETS_ENCRYPT_STAGING
        );
        assert_eq!(
            directory_url("https://127.0.0.1:14000/dir").unwrap(),
            "https://127.0.0.1:14000/dir"
        );
        for bad in ["http://ca.example/dir", "zerossl", "https://", ""] {
            assert!(
                directory_url(bad)
                    .unwrap_err()
                    .contains("is not an ACME directory"),
                "{bad}"
            );
        }
    }

    #[test]
    fn domains_are_names_without_wildcards() {
        assert_eq!(check_domain("Example.COM.").unwrap(), "example.com");
        assert!(
            check_domain("*.example.com")
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(
            check_domain("127.0.0.1")
                .unwrap_err()
                .contains("IP address")
        );
    }

    #[test]
    fn a_complete_acme_table_compiles() {
        let (plan, errors) = compile_text(
            "[basic]\nacme_dir = 'acme'\n[certificates.site]\ndomains = ['A.example.com', \
             'b.example.com', 'a.example.com']\nacme = 'letsencrypt-staging'\n\
             acme_email = 'ops@example.com'\nacme_challenge = 'tls-alpn-01'\n\
             acme_retry_delay = '10s'\n[certificates.files]\ntls_cert = 'c.pem'\n\
             tls_key = 'k.pem'\n",
            BOTH,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(plan.dir.as_deref(), Some(Path::new("/etc/acme")));
        assert_eq!(plan.certificates.len(), 1);
        let spec = &plan.certificates[0];
        assert_eq!(spec.domains, ["a.example.com", "b.example.com"]);
        assert_eq!(spec.directory, LETS_ENCRYPT_STAGING);
        assert_eq!(spec.email.as_deref(), Some("ops@example.com"));
        assert_eq!(spec.challenge, ChallengeKind::TlsAlpn01);
        assert_eq!(spec.retry_delay, Duration::from_secs(10));
        assert!(spec.same_domains(&["b.example.com".into(), "a.example.com".into()]));
        assert!(!spec.same_domains(&["a.example.com".into()]));
    }

    #[test]
    fn the_challenge_follows_the_listeners() {
        let text = "[certificates.site]\ndomains = ['a.example.com']\nacme = 'letsencrypt'\n";
        let (plan, _) = compile_text(text, BOTH);
        assert_eq!(plan.certificates[0].challenge, ChallengeKind::Http01);
        let tls_only = Listeners {
            plain: false,
            tls: true,
        };
        let (plan, _) = compile_text(text, tls_only);
        assert_eq!(plan.certificates[0].challenge, ChallengeKind::TlsAlpn01);
        let (_, errors) = compile_text(&format!("{text}acme_challenge = 'http-01'\n"), tls_only);
        assert!(
            errors[0].contains("acme_challenge: http-01 is answered on a plain HTTP server"),
            "{errors:?}"
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let (plan, errors) = compile_text(
            "[certificates.a]\nacme = 'acme.example'\ntls_cert = 'c.pem'\n\
             acme_email = 'nobody'\nacme_ca_file = 'missing.pem'\nacme_challenge = 'dns-01'\n\
             acme_retry_delay = '2d'\n[certificates.b]\nacme_email = 'ops@example.com'\n\
             domains = ['b.example.com']\n[certificates.c]\nacme = 'letsencrypt'\n\
             domains = ['*.example.com']\n",
            BOTH,
        );
        assert!(plan.certificates.is_empty());
        let expected = [
            "certificates.a.acme: \"acme.example\" is not an ACME directory",
            "certificates.a.tls_cert: a certificate comes from tls_cert and tls_key or from acme",
            "certificates.a.acme_email: \"nobody\" is not an e-mail address",
            "certificates.a.acme_ca_file: cannot read /etc/missing.pem",
            "certificates.a.acme_challenge: \"dns-01\" is not a challenge pingap answers",
            "certificates.a.acme_retry_delay: must be between 1s and 1d",
            "certificates.b.acme_email: has no effect without acme",
            "certificates.c.domains[0]: \"*.example.com\" is a wildcard",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(
                error.starts_with(expected),
                "{error}\n  expected {expected}"
            );
        }
    }
}
