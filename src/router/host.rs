//! Host patterns of a location: exact, `*.example.com` wildcards and `~regex`.

use regex::Regex;

/// How specific a host pattern is; lower ranks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostClass {
    /// `api.example.com`
    Exact = 0,
    /// `*.example.com`
    Wildcard = 1,
    /// `~^api-\d+\.example\.com$`
    Regex = 2,
    /// No `host` key.
    Any = 3,
}

/// One entry of a location's `host`.
#[derive(Debug, Clone)]
pub enum HostPattern {
    /// Matches the host exactly (case-insensitively; stored lower-cased).
    Exact(String),
    /// Matches any subdomain of the suffix, not the apex; stored as `.example.com`.
    Wildcard(String),
    /// Matches when the regex finds a match in the host (anchored only where written).
    Regex(Regex),
}

impl HostPattern {
    /// Parses `api.example.com`, `*.example.com` or `~regex`.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        if let Some(pattern) = text.strip_prefix('~') {
            return Regex::new(pattern)
                .map(HostPattern::Regex)
                .map_err(|e| format!("invalid regex: {e}"));
        }
        let host = text.trim().to_ascii_lowercase();
        if let Some(suffix) = host.strip_prefix("*.") {
            check_host_chars(suffix)?;
            return Ok(HostPattern::Wildcard(format!(".{suffix}")));
        }
        check_host_chars(&host)?;
        Ok(HostPattern::Exact(host))
    }

    /// The pattern's class.
    pub fn class(&self) -> HostClass {
        match self {
            HostPattern::Exact(_) => HostClass::Exact,
            HostPattern::Wildcard(_) => HostClass::Wildcard,
            HostPattern::Regex(_) => HostClass::Regex,
        }
    }

    /// The pattern as written in the config (lower-cased).
    pub fn text(&self) -> String {
        match self {
            HostPattern::Exact(host) => host.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
            HostPattern::Regex(regex) => format!("~{}", regex.as_str()),
        }
    }

    /// The regex, for capturing named groups.
    pub fn regex(&self) -> Option<&Regex> {
        match self {
            HostPattern::Regex(regex) => Some(regex),
            _ => None,
        }
    }

    /// Whether `host` (lower-cased, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            HostPattern::Regex(regex) => regex.is_match(host),
        }
    }
}

fn check_host_chars(host: &str) -> Result<(), String> {
    let valid = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid host \"{host}\" (write a host name, \"*.example.com\" or \"~regex\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let exact = HostPattern::parse("API.Example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("www.api.example.com"));
        let wildcard = HostPattern::parse("*.example.com").unwrap();
        assert!(wildcard.matches("a.example.com"));
        assert!(wildcard.matches("a.b.example.com"));
        assert!(
            !wildcard.matches("example.com"),
            "the apex is not a subdomain"
        );
        assert!(!wildcard.matches("badexample.com"));
        let regex = HostPattern::parse(r"~^api-\d+\.").unwrap();
        assert!(regex.matches("api-7.example.com"));
        assert!(!regex.matches("www.api-7.example.com"));
        assert!(
            HostPattern::parse("~(")
                .unwrap_err()
                .starts_with("invalid regex")
        );
        assert!(HostPattern::parse("bad host").is_err());
        assert!(HostPattern::parse("*.").is_err());
    }
}
