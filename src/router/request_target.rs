//! The host and path a request is routed on, read strictly from its header: what pingap checks
//! is what the backend gets (design §13).
//!
//! * **Form.** The target is origin-form (`/path?query`), or absolute-form
//!   (`http://host/path?query`), whose authority is then the host and the `Host` sent upstream
//!   (Pingora's parser has already refused one whose `Host` header names another authority);
//!   `*` is accepted for `OPTIONS`. Anything else (`GET admin`) is refused.
//! * **Host.** One `Host` header (HTTP/2's `:authority` counts), parsed strictly by
//!   [`parse_host`]: one optional port, IPv6 literals in brackets. An HTTP/1.1 request without
//!   a host, with two `Host` headers or with an invalid one is refused.
//! * **Path.** Normalised by [`normalize_path`]: unreserved characters decoded, dot segments
//!   removed, repeated slashes merged, `%2F` kept encoded; a path that climbs above `/` or holds
//!   bytes a path may not hold is refused.
//!
//! Refusals are 400s with a reason; the request is never routed, guarded or forwarded on
//! anything but the normalised target.

use std::borrow::Cow;

use http::{Method, Version, header};
use pingora::http::RequestHeader;

use super::host_parse::parse_host;
use super::path_normalize::normalize_path;

/// What a request is routed on.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The host, lower-cased, without port; empty for an HTTP/1.0 request without one.
    pub host: String,
    /// The normalised path and query, when they differ from the request's (or the request was
    /// in absolute-form): the request must be changed to this before it is routed or forwarded.
    pub normalized: Option<String>,
    /// The `Host` to send upstream, for absolute-form requests (their authority).
    pub host_header: Option<String>,
}

/// Reads the target of `req`, or the reason it is refused (a 400).
pub fn read(req: &RequestHeader) -> Result<Target, Cow<'static, str>> {
    let raw = req.raw_path();
    let authority = absolute_form_authority(raw);
    let origin_form = raw.first() == Some(&b'/');
    let asterisk = raw == b"*" && req.method == Method::OPTIONS;
    if raw.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        // HTTP/2 and clients of `explain` reach here without Pingora's HTTP/1 request-line parser.
        return Err(
            "the request target holds a space, a control character or a non-ASCII byte".into(),
        );
    }
    if authority.is_none() && !origin_form && !asterisk {
        return Err(
            "the request target is neither a path starting with / nor an absolute URL".into(),
        );
    }

    let hosts = req.headers.get_all(header::HOST);
    let mut host_values = hosts.iter();
    let host_header = host_values.next();
    if host_values.next().is_some() {
        return Err("the request has more than one Host header".into());
    }
    let raw_host = match (authority, req.uri.authority(), host_header) {
        (Some(authority), _, _) => Some(authority),
        (None, Some(authority), _) => Some(authority.as_str().as_bytes()),
        (None, None, Some(value)) => Some(value.as_bytes()),
        (None, None, None) => None,
    };
    let mut buf = [0u8; 256];
    let host = match raw_host {
        Some(raw_host) => parse_host(raw_host, &mut buf)
            .map_err(|e| format!("invalid host: {e}"))?
            .name
            .to_string(),
        None if req.version == Version::HTTP_11 => {
            return Err("an HTTP/1.1 request needs a Host header".into());
        }
        None => String::new(),
    };

    if asterisk {
        return Ok(Target {
            host,
            normalized: None,
            host_header: None,
        });
    }
    let path = req.uri.path();
    let normalized_path = normalize_path(path).map_err(|e| e.to_string())?;
    let normalized = match (&normalized_path, authority) {
        (Cow::Borrowed(_), None) => None,
        _ => Some(match req.uri.query() {
            Some(query) => format!("{normalized_path}?{query}"),
            None => normalized_path.into_owned(),
        }),
    };
    Ok(Target {
        host,
        normalized,
        host_header: authority.map(|a| String::from_utf8_lossy(a).into_owned()),
    })
}

/// The authority of an absolute-form target (`http://host:port/path`), if it is one.
fn absolute_form_authority(raw: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ignore_case(raw, b"http://")
        .or_else(|| strip_prefix_ignore_case(raw, b"https://"))?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &bytes[prefix.len()..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request(target: &str, host: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_raw_path(target.as_bytes()).unwrap();
        if let Some(host) = host {
            req.append_header(header::HOST, host).unwrap();
        }
        req
    }

    #[test]
    fn origin_form_paths_are_normalised() {
        for raw in [
            "/%61dmin",
            "//admin",
            "/./admin",
            "/x/../admin",
            "/%2e/admin",
        ] {
            let target = read(&request(raw, Some("Example.com:80"))).unwrap();
            assert_eq!(target.host, "example.com");
            assert_eq!(target.normalized.as_deref(), Some("/admin"), "{raw}");
            assert_eq!(target.host_header, None);
        }
        let target = read(&request("/admin?x=1", Some("example.com"))).unwrap();
        assert_eq!(target.normalized, None, "a normal path is left alone");
        let target = read(&request("/ad%6din/?x=%2e", Some("example.com"))).unwrap();
        assert_eq!(target.normalized.as_deref(), Some("/admin/?x=%2e"));
        let target = read(&request("/%2fadmin", Some("example.com"))).unwrap();
        assert_eq!(target.normalized.as_deref(), Some("/%2Fadmin"));
    }

    #[test]
    fn absolute_form_takes_its_authority_as_the_host() {
        let target = read(&request("http://Internal.Example//admin?a", None)).unwrap();
        assert_eq!(target.host, "internal.example");
        assert_eq!(target.normalized.as_deref(), Some("/admin?a"));
        assert_eq!(target.host_header.as_deref(), Some("Internal.Example"));
        let target = read(&request("http://internal.example/", Some("other.example"))).unwrap();
        assert_eq!(
            target.host, "internal.example",
            "the Host header is ignored"
        );
    }

    #[test]
    fn bad_targets_and_hosts_are_refused() {
        for (target, host) in [
            ("admin", Some("example.com")),
            ("/re/../../admin", Some("example.com")),
            ("/", Some("internal.example:80:80")),
            ("/", None),
            ("/a%zz", Some("example.com")),
        ] {
            assert!(read(&request(target, host)).is_err(), "{target} {host:?}");
        }
        let mut two = request("/", Some("a.example"));
        two.append_header(header::HOST, "b.example").unwrap();
        assert!(read(&two).is_err());
        let mut http10 = request("/", None);
        http10.set_version(Version::HTTP_10);
        assert_eq!(read(&http10).unwrap().host, "");
    }
}
