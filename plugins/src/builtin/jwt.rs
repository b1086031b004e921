//! `jwt`: admits requests that carry a valid JSON Web Token.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `algorithm` | `"HS256"` | `HS256`/`HS384`/`HS512` (with `secret`), `RS256`/`RS384`/`RS512`, `PS256`/`PS384`/`PS512`, `ES256`/`ES384`, `EdDSA` (with `public_key`) |
//! | `secret` | — | HMAC secret (use `${ENV}` to keep it out of the file) |
//! | `public_key` | — | PEM public key, inline or a file path (relative to the config file) |
//! | `header` | `"Authorization"` | header carrying `Bearer <token>`; `""` to not read a header |
//! | `cookie` | — | cookie carrying the token |
//! | `query` | — | query parameter carrying the token |
//! | `issuer` | — | accepted `iss` values (string or list) |
//! | `audience` | — | accepted `aud` values (string or list) |
//! | `leeway` | `"0s"` | clock skew allowed for `exp` and `nbf` |
//! | `require_exp` | `true` | reject tokens without `exp` |
//! | `claims_to_headers` | `{}` | claims copied into request headers, e.g. `{ sub = "X-User" }`; those headers are always removed from the client's request first |
//! | `hide_credentials` | `false` | remove the token from the request sent upstream |
//! | `realm` | `"pingap"` | realm of the `WWW-Authenticate` challenge |
//!
//! The token is taken from the header, then the cookie, then the query parameter. A request
//! without one gets 401 with `WWW-Authenticate: Bearer realm="…"`; a request whose token is bad
//! for any reason (signature, expiry, issuer, …) gets the same 401 with `error="invalid_token"`,
//! whatever the reason, which is only logged at debug level.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::request::{cookie, query_arg};
use crate::settings::{ConfigDuration, OneOrMany};
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "jwt",
    default_priority: 6000,
    summary: "admits requests with a valid JSON Web Token",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_algorithm")]
    algorithm: String,
    secret: Option<String>,
    public_key: Option<String>,
    #[serde(default = "default_header")]
    header: String,
    cookie: Option<String>,
    query: Option<String>,
    issuer: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    leeway: Option<ConfigDuration>,
    #[serde(default = "yes")]
    require_exp: bool,
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_algorithm() -> String {
    "HS256".to_string()
}

fn default_header() -> String {
    "Authorization".to_string()
}

fn default_realm() -> String {
    "pingap".to_string()
}

fn yes() -> bool {
    true
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
    header: Option<HeaderName>,
    cookie: Option<String>,
    query: Option<String>,
    claims_to_headers: Vec<(String, HeaderName)>,
    hide_credentials: bool,
    missing: HeaderValue,
    invalid: HeaderValue,
}

