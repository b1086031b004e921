//! `redirect`: sends clients elsewhere, keeping the path and query.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `http_to_https` | `false` | redirect plain-HTTP requests to HTTPS |
//! | `https_port` | `443` | port of the HTTPS URL (left out when 443) |
//! | `to_host` | — | redirect requests for any other host to this one (e.g. `example.com` → `www.example.com`) |
//! | `status` | `301` | `301`, `302`, `307` or `308` (307 and 308 keep the method and body) |
//!
//! A request that needs neither redirect goes on.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderValue, StatusCode, header};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "redirect",
    default_priority: 8500,
    summary: "redirects to HTTPS or to another host, keeping path and query",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    http_to_https: bool,
    #[serde(default = "default_https_port")]
    https_port: u16,
    to_host: Option<String>,
    #[serde(default = "default_status")]
    status: u16,
}

fn default_https_port() -> u16 {
    443
}

fn default_status() -> u16 {
    301
}

struct Redirect {
    http_to_https: bool,
    https_port: u16,
    to_host: Option<String>,
    status: StatusCode,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    if !matches!(config.status, 301 | 302 | 307 | 308) {
        return Err(BuildError::at("status", "must be 301, 302, 307 or 308"));
    }
    let to_host = config.to_host.map(|host| host.trim().to_ascii_lowercase());
    if to_host
        .as_deref()
        .is_some_and(|h| h.is_empty() || h.contains(['/', ' ']))
    {
        return Err(BuildError::at("to_host", "not a host name"));
    }
    if !config.http_to_https && to_host.is_none() {
        return Err(BuildError::at(
            "http_to_https",
            "set http_to_https, to_host or both",
        ));
    }
    Ok(Arc::new(Redirect {
        http_to_https: config.http_to_https,
        https_port: config.https_port,
        to_host,
        status: StatusCode::from_u16(config.status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
    }))
}

impl Redirect {
    /// Where `req` should go, if anywhere.
    fn target(&self, req: &RequestHeader, tls: bool) -> Option<String> {
        let raw_host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
        let (host, port) = split_port(raw_host);
        let host = host.to_ascii_lowercase();
        let to_https = self.http_to_https && !tls;
        let new_host = self.to_host.as_ref().filter(|to| **to != host);
        if !to_https && new_host.is_none() {
            return None;
        }
        let https = tls || to_https;
        let port = if to_https {
            (self.https_port != 443).then_some(self.https_port)
        } else {
            port.filter(|p| *p != if https { 443 } else { 80 })
        };
        let mut location = format!(
            "{}://{}",
            if https { "https" } else { "http" },
            new_host.unwrap_or(&host)
        );
        if let Some(port) = port {
            location.push_str(&format!(":{port}"));
        }
        location.push_str(req.uri.path_and_query().map_or("/", |pq| pq.as_str()));
        Some(location)
    }
}

/// Splits `host:port` (keeping IPv6 brackets).
fn split_port(raw: &str) -> (&str, Option<u16>) {
    match raw.rsplit_once(':') {
        Some((host, port))
            if !host.ends_with(':') && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, port.parse().ok())
        }
        _ => (raw, None),
    }
}

#[async_trait]
impl Plugin for Redirect {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let Some(location) = self.target(req, ctx.tls) else {
            return Ok(Flow::Continue);
        };
        let value = HeaderValue::from_str(&location)
            .map_err(|_| PluginError::new("the redirect target is not a valid header value"))?;
        Ok(Flow::Respond(
            Response::refuse(self.status, format!("moved to {location}"))
                .header(header::LOCATION, value),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::build_error;

    fn redirect(settings: &str) -> Redirect {
        let config: Config = crate::settings::parse(&settings.parse().unwrap()).unwrap();
        Redirect {
            http_to_https: config.http_to_https,
            https_port: config.https_port,
            to_host: config.to_host,
            status: StatusCode::from_u16(config.status).unwrap(),
        }
    }

    fn target(rule: &Redirect, host: &str, uri: &str, tls: bool) -> Option<String> {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        req.insert_header("host", host).unwrap();
        rule.target(&req, tls)
    }

    #[test]
    fn table() {
        let https = redirect("http_to_https = true");
        assert_eq!(
            target(&https, "example.com", "/a?b=1", false).as_deref(),
            Some("https://example.com/a?b=1")
        );
        assert_eq!(
            target(&https, "example.com:8080", "/", false).as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(target(&https, "example.com", "/", true), None);
        let custom_port = redirect("http_to_https = true\nhttps_port = 8443");
        assert_eq!(
            target(&custom_port, "[::1]:8080", "/x", false).as_deref(),
            Some("https://[::1]:8443/x")
        );
        let www = redirect("to_host = 'www.example.com'");
        assert_eq!(
            target(&www, "Example.com", "/p?q", false).as_deref(),
            Some("http://www.example.com/p?q")
        );
        assert_eq!(
            target(&www, "example.com:8443", "/", true).as_deref(),
            Some("https://www.example.com:8443/")
        );
        assert_eq!(target(&www, "www.example.com", "/", false), None);
        let both = redirect("to_host = 'www.example.com'\nhttp_to_https = true");
        assert_eq!(
            target(&both, "example.com", "/", false).as_deref(),
            Some("https://www.example.com/")
        );
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(
            err("http_to_https = true\nstatus = 303").key(),
            Some("status")
        );
        assert_eq!(err("").key(), Some("http_to_https"));
        assert_eq!(err("to_host = 'a/b'").key(), Some("to_host"));
    }
}
