//! Reading (and removing) parts of a request that plugins and the proxy both need: cookies and
//! query parameters.

use std::borrow::Cow;

use pingora_http::RequestHeader;

use crate::PluginError;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
}

/// The percent-decoded value of query parameter `name`.
pub fn query_arg<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Removes cookie `name` from the request's `Cookie` headers (dropping headers left empty).
pub fn remove_cookie(req: &mut RequestHeader, name: &str) {
    let kept: Vec<String> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').map_or(*pair, |(key, _)| key.trim()) != name)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|value| !value.is_empty())
        .collect();
    req.remove_header(&http::header::COOKIE);
    for value in kept {
        let _ = req.append_header(http::header::COOKIE, value);
    }
}

/// Removes query parameter `name` from the request URI.
pub fn remove_query_arg(req: &mut RequestHeader, name: &str) -> Result<(), PluginError> {
    let Some(query) = req.uri.query() else {
        return Ok(());
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| percent_decode(pair.split_once('=').map_or(*pair, |(key, _)| key)) != name)
        .collect();
    let mut uri = req.uri.path().to_string();
    if !kept.is_empty() {
        uri.push('?');
        uri.push_str(&kept.join("&"));
    }
    let uri = uri
        .parse::<http::Uri>()
        .map_err(|e| PluginError::new(format!("cannot rebuild the request URI: {e}")))?;
    req.set_uri(uri);
    Ok(())
}

/// Decodes `%XX` escapes and `+` (as space); invalid escapes are kept as they are.
pub fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_digit(byte: Option<&u8>) -> Option<u8> {
    char::from(*byte?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn finds_cookies_and_query_arguments() {
        let mut req = RequestHeader::build("GET", b"/?a=1&b=x%20y&c", None).unwrap();
        req.insert_header("cookie", "theme=dark; session=\"abc\"")
            .unwrap();
        req.append_header("cookie", "late=1").unwrap();
        assert_eq!(cookie(&req, "session"), Some("abc"));
        assert_eq!(cookie(&req, "late"), Some("1"));
        assert_eq!(cookie(&req, "none"), None);
        let query = req.uri.query().unwrap();
        assert_eq!(query_arg(query, "b").as_deref(), Some("x y"));
        assert_eq!(query_arg(query, "c").as_deref(), Some(""));
        assert_eq!(query_arg(query, "d"), None);
    }

    #[test]
    fn removes_cookies_and_query_arguments() {
        let mut req = RequestHeader::build("GET", b"/p?a=1&token=x&b=2", None).unwrap();
        req.insert_header("cookie", "token=x; theme=dark").unwrap();
        req.append_header("cookie", "token=y").unwrap();
        remove_cookie(&mut req, "token");
        let cookies: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["theme=dark"]);
        remove_query_arg(&mut req, "token").unwrap();
        assert_eq!(req.uri.to_string(), "/p?a=1&b=2");
        remove_query_arg(&mut req, "a").unwrap();
        remove_query_arg(&mut req, "b").unwrap();
        assert_eq!(req.uri.to_string(), "/p");
    }
}
