//! Where ACME accounts and issued certificates are kept: in the configuration's storage, so that
//! a restart reuses them and instances sharing etcd share them.
//!
//! | source | accounts | certificates | order lock |
//! |---|---|---|---|
//! | a file or directory | `<config>.acme/accounts/ID.json` | `<config>.acme/certificates/NAME.json` | `flock` on `<config>.acme/locks/NAME.lock` |
//! | etcd | `PREFIX/_acme/accounts/ID` | `PREFIX/_acme/certificates/NAME` | `PREFIX/_acme/locks/NAME`, held with a lease |
//!
//! (`basic.acme_dir` puts the directory elsewhere.) Files are readable by their owner only and
//! replaced atomically; the directories are created private. An account is identified by its
//! directory URL and contact address ([`account_id`]): one account per directory and address.
//! A certificate record holds the chain and key last issued and the last failure, so the
//! back-off survives a restart and is shared by every instance.
//!
//! All methods block (file system or etcd): call them from a blocking thread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::etcd::{EtcdError, EtcdLock, EtcdSource};
use crate::config::{Source, WriteError, write_atomically};

/// How long an etcd order lock lives without its holder renewing it.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// What could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// etcd refused or could not be reached.
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    /// A stored value is not what pingap writes.
    #[error("{key}: {message}")]
    Invalid {
        /// The file or key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A certificate as last issued.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The directory that issued it.
    pub directory: String,
    /// The domains it was ordered for.
    pub domains: Vec<String>,
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// The private key (PEM).
    pub key_pem: String,
    /// The leaf's notBefore, in seconds since the epoch.
    pub not_before: i64,
    /// The leaf's notAfter, in seconds since the epoch.
    pub not_after: i64,
    /// When it was issued, in seconds since the epoch.
    pub issued_at: i64,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("directory", &self.directory)
            .field("domains", &self.domains)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// A record of a chain just issued: its validity is read from the leaf.
    pub fn new(
        directory: &str,
        domains: &[String],
        chain_pem: String,
        key_pem: String,
        issued_at: SystemTime,
    ) -> Result<Issued, String> {
        let (not_before, not_after) = validity(&chain_pem)?;
        Ok(Issued {
            directory: directory.to_string(),
            domains: domains.to_vec(),
            chain_pem,
            key_pem,
            not_before,
            not_after,
            issued_at: unix(issued_at),
        })
    }

    /// The leaf's notBefore.
    pub fn not_before(&self) -> SystemTime {
        from_unix(self.not_before)
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> SystemTime {
        from_unix(self.not_after)
    }
}

/// The last failed order (of the failures in a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// When, in seconds since the epoch.
    pub at: i64,
    /// Failures in a row.
    pub count: u32,
    /// What went wrong.
    pub error: String,
    /// The directory the order went to.
    pub directory: String,
    /// The domains ordered.
    pub domains: Vec<String>,
}

impl Failure {
    /// When it happened.
    pub fn at(&self) -> SystemTime {
        from_unix(self.at)
    }
}

/// What is stored about one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// The certificate last issued, if any.
    pub issued: Option<Issued>,
    /// The last failure, when the last order failed.
    pub failure: Option<Failure>,
}

/// A stored account.
#[derive(Serialize, Deserialize)]
pub struct AccountRecord {
    /// The directory it was created on.
    pub directory: String,
    /// Its contact address.
    pub email: Option<String>,
    /// Its key and URL (secret).
    pub credentials: AccountCredentials,
}

