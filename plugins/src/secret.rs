//! Comparing credentials without leaking them through timing: values are compared as SHA-256
//! digests (equal length whatever the input) with a constant-time comparison, against every
//! stored value.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of secrets, kept as digests.
#[derive(Clone, Default)]
pub(crate) struct SecretSet {
    digests: Vec<[u8; 32]>,
}

impl SecretSet {
    /// The set of `secrets`.
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> SecretSet {
        SecretSet {
            digests: secrets.into_iter().map(digest).collect(),
        }
    }

    /// Whether `candidate` is one of the secrets; takes the same time whichever it is.
    pub(crate) fn contains(&self, candidate: &str) -> bool {
        let candidate = digest(candidate);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, secret| {
                found | secret.ct_eq(&candidate)
            })
            .into()
    }
}

/// Constant-time equality of two strings (compared as digests).
pub(crate) fn equal(a: &str, b: &str) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_only() {
        let set = SecretSet::new(["alpha", "beta"]);
        assert!(set.contains("beta"));
        assert!(!set.contains("gamma"));
        assert!(!set.contains(""));
        assert!(!SecretSet::default().contains("alpha"));
        assert!(equal("x", "x") && !equal("x", "y"));
    }
}
