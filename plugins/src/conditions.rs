//! Conditions of a location besides host and path: `methods`, `headers` and `query`. All of a
//! location's conditions must hold.
//!
//! * `methods = ["GET", "POST"]`: the method must be one of them (exactly: `GET` does not imply
//!   `HEAD`).
//! * `headers = ["X-Env: canary", "X-Debug", "X-Ver: ~^2\\."]`: a value equal to `canary` (any of
//!   the header's values), the header present, a value matching the regex.
//! * `query = ["version=2", "debug", "v=~^2"]`: likewise for query parameters (values are
//!   percent-decoded).

use std::fmt;

use http::{HeaderName, Method};
use pingora_http::RequestHeader;
use regex::Regex;

use crate::request::query_arg;

/// How a value must look.
#[derive(Debug, Clone)]
enum ValueTest {
    Present,
    Equals(String),
    Matches(Regex),
}

impl ValueTest {
    fn parse(value: Option<&str>) -> Result<ValueTest, String> {
        Ok(match value.map(str::trim) {
            None => ValueTest::Present,
            Some(value) => match value.strip_prefix('~') {
                Some(pattern) => ValueTest::Matches(
                    Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?,
                ),
                None => ValueTest::Equals(value.to_string()),
            },
        })
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            ValueTest::Present => true,
            ValueTest::Equals(expected) => value == expected,
            ValueTest::Matches(regex) => regex.is_match(value),
        }
    }

    /// Why a value did not pass, for `what` that was `present` or not.
    fn describe(&self, what: &str, present: bool) -> String {
        match self {
            _ if !present => format!("{what} is missing"),
            ValueTest::Present => format!("{what} is missing"),
            ValueTest::Equals(expected) => format!("{what} is not \"{expected}\""),
            ValueTest::Matches(regex) => format!("{what} does not match ~{}", regex.as_str()),
        }
    }
}

/// A location's conditions.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    methods: Vec<Method>,
    headers: Vec<(HeaderName, ValueTest)>,
    query: Vec<(String, ValueTest)>,
}

/// Which condition failed (cheap to return on the request path; see [`Conditions::describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The method is not listed.
    Method,
    /// The header condition at this index.
    Header(usize),
    /// The query condition at this index.
    Query(usize),
}

/// Why a condition failed, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet(pub String);

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A config error inside the conditions: the key (`headers[1]`) and the reason.
pub type ConditionError = (String, String);

