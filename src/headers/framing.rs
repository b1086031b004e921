//! Framing that two HTTP/1 parsers could read differently, refused before anything is sent
//! upstream (design §13): `Content-Length` with `Transfer-Encoding`, more than one
//! `Content-Length` (or a list in one), a transfer coding other than `chunked` (501, as nginx
//! answers), and methods that are not upper-case tokens.

use http::{StatusCode, Version, header};
use pingora::http::RequestHeader;

/// Why a request's framing is refused: the status and the reason.
pub type Refusal = (StatusCode, &'static str);

/// Checks the framing of an HTTP/1.x request header (HTTP/2 frames bodies itself).
pub fn check(req: &RequestHeader) -> Result<(), Refusal> {
    if !req
        .method
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "the method is not an upper-case token",
        ));
    }
    if req.version > Version::HTTP_11 {
        return Ok(());
    }
    let lengths = req.headers.get_all(header::CONTENT_LENGTH);
    let mut lengths = lengths.iter();
    let length = lengths.next();
    if lengths.next().is_some() || length.is_some_and(|v| v.as_bytes().contains(&b',')) {
        return Err((
            StatusCode::BAD_REQUEST,
            "the request has more than one Content-Length",
        ));
    }
    let codings = req.headers.get_all(header::TRANSFER_ENCODING);
    if codings.iter().next().is_none() {
        return Ok(());
    }
    if length.is_some() {
        return Err((
            StatusCode::BAD_REQUEST,
            "the request has both Content-Length and Transfer-Encoding",
        ));
    }
    let mut tokens = codings
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|token| token.trim_ascii());
    let only_chunked = tokens
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
        && tokens.next().is_none();
    if only_chunked {
        Ok(())
    } else {
        Err((
            StatusCode::NOT_IMPLEMENTED,
            "transfer codings other than chunked are not supported",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let status =
            |method, headers| check(&request(method, headers)).map_err(|(s, _)| s.as_u16());
        assert_eq!(status("GET", &[]), Ok(()));
        assert_eq!(status("POST", &[("content-length", "5")]), Ok(()));
        assert_eq!(status("POST", &[("transfer-encoding", "Chunked")]), Ok(()));
        assert_eq!(status("M-SEARCH", &[]), Ok(()));
        assert_eq!(status("get", &[]), Err(400));
        assert_eq!(
            status(
                "POST",
                &[("content-length", "5"), ("transfer-encoding", "chunked")]
            ),
            Err(400)
        );
        assert_eq!(status("POST", &[("content-length", "5, 5")]), Err(400));
        assert_eq!(
            status("POST", &[("content-length", "5"), ("content-length", "5")]),
            Err(400)
        );
        assert_eq!(
            status("POST", &[("transfer-encoding", "gzip, chunked")]),
            Err(501)
        );
        assert_eq!(
            status(
                "POST",
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            Err(501)
        );
        assert_eq!(
            status("POST", &[("transfer-encoding", "identity")]),
            Err(501)
        );
    }
}
