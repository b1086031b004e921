//! `rewrite`: the path sent upstream.
//!
//! * **Prefix form** (`rewrite = "/v2"`): the part of the path the location matched is replaced
//!   by the value; a `/` doubled at the junction is collapsed (`/api` + rewrite `/` sends
//!   `/api/users` as `/users`, `/api` as `/`).
//! * **Regex form** (`rewrite = "^/api/(?<rest>.*)$ /v2/$rest"`): a regex, whitespace, and a
//!   replacement; the first match in the path is replaced. The replacement may use `$1`…`$99`,
//!   `$name` for named groups and `$$` for a literal `$`.
//!
//! The query string is kept unless the result sets one (contains `?`).

use regex::Regex;

/// A compiled `rewrite`.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Replaces the matched prefix.
    Prefix(String),
    /// Replaces the first regex match.
    Regex {
        /// The pattern.
        regex: Regex,
        /// The replacement, parsed.
        replacement: Vec<Piece>,
    },
}

/// A piece of a regex replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// Capture group by index.
    Group(usize),
    /// Capture group by name.
    Named(String),
}

impl Rewrite {
    /// Parses either form.
    pub fn parse(text: &str) -> Result<Rewrite, String> {
        let text = text.trim();
        let Some((pattern, replacement)) = text.split_once(char::is_whitespace) else {
            if !text.starts_with('/') {
                return Err(format!(
                    "a prefix rewrite must start with \"/\" (or write \"<regex> <replacement>\"), got \"{text}\""
                ));
            }
            return Ok(Rewrite::Prefix(text.to_string()));
        };
        let regex = Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
        let replacement = parse_replacement(replacement.trim(), &regex)?;
        Ok(Rewrite::Regex { regex, replacement })
    }

    /// The new path and query for `path`, of which the location matched `matched_len` bytes.
    pub fn apply(&self, path: &str, matched_len: usize, query: Option<&str>) -> String {
        let mut out = match self {
            Rewrite::Prefix(replacement) => {
                let rest = path.get(matched_len..).unwrap_or_default();
                let mut out = String::with_capacity(replacement.len() + rest.len());
                out.push_str(replacement);
                if out.ends_with('/') && rest.starts_with('/') {
                    out.pop();
                }
                out.push_str(rest);
                out
            }
            Rewrite::Regex { regex, replacement } => match regex.captures(path) {
                None => path.to_string(),
                Some(captures) => {
                    let whole = captures.get(0).map_or(0..0, |m| m.range());
                    let mut out = String::with_capacity(path.len() + 16);
                    out.push_str(&path[..whole.start]);
                    for piece in replacement {
                        match piece {
                            Piece::Text(text) => out.push_str(text),
                            Piece::Group(index) => {
                                out.push_str(captures.get(*index).map_or("", |m| m.as_str()));
                            }
                            Piece::Named(name) => {
                                out.push_str(captures.name(name).map_or("", |m| m.as_str()));
                            }
                        }
                    }
                    out.push_str(&path[whole.end..]);
                    out
                }
            },
        };
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(query) = query.filter(|q| !q.is_empty() && !out.contains('?')) {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

fn parse_replacement(text: &str, regex: &Regex) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '$' {
            literal.push(c);
            continue;
        }
        let rest = &text[at + 1..];
        if rest.starts_with('$') {
            chars.next();
            literal.push('$');
            continue;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let piece = if digits > 0 {
            let index: usize = rest[..digits]
                .parse()
                .map_err(|_| format!("bad group number in \"{text}\""))?;
            if index >= regex.captures_len() {
                return Err(format!(
                    "${index} refers to a group the regex does not have (it has {})",
                    regex.captures_len() - 1
                ));
            }
            (Piece::Group(index), digits)
        } else if name_len > 0 {
            let name = &rest[..name_len];
            if !regex.capture_names().flatten().any(|n| n == name) {
                return Err(format!("${name} is not a named group of the regex"));
            }
            (Piece::Named(name.to_string()), name_len)
        } else {
            literal.push('$');
            continue;
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(piece.0);
        for _ in 0..piece.1 {
            chars.next();
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rewrite: &str, path: &str, matched: usize, query: Option<&str>) -> String {
        Rewrite::parse(rewrite).unwrap().apply(path, matched, query)
    }

    #[test]
    fn prefix_form_replaces_the_matched_prefix() {
        assert_eq!(apply("/", "/api/v1/users", 7, None), "/users");
        assert_eq!(apply("/", "/api/v1", 7, None), "/");
        assert_eq!(
            apply("/v2", "/api/v1/users", 7, Some("a=1")),
            "/v2/users?a=1"
        );
        assert_eq!(apply("/v2/", "/api/v1/users", 7, None), "/v2/users");
        assert_eq!(apply("/", "/api/v1x", 7, None), "/x");
        assert_eq!(apply("/internal", "/", 1, None), "/internal");
    }

    #[test]
    fn regex_form_uses_groups_and_keeps_the_query() {
        let rule = r"^/api/(?<rest>.*)$ /v2/$rest";
        assert_eq!(
            apply(rule, "/api/users/1", 0, Some("x=1")),
            "/v2/users/1?x=1"
        );
        assert_eq!(
            apply(r"^/u/(\d+)/(\w+) /users/$2/$1", "/u/12/posts", 0, None),
            "/users/posts/12"
        );
        assert_eq!(
            apply("^/old /new", "/other", 0, None),
            "/other",
            "no match leaves the path"
        );
        assert_eq!(
            apply(
                r"^/search/(.*) /find?q=$1",
                "/search/cats",
                0,
                Some("page=2")
            ),
            "/find?q=cats"
        );
        assert_eq!(apply(r"^/price /cost$$", "/price", 0, None), "/cost$");
    }

    #[test]
    fn bad_rewrites_are_errors() {
        assert!(
            Rewrite::parse("v2")
                .unwrap_err()
                .contains("must start with")
        );
        assert!(
            Rewrite::parse("^/(a /x")
                .unwrap_err()
                .starts_with("invalid regex")
        );
        assert!(
            Rewrite::parse(r"^/(a) /x/$2")
                .unwrap_err()
                .contains("$2 refers to a group")
        );
        assert!(
            Rewrite::parse(r"^/(?<a>x) /$b")
                .unwrap_err()
                .contains("$b is not a named group")
        );
    }
}
