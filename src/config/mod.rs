//! Configuration: reading (stage 1) and checking (stage 2) the TOML contract.
//!
//! [`load::load_path`] reads a file or directory into a [`schema::Config`] that remembers where
//! each table came from; [`validate::validate`] checks names and references. Compiling into the
//! runtime snapshot (and checking what that needs: regexes, plugins, certificates) is
//! [`crate::runtime::compile`].

mod env;
mod error;
pub mod etcd;
pub mod load;
pub mod schema;
mod snapshot;
mod source;
pub mod validate;
pub mod values;

pub use error::{ConfigError, ConfigErrors, Origin, Origins};
pub use load::Loaded;
pub use snapshot::Snapshot;
pub use source::{DEFAULT_CONFIG, Source, WriteError, open_private, write_atomically};
