//! `cors`: Cross-Origin Resource Sharing.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `allow_origins` | — | origins allowed: exact (`https://app.example.com`), `*` (any), or `~regex` |
//! | `allow_methods` | `["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]` | methods a preflight allows |
//! | `allow_headers` | the headers the preflight asks for | request headers a preflight allows |
//! | `expose_headers` | `[]` | response headers scripts may read |
//! | `allow_credentials` | `false` | allow cookies and credentials; the origin is then echoed, never `*` |
//! | `max_age` | `"10m"` | how long browsers may cache a preflight |
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here with
//! 204 (or 403 for an origin that is not allowed) and never reaches the upstream. Other requests
//! from an allowed origin get `Access-Control-Allow-Origin` and the rest on their response, whatever
//! its status, including refusals by plugins that run after this one. Responses carry
//! `Vary: Origin` unless the answer is the same for every origin.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use pingora_http::{RequestHeader, ResponseHeader};
use regex::Regex;
use serde::Deserialize;

use crate::settings::ConfigDuration;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "cors",
    default_priority: 9000,
    summary: "answers CORS preflights and adds CORS headers to responses",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    allow_methods: Vec<String>,
    allow_headers: Option<Vec<String>>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    max_age: Option<ConfigDuration>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        .map(str::to_string)
        .to_vec()
}

enum Origin {
    Any,
    Exact(String),
    Matches(Regex),
}

struct Cors {
    origins: Vec<Origin>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    allow_credentials: bool,
    max_age: HeaderValue,
    /// Whether the answer can differ by origin.
    vary: bool,
}

fn list_value(key: &str, items: &[String]) -> Result<HeaderValue, BuildError> {
    HeaderValue::from_str(&items.join(", "))
        .map_err(|_| BuildError::at(key, "not usable in a header"))
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let origins = config
        .allow_origins
        .iter()
        .enumerate()
        .map(|(index, origin)| match origin.trim() {
            "*" => Ok(Origin::Any),
            text => match text.strip_prefix('~') {
                Some(pattern) => Regex::new(pattern).map(Origin::Matches).map_err(|e| {
                    BuildError::at(
                        format!("allow_origins[{index}]"),
                        format!("invalid regex: {e}"),
                    )
                }),
                None => Ok(Origin::Exact(
                    text.trim_end_matches('/').to_ascii_lowercase(),
                )),
            },
        })
        .collect::<Result<Vec<_>, _>>()?;
    if origins.is_empty() {
        return Err(BuildError::at(
            "allow_origins",
            "list at least one origin (or \"*\")",
        ));
    }
    for (index, method) in config.allow_methods.iter().enumerate() {
        Method::from_bytes(method.as_bytes())
            .map_err(|_| BuildError::at(format!("allow_methods[{index}]"), "not a method"))?;
    }
    let wildcard_only = origins.iter().all(|o| matches!(o, Origin::Any));
    let max_age = config.max_age.map_or(600, |d| d.get().as_secs());
    Ok(Arc::new(Cors {
        vary: !wildcard_only || config.allow_credentials,
        origins,
        allow_methods: list_value("allow_methods", &config.allow_methods)?,
        allow_headers: config
            .allow_headers
            .map(|headers| list_value("allow_headers", &headers))
            .transpose()?,
        expose_headers: (!config.expose_headers.is_empty())
            .then(|| list_value("expose_headers", &config.expose_headers))
            .transpose()?,
        allow_credentials: config.allow_credentials,
        max_age: HeaderValue::from(max_age),
    }))
}

/// The `Access-Control-Allow-Origin` value for an allowed request, kept for its response.
struct Allowed(HeaderValue);

impl Cors {
    /// The value to send back for `origin`, if it is allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin
            .to_str()
            .ok()?
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let allowed = self.origins.iter().any(|o| match o {
            Origin::Any => true,
            Origin::Exact(exact) => *exact == text,
            Origin::Matches(regex) => regex.is_match(&text),
        });
        if !allowed {
            return None;
        }
        let any_origin = !self.allow_credentials && !self.vary;
        Some(if any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        })
    }

    fn headers(&self, allowed: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed.clone())];
        if self.allow_credentials {
            headers.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        headers
    }
}

