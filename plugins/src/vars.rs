//! Request variables (`$host`, `$remote_addr`, `$http_user_agent`, ...) and the templates that use
//! them in header rules and rewrites.
//!
//! A template is parsed once, when the config is compiled; an unknown variable is a config error.
//! Syntax: `$name` is a variable, `$$` a literal `$`; a `$` followed by anything else is literal.
//! Besides the variables below, `$name` may name a named group of the location's host or path
//! regex (`~^/users/(?<id>\d+)$` gives `$id`), and in a regex rewrite `$1`… and `$name` name the
//! groups of the rewrite's own regex, which come first. A group may not be named like a variable.
//!
//! | variable | value |
//! |---|---|
//! | `$host` | the request host, lower-cased, without port |
//! | `$scheme` | `http` or `https` |
//! | `$method` | the request method |
//! | `$uri` | the request path (before any rewrite) |
//! | `$request_uri` | the request path and query (before any rewrite) |
//! | `$remote_addr` | the client address (the first untrusted `X-Forwarded-For` hop behind a trusted proxy) |
//! | `$remote_port` | the client's TCP port |
//! | `$server_addr`, `$server_port` | the local address the request arrived on |
//! | `$request_id` | the id set by the `request_id` plugin (empty without it) |
//! | `$location` | the name of the matched location |
//! | `$http_NAME` | request header `NAME`, with `_` standing for `-` (`$http_user_agent`) |
//! | `$cookie_NAME` | cookie `NAME` |
//! | `$arg_NAME` | query parameter `NAME` |
//! | `$ssl_client_verify` | `SUCCESS` when the client presented a certificate the server's `client_ca` verified, else `NONE` |
//! | `$ssl_client_s_dn`, `$ssl_client_i_dn` | the subject and issuer of that certificate (RFC 4514, `CN=alice,O=Example`; empty without one) |
//! | `$ssl_client_serial` | its serial number in hex (empty without one) |

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use regex::Regex;

use crate::request::{cookie, query_arg};

/// Everything a variable can be read from, for one request.
pub struct Vars<'a> {
    /// The request as received (before rewrites).
    pub req: &'a RequestHeader,
    /// The original request path and query.
    pub request_uri: &'a str,
    /// The request host, lower-cased, without port.
    pub host: &'a str,
    /// Whether the request arrived over TLS.
    pub tls: bool,
    /// The client address (after trusted-proxy resolution).
    pub client_ip: Option<IpAddr>,
    /// The TCP peer.
    pub remote_addr: Option<SocketAddr>,
    /// The local address.
    pub server_addr: Option<SocketAddr>,
    /// The request id, once assigned.
    pub request_id: Option<&'a str>,
    /// The matched location.
    pub location: &'a str,
    /// The values of the location's named captures, by slot (see [`Scope::captures`]).
    pub captures: &'a [Option<String>],
    /// The client certificate the server verified (mutual TLS), if any.
    pub client_cert: Option<&'a ClientCert>,
}

/// The certificate a client presented and the server verified against its `client_ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject, RFC 4514 (`$ssl_client_s_dn`).
    pub subject: String,
    /// The issuer, RFC 4514 (`$ssl_client_i_dn`).
    pub issuer: String,
    /// The serial number in hex (`$ssl_client_serial`).
    pub serial: String,
}

/// A variable, resolved from its name at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$host`
    Host,
    /// `$scheme`
    Scheme,
    /// `$method`
    Method,
    /// `$uri`
    Uri,
    /// `$request_uri`
    RequestUri,
    /// `$remote_addr`
    RemoteAddr,
    /// `$remote_port`
    RemotePort,
    /// `$server_addr`
    ServerAddr,
    /// `$server_port`
    ServerPort,
    /// `$request_id`
    RequestId,
    /// `$location`
    Location,
    /// `$http_NAME`
    Header(HeaderName),
    /// `$cookie_NAME`
    Cookie(String),
    /// `$arg_NAME`
    Arg(String),
    /// `$ssl_client_verify`
    ClientVerify,
    /// `$ssl_client_s_dn`
    ClientSubject,
    /// `$ssl_client_i_dn`
    ClientIssuer,
    /// `$ssl_client_serial`
    ClientSerial,
}

