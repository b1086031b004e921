//! Header rules of a location: `headers_add/set/remove` change the request sent upstream,
//! `response_headers_add/set/remove` the response sent to the client.
//!
//! Rules are written `"Name: value"` (or `"Name:value"`); values may hold variables (see
//! [`pingap_plugins::vars`]). They apply in the order remove, set, add, so a set or added value always
//! lands even if the same name is also removed.

use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};

use pingap_plugins::vars::{Scope, Template, Vars};

/// One location's rules for one direction.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, Template)>,
    add: Vec<(HeaderName, Template)>,
}

/// Something whose headers the rules can change: a request or a response header.
pub trait HeaderTarget {
    /// Removes every value of `name`.
    fn remove(&mut self, name: &HeaderName);
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: HeaderName, value: http::HeaderValue);
    /// Appends a value for `name`.
    fn add(&mut self, name: HeaderName, value: http::HeaderValue);
}

impl HeaderTarget for RequestHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: HeaderName, value: http::HeaderValue) {
        // Only fails for invalid names or values, which the types rule out.
        let _ = self.insert_header(name, value);
    }
    fn add(&mut self, name: HeaderName, value: http::HeaderValue) {
        let _ = self.append_header(name, value);
    }
}

impl HeaderTarget for ResponseHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: HeaderName, value: http::HeaderValue) {
        let _ = self.insert_header(name, value);
    }
    fn add(&mut self, name: HeaderName, value: http::HeaderValue) {
        let _ = self.append_header(name, value);
    }
}

impl HeaderRules {
    /// Compiles the three lists; errors name the list key and index, e.g. `headers_set[1]`.
    pub fn compile(
        prefix: &str,
        add: &[String],
        set: &[String],
        remove: &[String],
        scope: Scope<'_>,
    ) -> Result<HeaderRules, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut rules = HeaderRules::default();
        for (index, rule) in add.iter().enumerate() {
            match parse_rule(rule, scope) {
                Ok(pair) => rules.add.push(pair),
                Err(e) => errors.push((format!("{prefix}_add[{index}]"), e)),
            }
        }
        for (index, rule) in set.iter().enumerate() {
            match parse_rule(rule, scope) {
                Ok(pair) => rules.set.push(pair),
                Err(e) => errors.push((format!("{prefix}_set[{index}]"), e)),
            }
        }
        for (index, name) in remove.iter().enumerate() {
            match parse_name(name.trim()) {
                Ok(name) => rules.remove.push(name),
                Err(e) => errors.push((format!("{prefix}_remove[{index}]"), e)),
            }
        }
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// Whether a value uses the location's captures.
    pub fn uses_captures(&self) -> bool {
        self.set
            .iter()
            .chain(&self.add)
            .any(|(_, t)| t.uses_captures())
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the rules. A value that renders to something that is not a valid header value
    /// (impossible for constants, which are checked at compile time) is skipped.
    pub fn apply(&self, target: &mut impl HeaderTarget, cx: &Vars<'_>) {
        for name in &self.remove {
            target.remove(name);
        }
        for (name, template) in &self.set {
            if let Some(value) = template.header_value(cx) {
                target.set(name.clone(), value);
            }
        }
        for (name, template) in &self.add {
            if let Some(value) = template.header_value(cx) {
                target.add(name.clone(), value);
            }
        }
    }
}

fn parse_rule(rule: &str, scope: Scope<'_>) -> Result<(HeaderName, Template), String> {
    let (name, value) = rule
        .split_once(':')
        .ok_or_else(|| format!("\"{rule}\" is not \"Name: value\""))?;
    let name = parse_name(name.trim())?;
    let template = Template::parse(value.trim(), scope)?;
    if template.is_constant() && template.constant_value().is_none() {
        return Err(format!("\"{}\" is not a valid header value", value.trim()));
    }
    Ok((name, template))
}

fn parse_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(name).map_err(|_| format!("\"{name}\" is not a valid header name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(req: &RequestHeader) -> Vars<'_> {
        Vars {
            req,
            request_uri: "/",
            host: "example.com",
            tls: false,
            client_ip: Some("192.0.2.1".parse().unwrap()),
            remote_addr: None,
            server_addr: None,
            request_id: None,
            location: "loc",
            captures: &[],
            client_cert: None,
        }
    }

    #[test]
    fn applies_remove_then_set_then_add() {
        let rules = HeaderRules::compile(
            "headers",
            &["X-Multi: one".into(), "X-Multi:two".into()],
            &["X-Client: $remote_addr".into(), "Server: pingap".into()],
            &["Server".into(), "X-Gone".into()],
            Scope::default(),
        )
        .unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-gone", "1").unwrap();
        req.insert_header("server", "old").unwrap();
        req.insert_header("x-multi", "zero").unwrap();
        let original = req.clone();
        rules.apply(&mut req, &cx(&original));
        let values = |name: &str| -> Vec<&str> {
            req.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(values("x-gone"), Vec::<&str>::new());
        assert_eq!(values("server"), ["pingap"]);
        assert_eq!(values("x-client"), ["192.0.2.1"]);
        assert_eq!(values("x-multi"), ["zero", "one", "two"]);
    }

    #[test]
    fn errors_name_list_and_index() {
        let errors = HeaderRules::compile(
            "response_headers",
            &["no colon".into()],
            &[
                "Bad Name: x".into(),
                "X-Var: $nope".into(),
                "X-Ok: fine".into(),
            ],
            &["also bad".into()],
            Scope::default(),
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "response_headers_add[0]",
                "response_headers_set[0]",
                "response_headers_set[1]",
                "response_headers_remove[0]"
            ]
        );
        assert!(errors[2].1.starts_with("unknown variable $nope"));
    }
}