#[async_trait]
impl Plugin for Cors {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request, Phase::ResponseHeaders])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let Some(origin) = req.headers.get(header::ORIGIN).cloned() else {
            return Ok(Flow::Continue);
        };
        let allowed = self.allow(&origin);
        let preflight = req.method == Method::OPTIONS
            && req
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if !preflight {
            if let Some(allowed) = allowed {
                ctx.set_state(Allowed(allowed));
            }
            return Ok(Flow::Continue);
        }
        let Some(allowed) = allowed else {
            return Ok(Flow::Respond(
                Response::refuse(StatusCode::FORBIDDEN, "this origin is not allowed")
                    .header(header::VARY, HeaderValue::from_static("Origin")),
            ));
        };
        let mut response = Response::new(StatusCode::NO_CONTENT);
        response.body = Some(bytes::Bytes::new());
        response.headers.extend(self.headers(&allowed));
        response.headers.push((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        ));
        let requested = req
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        if let Some(headers) = self.allow_headers.clone().or(requested) {
            response
                .headers
                .push((header::ACCESS_CONTROL_ALLOW_HEADERS, headers));
        }
        response
            .headers
            .push((header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        if self.vary {
            response
                .headers
                .push((header::VARY, HeaderValue::from_static("Origin")));
        }
        Ok(Flow::Respond(response))
    }

    fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        if let Some(Allowed(allowed)) = ctx.state::<Allowed>() {
            for (name, value) in self.headers(allowed) {
                let _ = resp.insert_header(name, value);
            }
            if let Some(expose) = &self.expose_headers {
                let _ = resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
        if self.vary {
            let _ = resp.append_header(header::VARY, HeaderValue::from_static("Origin"));
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

    fn request(method: &str, origin: Option<&str>, preflight: bool) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/", None).unwrap();
        if let Some(origin) = origin {
            req.insert_header("origin", origin).unwrap();
        }
        if preflight {
            req.insert_header("access-control-request-method", "PUT")
                .unwrap();
            req.insert_header("access-control-request-headers", "x-token")
                .unwrap();
        }
        req
    }

    fn header<'r>(headers: &'r [(HeaderName, HeaderValue)], name: &str) -> Option<&'r str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn preflights_are_answered_here() {
        let plugin = plugin(
            "allow_origins = ['https://app.example.com', '~^https://.*\\\\.example\\\\.org$']\nallow_credentials = true\nmax_age = '1h'",
        );
        let mut req = request("OPTIONS", Some("https://app.example.com"), true);
        let Flow::Respond(response) = plugin
            .request(&mut req, &mut PluginCtx::default())
            .await
            .unwrap()
        else {
            panic!("preflight");
        };
        assert_eq!(response.status, 204);
        assert_eq!(
            header(&response.headers, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(
            header(&response.headers, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            header(&response.headers, "access-control-allow-headers"),
            Some("x-token")
        );
        assert_eq!(
            header(&response.headers, "access-control-max-age"),
            Some("3600")
        );
        assert_eq!(header(&response.headers, "vary"), Some("Origin"));

        let mut denied = request("OPTIONS", Some("https://evil.test"), true);
        let Flow::Respond(response) = plugin
            .request(&mut denied, &mut PluginCtx::default())
            .await
            .unwrap()
        else {
            panic!("denied preflight");
        };
        assert_eq!(response.status, 403);
        assert_eq!(
            header(&response.headers, "access-control-allow-origin"),
            None
        );
    }

    #[tokio::test]
    async fn simple_requests_get_headers_on_the_response() {
        let plugin = plugin("allow_origins = ['*']\nexpose_headers = ['X-Total']");
        let mut ctx = PluginCtx::default();
        let mut req = request("GET", Some("https://anywhere.test"), false);
        assert!(matches!(
            plugin.request(&mut req, &mut ctx).await.unwrap(),
            Flow::Continue
        ));
        let mut resp = ResponseHeader::build(401, None).unwrap();
        plugin.response_headers(&mut resp, &mut ctx).unwrap();
        assert_eq!(resp.headers["access-control-allow-origin"], "*");
        assert_eq!(resp.headers["access-control-expose-headers"], "X-Total");
        assert!(
            resp.headers.get("vary").is_none(),
            "the same for every origin"
        );

        let mut ctx = PluginCtx::default();
        let mut no_origin = request("GET", None, false);
        plugin.request(&mut no_origin, &mut ctx).await.unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        plugin.response_headers(&mut resp, &mut ctx).unwrap();
        assert!(resp.headers.get("access-control-allow-origin").is_none());
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("allow_origins = []").key(), Some("allow_origins"));
        assert_eq!(
            err("allow_origins = ['~(']").key(),
            Some("allow_origins[0]")
        );
        assert_eq!(
            err("allow_origins = ['*']\nallow_methods = ['GE T']").key(),
            Some("allow_methods[0]")
        );
    }
}