impl Var {
    /// Resolves a variable name (without `$`).
    pub fn parse(name: &str) -> Result<Var, String> {
        Ok(match name {
            "host" => Var::Host,
            "scheme" => Var::Scheme,
            "method" => Var::Method,
            "uri" => Var::Uri,
            "request_uri" => Var::RequestUri,
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "server_addr" => Var::ServerAddr,
            "server_port" => Var::ServerPort,
            "request_id" => Var::RequestId,
            "location" => Var::Location,
            "ssl_client_verify" => Var::ClientVerify,
            "ssl_client_s_dn" => Var::ClientSubject,
            "ssl_client_i_dn" => Var::ClientIssuer,
            "ssl_client_serial" => Var::ClientSerial,
            _ => {
                if let Some(header) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    let header = header.replace('_', "-").to_ascii_lowercase();
                    Var::Header(
                        HeaderName::try_from(header)
                            .map_err(|e| format!("invalid header in ${name}: {e}"))?,
                    )
                } else if let Some(cookie) = name.strip_prefix("cookie_").filter(|c| !c.is_empty())
                {
                    Var::Cookie(cookie.to_string())
                } else if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Var::Arg(arg.to_string())
                } else {
                    return Err(format!(
                        "unknown variable ${name} (known: $host, $scheme, $method, $uri, \
                         $request_uri, $remote_addr, $remote_port, $server_addr, $server_port, \
                         $request_id, $location, $ssl_client_verify, $ssl_client_s_dn, \
                         $ssl_client_i_dn, $ssl_client_serial, $http_NAME, $cookie_NAME, $arg_NAME)"
                    ));
                }
            }
        })
    }

    /// Whether the value is the request's own (normalised) path, which goes into a rewritten
    /// path as it is.
    fn is_path(&self) -> bool {
        matches!(self, Var::Uri | Var::RequestUri)
    }

    /// Appends the variable's value for this request to `out` (nothing when it has none).
    pub fn render(&self, cx: &Vars<'_>, out: &mut String) {
        match self {
            Var::Host => out.push_str(cx.host),
            Var::Scheme => out.push_str(if cx.tls { "https" } else { "http" }),
            Var::Method => out.push_str(cx.req.method.as_str()),
            Var::Uri => out.push_str(path_of(cx.request_uri)),
            Var::RequestUri => out.push_str(cx.request_uri),
            Var::RemoteAddr => {
                if let Some(ip) = cx.client_ip {
                    let _ = write!(out, "{ip}");
                }
            }
            Var::RemotePort => {
                if let Some(addr) = cx.remote_addr {
                    let _ = write!(out, "{}", addr.port());
                }
            }
            Var::ServerAddr => {
                if let Some(addr) = cx.server_addr {
                    let _ = write!(out, "{}", addr.ip());
                }
            }
            Var::ServerPort => {
                if let Some(addr) = cx.server_addr {
                    let _ = write!(out, "{}", addr.port());
                }
            }
            Var::RequestId => out.push_str(cx.request_id.unwrap_or_default()),
            Var::Location => out.push_str(cx.location),
            Var::Header(name) => {
                let mut values = cx.req.headers.get_all(name).iter();
                if let Some(first) = values.next() {
                    out.push_str(&String::from_utf8_lossy(first.as_bytes()));
                    for more in values {
                        out.push_str(", ");
                        out.push_str(&String::from_utf8_lossy(more.as_bytes()));
                    }
                }
            }
            Var::Cookie(name) => {
                if let Some(value) = cookie(cx.req, name) {
                    out.push_str(value);
                }
            }
            Var::Arg(name) => {
                if let Some(value) = query_arg(cx.req.uri.query().unwrap_or_default(), name) {
                    out.push_str(&value);
                }
            }
            Var::ClientVerify => out.push_str(if cx.client_cert.is_some() {
                "SUCCESS"
            } else {
                "NONE"
            }),
            Var::ClientSubject => out.push_str(cx.client_cert.map_or("", |c| &c.subject)),
            Var::ClientIssuer => out.push_str(cx.client_cert.map_or("", |c| &c.issuer)),
            Var::ClientSerial => out.push_str(cx.client_cert.map_or("", |c| &c.serial)),
        }
    }
}

fn path_of(request_uri: &str) -> &str {
    request_uri
        .split_once('?')
        .map_or(request_uri, |(path, _)| path)
}

/// The names a template may use besides the variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The named captures of the location's host and path regexes; a name's index is its slot.
    pub captures: &'a [String],
    /// The regex of a regex rewrite, whose groups `$1`… and `$name` refer to.
    pub groups: Option<&'a Regex>,
}

impl Scope<'_> {
    fn resolve(&self, name: &str) -> Result<Segment, String> {
        if let Some(regex) = self.groups {
            if name.bytes().all(|b| b.is_ascii_digit()) {
                let index: usize = name.parse().map_err(|_| format!("bad group ${name}"))?;
                if index >= regex.captures_len() {
                    return Err(format!(
                        "${index} refers to a group the regex does not have (it has {})",
                        regex.captures_len() - 1
                    ));
                }
                return Ok(Segment::Group(Group::Index(index)));
            }
            if regex.capture_names().flatten().any(|n| n == name) {
                return Ok(Segment::Group(Group::Name(name.to_string())));
            }
        }
        if let Some(slot) = self.captures.iter().position(|n| n == name) {
            return Ok(Segment::Capture(slot));
        }
        Var::parse(name).map(Segment::Var)
    }
}