impl Conditions {
    /// Parses the three lists.
    pub fn parse(
        methods: &[String],
        headers: &[String],
        query: &[String],
    ) -> Result<Conditions, Vec<ConditionError>> {
        let mut errors = Vec::new();
        let mut conditions = Conditions::default();
        for (index, method) in methods.iter().enumerate() {
            let name = method.trim().to_ascii_uppercase();
            match Method::from_bytes(name.as_bytes()) {
                Ok(method) if name.bytes().all(|b| b.is_ascii_uppercase()) => {
                    conditions.methods.push(method);
                }
                _ => errors.push((
                    format!("methods[{index}]"),
                    format!("\"{method}\" is not a method"),
                )),
            }
        }
        for (index, rule) in headers.iter().enumerate() {
            let (name, value) = match rule.split_once(':') {
                Some((name, value)) => (name, Some(value)),
                None => (rule.as_str(), None),
            };
            let parsed = HeaderName::try_from(name.trim())
                .map_err(|_| format!("\"{}\" is not a header name", name.trim()))
                .and_then(|name| Ok((name, ValueTest::parse(value)?)));
            match parsed {
                Ok(condition) => conditions.headers.push(condition),
                Err(e) => errors.push((format!("headers[{index}]"), e)),
            }
        }
        for (index, rule) in query.iter().enumerate() {
            let (name, value) = match rule.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (rule.as_str(), None),
            };
            if name.trim().is_empty() {
                errors.push((
                    format!("query[{index}]"),
                    "a query condition needs a name".to_string(),
                ));
                continue;
            }
            match ValueTest::parse(value) {
                Ok(test) => conditions.query.push((name.trim().to_string(), test)),
                Err(e) => errors.push((format!("query[{index}]"), e)),
            }
        }
        if errors.is_empty() {
            Ok(conditions)
        } else {
            Err(errors)
        }
    }

    /// Whether there is no condition.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty() && self.headers.is_empty() && self.query.is_empty()
    }

    /// Checks every condition against the request, without allocating.
    pub fn check(&self, req: &RequestHeader) -> Result<(), Failed> {
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return Err(Failed::Method);
        }
        for (index, (name, test)) in self.headers.iter().enumerate() {
            let found = req
                .headers
                .get_all(name)
                .iter()
                .any(|value| value.to_str().is_ok_and(|v| test.accepts(v.trim())));
            if !found {
                return Err(Failed::Header(index));
            }
        }
        let query = req.uri.query().unwrap_or_default();
        for (index, (name, test)) in self.query.iter().enumerate() {
            if !query_arg(query, name).is_some_and(|value| test.accepts(&value)) {
                return Err(Failed::Query(index));
            }
        }
        Ok(())
    }

    /// Says in words why `failed` failed for `req`.
    pub fn describe(&self, failed: Failed, req: &RequestHeader) -> Unmet {
        Unmet(match failed {
            Failed::Method => {
                let allowed: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
                format!("method {} is not one of {}", req.method, allowed.join(", "))
            }
            Failed::Header(index) => match self.headers.get(index) {
                Some((name, test)) => {
                    let present = req.headers.get(name).is_some();
                    test.describe(&format!("header {name}"), present)
                }
                None => String::new(),
            },
            Failed::Query(index) => match self.query.get(index) {
                Some((name, test)) => {
                    let present = query_arg(req.uri.query().unwrap_or_default(), name).is_some();
                    test.describe(&format!("query parameter {name}"), present)
                }
                None => String::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(methods: &[&str], headers: &[&str], query: &[&str]) -> Conditions {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Conditions::parse(&owned(methods), &owned(headers), &owned(query)).unwrap()
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn table() {
        let cases: &[(&str, Conditions, RequestHeader, Result<(), &str>)] = &[
            (
                "no conditions",
                conditions(&[], &[], &[]),
                request("DELETE", "/", &[]),
                Ok(()),
            ),
            (
                "method listed",
                conditions(&["get", "POST"], &[], &[]),
                request("POST", "/", &[]),
                Ok(()),
            ),
            (
                "method not listed",
                conditions(&["GET"], &[], &[]),
                request("HEAD", "/", &[]),
                Err("method HEAD is not one of GET"),
            ),
            (
                "header equals one of the values",
                conditions(&[], &["X-Env: canary"], &[]),
                request("GET", "/", &[("x-env", "stable"), ("x-env", "canary")]),
                Ok(()),
            ),
            (
                "header absent",
                conditions(&[], &["X-Env: canary"], &[]),
                request("GET", "/", &[]),
                Err("header x-env is missing"),
            ),
            (
                "header differs",
                conditions(&[], &["X-Env: canary"], &[]),
                request("GET", "/", &[("x-env", "stable")]),
                Err("header x-env is not \"canary\""),
            ),
            (
                "header present",
                conditions(&[], &["X-Debug"], &[]),
                request("GET", "/", &[("x-debug", "")]),
                Ok(()),
            ),
            (
                "header missing",
                conditions(&[], &["X-Debug"], &[]),
                request("GET", "/", &[]),
                Err("header x-debug is missing"),
            ),
            (
                "header regex",
                conditions(&[], &["X-Ver: ~^2\\."], &[]),
                request("GET", "/", &[("x-ver", "2.1")]),
                Ok(()),
            ),
            (
                "header regex fails",
                conditions(&[], &["X-Ver: ~^2\\."], &[]),
                request("GET", "/", &[("x-ver", "12.1")]),
                Err("header x-ver does not match ~^2\\."),
            ),
            (
                "query equals (decoded)",
                conditions(&[], &[], &["name=a b"]),
                request("GET", "/?name=a%20b", &[]),
                Ok(()),
            ),
            (
                "query present",
                conditions(&[], &[], &["debug"]),
                request("GET", "/?debug", &[]),
                Ok(()),
            ),
            (
                "query missing",
                conditions(&[], &[], &["version=2"]),
                request("GET", "/?version=3", &[]),
                Err("query parameter version is not \"2\""),
            ),
            (
                "all must hold",
                conditions(&["GET"], &["X-Env: canary"], &["debug"]),
                request("GET", "/?debug=1", &[("x-env", "canary")]),
                Ok(()),
            ),
        ];
        for (name, conditions, req, expected) in cases {
            let got = conditions
                .check(req)
                .map_err(|failed| conditions.describe(failed, req).0);
            assert_eq!(got, expected.map_err(str::to_string), "{name}");
        }
    }

    #[test]
    fn bad_conditions_are_named() {
        let errors = Conditions::parse(
            &["GE T".to_string()],
            &["Bad Name: x".to_string(), "X: ~(".to_string()],
            &["=x".to_string()],
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["methods[0]", "headers[0]", "headers[1]", "query[0]"]);
    }
}