fn build(settings: &Settings, context: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let algorithm: Algorithm = config.algorithm.parse().map_err(|_| {
        BuildError::at(
            "algorithm",
            format!("unknown algorithm \"{}\"", config.algorithm),
        )
    })?;
    let hmac = matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    );
    let key = match (hmac, &config.secret, &config.public_key) {
        (true, Some(secret), None) if !secret.is_empty() => {
            DecodingKey::from_secret(secret.as_bytes())
        }
        (true, _, _) => {
            return Err(BuildError::at(
                "secret",
                format!("{algorithm:?} needs a non-empty secret (and no public_key)"),
            ));
        }
        (false, None, Some(public_key)) => {
            let pem = read_pem(public_key, context)?;
            let key = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            key.map_err(|e| {
                BuildError::at("public_key", format!("not a {algorithm:?} public key: {e}"))
            })?
        }
        (false, _, _) => {
            return Err(BuildError::at(
                "public_key",
                format!("{algorithm:?} needs a public_key (and no secret)"),
            ));
        }
    };

    let mut validation = Validation::new(algorithm);
    validation.leeway = config.leeway.map_or(0, |d| d.get().as_secs());
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required: Vec<&str> = Vec::new();
    if config.require_exp {
        required.push("exp");
    }
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&issuer.0);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&audience.0);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);

    let header = match config.header.as_str() {
        "" => None,
        name => Some(
            HeaderName::try_from(name)
                .map_err(|_| BuildError::at("header", "not a valid header name"))?,
        ),
    };
    if header.is_none() && config.cookie.is_none() && config.query.is_none() {
        return Err(BuildError::at(
            "header",
            "set at least one of header, cookie or query",
        ));
    }
    let claims_to_headers = config
        .claims_to_headers
        .into_iter()
        .map(|(claim, name)| {
            HeaderName::try_from(name.as_str())
                .map(|name| (claim.clone(), name))
                .map_err(|_| {
                    BuildError::at(
                        format!("claims_to_headers.{claim}"),
                        "not a valid header name",
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let challenge = |extra: &str| {
        HeaderValue::from_str(&format!("Bearer realm=\"{}\"{extra}", config.realm))
            .map_err(|_| BuildError::at("realm", "not usable in a header"))
    };
    Ok(Arc::new(Jwt {
        key,
        validation,
        header,
        cookie: config.cookie,
        query: config.query,
        claims_to_headers,
        hide_credentials: config.hide_credentials,
        missing: challenge("")?,
        invalid: challenge(", error=\"invalid_token\"")?,
    }))
}

fn read_pem(value: &str, context: &BuildEnv) -> Result<Vec<u8>, BuildError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let path = context.resolve(value);
    std::fs::read(&path)
        .map_err(|e| BuildError::at("public_key", format!("cannot read {}: {e}", path.display())))
}

/// Where the token was found, to remove it with `hide_credentials`.
enum Source {
    Header,
    Cookie,
    Query,
}

impl Jwt {
    fn token(&self, req: &RequestHeader) -> Option<(String, Source)> {
        if let Some(name) = &self.header
            && let Some(value) = req.headers.get(name).and_then(|v| v.to_str().ok())
        {
            let value = value.trim();
            let token = match value.get(..7) {
                Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value[7..].trim(),
                _ => value,
            };
            if !token.is_empty() {
                return Some((token.to_string(), Source::Header));
            }
        }
        if let Some(name) = &self.cookie
            && let Some(token) = cookie(req, name).filter(|t| !t.is_empty())
        {
            return Some((token.to_string(), Source::Cookie));
        }
        if let Some(name) = &self.query
            && let Some(token) =
                query_arg(req.uri.query().unwrap_or_default(), name).filter(|t| !t.is_empty())
        {
            return Some((token.into_owned(), Source::Query));
        }
        None
    }

    fn refuse(&self, challenge: &HeaderValue, message: &'static str) -> Flow {
        Flow::Respond(
            Response::refuse(StatusCode::UNAUTHORIZED, message)
                .header(header::WWW_AUTHENTICATE, challenge.clone()),
        )
    }

    fn hide(&self, req: &mut RequestHeader, source: Source) -> Result<(), PluginError> {
        match source {
            Source::Header => {
                if let Some(name) = &self.header {
                    req.remove_header(name);
                }
            }
            Source::Cookie => {
                if let Some(name) = &self.cookie {
                    crate::request::remove_cookie(req, name);
                }
            }
            Source::Query => {
                if let Some(name) = &self.query {
                    crate::request::remove_query_arg(req, name)?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Plugin for Jwt {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        for (_, name) in &self.claims_to_headers {
            req.remove_header(name);
        }
        let Some((token, source)) = self.token(req) else {
            return Ok(self.refuse(&self.missing, "a bearer token is required"));
        };
        let claims = match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            &token,
            &self.key,
            &self.validation,
        ) {
            Ok(data) => data.claims,
            Err(e) => {
                tracing::debug!(reason = %e, "jwt: token rejected");
                return Ok(self.refuse(&self.invalid, "the bearer token is not valid"));
            }
        };
        for (claim, name) in &self.claims_to_headers {
            let value = match claims.get(claim) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                let _ = req.insert_header(name.clone(), value);
            }
        }
        if self.hide_credentials {
            self.hide(req, source)?;
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::builtin::testing::{build_error, built};

    const SECRET: &str = "a-secret-of-reasonable-length-32b";

    fn plugin(settings: &str) -> Arc<dyn Plugin> {
        built(build, settings)
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    async fn run(plugin: &dyn Plugin, req: &mut RequestHeader) -> Flow {
        plugin
            .request(req, &mut PluginCtx::default())
            .await
            .unwrap()
    }

    fn bearer(token: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("authorization", format!("Bearer {token}"))
            .unwrap();
        req
    }

    fn challenge(flow: &Flow) -> Option<String> {
        match flow {
            Flow::Respond(response) => {
                assert_eq!(response.status, 401);
                response
                    .headers
                    .iter()
                    .find(|(name, _)| name == header::WWW_AUTHENTICATE)
                    .map(|(_, v)| v.to_str().unwrap().to_string())
            }
            Flow::Continue => None,
        }
    }

    #[tokio::test]
    async fn valid_tokens_pass_and_claims_become_headers() {
        let plugin = plugin(&format!(
            "secret = '{SECRET}'\nclaims_to_headers = {{ sub = 'X-User', admin = 'X-Admin' }}\nhide_credentials = true"
        ));
        let mut req = bearer(&token(
            json!({"sub": "alice", "admin": true, "exp": now() + 60}),
        ));
        req.insert_header("x-user", "mallory").unwrap();
        assert!(matches!(
            run(plugin.as_ref(), &mut req).await,
            Flow::Continue
        ));
        assert_eq!(req.headers["x-user"], "alice");
        assert_eq!(req.headers["x-admin"], "true");
        assert!(req.headers.get("authorization").is_none(), "hidden");
    }

    #[tokio::test]
    async fn every_bad_token_gets_the_same_answer() {
        let plugin = plugin(&format!(
            "secret = '{SECRET}'\nissuer = 'https://issuer'\naudience = ['api']"
        ));
        let good = json!({"iss": "https://issuer", "aud": "api", "exp": now() + 60});
        let mut req = bearer(&token(good.clone()));
        assert!(matches!(
            run(plugin.as_ref(), &mut req).await,
            Flow::Continue
        ));

        let forged = encode(
            &Header::default(),
            &good,
            &EncodingKey::from_secret(b"another secret entirely, 32b++"),
        )
        .unwrap();
        let bad_tokens = [
            token(json!({"iss": "https://issuer", "aud": "api", "exp": now() - 10})),
            token(
                json!({"iss": "https://issuer", "aud": "api", "exp": now() + 60, "nbf": now() + 30}),
            ),
            token(json!({"iss": "https://other", "aud": "api", "exp": now() + 60})),
            token(json!({"iss": "https://issuer", "aud": "web", "exp": now() + 60})),
            token(json!({"iss": "https://issuer", "aud": "api"})),
            forged,
            "not.a.token".to_string(),
        ];
        for bad in bad_tokens {
            let flow = run(plugin.as_ref(), &mut bearer(&bad)).await;
            assert_eq!(
                challenge(&flow).as_deref(),
                Some("Bearer realm=\"pingap\", error=\"invalid_token\""),
                "{bad}"
            );
        }
        let flow = run(
            plugin.as_ref(),
            &mut RequestHeader::build("GET", b"/", None).unwrap(),
        )
        .await;
        assert_eq!(challenge(&flow).as_deref(), Some("Bearer realm=\"pingap\""));
    }

    #[tokio::test]
    async fn leeway_admits_slightly_expired_tokens() {
        let plugin = plugin(&format!("secret = '{SECRET}'\nleeway = '60s'"));
        let mut req = bearer(&token(json!({"exp": now() - 10})));
        assert!(matches!(
            run(plugin.as_ref(), &mut req).await,
            Flow::Continue
        ));
    }

    #[tokio::test]
    async fn tokens_from_cookies_and_queries() {
        let plugin = plugin(&format!(
            "secret = '{SECRET}'\nheader = ''\ncookie = 'jwt'\nquery = 'access_token'\nhide_credentials = true"
        ));
        let good = token(json!({"exp": now() + 60}));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("cookie", format!("theme=dark; jwt={good}"))
            .unwrap();
        assert!(matches!(
            run(plugin.as_ref(), &mut req).await,
            Flow::Continue
        ));
        assert_eq!(req.headers["cookie"], "theme=dark");

        let path = format!("/x?page=2&access_token={good}");
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        assert!(matches!(
            run(plugin.as_ref(), &mut req).await,
            Flow::Continue
        ));
        assert_eq!(req.uri.to_string(), "/x?page=2");

        let mut header_only = bearer(&good);
        let flow = run(plugin.as_ref(), &mut header_only).await;
        assert!(
            challenge(&flow).is_some(),
            "the header is not read when header = ''"
        );
    }

    /// Makes a key pair with the openssl command: writes `NAME.pub` and returns the private PEM.
    fn key_pair(dir: &std::path::Path, name: &str, genpkey: &[&str]) -> Vec<u8> {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let run = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey);
        args.extend(["-out", private.to_str().unwrap()]);
        run(&args);
        run(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        std::fs::read(&private).unwrap()
    }

    #[tokio::test]
    async fn public_key_algorithms_verify_signatures() {
        let dir = std::env::temp_dir().join(format!("pingap-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Algorithm, &[&str]); 3] = [
            (
                "RS256",
                Algorithm::RS256,
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            (
                "ES256",
                Algorithm::ES256,
                &[
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ],
            ),
            ("EdDSA", Algorithm::EdDSA, &["-algorithm", "ED25519"]),
        ];
        for (name, algorithm, genpkey) in cases {
            let private = key_pair(&dir, name, genpkey);
            let settings = format!("algorithm = '{name}'\npublic_key = '{name}.pub'");
            let context = BuildEnv {
                base_dir: dir.clone(),
                name: "jwt".into(),
                ..BuildEnv::default()
            };
            let plugin = build(&settings.parse().unwrap(), &context).unwrap();
            let encoding = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
                Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
                _ => EncodingKey::from_ed_pem(&private),
            }
            .unwrap();
            let claims = json!({"exp": now() + 60});
            let signed = encode(&Header::new(algorithm), &claims, &encoding).unwrap();
            assert!(
                matches!(
                    run(plugin.as_ref(), &mut bearer(&signed)).await,
                    Flow::Continue
                ),
                "{name}"
            );
            let hmac = token(claims.clone());
            assert!(
                challenge(&run(plugin.as_ref(), &mut bearer(&hmac)).await).is_some(),
                "{name}: an HS256 token is refused"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |settings: &str| build_error(build, settings);
        assert_eq!(
            err("algorithm = 'HS999'\nsecret = 'x'").key(),
            Some("algorithm")
        );
        assert_eq!(err("algorithm = 'HS256'").key(), Some("secret"));
        assert_eq!(
            err("algorithm = 'RS256'\nsecret = 'x'").key(),
            Some("public_key")
        );
        assert_eq!(
            err("algorithm = 'RS256'\npublic_key = 'missing.pem'").key(),
            Some("public_key")
        );
        assert_eq!(err("algorithm = 'ES256'\npublic_key = '-----BEGIN PUBLIC KEY-----\\nxx\\n-----END PUBLIC KEY-----'").key(), Some("public_key"));
        assert_eq!(err("secret = 'x'\nheader = ''").key(), Some("header"));
        assert_eq!(
            err("secret = 'x'\nclaims_to_headers = { sub = 'bad name' }").key(),
            Some("claims_to_headers.sub")
        );
        assert_eq!(err("secret = 'x'\nsecrt = 'y'").key(), Some("secrt"));
    }
}
