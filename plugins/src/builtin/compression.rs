//! `compression`: compresses responses with zstd, brotli or gzip, as the client accepts.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `algorithms` | `["zstd", "br", "gzip"]` | the encodings offered, in order of preference among those the client accepts with the same q-value |
//! | `gzip_level` | `6` | 1 (fast) to 9 (small) |
//! | `br_level` | `5` | 0 to 11 |
//! | `zstd_level` | `3` | 1 to 19 |
//! | `min_length` | `1024` | responses with a smaller `Content-Length` are sent as they are (a response without a length is compressed) |
//! | `types` | text, JSON, JavaScript, XML, SVG, WebAssembly, fonts | content types compressed; `text/*` matches a whole family |
//!
//! The encoding is chosen from `Accept-Encoding` by q-value (`q=0` refuses an encoding), ties
//! broken by `algorithms`. Responses that are already encoded, partial (`206`), bodiless (`HEAD`,
//! `204`, `304`), marked `Cache-Control: no-transform`, or answers to `Range` requests are left
//! alone. A compressed response loses its `Content-Length`, gets `Content-Encoding` and
//! `Vary: Accept-Encoding`, and a strong `ETag` becomes weak. Bodies are compressed chunk by chunk
//! as they stream (each chunk is flushed, so server-sent events stay live): memory stays at the
//! compressor's window, whatever the size of the body.
//!
//! `Vary: Accept-Encoding` goes on every response whose full `200` could be compressed for some
//! client, compressed or not: the `200` itself, and its `304` (unless its own headers show a type,
//! length, encoding or `no-transform` that rules compression out) and `206` (judged by its type and
//! the full length in `Content-Range`) too, so caches and clients see one `Vary` for the resource.
//! It is never added twice, nor next to `Vary: *`.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method, header};
use pingora_http::{RequestHeader, ResponseHeader};
use serde::Deserialize;

use crate::settings::ByteSize;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "compression",
    default_priority: 200,
    summary: "compresses responses with zstd, brotli or gzip",
    build,
};

const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/wasm",
    "image/svg+xml",
    "font/*",
    "application/x-javascript",
    "application/manifest+json",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_gzip_level")]
    gzip_level: u32,
    #[serde(default = "default_br_level")]
    br_level: u32,
    #[serde(default = "default_zstd_level")]
    zstd_level: i32,
    min_length: Option<ByteSize>,
    types: Option<Vec<String>>,
}

fn default_algorithms() -> Vec<String> {
    ["zstd", "br", "gzip"].map(str::to_string).to_vec()
}

fn default_gzip_level() -> u32 {
    6
}

fn default_br_level() -> u32 {
    5
}

fn default_zstd_level() -> i32 {
    3
}

/// A content coding pingap can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Zstd,
    Brotli,
    Gzip,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Algorithm> {
        match name.trim().to_ascii_lowercase().as_str() {
            "zstd" => Some(Algorithm::Zstd),
            "br" | "brotli" => Some(Algorithm::Brotli),
            "gzip" => Some(Algorithm::Gzip),
            _ => None,
        }
    }

    fn token(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Brotli => "br",
            Algorithm::Gzip => "gzip",
        }
    }
}

