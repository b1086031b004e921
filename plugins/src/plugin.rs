//! The [`Plugin`] trait and a built plugin [`Instance`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::{Phases, PluginCtx, PluginError, Response};

/// What the request phase decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on with the next plugin, then proxy the request.
    Continue,
    /// Answer the request with this response; no later plugin runs its request phase and the
    /// request is not proxied.
    Respond(Response),
}

impl Flow {
    /// `Continue` when `admitted`, else the refusal `refusal` makes.
    pub fn admit_if(admitted: bool, refusal: impl FnOnce() -> Response) -> Flow {
        if admitted {
            Flow::Continue
        } else {
            Flow::Respond(refusal())
        }
    }
}

/// A plugin: per-instance state built once from settings, and one method per [`crate::Phase`].
///
/// Every method has a default that does nothing; [`Plugin::phases`] says which ones the plugin
/// overrides, so that the chain does not call the others. Methods must not block: the request
/// phase is `async` for plugins that have to wait (for a permit, say); the others are synchronous
/// and run on the proxy's worker threads.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The phases this plugin takes part in.
    fn phases(&self) -> Phases;

    /// The request header has arrived and the location matched. May change the request, or answer
    /// it with [`Flow::Respond`].
    async fn request(
        &self,
        _req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// A chunk of the request body is about to be sent upstream; `body` may be replaced or
    /// emptied, and an error with a status stops the request (e.g. 413).
    fn request_body(
        &self,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// The request is about to be sent upstream (after the location's header rules).
    fn upstream_request(
        &self,
        _req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// The response header is about to be sent, whether it came from upstream, from a plugin or
    /// from the proxy's error handling.
    fn response_headers(
        &self,
        _resp: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// A chunk of the response body is about to be sent; `body` may be replaced or emptied.
    fn response_body(
        &self,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// The request has finished.
    fn logging(&self, _ctx: &mut PluginCtx) {}

    /// The plugin as [`Any`](std::any::Any), for plugins the proxy itself works with (the
    /// response cache, whose work happens in the proxy's cache phases rather than in a chain).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// A built plugin with its name, type and priority, as the chain runs it.
pub struct Instance {
    name: Arc<str>,
    kind: &'static str,
    priority: i32,
    plugin: Arc<dyn Plugin>,
}

impl Instance {
    /// Wraps a built plugin.
    pub fn new(
        name: impl Into<Arc<str>>,
        kind: &'static str,
        priority: i32,
        plugin: Arc<dyn Plugin>,
    ) -> Self {
        Instance {
            name: name.into(),
            kind,
            priority,
            plugin,
        }
    }

    /// The instance's name (the `NAME` of `[plugins.NAME]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin type (`type = "..."`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Higher runs first in the request phases.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// The plugin itself.
    pub fn plugin(&self) -> &dyn Plugin {
        self.plugin.as_ref()
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("priority", &self.priority)
            .finish()
    }
}
