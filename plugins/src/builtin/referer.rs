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
use http::{StatusCode, Uri, header};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::{
    BuildContext, BuildError, Ctx, Flow, Phase, Phases, Plugin, PluginError, PluginType, Response,
    Settings,
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

impl HostRule {
    fn parse(key: &str, text: &str) -> Result<HostRule, BuildError> {
        let text = text.trim().to_ascii_lowercase();
        let host = text.strip_prefix("*.").unwrap_or(&text);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        {
            return Err(BuildError::at(
                key,
                format!("\"{text}\" is not a host or *.host"),
            ));
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
    allow: Vec<HostRule>,
    deny: Vec<HostRule>,
    allow_empty: bool,
}

fn rules(key: &str, list: &[String]) -> Result<Vec<HostRule>, BuildError> {
    list.iter()
        .enumerate()
        .map(|(index, text)| HostRule::parse(&format!("{key}[{index}]"), text))
        .collect()
}

fn build(settings: &Settings, _: &BuildContext) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    Ok(Arc::new(Referer {
        allow: rules("allow", &config.allow)?,
        deny: rules("deny", &config.deny)?,
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
            .and_then(|uri| uri.host().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        !self.deny.iter().any(|rule| rule.matches(&host))
            && (self.allow.is_empty() || self.allow.iter().any(|rule| rule.matches(&host)))
    }
}

#[async_trait]
impl Plugin for Referer {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(&self, req: &mut RequestHeader, _ctx: &mut Ctx) -> Result<Flow, PluginError> {
        let referer = req
            .headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok());
        Ok(Flow::admit_if(self.admits(referer), || {
            Response::refuse(
                StatusCode::FORBIDDEN,
                "requests from this referer are not allowed",
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::build_error;

    fn referer(settings: &str) -> Referer {
        let config: Config = crate::settings::parse(&settings.parse().unwrap()).unwrap();
        Referer {
            allow: rules("allow", &config.allow).unwrap(),
            deny: rules("deny", &config.deny).unwrap(),
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