struct Compression {
    algorithms: Vec<Algorithm>,
    gzip_level: u32,
    br_level: u32,
    zstd_level: i32,
    min_length: u64,
    types: Vec<String>,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    let algorithms = config
        .algorithms
        .iter()
        .enumerate()
        .map(|(index, name)| {
            Algorithm::parse(name).ok_or_else(|| {
                BuildError::at(
                    format!("algorithms[{index}]"),
                    format!("unknown algorithm \"{name}\" (zstd, br or gzip)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err(BuildError::at(
            "algorithms",
            "list at least one of zstd, br, gzip",
        ));
    }
    if !(1..=9).contains(&config.gzip_level) {
        return Err(BuildError::at("gzip_level", "must be from 1 to 9"));
    }
    if config.br_level > 11 {
        return Err(BuildError::at("br_level", "must be from 0 to 11"));
    }
    if !(1..=19).contains(&config.zstd_level) {
        return Err(BuildError::at("zstd_level", "must be from 1 to 19"));
    }
    let types = config
        .types
        .unwrap_or_else(|| DEFAULT_TYPES.iter().map(|t| t.to_string()).collect())
        .into_iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    Ok(Arc::new(Compression {
        algorithms,
        gzip_level: config.gzip_level,
        br_level: config.br_level,
        zstd_level: config.zstd_level,
        min_length: config.min_length.map_or(1024, ByteSize::bytes),
        types,
    }))
}

/// The best offered algorithm the client accepts: highest q-value, then preference order.
pub(crate) fn negotiate(accept_encoding: &str, offered: &[Algorithm]) -> Option<Algorithm> {
    let mut wildcard: Option<f32> = None;
    let mut explicit: Vec<(Algorithm, f32)> = Vec::new();
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        if name == "*" {
            wildcard = Some(q);
        } else if let Some(algorithm) = Algorithm::parse(&name) {
            explicit.push((algorithm, q));
        }
    }
    let quality = |algorithm: Algorithm| {
        explicit
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, q)| *q)
            .or(wildcard)
            .unwrap_or(0.0)
    };
    let mut best: Option<(Algorithm, f32)> = None;
    for algorithm in offered {
        let q = quality(*algorithm);
        if q > 0.0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((*algorithm, q));
        }
    }
    best.map(|(algorithm, _)| algorithm)
}

/// A streaming compressor: each call returns the compressed bytes ready so far.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(algorithm: Algorithm, plugin: &Compression) -> std::io::Result<Encoder> {
        Ok(match algorithm {
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(plugin.gzip_level),
            )),
            Algorithm::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                plugin.br_level,
                22,
            ))),
            Algorithm::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                plugin.zstd_level,
            )?),
        })
    }

    /// Compresses `data` and flushes, returning what is ready.
    fn chunk(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        Ok(match self {
            Encoder::Gzip(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                std::mem::take(encoder.get_mut())
            }
            Encoder::Brotli(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                std::mem::take(encoder.get_mut())
            }
            Encoder::Zstd(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                std::mem::take(encoder.get_mut())
            }
        })
    }

    /// Ends the stream, returning the last bytes.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(encoder) => encoder.finish(),
            Encoder::Brotli(encoder) => Ok(encoder.into_inner()),
            Encoder::Zstd(encoder) => encoder.finish(),
        }
    }
}

/// Per-request state: the algorithm the client accepts, then the running encoder.
enum State {
    Accepted(Algorithm),
    Compressing(Mutex<Option<Encoder>>),
}

impl Compression {
    fn compressible_type(&self, content_type: Option<&HeaderValue>) -> bool {
        let Some(essence) = content_type.and_then(|v| v.to_str().ok()).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        }) else {
            return false;
        };
        self.types
            .iter()
            .any(|pattern| match pattern.strip_suffix("/*") {
                Some(family) => essence.split('/').next() == Some(family),
                None => *pattern == essence,
            })
    }

    /// Whether this response may be compressed (whatever the client accepts).
    fn eligible(&self, resp: &ResponseHeader) -> bool {
        let status = resp.status.as_u16();
        let headers = &resp.headers;
        (200..300).contains(&status)
            && status != 204
            && status != 206
            && !headers.contains_key(header::CONTENT_RANGE)
            && self.transformable(headers, content_length(headers))
            && self.compressible_type(headers.get(header::CONTENT_TYPE))
    }

    /// Whether the full `200` of the resource this response is about would carry
    /// `Vary: Accept-Encoding`: this response, a `304` or a `206` of it.
    fn varies(&self, resp: &ResponseHeader) -> bool {
        let headers = &resp.headers;
        let content_type = headers.get(header::CONTENT_TYPE);
        match resp.status.as_u16() {
            // A 304 usually has no Content-Type: without one, assume the 200 had a compressible
            // type (an extra Vary costs a cache some hits; a missing one serves the wrong body).
            304 => {
                self.transformable(headers, content_length(headers))
                    && (content_type.is_none() || self.compressible_type(content_type))
            }
            // A 206's length is the part's: the full length is in Content-Range. The type of a
            // multipart answer is in its parts.
            206 => {
                let multipart = content_type.and_then(|v| v.to_str().ok()).is_some_and(|v| {
                    v.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("multipart/byteranges")
                });
                self.transformable(headers, complete_length(headers))
                    && (multipart || self.compressible_type(content_type))
            }
            _ => self.eligible(resp),
        }
    }

    /// Whether a representation with these headers and full `length` (when known) may be
    /// compressed: not encoded yet, no `no-transform`, not below `min_length`.
    fn transformable(&self, headers: &http::HeaderMap, length: Option<u64>) -> bool {
        let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform"))
        });
        !headers.contains_key(header::CONTENT_ENCODING)
            && !no_transform
            && length.is_none_or(|l| l >= self.min_length)
    }
}

