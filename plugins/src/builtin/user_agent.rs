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
use http::header;
use pingora_http::RequestHeader;
use regex::{Regex, RegexSet};

use crate::access_list::{self, AccessList, Matcher};
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "user_agent",
    default_priority: 7500,
    summary: "allows or denies requests by User-Agent regexes",
    build,
};

struct UserAgent {
    list: AccessList<RegexSet>,
}

/// A list of regexes is matched in one pass, as a set.
impl Matcher for RegexSet {
    type Subject = str;

    fn parse(key: &str, patterns: &[String]) -> Result<Self, BuildError> {
        // Compiled one by one first, so that an error names its entry.
        access_list::parse_entries(key, patterns, |pattern| {
            Regex::new(pattern)
                .map(drop)
                .map_err(|e| format!("invalid regex: {e}"))
        })?;
        RegexSet::new(patterns).map_err(|e| BuildError::at(key, format!("invalid regex: {e}")))
    }

    fn is_empty(&self) -> bool {
        RegexSet::is_empty(self)
    }

    fn matches(&self, agent: &str) -> bool {
        self.is_match(agent)
    }
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    Ok(Arc::new(UserAgent {
        list: AccessList::from_settings(settings)?,
    }))
}

impl UserAgent {
    fn admits(&self, agent: &str) -> bool {
        self.list.admits(Some(agent))
    }
}

#[async_trait]
impl Plugin for UserAgent {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let agent = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(access_list::decide(
            self.admits(agent),
            "this user agent is not allowed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::build_error;

    fn plugin(settings: &str) -> UserAgent {
        UserAgent {
            list: AccessList::from_settings(&settings.parse().unwrap()).unwrap(),
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
