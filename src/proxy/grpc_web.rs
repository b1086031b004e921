//! The gRPC-web bridge (`grpc_web = true` on a location): browser calls in gRPC-web, binary
//! (`application/grpc-web`, `+proto`) or base64 text (`application/grpc-web-text`), become gRPC
//! calls to the upstream, and the answers come back in the caller's encoding with the trailers
//! as a final frame in the body (flag `0x80`), as the gRPC-web protocol has it.
//!
//! The message frames of gRPC-web binary and gRPC are the same, so only text calls have their
//! bodies re-encoded: decoded as they stream in, encoded as they stream out, without buffering
//! a whole message.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, header};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};

use super::grpc::WebKind;

/// The trailer frame's flag.
const TRAILER_FLAG: u8 = 0x80;

/// One call's bridging state.
#[derive(Debug)]
pub struct Bridge {
    text: bool,
    /// The response is gRPC and is being translated.
    answering: bool,
    /// Base64 characters received but not decoded yet (fewer than 4).
    pending_in: Vec<u8>,
    /// Bytes answered but not encoded yet (fewer than 3).
    pending_out: Vec<u8>,
}

impl Bridge {
    /// Turns the gRPC-web request header into a gRPC one.
    pub fn start(kind: WebKind, req: &mut RequestHeader) -> Result<Bridge> {
        let subtype = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once('+').map(|(_, s)| s.to_string()));
        let content_type = match subtype {
            Some(subtype) => format!("application/grpc+{subtype}"),
            None => "application/grpc".to_string(),
        };
        req.insert_header(header::CONTENT_TYPE, content_type)?;
        req.insert_header(header::TE, "trailers")?;
        req.set_send_end_stream(false);
        Ok(Bridge {
            text: kind == WebKind::Text,
            answering: false,
            pending_in: Vec::new(),
            pending_out: Vec::new(),
        })
    }

    /// Adjusts the request sent upstream: a text call's body shrinks when decoded, so its
    /// length goes (gRPC frames carry their own). The client's header keeps it: the proxy reads
    /// the body by it.
    pub fn upstream_request(&self, req: &mut RequestHeader) {
        if self.text {
            req.remove_header(&header::CONTENT_LENGTH);
        }
    }

    /// Decodes a chunk of a text call's request body.
    pub fn request_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<()> {
        if !self.text {
            return Ok(());
        }
        let mut input = std::mem::take(&mut self.pending_in);
        if let Some(chunk) = body.take() {
            input.extend(chunk.iter().filter(|b| !b.is_ascii_whitespace()));
        }
        let whole = if end_of_stream {
            input.len()
        } else {
            input.len() / 4 * 4
        };
        self.pending_in = input.split_off(whole);
        if input.is_empty() {
            return Ok(());
        }
        // Padded segments may be concatenated: decode each one.
        let mut decoded = Vec::with_capacity(input.len() / 4 * 3);
        for segment in input.split_inclusive(|b| *b == b'=').filter(|s| *s != b"=") {
            let segment: Vec<u8> = segment.iter().copied().filter(|b| *b != b'=').collect();
            STANDARD
                .decode_vec(pad(&segment), &mut decoded)
                .map_err(|e| {
                    Error::explain(
                        ErrorType::HTTPStatus(400),
                        format!("invalid grpc-web-text body: {e}"),
                    )
                })?;
        }
        *body = Some(Bytes::from(decoded));
        Ok(())
    }

    /// Turns a gRPC response header into a gRPC-web one.
    pub fn response_header(&mut self, resp: &mut ResponseHeader) -> Result<()> {
        let is_grpc = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if !is_grpc || resp.status.is_informational() {
            return Ok(());
        }
        self.answering = true;
        let content_type = if self.text {
            "application/grpc-web-text+proto"
        } else {
            "application/grpc-web+proto"
        };
        resp.insert_header(header::CONTENT_TYPE, content_type)?;
        resp.remove_header(&header::CONTENT_LENGTH);
        Ok(())
    }

    /// Encodes a chunk of a text call's response body.
    pub fn response_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if !(self.answering && self.text) {
            return;
        }
        let chunk = body.take().unwrap_or_default();
        *body = Some(self.encode(&chunk, end_of_stream));
    }

    /// The trailers as the last frame of the body (encoded for text calls).
    pub fn trailers(&mut self, trailers: &HeaderMap) -> Option<Bytes> {
        if !self.answering {
            return None;
        }
        let mut block = Vec::new();
        for (name, value) in trailers {
            block.extend_from_slice(name.as_str().as_bytes());
            block.push(b':');
            block.extend_from_slice(value.as_bytes());
            block.extend_from_slice(b"\r\n");
        }
        let mut frame = BytesMut::with_capacity(5 + block.len());
        frame.put_u8(TRAILER_FLAG);
        frame.put_u32(u32::try_from(block.len()).unwrap_or(u32::MAX));
        frame.extend_from_slice(&block);
        Some(if self.text {
            self.encode(&frame, true)
        } else {
            frame.freeze()
        })
    }

    /// Base64 of what is pending plus `data`, keeping back up to 2 bytes unless `last`.
    fn encode(&mut self, data: &[u8], last: bool) -> Bytes {
        let mut input = std::mem::take(&mut self.pending_out);
        input.extend_from_slice(data);
        let whole = if last {
            input.len()
        } else {
            input.len() / 3 * 3
        };
        self.pending_out = input.split_off(whole);
        Bytes::from(STANDARD.encode(&input))
    }
}

