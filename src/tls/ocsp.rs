//! OCSP stapling: the request for a certificate, the fetch from the responder its issuer names,
//! and the checks a response must pass before it is stapled.
//!
//! Encoding and decoding are RustCrypto's `x509-ocsp` (RFC 6960 types); signatures are checked
//! with x509-parser's ring-backed `verify_signature`. A response is stapled only when:
//!
//! * its status is `successful` and it is a basic response;
//! * it is signed by the certificate's issuer, or by a responder certificate that the issuer
//!   signed for OCSP signing (`id-kp-OCSPSigning`) and that is valid now;
//! * it has a response for this certificate's id (issuer name and key hashes, serial) whose
//!   status is `good`;
//! * its `thisUpdate` is not in the future (five minutes of clock skew allowed) and its
//!   `nextUpdate` not in the past. A response without `nextUpdate` is served for an hour.
//!
//! The fetch is an HTTP POST (`application/ocsp-request`) with a timeout and a bounded answer;
//! it runs in the maintenance task ([`super::maintenance`]), never in a handshake.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use sha1::{Digest, Sha1};
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspResponse, OcspResponseStatus, Request, ResponderId,
};
use x509_parser::der_parser::asn1_rs::BitString;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode};

use super::store::{Loaded, Staple};

/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response accepted.
const MAX_RESPONSE: usize = 64 * 1024;
/// Clock skew allowed for `thisUpdate`.
const SKEW_SECS: i64 = 300;
/// How long a response without `nextUpdate` is served.
const NO_NEXT_UPDATE_SECS: i64 = 3600;

/// What stapling a certificate needs: where to ask, what, and what to check the answer with.
pub struct Query {
    /// The responder's URL.
    pub url: String,
    /// The DER `OCSPRequest`.
    pub body: Vec<u8>,
    cert_id: CertId,
    issuer_der: Vec<u8>,
}

/// Prepares the query for `loaded`: `Ok(None)` when its certificate names no OCSP responder.
pub fn query_for(loaded: &Loaded) -> Result<Option<Query>, String> {
    let Some(url) = loaded.info.ocsp_url.clone() else {
        return Ok(None);
    };
    let issuer_der = loaded
        .issuer_der()
        .ok_or("the chain has no issuer certificate to check OCSP responses with")?
        .to_vec();
    let leaf = x509_cert::Certificate::from_der(&loaded.key.cert[0])
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let issuer = x509_cert::Certificate::from_der(&issuer_der)
        .map_err(|e| format!("cannot parse the issuer certificate: {e}"))?;
    let cert_id = CertId::from_cert::<Sha1>(&issuer, &leaf).map_err(|e| e.to_string())?;
    let body = OcspRequestBuilder::default()
        .with_request(Request::new(cert_id.clone()))
        .build()
        .to_der()
        .map_err(|e| e.to_string())?;
    Ok(Some(Query {
        url,
        body,
        cert_id,
        issuer_der,
    }))
}

/// Asks the responder of `query`; returns the DER response.
pub async fn fetch(query: &Query) -> Result<Vec<u8>, String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(&query.url)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .header(http::header::ACCEPT, "application/ocsp-response")
        .body(Full::new(Bytes::from(query.body.clone())))
        .map_err(|e| format!("bad responder URL {}: {e}", query.url))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{}: {e}", query.url))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("{} answered {}", query.url, response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("{}: {e}", query.url))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{} did not answer within {FETCH_TIMEOUT:?}", query.url))?
}

