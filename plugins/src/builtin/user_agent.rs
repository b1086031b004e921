//! `user_agent`: allows or denies requests by their `User-Agent`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `allow` | `[]` | regexes; when set, only user agents matching one pass |
//! | `deny` | `[]` | regexes refused (checked first) |
//!
//! Regexes are unanchored (`bot` matches `Googlebot/2.1`). A request without the header is
//! checked as an empty user agent. Refused requests get 403.

use std::sync::Arc;

use async_trait::async_trait;
use http::{StatusCode, header};
use pingora_http::RequestHeader;
use regex::RegexSet;
use serde::Deserialize;

use crate::{
    BuildContext, BuildError, Ctx, Flow, Phase, Phases, Plugin, PluginError, PluginType, Response,
    Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "user_agent",
    default_priority: 7500,
    summary: "allows or denies requests by User-Agent regexes",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

struct UserAgent {
    allow: Option<RegexSet>,
    deny: Option<RegexSet>,
}

fn set(key: &str, patterns: &[String]) -> Result<Option<RegexSet>, BuildError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for (index, pattern) in patterns.iter().enumerate() {
        regex::Regex::new(pattern).map_err(|e| {
            BuildError::at(format!("{key}[{index}]"), format!("invalid regex: {e}"))
        })?;
    }
    RegexSet::new(patterns)
        .map(Some)
        .map_err(|e| BuildError::at(key, format!("invalid regex: {e}")))
}

fn build(settings: &Settings, _: &BuildContext) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let plugin = UserAgent {
        allow: set("allow", &config.allow)?,
        deny: set("deny", &config.deny)?,
    };
    if plugin.allow.is_none() && plugin.deny.is_none() {
        return Err(BuildError::at("allow", "set allow, deny or both"));
    }
    Ok(Arc::new(plugin))
}

impl UserAgent {
    fn admits(&self, agent: &str) -> bool {
        !self.deny.as_ref().is_some_and(|deny| deny.is_match(agent))
            && self
                .allow
                .as_ref()
                .is_none_or(|allow| allow.is_match(agent))
    }
}

#[async_trait]
impl Plugin for UserAgent {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(&self, req: &mut RequestHeader, _ctx: &mut Ctx) -> Result<Flow, PluginError> {
        let agent = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(Flow::admit_if(self.admits(agent), || {
            Response::refuse(StatusCode::FORBIDDEN, "this user agent is not allowed")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::build_error;

    fn plugin(settings: &str) -> UserAgent {
        let config: Config = crate::settings::parse(&settings.parse().unwrap()).unwrap();
        UserAgent {
            allow: set("allow", &config.allow).unwrap(),
            deny: set("deny", &config.deny).unwrap(),
        }
    }

    #[test]
    fn deny_wins_then_allow_limits() {
        let rule = plugin("allow = ['^Mozilla/', 'curl']\ndeny = ['(?i)bot']");
        assert!(rule.admits("Mozilla/5.0 (X11)"));
        assert!(rule.admits("curl/8.0"));
        assert!(!rule.admits("Mozilla/5.0 (compatible; Googlebot/2.1)"));
        assert!(!rule.admits("python-requests/2"));
        assert!(!rule.admits(""));
        assert!(plugin("deny = ['bot']").admits(""));
    }

    #[test]
    fn bad_regexes_are_named() {
        let err = build_error(build, "deny = ['ok', '(']");
        assert_eq!(err.key(), Some("deny[1]"));
    }
}