/// The identifier of the account for `directory` and `email`: 16 hex digits of a SHA-256.
pub fn account_id(directory: &str, email: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(directory.as_bytes());
    hasher.update([0]);
    hasher.update(email.unwrap_or_default().as_bytes());
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where ACME material is kept; see the [module documentation](self).
#[derive(Debug, Clone)]
pub enum Storage {
    /// Files in a directory.
    Dir(PathBuf),
    /// Keys under `PREFIX/_acme/` in etcd.
    Etcd(EtcdSource),
}

/// Holds an order lock; dropping it releases the lock.
#[derive(Debug)]
pub enum OrderLock {
    /// An exclusive `flock` on a file.
    File(nix::fcntl::Flock<std::fs::File>),
    /// An etcd key bound to a lease.
    Etcd(EtcdLock),
}

impl OrderLock {
    /// Publishes `value` at `key` for as long as the lock is held, where other instances can
    /// see it (etcd only: a directory is not shared between instances answering challenges).
    pub fn publish(&self, key: &str, value: &str) -> Result<(), StorageError> {
        match self {
            OrderLock::File(_) => Ok(()),
            OrderLock::Etcd(lock) => {
                Ok(lock.put_leased(&format!("{ETCD_DIR}{key}"), value.as_bytes().to_vec())?)
            }
        }
    }
}

/// The etcd keys' prefix under the configuration prefix.
const ETCD_DIR: &str = "_acme/";

impl Storage {
    /// The storage for `source`: `dir` when set, else beside the configuration file or
    /// directory, or under the etcd prefix. None for the embedded default configuration.
    pub fn for_source(source: &Source, dir: Option<&Path>) -> Option<Storage> {
        if let Some(dir) = dir {
            return Some(Storage::Dir(dir.to_path_buf()));
        }
        match source.etcd() {
            Some(etcd) => Some(Storage::Etcd(etcd.clone())),
            None => source.default_acme_dir().map(Storage::Dir),
        }
    }

    /// The record of certificate `name`.
    pub fn certificate(&self, name: &str) -> Result<Option<CertificateRecord>, StorageError> {
        self.read_json(&format!("certificates/{}", key_segment(name)))
    }

    /// Replaces the record of certificate `name`.
    pub fn put_certificate(
        &self,
        name: &str,
        record: &CertificateRecord,
    ) -> Result<(), StorageError> {
        self.write_json(&format!("certificates/{}", key_segment(name)), record)
    }

    /// The account with identifier `id` ([`account_id`]).
    pub fn account(&self, id: &str) -> Result<Option<AccountRecord>, StorageError> {
        self.read_json(&format!("accounts/{}", key_segment(id)))
    }

    /// Stores an account.
    pub fn put_account(&self, id: &str, record: &AccountRecord) -> Result<(), StorageError> {
        self.write_json(&format!("accounts/{}", key_segment(id)), record)
    }

    /// Values published under `prefix` by the holders of order locks (etcd only).
    pub fn published(&self, prefix: &str) -> Result<Vec<(String, String)>, StorageError> {
        match self {
            Storage::Dir(_) => Ok(Vec::new()),
            Storage::Etcd(etcd) => Ok(etcd
                .data_list(&format!("{ETCD_DIR}{prefix}"))?
                .into_iter()
                .map(|(key, value)| (key, String::from_utf8_lossy(&value).into_owned()))
                .collect()),
        }
    }

    /// Takes the order lock of certificate `name` if no one holds it (`holder` names this
    /// instance in etcd). `None` when another process holds it.
    pub fn try_lock(&self, name: &str, holder: &str) -> Result<Option<OrderLock>, StorageError> {
        let segment = key_segment(name);
        match self {
            Storage::Etcd(etcd) => Ok(etcd
                .try_lock(&format!("{ETCD_DIR}locks/{segment}"), holder, LOCK_TTL)?
                .map(OrderLock::Etcd)),
            Storage::Dir(dir) => {
                let path = dir.join("locks").join(format!("{segment}.lock"));
                create_private_dir(path.parent().unwrap_or(dir))?;
                let file = {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .mode(0o600)
                        .open(&path)
                }
                .map_err(|source| StorageError::Io {
                    path: path.clone(),
                    source,
                })?;
                match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => Ok(Some(OrderLock::File(lock))),
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
                    Err((_, errno)) => Err(StorageError::Io {
                        path,
                        source: std::io::Error::from(errno),
                    }),
                }
            }
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let (name, bytes) = match self {
            Storage::Dir(dir) => {
                let path = dir.join(format!("{key}.json"));
                match std::fs::read(&path) {
                    Ok(bytes) => (path.display().to_string(), bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(StorageError::Io { path, source }),
                }
            }
            Storage::Etcd(etcd) => {
                let relative = format!("{ETCD_DIR}{key}");
                match etcd.data_get(&relative)? {
                    Some(bytes) => (relative, bytes),
                    None => return Ok(None),
                }
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Invalid {
                key: name,
                message: format!("not a record pingap wrote: {e}"),
            })
    }

    fn write_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| StorageError::Invalid {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        match self {
            Storage::Dir(dir) => {
                let path = dir.join(format!("{key}.json"));
                create_private_dir(path.parent().unwrap_or(dir))?;
                write_atomically(&path, &text).map_err(|e| match e {
                    WriteError::Io { path, source } => StorageError::Io { path, source },
                    other => StorageError::Invalid {
                        key: path.display().to_string(),
                        message: other.to_string(),
                    },
                })
            }
            Storage::Etcd(etcd) => {
                Ok(etcd.data_put(&format!("{ETCD_DIR}{key}"), text.into_bytes())?)
            }
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Dir(dir) => write!(f, "{}", dir.display()),
            Storage::Etcd(etcd) => write!(f, "{etcd} ({ETCD_DIR})"),
        }
    }
}

/// Creates `dir` and its parents; the directories it creates are readable by the owner only.
fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// A name made safe as one path segment (a file name or an etcd key segment): letters, digits,
/// `-`, `_` and inner dots are kept, every other byte is written `%XX`.
pub fn key_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (index, byte) in name.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
        if keep || byte == b'.' && index > 0 {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The validity of the leaf (the first certificate) of a PEM chain, in seconds since the epoch.
pub fn validity(chain_pem: &str) -> Result<(i64, i64), String> {
    let chain = crate::tls::certificates(chain_pem.as_bytes())?;
    let leaf = chain.first().ok_or("the chain has no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// Seconds since the epoch (0 before it).
pub fn unix(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The time `secs` seconds after the epoch (the epoch for negative values).
pub fn from_unix(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// A time as RFC 3339 in UTC, for logs and status.
pub fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_safe_segments() {
        assert_eq!(key_segment("site-1_a.b"), "site-1_a.b");
        assert_eq!(key_segment(".."), "%2E.");
        assert_eq!(key_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn one_account_per_directory_and_address() {
        let a = account_id("https://ca.example/dir", Some("ops@example.com"));
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            account_id("https://ca.example/dir", Some("ops@example.com"))
        );
        assert_ne!(a, account_id("https://ca.example/dir", None));
        assert_ne!(
            a,
            account_id("https://other.example/dir", Some("ops@example.com"))
        );
    }

    #[test]
    fn records_round_trip_through_a_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(temp.path().join("pingap.toml.acme"));
        assert!(storage.certificate("site").unwrap().is_none());
        let record = CertificateRecord {
            issued: None,
            failure: Some(Failure {
                at: 5,
                count: 2,
                error: "refused".into(),
                directory: "https://ca.example/dir".into(),
                domains: vec!["a.example.com".into()],
            }),
        };
        storage.put_certificate("site", &record).unwrap();
        assert_eq!(storage.certificate("site").unwrap(), Some(record));
        let file = temp.path().join("pingap.toml.acme/certificates/site.json");
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&temp.path().join("pingap.toml.acme")), 0o700);
        std::fs::write(&file, "{").unwrap();
        let error = storage.certificate("site").unwrap_err().to_string();
        assert!(
            error.contains("site.json: not a record pingap wrote"),
            "{error}"
        );
    }

    #[test]
    fn a_file_lock_is_held_once() {
        let temp = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(temp.path().to_path_buf());
        let held = storage.try_lock("site", "me").unwrap();
        assert!(held.is_some());
        assert!(storage.try_lock("site", "me").unwrap().is_none());
        assert!(storage.try_lock("other", "me").unwrap().is_some());
        drop(held);
        assert!(storage.try_lock("site", "me").unwrap().is_some());
    }
}
