//! `rewrite`: the path sent upstream.
//!
//! * **Prefix form** (`rewrite = "/v2"`): the part of the path the location matched is replaced
//!   by the value; a `/` doubled at the junction is collapsed (`/api` + rewrite `/` sends
//!   `/api/users` as `/users`, `/api` as `/`).
//! * **Regex form** (`rewrite = "^/api/(?<rest>.*)$ /v2/$rest"`): a regex, whitespace, and a
//!   replacement; the first match in the path is replaced. The replacement may use `$1`…, `$name`
//!   for the regex's groups and `$$` for a literal `$`.
//!
//! Both forms may use the variables and the location's captures (see [`crate::vars`]). Variable
//! values are percent-encoded for a path segment (`?name=..%2F..%2Fadmin` with `/files/$arg_name`
//! gives `/files/..%2F..%2Fadmin`); captures go in as they are. The query string is kept unless the
//! result sets one (contains `?`).

use regex::Regex;

use crate::vars::{Scope, Template, Vars, check_group_name};

/// A regex rewrite built from its parts (the `rewrite` plugin's rules).
pub fn regex_rewrite(
    pattern: &str,
    replacement: &str,
    captures: &[String],
) -> Result<Rewrite, String> {
    let regex = Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
    for name in regex.capture_names().flatten() {
        check_group_name(name)?;
    }
    let scope = Scope {
        captures,
        groups: Some(&regex),
    };
    let replacement = Template::parse(replacement.trim(), scope)?;
    Ok(Rewrite::Regex { regex, replacement })
}

/// A compiled `rewrite`.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Replaces the matched prefix.
    Prefix(Template),
    /// Replaces the first regex match.
    Regex {
        /// The pattern.
        regex: Regex,
        /// The replacement.
        replacement: Template,
    },
}

impl Rewrite {
    /// Parses either form; `captures` are the location's capture names.
    pub fn parse(text: &str, captures: &[String]) -> Result<Rewrite, String> {
        let text = text.trim();
        let Some((pattern, replacement)) = text.split_once(char::is_whitespace) else {
            if !text.starts_with('/') {
                return Err(format!(
                    "a prefix rewrite must start with \"/\" (or write \"<regex> <replacement>\"), got \"{text}\""
                ));
            }
            let scope = Scope {
                captures,
                groups: None,
            };
            return Template::parse(text, scope).map(Rewrite::Prefix);
        };
        regex_rewrite(pattern, replacement, captures)
    }

    /// Whether the rewrite uses the location's captures.
    pub fn uses_captures(&self) -> bool {
        match self {
            Rewrite::Prefix(template) => template.uses_captures(),
            Rewrite::Regex { replacement, .. } => replacement.uses_captures(),
        }
    }

    /// The new path and query for `path`, of which the location matched `matched_len` bytes;
    /// `None` when a regex rewrite does not match (the path stays as it is).
    pub fn apply(
        &self,
        path: &str,
        matched_len: usize,
        query: Option<&str>,
        cx: &Vars<'_>,
    ) -> Option<String> {
        let mut out = match self {
            Rewrite::Prefix(replacement) => {
                let rest = path.get(matched_len..).unwrap_or_default();
                let mut out = replacement.render_path(cx, None);
                if out.ends_with('/') && rest.starts_with('/') {
                    out.pop();
                }
                out.push_str(rest);
                out
            }
            Rewrite::Regex { regex, replacement } => {
                let groups = regex.captures(path)?;
                let whole = groups.get(0).map_or(0..0, |m| m.range());
                let mut out = String::with_capacity(path.len() + 16);
                out.push_str(&path[..whole.start]);
                out.push_str(&replacement.render_path(cx, Some(&groups)));
                out.push_str(&path[whole.end..]);
                out
            }
        };
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(query) = query.filter(|q| !q.is_empty() && !out.contains('?')) {
            out.push('?');
            out.push_str(query);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use pingora_http::RequestHeader;

    use super::*;

    fn apply(rewrite: &str, path: &str, matched: usize, query: Option<&str>) -> String {
        let names = ["tenant".to_string()];
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let captures = [Some("acme".to_string())];
        let cx = Vars {
            req: &req,
            request_uri: "/",
            host: "acme.example.com",
            tls: false,
            client_ip: None,
            remote_addr: None,
            server_addr: None,
            request_id: None,
            location: "l",
            captures: &captures,
            client_cert: None,
        };
        Rewrite::parse(rewrite, &names)
            .unwrap()
            .apply(path, matched, query, &cx)
            .unwrap_or_else(|| format!("{path} (unchanged)"))
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
        assert_eq!(
            apply("/tenants/$tenant", "/api/x", 4, None),
            "/tenants/acme/x"
        );
        assert_eq!(
            apply("/sites/$host", "/", 1, None),
            "/sites/acme.example.com"
        );
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
            "/other (unchanged)",
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
        assert_eq!(apply(r"^/(.*) /$tenant/$1", "/a/b", 0, None), "/acme/a/b");
    }

    #[test]
    fn bad_rewrites_are_errors() {
        let parse = |text: &str| Rewrite::parse(text, &[]).unwrap_err();
        assert!(parse("v2").contains("must start with"));
        assert!(parse("^/(a /x").starts_with("invalid regex"));
        assert!(parse(r"^/(a) /x/$2").contains("$2 refers to a group"));
        assert!(parse(r"^/(?<a>x) /$b").starts_with("unknown variable $b"));
        assert!(parse(r"^/(?<host>x) /$host").contains("would hide the variable $host"));
    }
}
