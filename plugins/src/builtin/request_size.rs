//! `request_size`: refuses request bodies over a size with 413.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_size` | — | the largest body accepted, e.g. `"8MB"` |
//!
//! A request whose `Content-Length` is larger is refused before anything is read or sent
//! upstream. A body without a length (chunked) is counted as it streams: the chunk that crosses
//! the limit is not forwarded, and the request is answered with 413 (the upstream sees the
//! request cut short). The location key `client_max_body_size` is a shorthand for this plugin.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{StatusCode, header};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::settings::ByteSize;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "request_size",
    default_priority: 7000,
    summary: "refuses request bodies larger than max_size with 413",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max_size: ByteSize,
}

struct RequestSize {
    max: u64,
}

/// Bytes of the body seen so far.
struct Seen(u64);

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    Ok(Arc::new(RequestSize {
        max: config.max_size.bytes(),
    }))
}

impl RequestSize {
    fn message(&self) -> String {
        format!("the request body is larger than {} bytes", self.max)
    }
}

#[async_trait]
impl Plugin for RequestSize {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request, Phase::RequestBody])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let length = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match length {
            Some(length) if length > self.max => Ok(Flow::Respond(Response::refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                self.message(),
            ))),
            _ => Ok(Flow::Continue),
        }
    }

    fn request_body(
        &self,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        let chunk = body.as_ref().map_or(0, |b| b.len() as u64);
        let seen = ctx.state::<Seen>().map_or(0, |s| s.0) + chunk;
        ctx.set_state(Seen(seen));
        if seen > self.max {
            *body = None;
            return Err(PluginError::refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                self.message(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::built;

    fn plugin() -> Arc<dyn Plugin> {
        built(build, "max_size = 10")
    }

    #[tokio::test]
    async fn refuses_large_declared_lengths() {
        let plugin = plugin();
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.insert_header("content-length", "11").unwrap();
        let Flow::Respond(response) = plugin
            .request(&mut req, &mut PluginCtx::default())
            .await
            .unwrap()
        else {
            panic!("11 > 10");
        };
        assert_eq!(response.status, 413);
        req.insert_header("content-length", "10").unwrap();
        assert!(matches!(
            plugin
                .request(&mut req, &mut PluginCtx::default())
                .await
                .unwrap(),
            Flow::Continue
        ));
    }

    #[test]
    fn counts_streamed_chunks() {
        let plugin = plugin();
        let mut ctx = PluginCtx::default();
        let mut chunk = Some(Bytes::from_static(b"123456"));
        plugin.request_body(&mut chunk, false, &mut ctx).unwrap();
        assert_eq!(chunk.as_deref(), Some(&b"123456"[..]), "forwarded");
        let mut chunk = Some(Bytes::from_static(b"7890"));
        plugin.request_body(&mut chunk, false, &mut ctx).unwrap();
        let mut chunk = Some(Bytes::from_static(b"x"));
        let err = plugin.request_body(&mut chunk, true, &mut ctx).unwrap_err();
        assert_eq!(err.status, Some(StatusCode::PAYLOAD_TOO_LARGE));
        assert!(chunk.is_none(), "the chunk over the limit is not forwarded");
    }
}
