//! The plugin model of pingap: what a plugin is, when it runs, and how a chain of them is run.
//!
//! A plugin is a value built once from its `[plugins.NAME]` table (see [`Registry`]) and shared by
//! every location that names it. For each request that reaches such a location the proxy runs the
//! location's [`Chain`] at each [`Phase`]:
//!
//! | phase | runs | may |
//! |---|---|---|
//! | [`Phase::Request`] | in priority order, highest first | answer the request ([`Flow::Respond`]) |
//! | [`Phase::RequestBody`] | in priority order, for each chunk | change or refuse the body |
//! | [`Phase::UpstreamRequest`] | in priority order | change the request sent upstream |
//! | [`Phase::ResponseHeaders`] | in reverse order | change the response header |
//! | [`Phase::ResponseBody`] | in reverse order | change each body chunk |
//! | [`Phase::Logging`] | in reverse order | observe the finished request |
//!
//! A [`Flow::Respond`] ends the request phase. The response phases still run for the plugins that
//! had already run (the responder included), so for example CORS headers reach a 401 produced by
//! an authentication plugin that runs after CORS.
//!
//! This crate knows nothing of config files or of the proxy: the proxy hands each phase the
//! request or response header and a per-request [`PluginCtx`], and renders [`Response`]s itself.

mod access_list;
mod builtin;
mod chain;
pub mod conditions;
mod ctx;
mod error;
mod key;
pub mod path_encode;
pub mod path_rewrite;
mod phase;
mod plugin;
mod registry;
pub mod request;
mod response;
mod secret;
pub mod settings;
pub mod vars;

pub use chain::Chain;
pub use ctx::PluginCtx;
pub use error::{BuildError, PluginError};
pub use phase::{Phase, Phases};
pub use plugin::{Flow, Instance, Plugin};
pub use registry::{BuildEnv, PluginType, Registry};
pub use response::Response;
pub use settings::Settings;

/// Re-exported so that plugins and the proxy agree on the header types.
pub use pingora_http::{RequestHeader, ResponseHeader};
