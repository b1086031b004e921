//! The body of every response pingap makes itself (no route, upstream errors, plugin refusals):
//! HTML by default, JSON for clients that accept JSON and not HTML, or the operator's
//! `basic.error_template`.
//!
//! A template is an HTML file in which `{{status}}`, `{{reason}}` and `{{message}}` are replaced
//! (HTML-escaped).

use bytes::Bytes;
use http::StatusCode;

const BUILT_IN: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{{status}} {{reason}}</title>\
<style>body{font-family:system-ui,sans-serif;margin:4rem auto;max-width:40rem;color:#222}\
h1{font-size:1.5rem}p{color:#555}footer{margin-top:2rem;font-size:.8rem;color:#999}</style>\
</head><body><h1>{{status}} {{reason}}</h1><p>{{message}}</p><footer>pingap</footer></body></html>\n";

/// How error responses are rendered.
#[derive(Debug, Clone)]
pub struct ErrorPages {
    html: String,
}

impl Default for ErrorPages {
    fn default() -> Self {
        ErrorPages {
            html: BUILT_IN.to_string(),
        }
    }
}

/// A rendered error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Its content type.
    pub content_type: &'static str,
    /// The bytes.
    pub body: Bytes,
}

impl ErrorPages {
    /// Uses `template` (the contents of `basic.error_template`) for HTML pages.
    pub fn with_template(template: String) -> Self {
        ErrorPages { html: template }
    }

    /// Renders the page for `status` with `message`, as JSON if `accept` prefers it.
    pub fn render(&self, status: StatusCode, message: &str, accept: Option<&[u8]>) -> ErrorBody {
        let reason = status.canonical_reason().unwrap_or("Error");
        if accept.is_some_and(prefers_json) {
            let body = serde_json::json!({
                "status": status.as_u16(),
                "error": reason,
                "message": message,
            });
            return ErrorBody {
                content_type: "application/json",
                body: Bytes::from(body.to_string()),
            };
        }
        let page = self
            .html
            .replace("{{status}}", status.as_str())
            .replace("{{reason}}", &escape(reason))
            .replace("{{message}}", &escape(message));
        ErrorBody {
            content_type: "text/html; charset=utf-8",
            body: Bytes::from(page),
        }
    }
}

/// Whether an `Accept` header asks for JSON rather than HTML.
fn prefers_json(accept: &[u8]) -> bool {
    let accept = String::from_utf8_lossy(accept).to_ascii_lowercase();
    let json = accept.contains("application/json") || accept.contains("+json");
    json && !accept.contains("text/html")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_by_default_json_on_request() {
        let pages = ErrorPages::default();
        let html = pages.render(StatusCode::NOT_FOUND, "no route <matched>", Some(b"*/*"));
        assert_eq!(html.content_type, "text/html; charset=utf-8");
        let text = String::from_utf8(html.body.to_vec()).unwrap();
        assert!(text.contains("<h1>404 Not Found</h1>"), "{text}");
        assert!(text.contains("no route &lt;matched&gt;"), "{text}");

        let json = pages.render(StatusCode::BAD_GATEWAY, "down", Some(b"application/json"));
        assert_eq!(json.content_type, "application/json");
        let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(value["status"], 502);
        assert_eq!(value["error"], "Bad Gateway");
        assert_eq!(value["message"], "down");

        let browser = pages.render(
            StatusCode::BAD_GATEWAY,
            "x",
            Some(b"text/html,application/xhtml+xml,application/json;q=0.9"),
        );
        assert!(browser.content_type.starts_with("text/html"));
    }

    #[test]
    fn templates_fill_placeholders() {
        let pages = ErrorPages::with_template("[{{status}}|{{reason}}|{{message}}]".into());
        let page = pages.render(StatusCode::GATEWAY_TIMEOUT, "slow & sorry", None);
        assert_eq!(&page.body[..], b"[504|Gateway Timeout|slow &amp; sorry]");
    }
}
