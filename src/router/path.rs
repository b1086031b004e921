//! Path patterns of a location: prefix, `=exact` and `~regex`.

use regex::Regex;

/// How specific a path pattern is; lower ranks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathClass {
    /// `=/health`
    Exact = 0,
    /// `~^/users/\d+$`
    Regex = 1,
    /// `/api` (longer prefixes rank first)
    Prefix = 2,
}

/// A location's `path`.
#[derive(Debug, Clone)]
pub enum PathPattern {
    /// Matches paths that start with the prefix (byte-wise: `/api` matches `/api`, `/api/x` and
    /// `/apix`; write `/api/` to require the segment boundary). No `path` is the prefix `/`.
    Prefix(String),
    /// Matches exactly this path.
    Exact(String),
    /// Matches when the regex finds a match in the path (anchored only where written).
    Regex(Regex),
}

impl PathPattern {
    /// Parses `/prefix`, `=/exact` or `~regex`.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        if let Some(pattern) = text.strip_prefix('~') {
            return Regex::new(pattern)
                .map(PathPattern::Regex)
                .map_err(|e| format!("invalid regex: {e}"));
        }
        let (exact, path) = match text.strip_prefix('=') {
            Some(path) => (true, path),
            None => (false, text),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "a path must start with \"/\" (or be \"=/exact\" or \"~regex\"), got \"{text}\""
            ));
        }
        Ok(if exact {
            PathPattern::Exact(path.to_string())
        } else {
            PathPattern::Prefix(path.to_string())
        })
    }

    /// The pattern's class.
    pub fn class(&self) -> PathClass {
        match self {
            PathPattern::Prefix(_) => PathClass::Prefix,
            PathPattern::Exact(_) => PathClass::Exact,
            PathPattern::Regex(_) => PathClass::Regex,
        }
    }

    /// The pattern as written in the config.
    pub fn text(&self) -> String {
        match self {
            PathPattern::Prefix(prefix) => prefix.clone(),
            PathPattern::Exact(path) => format!("={path}"),
            PathPattern::Regex(regex) => format!("~{}", regex.as_str()),
        }
    }

    /// The regex, for capturing named groups.
    pub fn regex(&self) -> Option<&Regex> {
        match self {
            PathPattern::Regex(regex) => Some(regex),
            _ => None,
        }
    }

    /// Whether every path this pattern matches is also matched by `broader`.
    pub fn covered_by(&self, broader: &PathPattern) -> bool {
        match (broader, self) {
            (PathPattern::Prefix(a), PathPattern::Prefix(b) | PathPattern::Exact(b)) => {
                b.starts_with(a.as_str())
            }
            (PathPattern::Prefix(a), PathPattern::Regex(_)) => a == "/",
            (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
            (PathPattern::Regex(a), PathPattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }

    /// The prefix length (ranks longer prefixes first); 0 for other classes.
    pub fn prefix_len(&self) -> usize {
        match self {
            PathPattern::Prefix(prefix) => prefix.len(),
            _ => 0,
        }
    }

    /// The length of the matched part of `path` when it matches: the prefix, the whole path, or
    /// the end of the regex match.
    pub fn matches(&self, path: &str) -> Option<usize> {
        match self {
            PathPattern::Prefix(prefix) => {
                path.starts_with(prefix.as_str()).then_some(prefix.len())
            }
            PathPattern::Exact(exact) => (exact == path).then_some(path.len()),
            PathPattern::Regex(regex) => regex.find(path).map(|m| m.end()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_byte_prefixes() {
        let api = PathPattern::parse("/api").unwrap();
        assert_eq!(api.matches("/api"), Some(4));
        assert_eq!(api.matches("/api/v1"), Some(4));
        assert_eq!(api.matches("/apix"), Some(4));
        assert_eq!(api.matches("/ap"), None);
        let api_dir = PathPattern::parse("/api/").unwrap();
        assert_eq!(api_dir.matches("/apix"), None);
    }

    #[test]
    fn exact_and_regex() {
        let exact = PathPattern::parse("=/health").unwrap();
        assert_eq!(exact.matches("/health"), Some(7));
        assert_eq!(exact.matches("/health/"), None);
        let regex = PathPattern::parse(r"~/users/\d+").unwrap();
        assert_eq!(
            regex.matches("/api/users/12/x"),
            Some(13),
            "unanchored unless written"
        );
        let anchored = PathPattern::parse(r"~^/users/\d+$").unwrap();
        assert_eq!(anchored.matches("/api/users/12"), None);
        assert!(PathPattern::parse("~[").is_err());
        assert!(
            PathPattern::parse("api")
                .unwrap_err()
                .contains("must start with")
        );
    }
}
