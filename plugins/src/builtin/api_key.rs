//! `api_key`: admits requests that carry one of the configured keys.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `keys` | — | the accepted keys (use `${ENV}` to keep them out of the file) |
//! | `header` | `"X-API-Key"` | header carrying the key; `""` to not read a header |
//! | `query` | — | query parameter carrying the key |
//! | `hide_credentials` | `false` | remove the key from the request sent upstream |
//!
//! A request without a valid key gets 401, the same answer whether the key is missing or wrong.
//! Keys are compared in constant time.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, StatusCode};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::request::{query_arg, remove_query_arg};
use crate::secret::SecretSet;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "api_key",
    default_priority: 6000,
    summary: "admits requests that carry a configured API key",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    keys: Vec<String>,
    #[serde(default = "default_header")]
    header: String,
    query: Option<String>,
    #[serde(default)]
    hide_credentials: bool,
}

fn default_header() -> String {
    "X-API-Key".to_string()
}

struct ApiKey {
    keys: SecretSet,
    header: Option<HeaderName>,
    query: Option<String>,
    hide_credentials: bool,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    if config.keys.iter().any(String::is_empty) || config.keys.is_empty() {
        return Err(BuildError::at(
            "keys",
            "give at least one key, and no empty key",
        ));
    }
    let header = match config.header.as_str() {
        "" => None,
        name => Some(
            HeaderName::try_from(name)
                .map_err(|_| BuildError::at("header", "not a valid header name"))?,
        ),
    };
    if header.is_none() && config.query.is_none() {
        return Err(BuildError::at(
            "header",
            "set a header or a query parameter to read the key from",
        ));
    }
    Ok(Arc::new(ApiKey {
        keys: SecretSet::new(config.keys.iter().map(String::as_str)),
        header,
        query: config.query,
        hide_credentials: config.hide_credentials,
    }))
}

#[async_trait]
impl Plugin for ApiKey {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let from_header = self
            .header
            .as_ref()
            .and_then(|name| req.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_string());
        let from_query = self.query.as_ref().and_then(|name| {
            query_arg(req.uri.query().unwrap_or_default(), name).map(|v| v.into_owned())
        });
        let valid = from_header
            .iter()
            .chain(&from_query)
            .any(|key| !key.is_empty() && self.keys.contains(key));
        if !valid {
            tracing::debug!(
                presented = from_header.is_some() || from_query.is_some(),
                "api_key: refused"
            );
            return Ok(Flow::Respond(Response::refuse(
                StatusCode::UNAUTHORIZED,
                "a valid API key is required",
            )));
        }
        if self.hide_credentials {
            if let Some(name) = &self.header {
                req.remove_header(name);
            }
            if let Some(name) = &self.query {
                remove_query_arg(req, name)?;
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

    async fn admits(plugin: &dyn Plugin, req: &mut RequestHeader) -> bool {
        matches!(
            plugin
                .request(req, &mut PluginCtx::default())
                .await
                .unwrap(),
            Flow::Continue
        )
    }

    #[tokio::test]
    async fn keys_from_header_or_query() {
        let plugin = plugin("keys = ['k1', 'k2']\nquery = 'api_key'\nhide_credentials = true");
        let mut req = RequestHeader::build("GET", b"/?a=1", None).unwrap();
        req.insert_header("x-api-key", "k2").unwrap();
        assert!(admits(plugin.as_ref(), &mut req).await);
        assert!(req.headers.get("x-api-key").is_none(), "hidden");
        let mut req = RequestHeader::build("GET", b"/?api_key=k1&a=1", None).unwrap();
        assert!(admits(plugin.as_ref(), &mut req).await);
        assert_eq!(req.uri.to_string(), "/?a=1");
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-api-key", "k3").unwrap();
        assert!(!admits(plugin.as_ref(), &mut req).await);
        assert!(
            !admits(
                plugin.as_ref(),
                &mut RequestHeader::build("GET", b"/", None).unwrap()
            )
            .await
        );
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("keys = []").key(), Some("keys"));
        assert_eq!(err("keys = ['']").key(), Some("keys"));
        assert_eq!(err("keys = ['k']\nheader = ''").key(), Some("header"));
    }
}
