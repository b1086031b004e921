//! Compiling certificates: `[certificates.NAME]`, each HTTPS server's own certificate, oldest
//! TLS version and client-certificate policy, into the [`CertificateSet`] a runtime serves.

use std::sync::Arc;

use super::Compiler;
use crate::config::schema::Server as ServerSpec;
use crate::tls::client_auth::{ClientAuthMode, client_auth_policy};
use crate::tls::store::{CompiledCertificate, ServerTls, Table};
use crate::tls::{CertificateSet, CertificateSource, ListenerTls, Loaded, certified_key};

/// A certificate expiring sooner than this is worth a warning when the configuration is checked.
const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 3600;

impl Compiler<'_> {
    /// The PEM of `value` (inline, or a file, which is then watched), or an error at `key`.
    fn tls_pem(
        &mut self,
        table: &str,
        key: &str,
        value: &str,
    ) -> Option<(Vec<u8>, CertificateSource)> {
        let inline = value.trim_start().starts_with("-----BEGIN");
        if !inline {
            let path = self.resolve(table, std::path::Path::new(value));
            if !self.tls_files.contains(&path) {
                self.tls_files.push(path);
            }
        }
        match crate::tls::read_pem(value, |path| self.resolve(table, path)) {
            Ok(pem) => Some((
                pem,
                if inline {
                    CertificateSource::Inline
                } else {
                    CertificateSource::File
                },
            )),
            Err(e) => {
                self.error(table, key, e);
                None
            }
        }
    }

    /// The certificate and key of `table` (`tls_cert`, `tls_key`), read and checked.
    fn load_certificate(
        &mut self,
        table: &str,
        cert: &str,
        key: &str,
    ) -> Option<(Loaded, CertificateSource)> {
        let cert_pem = self.tls_pem(table, "tls_cert", cert);
        let key_pem = self.tls_pem(table, "tls_key", key);
        let ((cert_pem, source), (key_pem, _)) = (cert_pem?, key_pem?);
        let loaded = certified_key(&cert_pem, &key_pem).and_then(Loaded::new);
        match loaded {
            Ok(loaded) => {
                self.warn_expiry(table, &loaded);
                Some((loaded, source))
            }
            Err(e) => {
                self.error(table, "tls_cert", e);
                None
            }
        }
    }

    /// Warns about a certificate that has expired or expires within two weeks.
    fn warn_expiry(&mut self, table: &str, loaded: &Loaded) {
        let now = crate::tls::maintenance::unix_now();
        let not_after = loaded.info.not_after;
        let when = chrono::DateTime::from_timestamp(not_after, 0)
            .map_or_else(|| not_after.to_string(), |t| t.to_rfc3339());
        if not_after <= now {
            self.findings
                .warnings
                .push(format!("{table}: the certificate expired on {when}"));
        } else if not_after - now < EXPIRY_WARNING_SECS {
            self.findings.warnings.push(format!(
                "{table}: the certificate expires in {} days ({when})",
                (not_after - now) / 86_400
            ));
        }
    }

    /// `[certificates.NAME]`, compiled.
    pub(super) fn certificates(&mut self) -> Vec<CompiledCertificate> {
        let mut compiled = Vec::new();
        let mut default: Option<String> = None;
        for (name, spec) in &self.config.certificates {
            let table = format!("certificates.{name}");
            let mut domains = Vec::new();
            for (index, domain) in spec.domains.iter().enumerate() {
                match check_domain(domain) {
                    Ok(domain) => domains.push(domain),
                    Err(e) => self.error(&table, &format!("domains[{index}]"), e),
                }
            }
            let is_default = spec.is_default.unwrap_or(false);
            if is_default {
                match &default {
                    Some(first) => self.error(
                        &table,
                        "is_default",
                        format!("certificates.{first} is the default already"),
                    ),
                    None => default = Some(name.clone()),
                }
            }
            let loaded = match (&spec.tls_cert, &spec.tls_key) {
                (Some(cert), Some(key)) => self.load_certificate(&table, cert, key),
                (Some(_), None) => {
                    self.error(
                        &table,
                        "tls_key",
                        "tls_cert and tls_key must be set together",
                    );
                    None
                }
                (None, Some(_)) => {
                    self.error(
                        &table,
                        "tls_cert",
                        "tls_cert and tls_key must be set together",
                    );
                    None
                }
                (None, None) => {
                    if spec.acme.is_none() {
                        self.error(&table, "tls_cert", "set tls_cert and tls_key, or acme");
                    } else if domains.is_empty() {
                        self.error(
                            &table,
                            "domains",
                            "must be set with acme (there is no certificate to read them from)",
                        );
                    }
                    None
                }
            };
            if let Some((loaded, _)) = &loaded {
                for domain in &domains {
                    if !loaded.info.covers(domain) {
                        self.findings.warnings.push(format!(
                            "{table}: domain {domain} is not among the certificate's names ({}): \
                             clients will not accept it",
                            loaded.info.dns_names.join(", ")
                        ));
                    }
                }
                if domains.is_empty() && loaded.info.dns_names.is_empty() && !is_default {
                    self.error(
                        &table,
                        "domains",
                        "the certificate has no DNS names: set domains or is_default",
                    );
                }
            }
            let source = match (&loaded, &spec.acme) {
                (Some((_, source)), _) => *source,
                (None, _) => CertificateSource::Acme,
            };
            compiled.push(CompiledCertificate {
                name: name.clone(),
                domains,
                is_default,
                acme: spec.acme.clone(),
                source,
                loaded: loaded.map(|(loaded, _)| loaded),
            });
        }
        compiled
    }

    /// The TLS side of server `name`: whether it serves HTTPS, and if so its resolver. Its own
    /// certificate and policies are added to the set being compiled.
    pub(super) fn server_tls(
        &mut self,
        name: &str,
        table: &str,
        spec: &ServerSpec,
        tls13_only: bool,
    ) -> Option<Arc<ListenerTls>> {
        let has_own = spec.tls_cert.is_some() || spec.tls_key.is_some();
        if spec.tls == Some(false) && has_own {
            self.error(table, "tls", "is false but tls_cert is set");
        }
        let is_tls = spec.tls.unwrap_or(has_own);
        if !is_tls {
            for (key, set) in [
                ("tls_min_version", spec.tls_min_version.is_some()),
                ("client_ca", spec.client_ca.is_some()),
                ("client_auth", spec.client_auth.is_some()),
            ] {
                if set {
                    self.error(
                        table,
                        key,
                        "is for TLS listeners (set tls = true or tls_cert)",
                    );
                }
            }
            return None;
        }
        // Validation reports a tls_cert without tls_key and the other way round.
        let own = match (&spec.tls_cert, &spec.tls_key) {
            (Some(cert), Some(key)) => self.load_certificate(table, cert, key),
            _ => None,
        };
        let mode = match spec.client_auth.as_deref().map(ClientAuthMode::parse) {
            Some(Ok(mode)) => mode,
            Some(Err(e)) => {
                self.error(table, "client_auth", e);
                ClientAuthMode::default()
            }
            None => ClientAuthMode::default(),
        };
        let client_auth = match &spec.client_ca {
            Some(ca) => self.tls_pem(table, "client_ca", ca).and_then(|(pem, _)| {
                match client_auth_policy(&pem, mode) {
                    Ok(policy) => Some(policy),
                    Err(e) => {
                        self.error(table, "client_ca", e);
                        None
                    }
                }
            }),
            None => {
                if spec.client_auth.is_some() {
                    self.error(table, "client_auth", "needs client_ca");
                }
                None
            }
        };
        self.tls_servers.push(ServerTls {
            server: name.to_string(),
            own,
            tls13_only,
            client_auth,
        });
        Some(Arc::new(ListenerTls::new(name, self.store.clone())))
    }

    /// The set of `certificates` and the HTTPS servers compiled so far; checks that every
    /// HTTPS server has something to serve, and warns about domains claimed twice.
    pub(super) fn certificate_set(
        &mut self,
        certificates: Vec<CompiledCertificate>,
    ) -> Arc<CertificateSet> {
        let set = CertificateSet {
            certificates,
            servers: std::mem::take(&mut self.tls_servers),
            files: std::mem::take(&mut self.tls_files),
        };
        if set.certificates.is_empty() {
            for server in set.servers.iter().filter(|s| s.own.is_none()) {
                let spec = &self.config.servers[server.server.as_str()];
                if spec.tls_cert.is_none() {
                    self.error(
                        &format!("servers.{}", server.server),
                        "tls",
                        "there is no certificate to serve: add [certificates.NAME] or set tls_cert",
                    );
                }
            }
        }
        let (_, notes) = Table::build(&set, &Default::default(), &Default::default());
        self.findings.warnings.extend(notes);
        Arc::new(set)
    }
}

/// Checks a domain of `domains`: a host name, or `*.` and a host name; returns it lower-cased.
fn check_domain(domain: &str) -> Result<String, String> {
    let lower = domain.trim().to_ascii_lowercase();
    let host = lower.strip_prefix("*.").unwrap_or(&lower);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(lower)
    } else {
        Err(format!(
            "\"{domain}\" is not a domain (a host name, or *. and a host name)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_domain;

    #[test]
    fn domains_are_host_names_or_one_leading_wildcard() {
        assert_eq!(check_domain("API.Example.com").unwrap(), "api.example.com");
        assert_eq!(check_domain("*.example.com").unwrap(), "*.example.com");
        for bad in [
            "*",
            "*example.com",
            "a.*.example.com",
            "exa mple.com",
            "",
            "-a.com",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }
}
