//! Routing as one pure function: [`Runtime::plan`] decides, from a request header and how it
//! arrived, which server and location take it (or what pingap answers instead), with the
//! request's host, client address and the location's captures. The proxy and `pingap explain`
//! both call it, so what explain shows is what the proxy does.
//!
//! Before routing, the request's framing is checked ([`crate::headers::framing`]) and its host
//! and path are read strictly and normalised ([`crate::router::request_target`]); the location
//! is matched on the normalised target, which the caller then puts in the request
//! ([`RoutePlan::normalized`]) so that the same target is guarded and forwarded.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::StatusCode;
use pingora::http::RequestHeader;

use super::{Location, Runtime};
use crate::headers::framing;
use crate::router::request_target;

/// How a request arrived, besides its header.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The server (listener) it arrived on.
    pub server: &'a str,
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// Whether the connection negotiated TLS 1.2 (refused by servers that require TLS 1.3).
    pub tls12: bool,
}

/// The routing decision for one request.
pub struct RoutePlan {
    /// The request host, lower-cased, without port (empty when the request has none).
    pub host: String,
    /// The client: the peer, or the client behind it when the peer is a trusted proxy.
    pub client_ip: Option<IpAddr>,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The normalised target, when the request's differs: to be put in the request.
    pub normalized: Option<Normalized>,
    /// Where the request goes.
    pub decision: Decision,
}

/// A request target rewritten to its normal form.
pub struct Normalized {
    /// The path and query (origin-form).
    pub path_and_query: http::Uri,
    /// The `Host` header to send, for absolute-form requests (their authority).
    pub host: Option<String>,
}

/// Where a request goes.
pub enum Decision {
    /// To a location.
    Location(RoutedTo),
    /// Nowhere: pingap answers with this status and explanation.
    Refuse {
        /// The status.
        status: StatusCode,
        /// What the error page says.
        message: Cow<'static, str>,
    },
}

/// The location a request matched.
pub struct RoutedTo {
    /// The location.
    pub location: Arc<Location>,
    /// How many bytes of the path its pattern matched (for prefix rewrites).
    pub matched_len: usize,
    /// The values of its named captures, when its templates use them (empty otherwise).
    pub captures: Vec<Option<String>>,
}

impl Runtime {
    /// Routes `req`, which arrived as `arrival` says. Pure: it reads the snapshot and the
    /// request and changes neither.
    pub fn plan(&self, req: &RequestHeader, arrival: &Arrival<'_>) -> RoutePlan {
        let read = framing::check(req)
            .map_err(|(status, message)| (status, Cow::Borrowed(message)))
            .and_then(|()| {
                request_target::read(req).map_err(|message| (StatusCode::BAD_REQUEST, message))
            })
            .and_then(|target| {
                let normalized = match target.normalized {
                    Some(text) => match text.parse::<http::Uri>() {
                        Ok(uri) => Some(Normalized {
                            path_and_query: uri,
                            host: target.host_header,
                        }),
                        Err(_) => {
                            return Err((
                                StatusCode::BAD_REQUEST,
                                Cow::Borrowed("the request target is not a valid URI"),
                            ));
                        }
                    },
                    None => None,
                };
                Ok((target.host, normalized))
            });
        let peer_ip = arrival.peer.map(|a| a.ip());
        let peer_trusted = peer_ip.is_some_and(|ip| self.trusted_proxies.contains(ip));
        let client_ip = peer_ip.map(|ip| self.trusted_proxies.client_ip(ip, req));
        let refuse = |status, message: &'static str| Decision::Refuse {
            status,
            message: Cow::Borrowed(message),
        };
        let (host, normalized) = match read {
            Ok(read) => read,
            Err((status, message)) => {
                return RoutePlan {
                    host: String::new(),
                    client_ip,
                    peer_trusted,
                    normalized: None,
                    decision: Decision::Refuse { status, message },
                };
            }
        };
        // Matched on the normalised target (a copy of the header, only when it changed).
        let normal_req;
        let req = match &normalized {
            Some(normalized) => {
                let mut copy = req.clone();
                copy.set_uri(normalized.path_and_query.clone());
                normal_req = copy;
                &normal_req
            }
            None => req,
        };
        let decision = match self.server(arrival.server) {
            None => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "this listener is not in the current configuration",
            ),
            Some(server) if server.tls13_only && arrival.tls12 => {
                refuse(StatusCode::FORBIDDEN, "this server requires TLS 1.3")
            }
            Some(server) => match server.router.route(&host, req) {
                None => refuse(StatusCode::NOT_FOUND, "no route matched this request"),
                Some(matched) => {
                    let location = matched.target.clone();
                    let captures = if location.needs_captures {
                        matched.captures(&host, req.uri.path())
                    } else {
                        Vec::new()
                    };
                    Decision::Location(RoutedTo {
                        location,
                        matched_len: matched.matched_len,
                        captures,
                    })
                }
            },
        };
        RoutePlan {
            host,
            client_ip,
            peer_trusted,
            normalized,
            decision,
        }
    }
}
