//! What the admin API shows of an ACME certificate: its directory and challenge, the last order
//! and its outcome, when it is renewed next, and the last error.

use std::time::SystemTime;

use serde::Serialize;

use super::renewer::{Checked, OrderOutcome};
use super::spec::AcmeSpec;
use super::storage::{from_unix, rfc3339};

/// The ACME state of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AcmeStatus {
    /// The directory URL.
    pub directory: String,
    /// `http-01` or `tls-alpn-01`.
    pub challenge: String,
    /// The domains ordered.
    pub domains: Vec<String>,
    /// The outcome of the last order: `issued`, `renewed` or `failed` (none before the first).
    pub last_order: Option<String>,
    /// When the last order ended (RFC 3339).
    pub last_order_at: Option<String>,
    /// When the certificate served expires (RFC 3339).
    pub valid_until: Option<String>,
    /// When the next order starts: at a third of the lifetime left, or after the back-off of a
    /// failure (RFC 3339).
    pub next_renewal_at: Option<String>,
    /// Failed orders in a row.
    pub failures: u32,
    /// The error of the last failed order, while orders fail.
    pub last_error: Option<String>,
}

impl AcmeStatus {
    /// The state after `checked`; `last_order` is the last order this process saw end, with its
    /// time (the stored record tells the rest after a restart).
    pub fn new(
        spec: &AcmeSpec,
        checked: &Checked,
        last_order: Option<&(OrderOutcome, SystemTime)>,
    ) -> AcmeStatus {
        let issued_at = checked.certificate.as_ref().map(|c| from_unix(c.issued_at));
        let failed_at = checked.failure.as_ref().map(|f| f.at());
        let (outcome, at) = match (last_order, issued_at, failed_at) {
            (Some((outcome, at)), _, _) => (Some(outcome.label()), Some(*at)),
            (None, Some(issued), Some(failed)) if failed >= issued => {
                (Some("failed"), Some(failed))
            }
            (None, Some(issued), _) => (Some("issued"), Some(issued)),
            (None, None, Some(failed)) => (Some("failed"), Some(failed)),
            (None, None, None) => (None, None),
        };
        AcmeStatus {
            directory: spec.directory.clone(),
            challenge: spec.challenge.as_str().to_string(),
            domains: spec.domains.clone(),
            last_order: outcome.map(str::to_string),
            last_order_at: at.map(rfc3339),
            valid_until: checked.certificate.as_ref().map(|c| rfc3339(c.not_after())),
            next_renewal_at: checked.due.map(rfc3339),
            failures: checked.failure.as_ref().map_or(0, |f| f.count),
            last_error: checked.failure.as_ref().map(|f| f.error.clone()),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::tls::acme::spec::ChallengeKind;
    use crate::tls::acme::storage::{Failure, Issued};

    fn spec() -> AcmeSpec {
        AcmeSpec::example(ChallengeKind::TlsAlpn01)
    }

    fn checked(issued_at: Option<i64>, failed_at: Option<i64>) -> Checked {
        Checked {
            certificate: issued_at.map(|at| Issued {
                directory: "https://ca.example/dir".into(),
                domains: vec!["a.example.com".into()],
                chain_pem: String::new(),
                key_pem: String::new(),
                not_before: at,
                not_after: at + 90 * 86_400,
                issued_at: at,
            }),
            ordered: None,
            due: Some(from_unix(1_000_000)),
            failure: failed_at.map(|at| Failure {
                at,
                count: 2,
                error: "validation failed".into(),
                directory: "https://ca.example/dir".into(),
                domains: vec!["a.example.com".into()],
            }),
            next_check: from_unix(1_000_000),
        }
    }

    #[test]
    fn the_last_order_is_the_later_of_issue_and_failure() {
        let status = AcmeStatus::new(&spec(), &checked(Some(0), Some(60)), None);
        assert_eq!(status.last_order.as_deref(), Some("failed"));
        assert_eq!(
            status.last_order_at.as_deref(),
            Some("1970-01-01T00:01:00Z")
        );
        assert_eq!(status.valid_until.as_deref(), Some("1970-04-01T00:00:00Z"));
        assert_eq!(
            status.next_renewal_at.as_deref(),
            Some("1970-01-12T13:46:40Z")
        );
        assert_eq!(status.failures, 2);
        assert_eq!(status.last_error.as_deref(), Some("validation failed"));
        assert_eq!(status.challenge, "tls-alpn-01");

        let status = AcmeStatus::new(&spec(), &checked(Some(120), None), None);
        assert_eq!(status.last_order.as_deref(), Some("issued"));
        assert_eq!((status.failures, status.last_error), (0, None));

        let seen = (OrderOutcome::Renewed, from_unix(300));
        let status = AcmeStatus::new(&spec(), &checked(Some(120), None), Some(&seen));
        assert_eq!(status.last_order.as_deref(), Some("renewed"));
        assert_eq!(
            status.last_order_at.as_deref(),
            Some("1970-01-01T00:05:00Z")
        );

        let status = AcmeStatus::new(&spec(), &checked(None, None), None);
        assert_eq!((status.last_order, status.valid_until), (None, None));
    }
}
