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