/// Checks `response` for `query` at `now` (Unix seconds); returns it as a staple.
pub fn verify(query: &Query, response: &[u8], now: i64) -> Result<Staple, String> {
    let decoded =
        OcspResponse::from_der(response).map_err(|e| format!("not an OCSP response: {e}"))?;
    if decoded.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "the responder answered {:?}",
            decoded.response_status
        ));
    }
    let bytes = decoded
        .response_bytes
        .ok_or("a successful response without a body")?;
    if bytes.response_type != <BasicOcspResponse as AssociatedOid>::OID {
        return Err("not a basic OCSP response".to_string());
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("malformed basic OCSP response: {e}"))?;

    let (_, issuer) = X509Certificate::from_der(&query.issuer_der)
        .map_err(|e| format!("cannot parse the issuer certificate: {e}"))?;
    let signer_der = signer_of(&basic, &issuer, now)?;
    let signer_key = match &signer_der {
        Some(der) => X509Certificate::from_der(der)
            .map_err(|e| format!("cannot parse the responder certificate: {e}"))?
            .1
            .public_key()
            .raw
            .to_vec(),
        None => issuer.public_key().raw.to_vec(),
    };
    check_signature(&basic, &signer_key)?;

    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|single| same_certificate(&single.cert_id, &query.cert_id))
        .ok_or("no response for this certificate")?;
    match &single.cert_status {
        CertStatus::Good(_) => {}
        CertStatus::Revoked(_) => return Err("the certificate is revoked".to_string()),
        CertStatus::Unknown(_) => {
            return Err("the responder does not know the certificate".to_string());
        }
    }
    let this_update = unix_seconds(&single.this_update);
    if this_update > now + SKEW_SECS {
        return Err("its thisUpdate is in the future".to_string());
    }
    let next_update = match &single.next_update {
        Some(next) => unix_seconds(next),
        None => now + NO_NEXT_UPDATE_SECS,
    };
    if next_update <= now {
        return Err("it is stale (its nextUpdate has passed)".to_string());
    }
    Ok(Staple {
        response: response.to_vec(),
        this_update,
        next_update,
    })
}

/// The responder certificate that signed `basic` when it is not the issuer (`None` when the
/// issuer signed it). A delegated responder must be signed by the issuer, allowed to sign OCSP
/// responses and valid at `now`.
fn signer_of(
    basic: &BasicOcspResponse,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<Option<Vec<u8>>, String> {
    let names = |cert: &X509Certificate<'_>, id: &ResponderId| match id {
        ResponderId::ByName(name) => name
            .to_der()
            .is_ok_and(|der| der.as_slice() == cert.subject().as_raw()),
        ResponderId::ByKey(hash) => {
            Sha1::digest(cert.public_key().subject_public_key.data.as_ref()).as_slice()
                == hash.as_bytes()
        }
    };
    let id = &basic.tbs_response_data.responder_id;
    if names(issuer, id) {
        return Ok(None);
    }
    for cert in basic.certs.iter().flatten() {
        let der = cert.to_der().map_err(|e| e.to_string())?;
        let Ok((_, candidate)) = X509Certificate::from_der(&der) else {
            continue;
        };
        if !names(&candidate, id) {
            continue;
        }
        candidate
            .verify_signature(Some(issuer.public_key()))
            .map_err(|_| "the responder's certificate is not signed by the issuer".to_string())?;
        let may_sign = candidate
            .extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|eku| eku.value.ocsp_signing);
        if !may_sign {
            return Err("the responder's certificate is not for OCSP signing".to_string());
        }
        let validity = candidate.validity();
        if validity.not_before.timestamp() > now || validity.not_after.timestamp() <= now {
            return Err("the responder's certificate is not valid now".to_string());
        }
        return Ok(Some(der));
    }
    Err("signed by a responder that is neither the issuer nor one it delegated to".to_string())
}

/// Checks the signature of `basic` with the signer's `SubjectPublicKeyInfo` (DER).
fn check_signature(basic: &BasicOcspResponse, signer_spki: &[u8]) -> Result<(), String> {
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| e.to_string())?;
    let algorithm_der = basic
        .signature_algorithm
        .to_der()
        .map_err(|e| e.to_string())?;
    let (_, algorithm) = AlgorithmIdentifier::from_der(&algorithm_der)
        .map_err(|e| format!("unreadable signature algorithm: {e}"))?;
    let (_, key) = SubjectPublicKeyInfo::from_der(signer_spki)
        .map_err(|e| format!("unreadable signer key: {e}"))?;
    let signature = BitString::new(0, basic.signature.raw_bytes());
    x509_parser::verify::verify_signature(&key, &algorithm, &signature, &tbs)
        .map_err(|e| format!("bad signature: {e}"))
}

