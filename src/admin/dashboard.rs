//! The web dashboard: the React application built into `web/dist/` and embedded in the binary,
//! served by the admin listener at every path outside `/api/`.
//!
//! * Files are served with their content type; a `.gz` variant built beside a file (see
//!   `web/scripts/compress.mjs`) is sent instead when the client accepts gzip.
//! * Hashed assets (`/assets/…`) are cached for a year; `index.html` is revalidated every time,
//!   so a new binary's dashboard is picked up on the next load.
//! * A path that names no file is a client-side route: it gets `index.html`.
//! * Every answer carries a Content-Security-Policy that allows only the dashboard's own scripts
//!   and the API on the same origin, and refuses framing.
//!
//! The files are public (they hold no data); everything they show comes from the authenticated
//! API.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The built dashboard (`npm run build` in `web/`; the build output is committed).
#[derive(RustEmbed)]
#[folder = "web/dist"]
struct Assets;

const INDEX: &str = "index.html";
/// Hashed file names change with their content, so they can be cached for good.
const HASHED_PREFIX: &str = "assets/";
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CACHE_REVALIDATE: &str = "no-cache";
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Answers a request for `uri` outside `/api/`: the file it names, or `index.html` for a
/// client-side route.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = uri.path().trim_start_matches('/');
    let (name, file) = match lookup(path) {
        Some(found) => found,
        None if path.starts_with(HASHED_PREFIX) || path.ends_with(".gz") => {
            // A missing asset is a stale page asking for an old build: not index.html.
            return StatusCode::NOT_FOUND.into_response();
        }
        None => match Assets::get(INDEX) {
            Some(index) => (INDEX.to_string(), index),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    "the dashboard is not built into this binary (web/dist is empty)",
                )
                    .into_response();
            }
        },
    };
    let gzip = accepts_gzip(&headers)
        .then(|| Assets::get(&format!("{name}.gz")))
        .flatten();
    let content_type = file.metadata.mimetype().to_string();
    let (body, encoding) = match gzip {
        Some(compressed) => (compressed.data, Some("gzip")),
        None => (file.data, None),
    };
    let cache = if name.starts_with(HASHED_PREFIX) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::VARY, "Accept-Encoding")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(encoding) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, encoding);
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The embedded file a request path names (`""` is `index.html`), with its name.
fn lookup(path: &str) -> Option<(String, rust_embed::EmbeddedFile)> {
    let name = if path.is_empty() { INDEX } else { path };
    Assets::get(name).map(|file| (name.to_string(), file))
}

/// Whether `Accept-Encoding` allows gzip (any `q` other than 0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        assert!(accepts_gzip(&with_encoding("gzip, deflate, br")));
        assert!(accepts_gzip(&with_encoding("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with_encoding("*")));
        assert!(!accepts_gzip(&with_encoding("gzip;q=0")));
        assert!(!accepts_gzip(&with_encoding("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
