//! pingap: a reverse proxy and API gateway on Pingora.
//!
//! The binary (`src/main.rs`) only parses the command line; everything else is here, in layers
//! whose imports only go down (README, "Architecture"):
//!
//! * [`process`]: the process around Pingora's `Server`: listeners, signals, reloads, graceful
//!   shutdown, and every background service that needs the live runtime (metrics endpoint,
//!   active health checks, DNS refresh);
//! * [`control`]: the control plane: one apply path for every configuration change (start,
//!   SIGHUP, file watch, etcd, admin API, rollback), the history, plans and the rollback window;
//! * [`proxy`]: the Pingora `ProxyHttp` implementation, its connection-free request steps and
//!   `pingap explain`, which runs those same steps;
//! * [`runtime`]: compiling a configuration into the immutable snapshot requests are served from,
//!   what a reload carries over, and routing ([`runtime::Runtime::plan`]);
//! * [`router`], [`upstream`], [`observe`], [`tls`], [`cache`], [`headers`]: the parts a runtime
//!   is made of;
//! * [`config`]: reading TOML files into a checked configuration;
//! * the `pingap-plugins` crate: the plugin model, the built-in plugins and [`vars`].

pub mod admin;
pub mod cache;
pub mod config;
pub mod control;
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