/// Checks that a regex group name does not hide a variable.
pub fn check_group_name(name: &str) -> Result<(), String> {
    match Var::parse(name) {
        Ok(_) => Err(format!(
            "the group name \"{name}\" would hide the variable ${name}; rename the group"
        )),
        Err(_) => Ok(()),
    }
}

/// A group of a rewrite's own regex.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Group {
    Index(usize),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(Var),
    Capture(usize),
    Group(Group),
}

/// A string with variables, parsed at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// The value when there is no variable, ready to send.
    constant: Option<HeaderValue>,
}

impl Template {
    /// Parses `text`, resolving every name in `scope` or as a variable.
    pub fn parse(text: &str, scope: Scope<'_>) -> Result<Template, String> {
        let mut segments = Vec::new();
        for piece in pieces(text, scope.groups.is_some()) {
            segments.push(match piece {
                Piece::Literal(text) => Segment::Literal(text),
                Piece::Name(name) => scope.resolve(name)?,
            });
        }
        let constant = match segments.as_slice() {
            [] => Some(HeaderValue::from_static("")),
            [Segment::Literal(text)] => HeaderValue::from_str(text).ok(),
            _ => None,
        };
        Ok(Template { segments, constant })
    }

    /// Whether the template has no variable.
    pub fn is_constant(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether the template uses the location's captures.
    pub fn uses_captures(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Capture(_)))
    }

    /// The value of a template without variables, if it is a valid header value.
    pub fn constant_value(&self) -> Option<&HeaderValue> {
        self.constant.as_ref()
    }

    /// Renders the template for a request.
    pub fn render(&self, cx: &Vars<'_>) -> String {
        self.render_with_groups(cx, None)
    }

    /// Renders the template with the groups of a regex rewrite's match.
    pub fn render_with_groups(
        &self,
        cx: &Vars<'_>,
        groups: Option<&regex::Captures<'_>>,
    ) -> String {
        self.render_segments(cx, groups, false)
    }

    /// Renders the template as a path: the values of variables (a decoded query argument, a
    /// header, a cookie) are percent-encoded for one path segment
    /// ([`crate::path_encode`]), so they can add neither a `/`, a `?` nor a `#`; captures and
    /// regex groups come from the request's (normalised) path and host and go in as they are.
    pub fn render_path(&self, cx: &Vars<'_>, groups: Option<&regex::Captures<'_>>) -> String {
        self.render_segments(cx, groups, true)
    }

    fn render_segments(
        &self,
        cx: &Vars<'_>,
        groups: Option<&regex::Captures<'_>>,
        encode_vars: bool,
    ) -> String {
        let mut out = String::new();
        let mut value = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var(var) if encode_vars && !var.is_path() => {
                    value.clear();
                    var.render(cx, &mut value);
                    crate::path_encode::push_path_encoded(&value, &mut out);
                }
                Segment::Var(var) => var.render(cx, &mut out),
                Segment::Capture(slot) => {
                    if let Some(Some(value)) = cx.captures.get(*slot) {
                        out.push_str(value);
                    }
                }
                Segment::Group(group) => {
                    let found = groups.and_then(|g| match group {
                        Group::Index(index) => g.get(*index),
                        Group::Name(name) => g.name(name),
                    });
                    if let Some(found) = found {
                        out.push_str(found.as_str());
                    }
                }
            }
        }
        out
    }

    /// Renders the template as a header value; `None` if the result is not a valid one.
    pub fn header_value(&self, cx: &Vars<'_>) -> Option<HeaderValue> {
        match &self.constant {
            Some(value) => Some(value.clone()),
            // Receivers strip the whitespace around a value; so does pingap, so that what it
            // shows (`explain`) is what a backend sees.
            None => HeaderValue::from_str(self.render(cx).trim_matches([' ', '\t'])).ok(),
        }
    }
}

/// A run of a template's text: literal text, or the name of a `$name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'t> {
    /// Text as it is (`$$` already turned into `$`).
    Literal(String),
    /// A name after `$`, without the `$`.
    Name(&'t str),
}