/// The `Content-Length`, if valid.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The complete length of a `206`'s representation: `N` of `Content-Range: bytes a-b/N`.
fn complete_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit_once('/'))
        .and_then(|(_, length)| length.trim().parse().ok())
}

/// Adds `Accept-Encoding` to the response's `Vary`, unless it is listed already or `Vary` is `*`.
fn add_vary(resp: &mut ResponseHeader) {
    let listed = resp
        .headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|token| token == "*" || token.eq_ignore_ascii_case("accept-encoding"));
    if !listed {
        let _ = resp.append_header(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[async_trait]
impl Plugin for Compression {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request, Phase::ResponseHeaders, Phase::ResponseBody])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        if req.method == Method::HEAD || req.headers.contains_key(header::RANGE) {
            return Ok(Flow::Continue);
        }
        let accepted = req
            .headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        if let Some(algorithm) = negotiate(&accepted, &self.algorithms) {
            ctx.set_state(State::Accepted(algorithm));
        }
        Ok(Flow::Continue)
    }

    fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        if self.varies(resp) {
            add_vary(resp);
        }
        if !self.eligible(resp) {
            return Ok(());
        }
        let Some(State::Accepted(algorithm)) = ctx.take_state::<State>() else {
            return Ok(());
        };
        let encoder = Encoder::new(algorithm, self).map_err(|e| PluginError::new(e.to_string()))?;
        resp.remove_header(&header::CONTENT_LENGTH);
        let _ = resp.insert_header(header::CONTENT_ENCODING, algorithm.token());
        if let Some(etag) = resp.headers.get(header::ETAG).and_then(|v| v.to_str().ok())
            && !etag.starts_with("W/")
            && let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}"))
        {
            let _ = resp.insert_header(header::ETAG, weak);
        }
        ctx.set_state(State::Compressing(Mutex::new(Some(encoder))));
        Ok(())
    }

    fn response_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        let Some(State::Compressing(encoder)) = ctx.state_mut::<State>() else {
            return Ok(());
        };
        let encoder = encoder
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = match (encoder.as_mut(), body.as_deref()) {
            (Some(running), Some(data)) if !data.is_empty() => running
                .chunk(data)
                .map_err(|e| PluginError::new(e.to_string()))?,
            _ => Vec::new(),
        };
        if end_of_stream && let Some(running) = encoder.take() {
            out.extend(
                running
                    .finish()
                    .map_err(|e| PluginError::new(e.to_string()))?,
            );
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::builtin::testing::{build_error, built};

    const ALL: [Algorithm; 3] = [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip];

    #[test]
    fn negotiation_follows_q_values_then_preference() {
        use Algorithm::*;
        let cases = [
            ("gzip, br, zstd", Some(Zstd)),
            ("gzip", Some(Gzip)),
            ("br;q=0.9, gzip;q=1.0", Some(Gzip)),
            ("gzip;q=0.5, br;q=0.5", Some(Brotli)),
            ("zstd;q=0, br;q=0, gzip;q=0", None),
            ("*", Some(Zstd)),
            ("*;q=0.1, gzip;q=0.5", Some(Gzip)),
            ("identity", None),
            ("", None),
            ("GZIP;Q=0.8", Some(Gzip)),
        ];
        for (header, expected) in cases {
            assert_eq!(negotiate(header, &ALL), expected, "{header}");
        }
        assert_eq!(
            negotiate("gzip, br", &[Gzip, Brotli]),
            Some(Gzip),
            "preference order"
        );
    }

    fn decompress(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match algorithm {
            Algorithm::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Algorithm::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Algorithm::Zstd => {
                out = zstd::decode_all(data).unwrap();
            }
        }
        out
    }

    #[tokio::test]
    async fn streams_and_round_trips_every_algorithm() {
        let plugin = built(build, "");
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i} of the log\n").into_bytes())
            .collect();
        for algorithm in ALL {
            let mut ctx = PluginCtx::default();
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.insert_header("accept-encoding", algorithm.token())
                .unwrap();
            plugin.request(&mut req, &mut ctx).await.unwrap();
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.insert_header("content-type", "text/plain; charset=utf-8")
                .unwrap();
            resp.insert_header("content-length", text.len()).unwrap();
            resp.insert_header("etag", "\"v1\"").unwrap();
            plugin.response_headers(&mut resp, &mut ctx).unwrap();
            assert_eq!(resp.headers["content-encoding"], algorithm.token());
            assert!(resp.headers.get("content-length").is_none());
            assert_eq!(resp.headers["vary"], "Accept-Encoding");
            assert_eq!(resp.headers["etag"], "W/\"v1\"");
            let mut compressed = Vec::new();
            let chunks: Vec<&[u8]> = text.chunks(7000).collect();
            for (index, chunk) in chunks.iter().enumerate() {
                let mut body = Some(Bytes::copy_from_slice(chunk));
                plugin
                    .response_body(&mut body, index + 1 == chunks.len(), &mut ctx)
                    .unwrap();
                let out = body.unwrap_or_default();
                assert!(!out.is_empty(), "{algorithm:?}: each chunk is flushed");
                compressed.extend_from_slice(&out);
            }
            assert!(
                compressed.len() < text.len() / 4,
                "{algorithm:?}: {}",
                compressed.len()
            );
            assert_eq!(decompress(algorithm, &compressed), text, "{algorithm:?}");
        }
    }

    #[tokio::test]
    async fn leaves_ineligible_responses_alone() {
        let plugin = built(build, "");
        let cases: [(&[(&str, &str)], u16); 6] = [
            (&[("content-type", "image/png")], 200),
            (
                &[("content-type", "text/html"), ("content-length", "100")],
                200,
            ),
            (
                &[("content-type", "text/html"), ("content-encoding", "gzip")],
                200,
            ),
            (
                &[
                    ("content-type", "text/html"),
                    ("cache-control", "public, no-transform"),
                ],
                200,
            ),
            (&[("content-type", "text/html")], 206),
            (&[("content-type", "text/html")], 304),
        ];
        for (headers, status) in cases {
            let mut ctx = PluginCtx::default();
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.insert_header("accept-encoding", "gzip").unwrap();
            plugin.request(&mut req, &mut ctx).await.unwrap();
            let mut resp = ResponseHeader::build(status, None).unwrap();
            for (name, value) in headers {
                resp.insert_header(name.to_string(), *value).unwrap();
            }
            plugin.response_headers(&mut resp, &mut ctx).unwrap();
            assert!(
                resp.headers.get("content-encoding").is_none()
                    || headers.iter().any(|(n, _)| *n == "content-encoding"),
                "{headers:?} {status}"
            );
            let mut body = Some(Bytes::from_static(b"<html>"));
            plugin.response_body(&mut body, true, &mut ctx).unwrap();
            assert_eq!(
                body.as_deref(),
                Some(&b"<html>"[..]),
                "{headers:?} {status}"
            );
        }
        // HEAD and Range requests are not compressed.
        for (method, range) in [("HEAD", None), ("GET", Some("bytes=0-9"))] {
            let mut ctx = PluginCtx::default();
            let mut req = RequestHeader::build(method, b"/", None).unwrap();
            req.insert_header("accept-encoding", "gzip").unwrap();
            if let Some(range) = range {
                req.insert_header("range", range).unwrap();
            }
            plugin.request(&mut req, &mut ctx).await.unwrap();
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.insert_header("content-type", "text/html").unwrap();
            plugin.response_headers(&mut resp, &mut ctx).unwrap();
            assert!(
                resp.headers.get("content-encoding").is_none(),
                "{method} {range:?}"
            );
        }
    }

    /// The `Vary` values of `resp`, split into tokens.
    fn vary(resp: &ResponseHeader) -> Vec<String> {
        resp.headers
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(|token| token.trim().to_string())
            .collect()
    }

    #[tokio::test]
    async fn vary_is_on_every_answer_about_a_compressible_resource_once() {
        let plugin = built(build, "");
        let text = [("content-type", "text/html")];
        /// Status, response headers from upstream, and the `Vary` tokens expected.
        type Case = (
            u16,
            Vec<(&'static str, &'static str)>,
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            (200, text.to_vec(), &["Accept-Encoding"]),
            (304, vec![("etag", "\"v1\"")], &["Accept-Encoding"]),
            (304, text.to_vec(), &["Accept-Encoding"]),
            (304, vec![("content-type", "image/png")], &[]),
            (304, vec![("cache-control", "no-transform")], &[]),
            (304, vec![("content-length", "10")], &[]),
            (
                206,
                vec![
                    ("content-type", "text/html"),
                    ("content-range", "bytes 0-9/5000"),
                    ("content-length", "10"),
                ],
                &["Accept-Encoding"],
            ),
            (
                206,
                vec![
                    ("content-type", "text/html"),
                    ("content-range", "bytes 0-9/100"),
                ],
                &[],
            ),
            (
                206,
                vec![
                    ("content-type", "image/png"),
                    ("content-range", "bytes 0-9/5000"),
                ],
                &[],
            ),
            (
                206,
                vec![("content-type", "multipart/byteranges; boundary=x")],
                &["Accept-Encoding"],
            ),
            // Never twice, whatever the case or the other values; never beside `*`.
            (
                200,
                vec![("content-type", "text/html"), ("vary", "accept-encoding")],
                &["accept-encoding"],
            ),
            (
                304,
                vec![("vary", "Origin, Accept-Encoding")],
                &["Origin", "Accept-Encoding"],
            ),
            (
                206,
                vec![
                    ("content-type", "text/html"),
                    ("content-range", "bytes 0-9/5000"),
                    ("vary", "Origin"),
                ],
                &["Origin", "Accept-Encoding"],
            ),
            (304, vec![("vary", "*")], &["*"]),
        ];
        for (status, headers, expected) in cases {
            for accept in [Some("gzip"), None] {
                let mut ctx = PluginCtx::default();
                let mut req = RequestHeader::build("GET", b"/", None).unwrap();
                if let Some(accept) = accept {
                    req.insert_header("accept-encoding", accept).unwrap();
                }
                plugin.request(&mut req, &mut ctx).await.unwrap();
                let mut resp = ResponseHeader::build(status, None).unwrap();
                for (name, value) in &headers {
                    resp.append_header(name.to_string(), *value).unwrap();
                }
                plugin.response_headers(&mut resp, &mut ctx).unwrap();
                assert_eq!(vary(&resp), expected, "{status} {headers:?} {accept:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("algorithms = ['lzma']").key(), Some("algorithms[0]"));
        assert_eq!(err("algorithms = []").key(), Some("algorithms"));
        assert_eq!(err("gzip_level = 0").key(), Some("gzip_level"));
        assert_eq!(err("br_level = 12").key(), Some("br_level"));
        assert_eq!(err("zstd_level = 30").key(), Some("zstd_level"));
    }
}
