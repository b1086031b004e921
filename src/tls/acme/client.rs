//! Talking to an ACME directory with `instant-acme`: the HTTPS client (rustls with ring; the
//! roots of `acme_ca_file`, or the system's together with the Mozilla roots, so a container
//! without CA certificates still reaches Let's Encrypt), the account (one per directory and
//! contact address, created once and kept in the storage), and one order from start to
//! certificate.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use super::challenges::{Answering, Pending};
use super::spec::{AcmeSpec, ChallengeKind};
use super::storage::{AccountRecord, Storage, StorageError, account_id};
use crate::tls::CertificateStore;

/// How long to wait for a TCP connection to the directory.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the directory may take to validate the challenges and to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long other instances get to read a published challenge (they read every second)
/// before the directory is told to validate.
const PUBLISHED_SETTLE: Duration = Duration::from_secs(2);

/// Why an account or an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The directory answered with an error, or could not be reached.
    #[error("{step}: {source}")]
    Directory {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: instant_acme::Error,
    },
    /// The directory refused a domain, or a challenge could not be answered.
    #[error("{0}")]
    Order(String),
    /// The storage could not be read or written.
    #[error("ACME storage: {0}")]
    Storage(#[from] StorageError),
}

/// Adds what was being done to an `instant-acme` error.
fn at(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
    move |source| AcmeError::Directory { step, source }
}

/// The roots trusted for public directories: the system's and the Mozilla roots, read once.
fn public_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots: Vec<CertificateDer<'static>> =
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        let native = rustls_native_certs::load_native_certs();
        roots.extend(native.certs);
        roots
    })
}

/// An HTTPS client that trusts `roots` (or [`public_roots`]).
fn http_client(
    roots: Option<&[CertificateDer<'static>]>,
) -> Result<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>, AcmeError>
{
    let mut store = RootCertStore::empty();
    let (added, _ignored) =
        store.add_parsable_certificates(roots.unwrap_or(public_roots()).iter().cloned());
    if added == 0 {
        return Err(AcmeError::Order(
            "no usable root certificate to trust the directory with".to_string(),
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AcmeError::Order(format!("TLS setup: {e}")))?
    .with_root_certificates(store)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new()).build(https))
}

/// Whether the directory answered that the account does not exist (a test directory that was
/// reset, a deactivated account): a new one is needed.
pub fn is_unknown_account(error: &AcmeError) -> bool {
    matches!(
        error,
        AcmeError::Directory {
            source: instant_acme::Error::Api(problem),
            ..
        } if problem
            .r#type
            .as_deref()
            .is_some_and(|kind| kind.ends_with(":accountDoesNotExist"))
    )
}

/// The account for the spec's directory and contact address: the stored one (unless `fresh`),
/// or a new one, which is stored. Returns it and whether it was created.
pub async fn account(
    storage: &Storage,
    spec: &AcmeSpec,
    fresh: bool,
) -> Result<(Account, bool), AcmeError> {
    let id = account_id(&spec.directory, spec.email.as_deref());
    let client = || http_client(spec.ca_roots.as_deref()).map(Box::new);
    let stored = if fresh {
        None
    } else {
        blocking({
            let storage = storage.clone();
            let id = id.clone();
            move || storage.account(&id)
        })
        .await?
    };
    if let Some(record) = stored {
        let account = Account::builder_with_http(client()?)
            .from_credentials(record.credentials)
            .await
            .map_err(at("restoring the ACME account"))?;
        return Ok((account, false));
    }
    let contact = spec.email.as_ref().map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(client()?)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            spec.directory.clone(),
            None,
        )
        .await
        .map_err(at("creating the ACME account"))?;
    let record = AccountRecord {
        directory: spec.directory.clone(),
        email: spec.email.clone(),
        credentials,
    };
    blocking({
        let storage = storage.clone();
        move || storage.put_account(&id, &record)
    })
    .await?;
    Ok((account, true))
}

/// A certificate just issued.
pub struct Certificate {
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// When it was received.
    pub received_at: SystemTime,
}

/// Orders a certificate for the spec's domains, answering its challenges (http-01 through
/// [`super::challenges`], tls-alpn-01 through `store`, and `publish` for other instances, which
/// says whether other instances will see it) until the directory has validated them.
pub async fn order(
    account: &Account,
    spec: &AcmeSpec,
    store: &Arc<CertificateStore>,
    publish: &(dyn Fn(&Pending) -> Result<bool, StorageError> + Sync),
) -> Result<Certificate, AcmeError> {
    let identifiers: Vec<Identifier> = spec
        .domains
        .iter()
        .map(|domain| Identifier::Dns(domain.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(at("creating the order"))?;
    let challenge_type = match spec.challenge {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut answering = Answering::new(store.clone());
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(at("reading an authorization"))?;
        let domain = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Order(format!(
                    "the authorization for {domain} is {status:?}"
                )));
            }
        }
        let mut challenge = authorization
            .challenge(challenge_type.clone())
            .ok_or_else(|| {
                AcmeError::Order(format!(
                    "the directory offers no {} challenge for {domain}",
                    spec.challenge.as_str()
                ))
            })?;
        let pending = Pending {
            kind: spec.challenge.into(),
            domain: domain.clone(),
            token: challenge.token.clone(),
            key_authorization: challenge.key_authorization().as_str().to_string(),
        };
        answering.add(pending.clone()).map_err(AcmeError::Order)?;
        if publish(&pending)? {
            tokio::time::sleep(PUBLISHED_SETTLE).await;
        }
        challenge
            .set_ready()
            .await
            .map_err(at("telling the directory the challenge is ready"))?;
    }
    let retries = RetryPolicy::new().timeout(VALIDATION_TIMEOUT);
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(at("waiting for validation"))?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order(validation_errors(&mut order).await));
    }
    let key_pem = order.finalize().await.map_err(at("finalizing the order"))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(at("downloading the certificate"))?;
    drop(answering);
    Ok(Certificate {
        chain_pem,
        key_pem,
        received_at: SystemTime::now(),
    })
}

/// What the directory said about the challenges of an order that became invalid.
async fn validation_errors(order: &mut instant_acme::Order) -> String {
    let mut problems = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        let domain = authorization.identifier().to_string();
        for challenge in &authorization.challenges {
            if let Some(error) = &challenge.error {
                problems.push(format!("{domain}: {error}"));
            }
        }
    }
    if problems.is_empty() {
        "the directory found the order invalid".to_string()
    } else {
        format!("validation failed: {}", problems.join("; "))
    }
}

/// Runs blocking storage work on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(StorageError::Invalid {
            key: String::new(),
            message: format!("the storage task failed: {e}"),
        })
    })
}