/// Splits a template into literal runs and `$name`s: `$$` is a literal `$`, a `$` followed by no
/// name is literal, and with `digits` a run of digits (`$1`) is a name too.
pub fn pieces(text: &str, digits: bool) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        literal.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(after_escape) = after.strip_prefix('$') {
            literal.push('$');
            rest = after_escape;
            continue;
        }
        let digit_count = after.bytes().take_while(u8::is_ascii_digit).count();
        let name_len = if digit_count > 0 && digits {
            digit_count
        } else {
            variable_name_len(after)
        };
        if name_len == 0 {
            literal.push('$');
            rest = after;
            continue;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Name(&after[..name_len]));
        rest = &after[name_len..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

/// The length of the variable name at the start of `text` (after a `$`): a letter or `_`, then
/// letters, digits and `_`; 0 when there is none.
fn variable_name_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return 0;
    }
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestHeader {
        let mut req =
            RequestHeader::build("POST", b"/api/users?id=42&name=J%C3%B6rg+M&flag", None).unwrap();
        req.insert_header("user-agent", "curl/8").unwrap();
        req.insert_header("x-multi", "a").unwrap();
        req.append_header("x-multi", "b").unwrap();
        req.insert_header("cookie", "theme=dark; session=\"abc123\"")
            .unwrap();
        req
    }

    fn render(template: &str) -> String {
        let req = request();
        let cx = Vars {
            req: &req,
            request_uri: "/api/users?id=42&name=J%C3%B6rg+M&flag",
            host: "api.example.com",
            tls: true,
            client_ip: Some("203.0.113.9".parse().unwrap()),
            remote_addr: Some("10.0.0.1:51234".parse().unwrap()),
            server_addr: Some("127.0.0.1:443".parse().unwrap()),
            request_id: Some("req-1"),
            location: "api",
            captures: &[Some("acme".to_string()), None],
            client_cert: None,
        };
        let names = ["tenant".to_string(), "missing".to_string()];
        let scope = Scope {
            captures: &names,
            groups: None,
        };
        Template::parse(template, scope).unwrap().render(&cx)
    }

    #[test]
    fn renders_every_variable() {
        assert_eq!(
            render("$scheme://$host$uri"),
            "https://api.example.com/api/users"
        );
        assert_eq!(
            render("$method $request_uri"),
            "POST /api/users?id=42&name=J%C3%B6rg+M&flag"
        );
        assert_eq!(render("$remote_addr:$remote_port"), "203.0.113.9:51234");
        assert_eq!(render("$server_addr:$server_port"), "127.0.0.1:443");
        assert_eq!(render("$request_id@$location"), "req-1@api");
        assert_eq!(
            render("$http_user_agent|$http_x_multi|$http_absent"),
            "curl/8|a, b|"
        );
        assert_eq!(
            render("$cookie_theme/$cookie_session/$cookie_none"),
            "dark/abc123/"
        );
        assert_eq!(
            render("$arg_id,$arg_name,$arg_flag,$arg_nope"),
            "42,Jörg M,,"
        );
    }

    #[test]
    fn dollars_that_are_not_variables_stay() {
        assert_eq!(render("costs $5 or $$host"), "costs $5 or $host");
        assert_eq!(render("trailing $"), "trailing $");
        let constant = Template::parse("no vars: $$1", Scope::default()).unwrap();
        assert!(constant.is_constant());
    }

    #[test]
    fn captures_and_groups() {
        assert_eq!(
            render("tenant=$tenant, gone=[$missing]"),
            "tenant=acme, gone=[]"
        );
        let regex = Regex::new(r"^/u/(\d+)/(?<tab>\w+)").unwrap();
        let names = ["tenant".to_string()];
        let scope = Scope {
            captures: &names,
            groups: Some(&regex),
        };
        let template = Template::parse("/$tenant/users/$1/$tab/$2", scope).unwrap();
        assert!(template.uses_captures());
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let captures = [Some("acme".to_string())];
        let cx = Vars {
            req: &req,
            request_uri: "/",
            host: "h",
            tls: false,
            client_ip: None,
            remote_addr: None,
            server_addr: None,
            request_id: None,
            location: "l",
            captures: &captures,
            client_cert: None,
        };
        let groups = regex.captures("/u/42/posts").unwrap();
        assert_eq!(
            template.render_with_groups(&cx, Some(&groups)),
            "/acme/users/42/posts/posts"
        );
        assert!(
            Template::parse("$3", scope)
                .unwrap_err()
                .contains("$3 refers to a group")
        );
    }

    #[test]
    fn unknown_variables_and_hiding_groups_are_errors() {
        let err = Template::parse("x-$hots", Scope::default()).unwrap_err();
        assert!(err.starts_with("unknown variable $hots"), "{err}");
        assert!(Template::parse("$http_", Scope::default()).is_err());
        assert!(
            check_group_name("host")
                .unwrap_err()
                .contains("would hide the variable $host")
        );
        assert!(check_group_name("http_x").is_err());
        assert!(check_group_name("tenant").is_ok());
    }
}
