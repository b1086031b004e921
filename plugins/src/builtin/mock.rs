//! `mock`: answers requests itself with a fixed response, e.g. a maintenance page, a stub API
//! or a health endpoint.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `status` | `200` | response status |
//! | `body` | `""` | response body |
//! | `file` | — | read the body from this file instead (relative to the config file); read when the config is loaded |
//! | `content_type` | from `file`'s extension, else `text/plain; charset=utf-8` | `Content-Type` |
//! | `headers` | `[]` | extra headers, `"Name: value"` |
//! | `delay` | — | wait this long before answering, e.g. `"200ms"` |
//! | `path` | — | only answer requests for exactly this path; others go on |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::settings::{ConfigDuration, header_list};
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "mock",
    default_priority: 500,
    summary: "answers with a fixed status, headers and body",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_status")]
    status: u16,
    body: Option<String>,
    file: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
    delay: Option<ConfigDuration>,
    path: Option<String>,
}

fn default_status() -> u16 {
    200
}

struct Mock {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    delay: Option<Duration>,
    path: Option<String>,
}

fn build(settings: &Settings, context: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let status = StatusCode::from_u16(config.status)
        .ok()
        .filter(|s| s.as_u16() >= 100 && s.as_u16() < 600 && !s.is_informational())
        .ok_or_else(|| BuildError::at("status", "must be a status code from 200 to 599"))?;
    let (body, guessed_type) = match (config.body, config.file) {
        (Some(_), Some(_)) => {
            return Err(BuildError::at("file", "set either body or file, not both"));
        }
        (Some(body), None) => (Bytes::from(body), None),
        (None, Some(file)) => {
            let path = context.resolve(&file);
            let body = std::fs::read(&path).map_err(|e| {
                BuildError::at("file", format!("cannot read {}: {e}", path.display()))
            })?;
            (Bytes::from(body), content_type_of(&file))
        }
        (None, None) => (Bytes::new(), None),
    };
    let mut headers = header_list("headers", &config.headers)?;
    let content_type = match config.content_type {
        Some(content_type) => Some(
            HeaderValue::from_str(&content_type)
                .map_err(|_| BuildError::at("content_type", "not a valid header value"))?,
        ),
        None => Some(HeaderValue::from_static(
            guessed_type.unwrap_or("text/plain; charset=utf-8"),
        )),
    };
    if let Some(content_type) = content_type
        && !headers.iter().any(|(name, _)| name == header::CONTENT_TYPE)
    {
        headers.insert(0, (header::CONTENT_TYPE, content_type));
    }
    if let Some(path) = &config.path
        && !path.starts_with('/')
    {
        return Err(BuildError::at("path", "must start with \"/\""));
    }
    Ok(Arc::new(Mock {
        status,
        headers,
        body,
        delay: config.delay.map(ConfigDuration::get),
        path: config.path,
    }))
}

fn content_type_of(file: &str) -> Option<&'static str> {
    let extension = file.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "svg" => "image/svg+xml",
        "xml" => "application/xml",
        _ => return None,
    })
}

#[async_trait]
impl Plugin for Mock {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        if self
            .path
            .as_deref()
            .is_some_and(|path| path != req.uri.path())
        {
            return Ok(Flow::Continue);
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        Ok(Flow::Respond(Response {
            status: self.status,
            headers: self.headers.clone(),
            body: Some(self.body.clone()),
            message: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock(settings: &str) -> Result<Arc<dyn Plugin>, BuildError> {
        build(&settings.parse().unwrap(), &BuildEnv::default())
    }

    async fn answer(plugin: &dyn Plugin, path: &str) -> Option<Response> {
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        match plugin
            .request(&mut req, &mut PluginCtx::default())
            .await
            .unwrap()
        {
            Flow::Respond(response) => Some(response),
            Flow::Continue => None,
        }
    }

    #[tokio::test]
    async fn answers_with_the_configured_response() {
        let plugin =
            mock("status = 503\nbody = 'down for maintenance'\nheaders = ['Retry-After: 60']")
                .unwrap();
        let response = answer(plugin.as_ref(), "/any").await.unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.body.as_deref(), Some(&b"down for maintenance"[..]));
        assert_eq!(
            response.headers[0],
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8")
            )
        );
        assert_eq!(response.headers[1].0, "retry-after");
    }

    #[tokio::test]
    async fn path_filter_lets_other_paths_through() {
        let plugin = mock("path = '/ping'\nbody = 'pong'").unwrap();
        assert!(answer(plugin.as_ref(), "/ping").await.is_some());
        assert!(answer(plugin.as_ref(), "/ping/x").await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_delay() {
        let plugin = mock("delay = '2s'").unwrap();
        let start = tokio::time::Instant::now();
        answer(plugin.as_ref(), "/").await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[test]
    fn reads_files_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("pingap-mock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("page.html"), "<h1>hi</h1>").unwrap();
        let context = BuildEnv {
            base_dir: dir.clone(),
            name: "mock".into(),
            ..BuildEnv::default()
        };
        let plugin = build(&"file = 'page.html'".parse().unwrap(), &context).unwrap();
        let response = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(answer(plugin.as_ref(), "/"))
            .unwrap();
        assert_eq!(response.body.as_deref(), Some(&b"<h1>hi</h1>"[..]));
        assert_eq!(response.headers[0].1, "text/html; charset=utf-8");
        let err = build(&"file = 'missing.html'".parse().unwrap(), &context)
            .err()
            .unwrap();
        assert_eq!(err.key(), Some("file"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        assert_eq!(mock("status = 99").err().unwrap().key(), Some("status"));
        assert_eq!(
            mock("body = 'a'\nfile = 'b'").err().unwrap().key(),
            Some("file")
        );
        assert_eq!(
            mock("headers = ['nocolon']").err().unwrap().key(),
            Some("headers[0]")
        );
        assert_eq!(mock("path = 'relative'").err().unwrap().key(), Some("path"));
        assert_eq!(
            mock("delay = 'forever'").err().unwrap().key(),
            Some("delay")
        );
    }
}
