//! When to order: the rules, free of I/O so they can be tested on their own.
//!
//! * A certificate is renewed when a third of its lifetime remains (30 days of Let's Encrypt's
//!   90, 2 days of a 6-day certificate).
//! * One is ordered at once when there is none yet, or when the stored one was issued for other
//!   domains or by another directory (the configuration changed).
//! * After a failure the next order waits `acme_retry_delay`, doubled with every failure in a
//!   row, up to a day; a certificate that expired meanwhile changes nothing, so there is never a
//!   loop of orders. A change of the domains or the directory starts afresh, since the failure
//!   was about other settings.

use std::time::{Duration, SystemTime};

use super::spec::{AcmeSpec, MAX_RETRY_DELAY};
use super::storage::CertificateRecord;

/// What to do about one certificate now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Order now, for this reason.
    Order(String),
    /// Nothing to do before this time.
    WaitUntil(SystemTime),
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal: when a third
/// of its lifetime remains.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_after - lifetime / 3
}

/// The wait after `failures` failures in a row: `first`, doubled per further failure, at most a
/// day.
pub fn retry_delay(first: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

/// What to do about `spec`, whose stored record is `record`, at `now`.
pub fn next_step(spec: &AcmeSpec, record: Option<&CertificateRecord>, now: SystemTime) -> Step {
    if let Some(failure) = record.and_then(|r| r.failure.as_ref())
        && failure.directory == spec.directory
        && spec.same_domains(&failure.domains)
    {
        let retry_at = failure.at() + retry_delay(spec.retry_delay, failure.count);
        if retry_at > now {
            return Step::WaitUntil(retry_at);
        }
    }
    let Some(issued) = record.and_then(|r| r.issued.as_ref()) else {
        return Step::Order("no certificate has been issued yet".to_string());
    };
    if issued.directory != spec.directory {
        return Step::Order(format!(
            "the stored certificate is from {}, not {}",
            issued.directory, spec.directory
        ));
    }
    if !spec.same_domains(&issued.domains) {
        return Step::Order(format!(
            "the stored certificate is for {}, not {}",
            issued.domains.join(", "),
            spec.domains.join(", ")
        ));
    }
    let due = renewal_time(issued.not_before(), issued.not_after());
    if due <= now {
        Step::Order(format!(
            "a third of its lifetime remains (it expires at {})",
            super::storage::rfc3339(issued.not_after())
        ))
    } else {
        Step::WaitUntil(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::acme::spec::ChallengeKind;
    use crate::tls::acme::storage::{Failure, Issued};

    const DAY: Duration = Duration::from_secs(86_400);

    fn spec() -> AcmeSpec {
        AcmeSpec::example(ChallengeKind::Http01)
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn issued(not_before: SystemTime, lifetime: Duration) -> Issued {
        Issued {
            directory: "https://ca.example/dir".into(),
            domains: vec!["a.example.com".into()],
            chain_pem: String::new(),
            key_pem: String::new(),
            not_before: unix(not_before),
            not_after: unix(not_before + lifetime),
            issued_at: unix(not_before),
        }
    }

    fn unix(time: SystemTime) -> i64 {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn renewal_at_a_third_of_the_lifetime() {
        assert_eq!(renewal_time(at(0), at(90 * 86_400)), at(60 * 86_400));
        assert_eq!(renewal_time(at(300), at(330)), at(320));
        // A certificate whose dates are reversed is due at once.
        assert_eq!(renewal_time(at(330), at(300)), at(300));
    }

    #[test]
    fn the_backoff_doubles_up_to_a_day() {
        let first = Duration::from_secs(60);
        assert_eq!(retry_delay(first, 1), first);
        assert_eq!(retry_delay(first, 2), first * 2);
        assert_eq!(retry_delay(first, 5), first * 16);
        assert_eq!(retry_delay(first, 12), DAY);
        assert_eq!(retry_delay(first, u32::MAX), DAY);
    }

    #[test]
    fn first_order_renewal_and_changed_settings() {
        let spec = spec();
        assert!(matches!(next_step(&spec, None, at(0)), Step::Order(_)));
        let record = CertificateRecord {
            issued: Some(issued(at(0), 90 * DAY)),
            failure: None,
        };
        assert_eq!(
            next_step(&spec, Some(&record), at(86_400)),
            Step::WaitUntil(at(60 * 86_400))
        );
        let Step::Order(why) = next_step(&spec, Some(&record), at(60 * 86_400)) else {
            panic!("due");
        };
        assert!(why.contains("a third of its lifetime remains"), "{why}");
        let mut other = spec.clone();
        other.domains.push("b.example.com".into());
        let Step::Order(why) = next_step(&other, Some(&record), at(86_400)) else {
            panic!("domains changed");
        };
        assert!(why.contains("is for a.example.com, not a.example.com, b.example.com"));
        other = spec.clone();
        other.directory = "https://other.example/dir".into();
        assert!(matches!(
            next_step(&other, Some(&record), at(86_400)),
            Step::Order(_)
        ));
    }

    #[test]
    fn failures_back_off_even_after_expiry_and_never_loop() {
        let spec = spec();
        let expired = issued(at(0), 90 * DAY);
        let failed_at = 100 * 86_400;
        let record = |count| CertificateRecord {
            issued: Some(expired.clone()),
            failure: Some(Failure {
                at: failed_at,
                count,
                error: "connection refused".into(),
                directory: spec.directory.clone(),
                domains: spec.domains.clone(),
            }),
        };
        let now = at(failed_at as u64 + 30);
        assert_eq!(
            next_step(&spec, Some(&record(1)), now),
            Step::WaitUntil(at(failed_at as u64 + 60))
        );
        assert_eq!(
            next_step(&spec, Some(&record(3)), now),
            Step::WaitUntil(at(failed_at as u64 + 240))
        );
        assert!(matches!(
            next_step(&spec, Some(&record(1)), at(failed_at as u64 + 60)),
            Step::Order(_)
        ));
        // New settings are tried at once.
        let mut changed = spec.clone();
        changed.domains = vec!["c.example.com".into()];
        assert!(matches!(
            next_step(&changed, Some(&record(5)), now),
            Step::Order(_)
        ));
    }
}
