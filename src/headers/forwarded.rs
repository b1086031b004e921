//! The client's address behind trusted proxies, and the `X-Forwarded-*` headers sent upstream.

use std::io::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use http::HeaderValue;
use pingora::http::RequestHeader;

/// The peers whose `X-Forwarded-For` is believed (`basic.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses IPs and CIDRs; errors give the index and reason.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, Vec<(usize, String)>> {
        let mut nets = Vec::new();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            match entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => nets.push(net),
                Err(_) => errors.push((index, format!("\"{entry}\" is not an IP address or CIDR"))),
            }
        }
        if errors.is_empty() {
            Ok(TrustedProxies(nets))
        } else {
            Err(errors)
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client: `peer` itself, unless `peer` is trusted; then `X-Forwarded-For` is walked
    /// right to left while the hops are trusted proxies, and the walk stops at the first hop
    /// that is not trusted (the client) or that cannot be parsed (then the client is the last
    /// trusted hop it reached); see [`super::forwarded_for`].
    pub fn client_ip(&self, peer: IpAddr, req: &RequestHeader) -> IpAddr {
        if self.0.is_empty() {
            return canonical(peer);
        }
        super::forwarded_for::client_ip(
            peer,
            req.headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|value| value.as_bytes()),
            |ip| self.contains(ip),
        )
    }
}

/// IPv4-mapped IPv6 addresses (from dual-stack listeners) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Adds `X-Forwarded-For` (appending the peer), `X-Forwarded-Proto`, `X-Forwarded-Host` and
/// `X-Real-IP` to the request sent upstream. `X-Forwarded-Proto` and `-Host` set by a trusted
/// proxy are kept.
///
/// This runs for every proxied request, so each value is built with one allocation at most (the
/// header value itself): addresses are written on the stack, the protocol is a static value, and
/// `X-Real-IP` shares `X-Forwarded-For`'s value when the client is the only hop.
pub fn add_forwarded_headers(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    client: Option<IpAddr>,
    peer_trusted: bool,
    tls: bool,
    host: &str,
) {
    let peer = peer.map(canonical);
    let mut real_ip = None;
    if let Some(peer) = peer {
        let value = if req.headers.contains_key(X_FORWARDED_FOR) {
            forwarded_for_with(req, peer)
        } else {
            let value = ip_value(peer);
            if client == Some(peer) {
                real_ip = value.clone();
            }
            value
        };
        if let Some(value) = value {
            let _ = req.insert_header(X_FORWARDED_FOR, value);
        }
    }
    if let Some(value) = real_ip.or_else(|| client.and_then(ip_value)) {
        let _ = req.insert_header(X_REAL_IP, value);
    }
    if !(peer_trusted && req.headers.contains_key(X_FORWARDED_PROTO)) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        let _ = req.insert_header(X_FORWARDED_PROTO, proto);
    }
    if !(host.is_empty() || peer_trusted && req.headers.contains_key(X_FORWARDED_HOST)) {
        let _ = req.insert_header(X_FORWARDED_HOST, host);
    }
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_REAL_IP: &str = "x-real-ip";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// `ip` as a header value, written on the stack.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    // The longest address text is 45 bytes (IPv6 with an IPv4 tail).
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    write!(cursor, "{ip}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&text[..len]).ok()
}

/// Every `X-Forwarded-For` line the client sent, in order, then `peer`: one line upstream.
fn forwarded_for_with(req: &RequestHeader, peer: IpAddr) -> Option<HeaderValue> {
    let mut line = Vec::with_capacity(
        req.headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|value| value.len() + 2)
            .sum::<usize>()
            + 48,
    );
    for value in req.headers.get_all(X_FORWARDED_FOR) {
        let value = value.as_bytes().trim_ascii();
        if !value.is_empty() {
            line.extend_from_slice(value);
            line.extend_from_slice(b", ");
        }
    }
    write!(line, "{peer}").ok()?;
    HeaderValue::from_maybe_shared(bytes::Bytes::from(line)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn request(xff: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for value in xff {
            req.append_header("x-forwarded-for", *value).unwrap();
        }
        req
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let req = request(&["1.2.3.4"]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.5"), &req),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn trusted_peers_yield_the_first_untrusted_hop_from_the_right() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let req = request(&["198.51.100.1, 203.0.113.9", "10.1.1.1"]);
        assert_eq!(trusted.client_ip(ip("10.0.0.2"), &req), ip("203.0.113.9"));
        let req = request(&["10.2.2.2, 192.0.2.7"]);
        assert_eq!(trusted.client_ip(ip("10.0.0.2"), &req), ip("10.2.2.2"));
        let req = request(&[]);
        assert_eq!(trusted.client_ip(ip("10.0.0.2"), &req), ip("10.0.0.2"));
        assert_eq!(
            trusted.client_ip(ip("::ffff:10.0.0.2"), &request(&["198.51.100.1"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn bad_entries_are_reported() {
        let errors = TrustedProxies::parse(&["10.0.0.0/8".into(), "ten".into()]).unwrap_err();
        assert_eq!(
            errors,
            [(1, "\"ten\" is not an IP address or CIDR".to_string())]
        );
    }

    #[test]
    fn forwarded_headers() {
        let mut req = request(&["198.51.100.1"]);
        req.insert_header("x-forwarded-proto", "https").unwrap();
        add_forwarded_headers(
            &mut req,
            Some(ip("203.0.113.5")),
            Some(ip("203.0.113.5")),
            false,
            false,
            "example.com",
        );
        assert_eq!(req.headers["x-forwarded-for"], "198.51.100.1, 203.0.113.5");
        assert_eq!(
            req.headers["x-forwarded-proto"], "http",
            "untrusted value replaced"
        );
        assert_eq!(req.headers["x-forwarded-host"], "example.com");
        assert_eq!(req.headers["x-real-ip"], "203.0.113.5");

        let mut req = request(&[]);
        req.insert_header("x-forwarded-proto", "https").unwrap();
        add_forwarded_headers(
            &mut req,
            Some(ip("10.0.0.2")),
            Some(ip("198.51.100.1")),
            true,
            false,
            "h",
        );
        assert_eq!(
            req.headers["x-forwarded-proto"], "https",
            "trusted value kept"
        );
        assert_eq!(req.headers["x-forwarded-for"], "10.0.0.2");
    }
}
