//! Headers pingap itself writes or believes, as parts of the runtime snapshot:
//!
//! * [`rules`]: a location's `headers_*` and `response_headers_*` rules;
//! * [`forwarded`]: which peers are trusted proxies, the client address behind them, and the
//!   `X-Forwarded-*` headers sent upstream.

pub mod forwarded;
pub mod forwarded_for;
pub mod framing;
pub mod rules;

pub use forwarded::TrustedProxies;
pub use rules::HeaderRules;