/// Whether two certificate ids name the same certificate (the hash algorithm's parameters may
/// be written as NULL or left out).
fn same_certificate(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number == b.serial_number
}

fn unix_seconds(time: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    i64::try_from(time.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// When a staple should be fetched again: halfway through its validity, and at least a minute
/// before it runs out (but not sooner than `now`).
pub fn refresh_at(staple: &Staple, now: i64) -> i64 {
    let halfway = staple.this_update + (staple.next_update - staple.this_update) / 2;
    halfway.min(staple.next_update - 60).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `openssl ocsp` (see testdata/README.md): a leaf whose issuer names a responder,
    /// and three answers about it.
    const CHAIN: &[u8] = include_bytes!("testdata/chain.crt");
    const KEY: &[u8] = include_bytes!("testdata/leaf.key");
    const GOOD: &[u8] = include_bytes!("testdata/good.der");
    const REVOKED: &[u8] = include_bytes!("testdata/revoked.der");
    const FORGED: &[u8] = include_bytes!("testdata/forged.der");
    /// The responses' thisUpdate (2026-11-28T02:03:08Z); nextUpdate is a day later.
    const THIS_UPDATE: i64 = 1_795_831_388;

    fn query() -> Query {
        let key = super::super::certified_key(CHAIN, KEY).unwrap();
        let loaded = Loaded::new(key).unwrap();
        assert_eq!(
            loaded.info.ocsp_url.as_deref(),
            Some("http://127.0.0.1:9/ocsp")
        );
        query_for(&loaded).unwrap().unwrap()
    }

    #[test]
    fn a_good_answer_signed_by_the_issuer_is_stapled_while_valid() {
        let query = query();
        let staple = verify(&query, GOOD, THIS_UPDATE + 60).unwrap();
        assert_eq!(staple.response, GOOD);
        assert_eq!(staple.this_update, THIS_UPDATE);
        assert_eq!(staple.next_update, THIS_UPDATE + 86_400);
        let stale = verify(&query, GOOD, THIS_UPDATE + 86_400).unwrap_err();
        assert!(stale.contains("stale"), "{stale}");
        let early = verify(&query, GOOD, THIS_UPDATE - 3600).unwrap_err();
        assert!(early.contains("in the future"), "{early}");
    }

    #[test]
    fn revoked_forged_and_mangled_answers_are_refused() {
        let query = query();
        let revoked = verify(&query, REVOKED, THIS_UPDATE + 60).unwrap_err();
        assert!(revoked.contains("revoked"), "{revoked}");
        let forged = verify(&query, FORGED, THIS_UPDATE + 60).unwrap_err();
        assert!(forged.contains("not signed by the issuer"), "{forged}");
        // One digit of the signed producedAt changed: still well-formed, no longer signed.
        let mut mangled = GOOD.to_vec();
        let at = mangled
            .windows(15)
            .position(|w| w == b"20261128020308Z")
            .unwrap();
        mangled[at + 13] = b'9';
        let unsigned = verify(&query, &mangled, THIS_UPDATE + 60).unwrap_err();
        assert!(unsigned.contains("bad signature"), "{unsigned}");
        assert!(verify(&query, b"not der", THIS_UPDATE + 60).is_err());
    }

    #[test]
    fn refreshes_halfway_and_before_expiry() {
        let staple = |this_update, next_update| Staple {
            response: Vec::new(),
            this_update,
            next_update,
        };
        assert_eq!(
            refresh_at(&staple(1000, 1000 + 86_400), 1000),
            1000 + 43_200
        );
        // A response valid for a minute and a half is fetched again after 30 seconds.
        assert_eq!(refresh_at(&staple(1000, 1090), 1000), 1030);
        // Never in the past.
        assert_eq!(refresh_at(&staple(1000, 1090), 1080), 1080);
    }
}
