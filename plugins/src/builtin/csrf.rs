//! `csrf`: double-submit cookie protection against cross-site request forgery.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `cookie` | `"csrf_token"` | cookie holding the token |
//! | `header` | `"X-CSRF-Token"` | header an unsafe request must repeat the token in |
//! | `same_site` | `"Strict"` | `SameSite` attribute of the cookie (`Strict`, `Lax` or `None`) |
//!
//! Safe methods (GET, HEAD, OPTIONS, TRACE) pass; a client that has no token cookie yet receives
//! one (`Path=/`, the `SameSite` above, `Secure` over HTTPS; not `HttpOnly`, since the page's
//! script must read it to send the header). Any other method must send the cookie and the same
//! value in the header (compared in constant time), or gets 403.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use pingora_http::{RequestHeader, ResponseHeader};
use rand::RngCore;
use serde::Deserialize;

use crate::request::cookie;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings, secret,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "csrf",
    default_priority: 5500,
    summary: "double-submit cookie protection for unsafe methods",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_cookie")]
    cookie: String,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_same_site")]
    same_site: String,
}

fn default_cookie() -> String {
    "csrf_token".to_string()
}

fn default_header() -> String {
    "X-CSRF-Token".to_string()
}

fn default_same_site() -> String {
    "Strict".to_string()
}

struct Csrf {
    cookie: String,
    header: HeaderName,
    same_site: &'static str,
}

/// A token to hand out with the response.
struct NewToken(String);

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let valid_cookie_name = !config.cookie.is_empty()
        && config
            .cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid_cookie_name {
        return Err(BuildError::at("cookie", "not a valid cookie name"));
    }
    let same_site = match config.same_site.to_ascii_lowercase().as_str() {
        "strict" => "Strict",
        "lax" => "Lax",
        "none" => "None",
        _ => return Err(BuildError::at("same_site", "must be Strict, Lax or None")),
    };
    Ok(Arc::new(Csrf {
        cookie: config.cookie,
        header: HeaderName::try_from(config.header.as_str())
            .map_err(|_| BuildError::at("header", "not a valid header name"))?,
        same_site,
    }))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[async_trait]
impl Plugin for Csrf {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request, Phase::ResponseHeaders])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let token = cookie(req, &self.cookie).filter(|t| !t.is_empty());
        let safe = matches!(
            req.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        if safe {
            if token.is_none() {
                ctx.set_state(NewToken(new_token()));
            }
            return Ok(Flow::Continue);
        }
        let sent = req.headers.get(&self.header).and_then(|v| v.to_str().ok());
        match (token, sent) {
            (Some(token), Some(sent)) if secret::equal(token, sent.trim()) => Ok(Flow::Continue),
            _ => Ok(Flow::Respond(Response::refuse(
                StatusCode::FORBIDDEN,
                "the CSRF token is missing or does not match",
            ))),
        }
    }

    fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        if let Some(NewToken(token)) = ctx.take_state::<NewToken>() {
            let secure = if ctx.tls { "; Secure" } else { "" };
            let value = format!(
                "{}={token}; Path=/; SameSite={}{secure}",
                self.cookie, self.same_site
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                let _ = resp.append_header(header::SET_COOKIE, value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::built;

    fn plugin() -> Arc<dyn Plugin> {
        built(build, "")
    }

    #[tokio::test]
    async fn safe_requests_get_a_token_and_unsafe_ones_must_echo_it() {
        let plugin = plugin();
        let mut ctx = PluginCtx::default();
        let mut get = RequestHeader::build("GET", b"/form", None).unwrap();
        assert!(matches!(
            plugin.request(&mut get, &mut ctx).await.unwrap(),
            Flow::Continue
        ));
        let mut resp = ResponseHeader::build(200, None).unwrap();
        plugin.response_headers(&mut resp, &mut ctx).unwrap();
        let set_cookie = resp.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(set_cookie.starts_with("csrf_token="), "{set_cookie}");
        assert!(
            set_cookie.ends_with("; Path=/; SameSite=Strict"),
            "{set_cookie}"
        );
        let token = set_cookie["csrf_token=".len().."csrf_token=".len() + 64].to_string();

        let post = |cookie: Option<&str>, header: Option<&str>| {
            let mut req = RequestHeader::build("POST", b"/form", None).unwrap();
            if let Some(cookie) = cookie {
                req.insert_header("cookie", format!("csrf_token={cookie}"))
                    .unwrap();
            }
            if let Some(header) = header {
                req.insert_header("x-csrf-token", header).unwrap();
            }
            req
        };
        let allowed = |flow: Flow| matches!(flow, Flow::Continue);
        let mut ctx = PluginCtx::default();
        assert!(allowed(
            plugin
                .request(&mut post(Some(&token), Some(&token)), &mut ctx)
                .await
                .unwrap()
        ));
        assert!(!allowed(
            plugin
                .request(&mut post(Some(&token), Some("forged")), &mut ctx)
                .await
                .unwrap()
        ));
        assert!(!allowed(
            plugin
                .request(&mut post(Some(&token), None), &mut ctx)
                .await
                .unwrap()
        ));
        assert!(!allowed(
            plugin
                .request(&mut post(None, Some(&token)), &mut ctx)
                .await
                .unwrap()
        ));
    }
}
