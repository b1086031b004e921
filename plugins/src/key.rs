//! The key a limit is counted by: `$remote_addr`, `$http_NAME`, `$cookie_NAME`, `$arg_NAME`,
//! `$location`, or a constant (one counter for everything).

use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use http::HeaderName;
use pingora_http::RequestHeader;

use crate::PluginCtx;
use crate::request::{cookie, query_arg};

/// The default `key` of limits: the client address.
pub(crate) fn default_key() -> String {
    "$remote_addr".to_string()
}

/// Where a limit key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// The client address.
    ClientIp,
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Arg(String),
    /// The matched location.
    Location,
    /// The same key for every request.
    Constant(String),
}

impl KeySource {
    /// Parses the `key` setting.
    pub(crate) fn parse(text: &str) -> Result<KeySource, String> {
        let Some(name) = text.strip_prefix('$') else {
            return Ok(KeySource::Constant(text.to_string()));
        };
        let non_empty = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
        if name == "remote_addr" {
            Ok(KeySource::ClientIp)
        } else if name == "location" {
            Ok(KeySource::Location)
        } else if let Some(header) = name.strip_prefix("http_").and_then(non_empty) {
            HeaderName::try_from(header.replace('_', "-"))
                .map(KeySource::Header)
                .map_err(|_| format!("invalid header in \"{text}\""))
        } else if let Some(cookie) = name.strip_prefix("cookie_").and_then(non_empty) {
            Ok(KeySource::Cookie(cookie))
        } else if let Some(arg) = name.strip_prefix("arg_").and_then(non_empty) {
            Ok(KeySource::Arg(arg))
        } else {
            Err(format!(
                "unknown key \"{text}\" (use $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME, $location or a constant)"
            ))
        }
    }

    /// Hashes this request's key with `hasher`. A request without the key's source (no such
    /// header, say) counts under the empty key, which all such requests share: leaving the
    /// header out is no way around a limit.
    pub(crate) fn hash(&self, hasher: &RandomState, req: &RequestHeader, ctx: &PluginCtx) -> u64 {
        let mut state = hasher.build_hasher();
        match self {
            KeySource::ClientIp => ctx.client_ip.hash(&mut state),
            KeySource::Header(name) => req
                .headers
                .get(name)
                .map_or(&b""[..], |v| v.as_bytes())
                .hash(&mut state),
            KeySource::Cookie(name) => cookie(req, name).unwrap_or_default().hash(&mut state),
            KeySource::Arg(name) => query_arg(req.uri.query().unwrap_or_default(), name)
                .unwrap_or_default()
                .hash(&mut state),
            KeySource::Location => ctx.location.hash(&mut state),
            KeySource::Constant(text) => text.hash(&mut state),
        }
        state.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            KeySource::parse("$remote_addr").unwrap(),
            KeySource::ClientIp
        );
        assert_eq!(KeySource::parse("$location").unwrap(), KeySource::Location);
        assert_eq!(
            KeySource::parse("$http_x_api_key").unwrap(),
            KeySource::Header(HeaderName::from_static("x-api-key"))
        );
        assert_eq!(
            KeySource::parse("$cookie_sid").unwrap(),
            KeySource::Cookie("sid".into())
        );
        assert_eq!(
            KeySource::parse("$arg_user").unwrap(),
            KeySource::Arg("user".into())
        );
        assert_eq!(
            KeySource::parse("global").unwrap(),
            KeySource::Constant("global".into())
        );
        assert!(KeySource::parse("$host").is_err());
        assert!(KeySource::parse("$http_").is_err());
    }

    #[test]
    fn keys_differ_by_value_and_missing_sources_share_one() {
        let hasher = RandomState::new();
        let key = KeySource::parse("$http_x_user").unwrap();
        let ctx = PluginCtx::default();
        let request = |user: Option<&str>| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            if let Some(user) = user {
                req.insert_header("x-user", user).unwrap();
            }
            key.hash(&hasher, &req, &ctx)
        };
        assert_eq!(request(Some("a")), request(Some("a")));
        assert_ne!(request(Some("a")), request(Some("b")));
        assert_eq!(request(None), request(None));
        assert_eq!(request(None), request(Some("")));
    }
}
