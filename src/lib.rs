//! pingap: a reverse proxy and API gateway on Pingora.
//!
//! The binary (`src/main.rs`) only parses the command line; everything else is here:
//!
//! * [`config`]: reading TOML files into a checked configuration (stages 1 and 2);
//! * [`runtime`]: compiling it into the immutable snapshot requests are served from (stage 3);
//! * [`router`], [`upstream`], [`vars`]: the pieces of that snapshot;
//! * [`proxy`]: the Pingora `ProxyHttp` implementation that serves requests from the snapshot;
//! * [`process`]: listeners, signals, reload and graceful shutdown around Pingora's `Server`.

pub mod cache;
pub mod config;
pub mod headers;
pub mod observe;
pub mod process;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod tls;
pub mod upstream;

/// Request variables and templates (they live with the plugins, which use them too).
pub use pingap_plugins::vars;

/// The plugin types pingap knows: the built-in ones of `pingap-plugins` and the response cache.
pub fn plugin_registry() -> pingap_plugins::Registry {
    let mut registry = pingap_plugins::Registry::builtin();
    registry.register(cache::TYPE);
    registry
}
