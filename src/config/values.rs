//! Value types of the config file that carry their own syntax: durations, sizes and "a string or
//! a list of strings". They are shared with the plugins, which parse the same syntax, and live in
//! [`pingap_plugins::settings`]; each parses while the TOML is deserialized, so a bad value is
//! reported with the line it is on.

pub use pingap_plugins::settings::{ByteSize, ConfigDuration, OneOrMany};
