//! The client's address behind trusted proxies, and the `X-Forwarded-*` headers sent upstream.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
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
pub fn add_forwarded_headers(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    client: Option<IpAddr>,
    peer_trusted: bool,
    tls: bool,
    host: &str,
) {
    if let Some(peer) = peer.map(canonical) {
        // Every line the client sent, in order, then the peer: one line upstream.
        let mut forwarded_for = String::new();
        for line in req.headers.get_all("x-forwarded-for") {
            let line = String::from_utf8_lossy(line.as_bytes());
            let line = line.trim();
            if !line.is_empty() {
                forwarded_for.push_str(line);
                forwarded_for.push_str(", ");
            }
        }
        let _ = write!(forwarded_for, "{peer}");
        let _ = req.insert_header("x-forwarded-for", forwarded_for);
    }
    if let Some(client) = client {
        let _ = req.insert_header("x-real-ip", client.to_string());
    }
    if !(peer_trusted && req.headers.contains_key("x-forwarded-proto")) {
        let _ = req.insert_header("x-forwarded-proto", if tls { "https" } else { "http" });
    }
    if !(host.is_empty() || peer_trusted && req.headers.contains_key("x-forwarded-host")) {
        let _ = req.insert_header("x-forwarded-host", host);
    }
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
