//! `headers`: security headers on responses, with safe defaults.
//!
//! | key | default | header |
//! |---|---|---|
//! | `hsts` | `"max-age=31536000; includeSubDomains"` | `Strict-Transport-Security`, on HTTPS responses only |
//! | `content_type_options` | `"nosniff"` | `X-Content-Type-Options` |
//! | `frame_options` | `"DENY"` | `X-Frame-Options` |
//! | `referrer_policy` | `"strict-origin-when-cross-origin"` | `Referrer-Policy` |
//! | `content_security_policy` | — | `Content-Security-Policy` (no default: a policy must fit the site) |
//! | `extra` | `[]` | more `"Name: value"` headers |
//! | `overwrite` | `false` | replace a header the upstream already set |
//!
//! Set a key to `""` to leave that header out.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, header};
use pingora_http::ResponseHeader;
use serde::Deserialize;

use crate::settings::header_list;
use crate::{
    BuildEnv, BuildError, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "headers",
    default_priority: 1000,
    summary: "adds security headers (HSTS, nosniff, frame options, referrer policy, CSP)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    hsts: Option<String>,
    content_type_options: Option<String>,
    frame_options: Option<String>,
    referrer_policy: Option<String>,
    content_security_policy: Option<String>,
    #[serde(default)]
    extra: Vec<String>,
    #[serde(default)]
    overwrite: bool,
}

struct SecurityHeaders {
    hsts: Option<HeaderValue>,
    always: Vec<(HeaderName, HeaderValue)>,
    overwrite: bool,
}

fn value(
    key: &str,
    configured: Option<String>,
    default: Option<&str>,
) -> Result<Option<HeaderValue>, BuildError> {
    match configured.as_deref().or(default) {
        None | Some("") => Ok(None),
        Some(text) => HeaderValue::from_str(text)
            .map(Some)
            .map_err(|_| BuildError::at(key, "not a valid header value")),
    }
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let mut always = Vec::new();
    let pairs = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            value(
                "content_type_options",
                config.content_type_options,
                Some("nosniff"),
            )?,
        ),
        (
            header::X_FRAME_OPTIONS,
            value("frame_options", config.frame_options, Some("DENY"))?,
        ),
        (
            header::REFERRER_POLICY,
            value(
                "referrer_policy",
                config.referrer_policy,
                Some("strict-origin-when-cross-origin"),
            )?,
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            value(
                "content_security_policy",
                config.content_security_policy,
                None,
            )?,
        ),
    ];
    for (name, value) in pairs {
        if let Some(value) = value {
            always.push((name, value));
        }
    }
    always.extend(header_list("extra", &config.extra)?);
    Ok(Arc::new(SecurityHeaders {
        hsts: value(
            "hsts",
            config.hsts,
            Some("max-age=31536000; includeSubDomains"),
        )?,
        always,
        overwrite: config.overwrite,
    }))
}

impl SecurityHeaders {
    fn set(&self, resp: &mut ResponseHeader, name: &HeaderName, value: &HeaderValue) {
        if self.overwrite || !resp.headers.contains_key(name) {
            let _ = resp.insert_header(name.clone(), value.clone());
        }
    }
}

#[async_trait]
impl Plugin for SecurityHeaders {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::ResponseHeaders])
    }

    fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        for (name, value) in &self.always {
            self.set(resp, name, value);
        }
        if ctx.tls
            && let Some(hsts) = &self.hsts
        {
            self.set(resp, &header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::built;

    fn apply(settings: &str, tls: bool, existing: &[(&str, &str)]) -> ResponseHeader {
        let plugin = built(build, settings);
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (name, value) in existing {
            resp.insert_header(name.to_string(), *value).unwrap();
        }
        let mut ctx = PluginCtx::default();
        ctx.tls = tls;
        plugin.response_headers(&mut resp, &mut ctx).unwrap();
        resp
    }

    #[test]
    fn safe_defaults() {
        let resp = apply("", true, &[]);
        assert_eq!(resp.headers["x-content-type-options"], "nosniff");
        assert_eq!(resp.headers["x-frame-options"], "DENY");
        assert_eq!(
            resp.headers["referrer-policy"],
            "strict-origin-when-cross-origin"
        );
        assert_eq!(
            resp.headers["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert!(resp.headers.get("content-security-policy").is_none());
        assert!(
            apply("", false, &[])
                .headers
                .get("strict-transport-security")
                .is_none(),
            "HTTPS only"
        );
    }

    #[test]
    fn settings_change_and_disable_headers() {
        let resp = apply(
            "frame_options = ''\ncontent_security_policy = \"default-src 'self'\"\nextra = ['X-Robots-Tag: noindex']",
            false,
            &[("x-content-type-options", "upstream")],
        );
        assert!(resp.headers.get("x-frame-options").is_none());
        assert_eq!(
            resp.headers["content-security-policy"],
            "default-src 'self'"
        );
        assert_eq!(resp.headers["x-robots-tag"], "noindex");
        assert_eq!(
            resp.headers["x-content-type-options"], "upstream",
            "kept without overwrite"
        );
        let resp = apply(
            "overwrite = true",
            false,
            &[("x-content-type-options", "upstream")],
        );
        assert_eq!(resp.headers["x-content-type-options"], "nosniff");
    }
}