/// `segment` with the padding base64 wants.
fn pad(segment: &[u8]) -> Vec<u8> {
    let mut padded = segment.to_vec();
    while !padded.len().is_multiple_of(4) {
        padded.push(b'=');
    }
    padded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_request() -> (Bridge, RequestHeader) {
        let mut req = RequestHeader::build("POST", b"/svc/Method", None).unwrap();
        req.insert_header("content-type", "application/grpc-web-text")
            .unwrap();
        req.insert_header("content-length", "12").unwrap();
        let bridge = Bridge::start(WebKind::Text, &mut req).unwrap();
        (bridge, req)
    }

    #[test]
    fn requests_become_grpc_and_text_bodies_decode_across_chunks() {
        let (mut bridge, req) = text_request();
        assert_eq!(
            req.headers["content-length"], "12",
            "the client's header keeps it"
        );
        assert_eq!(req.headers["content-type"], "application/grpc");
        assert_eq!(req.headers["te"], "trailers");
        let mut upstream = req.clone();
        bridge.upstream_request(&mut upstream);
        assert!(upstream.headers.get("content-length").is_none());
        let encoded = STANDARD.encode(b"\x00\x00\x00\x00\x03abc");
        let (first, second) = encoded.as_bytes().split_at(5);
        let mut out = Vec::new();
        for (chunk, end) in [(first, false), (second, true)] {
            let mut body = Some(Bytes::copy_from_slice(chunk));
            bridge.request_body(&mut body, end).unwrap();
            out.extend_from_slice(&body.unwrap_or_default());
        }
        assert_eq!(out, b"\x00\x00\x00\x00\x03abc");

        // Two padded segments one after the other.
        let (mut bridge, _) = text_request();
        let mut body = Some(Bytes::from(format!(
            "{}{}",
            STANDARD.encode(b"a"),
            STANDARD.encode(b"bc")
        )));
        bridge.request_body(&mut body, true).unwrap();
        assert_eq!(body.unwrap(), "abc");
        let (mut bridge, _) = text_request();
        assert!(
            bridge
                .request_body(&mut Some(Bytes::from("!!!!")), true)
                .is_err()
        );
    }

    #[test]
    fn answers_become_grpc_web_with_a_trailer_frame() {
        let (mut bridge, _) = text_request();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/grpc")
            .unwrap();
        bridge.response_header(&mut resp).unwrap();
        assert_eq!(
            resp.headers["content-type"],
            "application/grpc-web-text+proto"
        );
        let mut encoded = Vec::new();
        for chunk in [&b"\x00\x00\x00"[..], b"\x00\x02", b"\x08\x01"] {
            let mut body = Some(Bytes::copy_from_slice(chunk));
            bridge.response_body(&mut body, false);
            encoded.extend_from_slice(&body.unwrap());
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        encoded.extend_from_slice(&bridge.trailers(&trailers).unwrap());
        let decoded = STANDARD.decode(&encoded).unwrap();
        assert_eq!(&decoded[..7], b"\x00\x00\x00\x00\x02\x08\x01");
        assert_eq!(decoded[7], TRAILER_FLAG);
        assert_eq!(&decoded[12..], b"grpc-status:0\r\n");
    }
}
