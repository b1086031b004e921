//! `request_id`: gives every request an id, sends it upstream and back to the client, and makes
//! it available as `$request_id`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `header` | `"X-Request-ID"` | header carrying the id, upstream and in the response |
//! | `algorithm` | `"uuid"` | `uuid` (UUID v7, time-ordered) or `nanoid` |
//! | `size` | `21` | nanoid length, 8 to 64 |
//! | `trust_incoming` | `false` | keep an id the client sent, if it is valid (1 to 128 characters of `A-Z a-z 0-9 . _ : -`) |

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use serde::Deserialize;

use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "request_id",
    default_priority: 10_000,
    summary: "assigns a request id, forwards it upstream and returns it to the client",
    build,
};

const MAX_INCOMING_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default = "default_size")]
    size: usize,
    #[serde(default)]
    trust_incoming: bool,
}

fn default_header() -> String {
    "X-Request-ID".to_string()
}

fn default_size() -> usize {
    21
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Algorithm {
    #[default]
    Uuid,
    Nanoid,
}

struct RequestId {
    header: HeaderName,
    algorithm: Algorithm,
    size: usize,
    trust_incoming: bool,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let header = HeaderName::try_from(config.header.as_str())
        .map_err(|e| BuildError::at("header", format!("invalid header name: {e}")))?;
    if !(8..=64).contains(&config.size) {
        return Err(BuildError::at("size", "must be between 8 and 64"));
    }
    Ok(Arc::new(RequestId {
        header,
        algorithm: config.algorithm,
        size: config.size,
        trust_incoming: config.trust_incoming,
    }))
}

impl RequestId {
    fn generate(&self) -> String {
        match self.algorithm {
            Algorithm::Uuid => uuid::Uuid::now_v7().to_string(),
            Algorithm::Nanoid => {
                let size = self.size;
                nanoid::nanoid!(size)
            }
        }
    }

    fn incoming(&self, req: &RequestHeader) -> Option<String> {
        let value = req.headers.get(&self.header)?.to_str().ok()?;
        is_valid_id(value).then(|| value.to_string())
    }
}

fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_INCOMING_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn header_value(id: &str) -> Result<HeaderValue, PluginError> {
    HeaderValue::from_str(id).map_err(|_| PluginError::new("generated id is not a header value"))
}

#[async_trait]
impl Plugin for RequestId {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request, Phase::ResponseHeaders])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let incoming = if self.trust_incoming {
            self.incoming(req)
        } else {
            None
        };
        let id = match incoming {
            Some(id) => id,
            None => {
                let id = self.generate();
                req.insert_header(self.header.clone(), header_value(&id)?)
                    .map_err(|e| PluginError::new(e.to_string()))?;
                id
            }
        };
        ctx.request_id = Some(id);
        Ok(Flow::Continue)
    }

    fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        if let Some(id) = ctx.request_id.as_deref() {
            resp.insert_header(self.header.clone(), header_value(id)?)
                .map_err(|e| PluginError::new(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::{build_error, built};

    fn plugin(settings: &str) -> Arc<dyn Plugin> {
        built(build, settings)
    }

    async fn run(plugin: &dyn Plugin, incoming: Option<&str>) -> (RequestHeader, PluginCtx) {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(id) = incoming {
            req.insert_header("x-request-id", id).unwrap();
        }
        let mut ctx = PluginCtx::default();
        plugin.request(&mut req, &mut ctx).await.unwrap();
        (req, ctx)
    }

    #[tokio::test]
    async fn assigns_a_uuid_v7_and_forwards_it() {
        let plugin = plugin("");
        let (req, ctx) = run(plugin.as_ref(), Some("client-chosen")).await;
        let id = ctx.request_id.clone().unwrap();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(req.headers.get("x-request-id").unwrap(), id.as_str());
        let mut resp = ResponseHeader::build(200, None).unwrap();
        let mut ctx = ctx;
        plugin.response_headers(&mut resp, &mut ctx).unwrap();
        assert_eq!(resp.headers.get("x-request-id").unwrap(), id.as_str());
    }

    #[tokio::test]
    async fn nanoid_has_the_configured_size() {
        let plugin = plugin("algorithm = 'nanoid'\nsize = 12\nheader = 'X-Trace'");
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let mut ctx = PluginCtx::default();
        plugin.request(&mut req, &mut ctx).await.unwrap();
        assert_eq!(ctx.request_id.as_ref().unwrap().len(), 12);
        assert!(req.headers.get("x-trace").is_some());
    }

    #[tokio::test]
    async fn keeps_valid_incoming_ids_only_when_trusted() {
        let trusting = plugin("trust_incoming = true");
        let (_, ctx) = run(trusting.as_ref(), Some("abc-123_x.y:z")).await;
        assert_eq!(ctx.request_id.as_deref(), Some("abc-123_x.y:z"));
        let (req, ctx) = run(trusting.as_ref(), Some("bad id with spaces")).await;
        let id = ctx.request_id.unwrap();
        assert_ne!(id, "bad id with spaces");
        assert_eq!(req.headers.get("x-request-id").unwrap(), id.as_str());
        let long = "a".repeat(MAX_INCOMING_LEN + 1);
        let (_, ctx) = run(trusting.as_ref(), Some(&long)).await;
        assert_ne!(ctx.request_id.unwrap(), long);
    }

    #[test]
    fn rejects_bad_settings() {
        let err = build_error(build, "size = 4");
        assert_eq!(err.key(), Some("size"));
        let err = build_error(build, "header = 'bad header'");
        assert_eq!(err.key(), Some("header"));
        let err = build_error(build, "algorithm = 'sha1'");
        assert_eq!(err.key(), Some("algorithm"));
    }
}
