//! `rewrite`: an ordered list of regex rewrites of the request path, each optionally guarded by
//! header and query conditions, applied before the request goes upstream.
//!
//! ```toml
//! [plugins.moves]
//! type = "rewrite"
//! rules = [
//!   { match = '^/old/(.*)$', replace = '/new/$1' },
//!   { match = '^/v1/', replace = '/v2/', break = true },
//!   { match = '^/(.*)$', replace = '/beta/$1', headers = ["X-Beta"], query = ["lang=en"] },
//! ]
//! ```
//!
//! | rule key | default | meaning |
//! |---|---|---|
//! | `match` | — | regex searched in the path (anchored only where written) |
//! | `replace` | — | replaces the first match; `$1`…, `$name` (the regex's groups) and the variables (`$host`, `$arg_x`…) |
//! | `break` | `false` | when this rule applies, skip the rules after it |
//! | `headers` | `[]` | conditions on request headers, as for locations |
//! | `query` | `[]` | conditions on query parameters, as for locations |
//!
//! Rules apply in order, each to the path the previous ones produced. The query string is kept
//! unless a replacement sets one. Use either this plugin or the location's `rewrite` key: the
//! location's prefix rewrite counts on the path it matched.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::conditions::Conditions;
use crate::path_rewrite::{Rewrite, regex_rewrite};
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "rewrite",
    default_priority: 3000,
    summary: "ordered regex rewrites of the path, with conditions",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    rules: Vec<RuleConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(rename = "match")]
    pattern: String,
    replace: String,
    #[serde(default, rename = "break")]
    stop: bool,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    query: Vec<String>,
}

struct Rule {
    rewrite: Rewrite,
    conditions: Conditions,
    stop: bool,
}

struct RewritePlugin {
    rules: Vec<Rule>,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    if config.rules.is_empty() {
        return Err(BuildError::at("rules", "give at least one rule"));
    }
    let rules = config
        .rules
        .into_iter()
        .enumerate()
        .map(|(index, rule)| {
            let at = |key: &str, message: String| {
                BuildError::at(format!("rules[{index}].{key}"), message)
            };
            let rewrite = regex_rewrite(&rule.pattern, &rule.replace, &[]).map_err(|e| {
                let key = if e.starts_with("invalid regex") {
                    "match"
                } else {
                    "replace"
                };
                at(key, e)
            })?;
            let conditions =
                Conditions::parse(&[], &rule.headers, &rule.query).map_err(|errors| {
                    let (key, message) = errors.into_iter().next().unwrap_or_default();
                    at(&key, message)
                })?;
            Ok(Rule {
                rewrite,
                conditions,
                stop: rule.stop,
            })
        })
        .collect::<Result<_, BuildError>>()?;
    Ok(Arc::new(RewritePlugin { rules }))
}

#[async_trait]
impl Plugin for RewritePlugin {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let original = req
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        for rule in &self.rules {
            if rule.conditions.check(req).is_err() {
                continue;
            }
            let cx = ctx.variables(req, &original);
            let Some(rewritten) = rule.rewrite.apply(req.uri.path(), 0, req.uri.query(), &cx)
            else {
                continue;
            };
            let uri = rewritten
                .parse::<http::Uri>()
                .map_err(|e| PluginError::new(format!("rewrite produced an invalid URI: {e}")))?;
            req.set_uri(uri);
            if rule.stop {
                break;
            }
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::{build_error, built};

    fn plugin(settings: &str) -> Arc<dyn Plugin> {
        built(build, settings)
    }

    async fn rewrite(plugin: &dyn Plugin, uri: &str, headers: &[(&str, &str)]) -> String {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (name, value) in headers {
            req.insert_header(name.to_string(), *value).unwrap();
        }
        let mut ctx = PluginCtx::default();
        ctx.host = "example.com".to_string();
        plugin.request(&mut req, &mut ctx).await.unwrap();
        req.uri.to_string()
    }

    #[tokio::test]
    async fn rules_apply_in_order_until_a_break() {
        let plugin = plugin(
            r#"rules = [
                { match = '^/old/(.*)$', replace = '/new/$1' },
                { match = '^/new/(?<rest>.*)$', replace = '/v2/$rest', break = true },
                { match = '^/v2/', replace = '/never/' },
                { match = '^/beta', replace = '/b/$host', headers = ['X-Beta: 1'], query = ['lang=en'] },
            ]"#,
        );
        assert_eq!(
            rewrite(plugin.as_ref(), "/old/a?x=1", &[]).await,
            "/v2/a?x=1"
        );
        assert_eq!(rewrite(plugin.as_ref(), "/other", &[]).await, "/other");
        assert_eq!(
            rewrite(plugin.as_ref(), "/beta/p?lang=en", &[("x-beta", "1")]).await,
            "/b/example.com/p?lang=en"
        );
        assert_eq!(
            rewrite(plugin.as_ref(), "/beta/p?lang=fr", &[("x-beta", "1")]).await,
            "/beta/p?lang=fr"
        );
    }

    #[test]
    fn errors_name_the_rule_and_key() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("rules = []").key(), Some("rules"));
        assert_eq!(
            err("rules = [{ match = '(', replace = '/' }]").key(),
            Some("rules[0].match")
        );
        assert_eq!(
            err("rules = [{ match = 'a', replace = '/$nope' }]").key(),
            Some("rules[0].replace")
        );
        assert_eq!(
            err("rules = [{ match = 'a', replace = '/', headers = ['bad name'] }]").key(),
            Some("rules[0].headers[0]")
        );
        assert_eq!(
            err("rules = [{ match = 'a', replace = '/', mtach = 1 }]").key(),
            Some("rules[0].mtach")
        );
    }
}
