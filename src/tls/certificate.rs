//! What pingap reads from a certificate (with x509-parser): the names it is valid for, its
//! validity period, subject and issuer, and the OCSP responder its issuer names.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// The fields of a leaf certificate pingap uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject, as an RFC 4514 string (`CN=api.example.com,O=Example`).
    pub subject: String,
    /// The issuer, likewise.
    pub issuer: String,
    /// The DNS names of its subject alternative names, lower-cased (`*.example.com` included).
    pub dns_names: Vec<String>,
    /// Start of validity, in Unix seconds.
    pub not_before: i64,
    /// End of validity, in Unix seconds.
    pub not_after: i64,
    /// The serial number, in hex.
    pub serial: String,
    /// The OCSP responder of its issuer (the `authorityInfoAccess` extension), when it names
    /// one over HTTP.
    pub ocsp_url: Option<String>,
    /// SHA-256 of the certificate's DER: what identifies it across reloads.
    pub fingerprint: [u8; 32],
}

impl CertificateInfo {
    /// Reads a DER certificate.
    pub fn read(der: &[u8]) -> Result<CertificateInfo, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("cannot parse the certificate: {e}"))?;
        let mut dns_names = Vec::new();
        let mut ocsp_url = None;
        for extension in cert.extensions() {
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    dns_names.extend(san.general_names.iter().filter_map(|name| match name {
                        GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                        _ => None,
                    }));
                }
                ParsedExtension::AuthorityInfoAccess(access) => {
                    ocsp_url = access
                        .accessdescs
                        .iter()
                        .filter(|desc| desc.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP)
                        .find_map(|desc| match &desc.access_location {
                            GeneralName::URI(uri) if uri.starts_with("http://") => {
                                Some(uri.to_string())
                            }
                            _ => None,
                        });
                }
                _ => {}
            }
        }
        let validity = cert.validity();
        Ok(CertificateInfo {
            subject: distinguished_name(cert.subject()),
            issuer: distinguished_name(cert.issuer()),
            dns_names,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            serial: cert.raw_serial_as_string().replace(':', ""),
            ocsp_url,
            fingerprint: Sha256::digest(der).into(),
        })
    }

    /// Whether `domain` (exact, or `*.parent`) is one of its names, or covered by one of its
    /// wildcard names.
    pub fn covers(&self, domain: &str) -> bool {
        self.dns_names.iter().any(|name| {
            name == domain
                || name.strip_prefix("*.").is_some_and(|parent| {
                    domain
                        .split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == parent)
                })
        })
    }
}

/// A distinguished name as RFC 4514 writes it (the form of nginx's `$ssl_client_s_dn`): the
/// relative names last to first, separated by commas, each `SHORTNAME=value` with the special
/// characters escaped.
pub fn distinguished_name(name: &X509Name<'_>) -> String {
    let registry = oid_registry();
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for rdn in rdns.into_iter().rev() {
        if !out.is_empty() {
            out.push(',');
        }
        for (index, attribute) in rdn.iter().enumerate() {
            if index > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type();
            match oid2abbrev(oid, registry) {
                Ok(short) => out.push_str(short),
                Err(_) => out.push_str(&oid.to_id_string()),
            }
            out.push('=');
            match attribute.as_str() {
                Ok(value) => escape_dn_value(value, &mut out),
                Err(_) => {
                    // Not a string type: RFC 4514 writes the DER as #hex.
                    out.push('#');
                    for byte in attribute.attr_value().as_bytes() {
                        out.push_str(&format!("{byte:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// Appends `value` with the characters RFC 4514 escapes escaped.
fn escape_dn_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && (c == '#' || c == ' '))
            || (index == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertificateInfo {
        CertificateInfo {
            subject: String::new(),
            issuer: String::new(),
            dns_names: names.iter().map(|n| n.to_string()).collect(),
            not_before: 0,
            not_after: 0,
            serial: String::new(),
            ocsp_url: None,
            fingerprint: [0; 32],
        }
    }

    #[test]
    fn covers_exact_names_and_one_label_under_a_wildcard() {
        let cert = info(&["api.example.com", "*.example.net"]);
        assert!(cert.covers("api.example.com"));
        assert!(!cert.covers("www.example.com"));
        assert!(cert.covers("www.example.net"));
        assert!(cert.covers("*.example.net"));
        assert!(!cert.covers("a.b.example.net"));
        assert!(!cert.covers("example.net"));
    }

    #[test]
    fn escapes_special_characters() {
        let mut out = String::new();
        escape_dn_value("#Acme, Inc. ", &mut out);
        assert_eq!(out, "\\#Acme\\, Inc.\\ ");
    }
}
