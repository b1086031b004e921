//! `referer`: allows or denies requests by the host of their `Referer`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `allow` | `[]` | hosts (`example.com`) or subdomain wildcards (`*.example.com`, not the apex); when set, only these pass |
//! | `deny` | `[]` | hosts refused (checked first) |
//! | `allow_empty` | `true` | admit requests without a `Referer` (direct visits, privacy settings) |
//!
//! Refused requests get 403. A `Referer` that is not a URL counts as a host that matches nothing.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Uri, header};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::access_list::{self, AccessList, Pattern};
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "referer",
    default_priority: 7600,
    summary: "allows or denies requests by the host of their Referer",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default = "yes")]
    allow_empty: bool,
}

fn yes() -> bool {
    true
}

/// A host pattern: exact, or `.example.com` for its subdomains.
struct HostRule(String);

impl Pattern for HostRule {
    /// The host of the `Referer`, lower-cased.
    type Subject = str;

    fn parse(text: &str) -> Result<HostRule, String> {
        let text = text.trim().to_ascii_lowercase();
        let host = text.strip_prefix("*.").unwrap_or(&text);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        {
            return Err(format!("\"{text}\" is not a host or *.host"));
        }
        Ok(HostRule(if text.starts_with("*.") {
            text[1..].to_string()
        } else {
            text
        }))
    }

    fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix('.') {
            Some(_) => host.len() > self.0.len() && host.ends_with(&self.0),
            None => host == self.0,
        }
    }
}

struct Referer {
    list: AccessList<Vec<HostRule>>,
    allow_empty: bool,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    Ok(Arc::new(Referer {
        list: AccessList::parse(&config.allow, &config.deny)?,
        allow_empty: config.allow_empty,
    }))
}

impl Referer {
    fn admits(&self, referer: Option<&str>) -> bool {
        let Some(referer) = referer.map(str::trim).filter(|r| !r.is_empty()) else {
            return self.allow_empty;
        };
        let host = referer
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_ascii_lowercase));
        // A `Referer` that is not a URL has no host, which matches no rule.
        self.list.admits(host.as_deref())
    }
}

#[async_trait]
impl Plugin for Referer {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let referer = req
            .headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok());
        Ok(access_list::decide(
            self.admits(referer),
            "requests from this referer are not allowed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::build_error;

    fn referer(settings: &str) -> Referer {
        let config: Config = crate::settings::parse(&settings.parse().unwrap()).unwrap();
        Referer {
            list: AccessList::parse(&config.allow, &config.deny).unwrap(),
            allow_empty: config.allow_empty,
        }
    }

    #[test]
    fn table() {
        let rule = referer("allow = ['example.com', '*.example.org']\ndeny = ['bad.example.org']");
        let cases = [
            (Some("https://example.com/page"), true),
            (Some("https://EXAMPLE.com:8443/"), true),
            (Some("https://www.example.com/"), false),
            (Some("https://a.example.org/x"), true),
            (Some("https://example.org/"), false),
            (Some("https://bad.example.org/"), false),
            (Some("not a url"), false),
            (None, true),
            (Some(""), true),
        ];
        for (value, expected) in cases {
            assert_eq!(rule.admits(value), expected, "{value:?}");
        }
        assert!(!referer("allow = ['example.com']\nallow_empty = false").admits(None));
    }

    #[test]
    fn rejects_bad_hosts() {
        let err = build_error(build, "allow = ['exa mple.com']");
        assert_eq!(err.key(), Some("allow[0]"));
    }
}
