//! ACME: certificates obtained from an ACME directory (Let's Encrypt, its staging directory, or
//! any other, such as a private CA or pebble) for `[certificates.NAME]` tables with `acme`, and
//! kept renewed.
//!
//! * [`spec`]: the checked settings of each such table;
//! * [`schedule`]: when to order (a third of the lifetime left; back-off after failures);
//! * [`storage`]: accounts and issued certificates in the configuration's storage, and the
//!   order lock shared by instances;
//! * [`client`]: the account and one order, with `instant-acme`;
//! * [`challenges`]: the http-01 and tls-alpn-01 answers pending now;
//! * [`renewer`]: one look at one certificate, from reading what is stored to storing what was
//!   issued;
//! * [`status`]: what the admin API shows of each.
//!
//! The background service that looks at every certificate of the running configuration and
//! serves what is issued lives with the process (`crate::process`).

pub mod challenges;
pub mod client;
pub mod renewer;
pub mod schedule;
pub mod spec;
pub mod status;
pub mod storage;

pub use challenges::{Challenges, challenges};
pub use renewer::{Checked, OrderOutcome, Renewer};
pub use spec::{AcmePlan, AcmeSpec, ChallengeKind};
pub use status::AcmeStatus;
pub use storage::Storage;
