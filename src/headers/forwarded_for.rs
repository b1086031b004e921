//! The client's address behind trusted proxies, from `X-Forwarded-For`.
//!
//! The rule enforced by [`client_ip`]: when the peer (the address of the TCP connection) is not
//! a trusted proxy, the client is the peer. Otherwise the `X-Forwarded-For` hops are walked
//! from the right (the nearest hop: the right-most hop of the last header line) to the left,
//! and the walk stops at
//!
//! - the first hop that is not trusted: that hop is the client;
//! - the first hop that cannot be parsed (see [`parse_hop`]): the client is the last address
//!   the walk reached, that is the trusted hop to its right, or the peer.
//!
//! When every hop is parseable and trusted, the client is the left-most hop. IPv4-mapped IPv6
//! addresses (`::ffff:1.2.3.4`) are taken as the IPv4 address, for the peer and for the hops.
//! An attacker can only prepend hops, so stopping at what cannot be parsed never lets a forged
//! hop be believed: `10.0.0.1, unknown` behind a trusted peer gives the peer, not `10.0.0.1`.
//!
//! Nothing here allocates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The client's address: `peer` unless it is trusted, then the result of walking the
/// `X-Forwarded-For` hops right to left (see the [module documentation](self)).
///
/// `forwarded_for` yields the value of each `X-Forwarded-For` header line, in the order they
/// appear in the request; within a line the hops are separated by commas. `is_trusted` is
/// called with canonical addresses (IPv4-mapped IPv6 addresses as IPv4). The result is
/// canonical too, including when it is the peer.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for line in forwarded_for.rev() {
        for hop in line.rsplit(|&b| b == b',') {
            match parse_hop(hop) {
                Some(ip) if is_trusted(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
    }
    client
}

/// Parses one `X-Forwarded-For` hop, after trimming spaces and tabs around it.
///
/// Accepted forms: a strict IPv4 dotted quad (four decimal parts 0–255 without leading zeros)
/// optionally followed by `:port`; a bare IPv6 address; an IPv6 address in brackets optionally
/// followed by `:port`. A port is 1 to 5 digits, at most 65535, and is dropped. Anything else
/// (`unknown`, obfuscated identifiers such as `_hidden`, zone ids such as `fe80::1%eth0`, empty
/// hops, `010.0.0.1`, `127.1`, ...) gives `None`.
///
/// IPv4-mapped IPv6 addresses are returned as IPv4.
pub fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = trim(hop);
    let ip = if let Some(rest) = hop.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let (inner, after) = rest.split_at(close);
        let ip = parse_ipv6(inner)?;
        match after.get(1..).unwrap_or_default() {
            [] => ip,
            [b':', port @ ..] if is_port(port) => ip,
            _ => return None,
        }
    } else if !hop.contains(&b':') {
        IpAddr::V4(parse_ipv4(hop)?)
    } else if let Some(ip) = parse_ipv6(hop) {
        ip
    } else {
        let colon = hop.iter().rposition(|&b| b == b':')?;
        let (addr, port) = hop.split_at(colon);
        if !is_port(port.get(1..).unwrap_or_default()) {
            return None;
        }
        IpAddr::V4(parse_ipv4(addr)?)
    };
    Some(ip.to_canonical())
}

/// `hop` without leading and trailing spaces and tabs.
fn trim(mut hop: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = hop {
        hop = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = hop {
        hop = rest;
    }
    hop
}

/// Four decimal parts 0–255 without leading zeros.
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        let valid_digits = match part {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !valid_digits {
            return None;
        }
        let value = part
            .iter()
            .fold(0u16, |value, &d| value * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(value).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// An IPv6 address as the standard library reads it (which refuses zone ids).
fn parse_ipv6(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    Ipv6Addr::from_str(text).ok().map(IpAddr::V6)
}

/// 1 to 5 decimal digits, at most 65535.
fn is_port(digits: &[u8]) -> bool {
    (1..=5).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && digits
            .iter()
            .fold(0u32, |value, &d| value * 10 + u32::from(d - b'0'))
            <= 65535
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn localhost_only(ip: IpAddr) -> bool {
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn localhost_and_ten(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST || v4.octets()[0] == 10,
            IpAddr::V6(_) => false,
        }
    }

    fn client(peer: &str, lines: &[&str], trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
        client_ip(ip(peer), lines.iter().map(|line| line.as_bytes()), trusted)
    }

    #[test]
    fn spoofing_attempts() {
        let cases = [
            ("10.0.0.1, 203.0.113.9:4444", "203.0.113.9"),
            ("10.0.0.1, [2001:db8::1]:4444", "2001:db8::1"),
            ("10.0.0.1, unknown", "127.0.0.1"),
            ("10.0.0.1, 203.0.113.9%eth0", "127.0.0.1"),
            ("10.0.0.1, 010.000.000.001", "127.0.0.1"),
            ("10.0.0.1, _hidden", "127.0.0.1"),
            ("10.0.0.1, ", "127.0.0.1"),
            ("10.0.0.1,", "127.0.0.1"),
            ("10.0.0.1, 127.1", "127.0.0.1"),
            ("10.0.0.1, fe80::1%eth0", "127.0.0.1"),
            ("10.0.0.1, 1.2.3.4:", "127.0.0.1"),
            ("10.0.0.1, 1.2.3.4:99999", "127.0.0.1"),
            ("10.0.0.1, 10.0.0.1 1.2.3.4", "127.0.0.1"),
            ("10.0.0.1, 127.0.0.1, unknown", "127.0.0.1"),
            ("10.0.0.1, unknown, 127.0.0.1", "127.0.0.1"),
            ("10.0.0.1, 203.0.113.9", "203.0.113.9"),
        ];
        for (header, expected) in cases {
            let got = client("127.0.0.1", &[header], localhost_only);
            assert_eq!(got, ip(expected), "{header:?}");
            assert_ne!(got, ip("10.0.0.1"), "{header:?}");
        }
    }

    #[test]
    fn trusted_ranges() {
        assert_eq!(
            client("127.0.0.1", &["1.2.3.4, 10.0.0.5"], localhost_and_ten),
            ip("1.2.3.4")
        );
        assert_eq!(
            client("127.0.0.1", &["10.0.0.7, 10.0.0.5"], localhost_and_ten),
            ip("10.0.0.7")
        );
        assert_eq!(
            client(
                "127.0.0.1",
                &["10.0.0.7, unknown, 10.0.0.5"],
                localhost_and_ten
            ),
            ip("10.0.0.5")
        );
        assert_eq!(
            client(
                "127.0.0.1",
                &["9.9.9.9, 1.2.3.4, 10.0.0.5"],
                localhost_and_ten
            ),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn several_lines() {
        let lines = ["1.1.1.1, 10.0.0.1", "10.0.0.2", "10.0.0.3,10.0.0.4"];
        assert_eq!(
            client("127.0.0.1", &lines, localhost_and_ten),
            ip("1.1.1.1")
        );
        let lines = ["1.1.1.1", "2.2.2.2, 10.0.0.2"];
        assert_eq!(
            client("127.0.0.1", &lines, localhost_and_ten),
            ip("2.2.2.2")
        );
        // An empty line is an empty hop.
        let lines = ["1.1.1.1", "", "10.0.0.2"];
        assert_eq!(
            client("127.0.0.1", &lines, localhost_and_ten),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn untrusted_or_no_header() {
        assert_eq!(
            client("203.0.113.9", &["10.0.0.1"], localhost_and_ten),
            ip("203.0.113.9")
        );
        assert_eq!(client("127.0.0.1", &[], localhost_only), ip("127.0.0.1"));
        assert_eq!(
            client("::ffff:203.0.113.9", &["10.0.0.1"], localhost_and_ten),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(
            client(
                "::ffff:127.0.0.1",
                &["1.2.3.4, ::ffff:10.0.0.5"],
                localhost_and_ten
            ),
            ip("1.2.3.4")
        );
        assert_eq!(
            client(
                "::ffff:127.0.0.1",
                &["[::ffff:1.2.3.4]:80"],
                localhost_and_ten
            ),
            ip("1.2.3.4")
        );
        assert_eq!(parse_hop(b"::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(
            parse_hop(b"::1.2.3.4"),
            Some(ip("::1.2.3.4")),
            "compatible, not mapped"
        );
    }

    #[test]
    fn hop_forms() {
        let good = [
            ("1.2.3.4", "1.2.3.4"),
            (" \t1.2.3.4 \t", "1.2.3.4"),
            ("1.2.3.4:80", "1.2.3.4"),
            ("0.0.0.0:65535", "0.0.0.0"),
            ("255.255.255.255:0", "255.255.255.255"),
            ("2001:db8::1", "2001:db8::1"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[2001:DB8::1]:443", "2001:db8::1"),
            ("1::", "1::"),
        ];
        for (hop, expected) in good {
            assert_eq!(parse_hop(hop.as_bytes()), Some(ip(expected)), "{hop:?}");
        }
        let bad = [
            "",
            " ",
            "unknown",
            "_hidden",
            "_gazonk",
            "010.0.0.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.256",
            "1.2.3.-4",
            "1.2.3.+4",
            "1..3.4",
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "1.2.3.4:",
            "1.2.3.4:x",
            "1.2.3.4:99999",
            "1.2.3.4:123456",
            "1.2.3.4:80:80",
            "fe80::1%eth0",
            "[fe80::1%eth0]",
            "203.0.113.9%eth0",
            "[::1",
            "[::1]:",
            "[::1]80",
            "[::1]:80:80",
            "[1.2.3.4]",
            "[1.2.3.4]:80",
            "::1:",
            "1.2.3.4 5",
            "\"1.2.3.4\"",
            "1.2.3.4\r",
            "for=1.2.3.4",
        ];
        for hop in bad {
            assert_eq!(parse_hop(hop.as_bytes()), None, "{hop:?}");
        }
    }

    /// Addresses, some of which are trusted in a given case.
    const POOL: &[&str] = &[
        "127.0.0.1",
        "10.0.0.5",
        "10.0.0.7",
        "203.0.113.9",
        "2001:db8::1",
        "::ffff:10.0.0.9",
        "192.0.2.1",
    ];

    /// Hops that [`parse_hop`] refuses.
    const JUNK: &[&str] = &[
        "unknown",
        "",
        "  ",
        "_hidden",
        "010.0.0.1",
        "fe80::1%eth0",
        "1.2.3",
        "[::1",
        "1.2.3.4:",
        "1.2.3.4:99999",
        "10.0.0.5 x",
    ];

    /// A hop written in one of the accepted forms, with spaces around it.
    fn hop() -> impl Strategy<Value = String> {
        (
            prop::sample::select(POOL),
            0..3u8,
            any::<u16>(),
            prop::sample::select(&["", " ", "\t", "  "][..]),
            prop::sample::select(&["", " ", "\t"][..]),
        )
            .prop_map(|(addr, form, port, before, after)| {
                let v6 = addr.contains(':');
                let text = match (form, v6) {
                    (0, _) => addr.to_string(),
                    (1, false) => format!("{addr}:{port}"),
                    (1, true) => format!("[{addr}]:{port}"),
                    (_, _) if v6 => format!("[{addr}]"),
                    _ => addr.to_string(),
                };
                format!("{before}{text}{after}")
            })
    }

    fn any_hop() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => hop(),
            1 => prop::sample::select(JUNK).prop_map(str::to_string),
        ]
    }

    fn lines() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop::collection::vec(any_hop(), 1..4).prop_map(|hops| hops.join(",")),
            0..4,
        )
    }

    fn trusted_set() -> impl Strategy<Value = Vec<IpAddr>> {
        prop::collection::vec(any::<bool>(), POOL.len()).prop_map(|mask| {
            POOL.iter()
                .zip(mask)
                .filter(|(_, keep)| *keep)
                .map(|(addr, _)| ip(addr).to_canonical())
                .collect()
        })
    }

    fn peer() -> impl Strategy<Value = IpAddr> {
        prop_oneof![prop::sample::select(POOL).prop_map(ip), any::<IpAddr>(),]
    }

    /// The accepted hop forms, read with the standard library's parsers.
    fn std_parse(hop: &str) -> Option<IpAddr> {
        hop.parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
            .or_else(|| {
                let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
                inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
            })
    }

    /// Straightforward version of the rule, collecting the hops first.
    fn reference(peer: IpAddr, lines: &[String], trusted: &[IpAddr]) -> IpAddr {
        let is_trusted = |ip: &IpAddr| trusted.contains(ip);
        let peer = peer.to_canonical();
        if !is_trusted(&peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(|hop| std_parse(hop.trim_matches([' ', '\t'])))
            .map(|hop| hop.map(|ip| ip.to_canonical()))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                None => return client,
                Some(ip) if !is_trusted(ip) => return *ip,
                Some(ip) => client = *ip,
            }
        }
        client
    }

    fn run(peer: IpAddr, lines: &[String], trusted: &[IpAddr]) -> IpAddr {
        client_ip(peer, lines.iter().map(|l| l.as_bytes()), |ip| {
            trusted.contains(&ip)
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            peer in peer(),
            lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
            trusted in trusted_set(),
            trust_all in any::<bool>(),
        ) {
            let got = client_ip(peer, lines.iter().map(Vec::as_slice), |ip| {
                trust_all || trusted.contains(&ip)
            });
            let in_header = lines
                .iter()
                .flat_map(|line| line.split(|&b| b == b','))
                .any(|hop| parse_hop(hop) == Some(got));
            prop_assert!(got == peer.to_canonical() || in_header);
        }

        #[test]
        fn result_is_the_peer_or_a_hop(peer in peer(), lines in lines(), trusted in trusted_set()) {
            let got = run(peer, &lines, &trusted);
            let in_header = lines
                .iter()
                .flat_map(|line| line.split(','))
                .any(|hop| parse_hop(hop.as_bytes()) == Some(got));
            prop_assert!(got == peer.to_canonical() || in_header);
        }

        #[test]
        fn untrusted_peer_is_the_client(
            peer in peer(),
            lines in lines(),
            trusted in trusted_set(),
        ) {
            let peer = peer.to_canonical();
            let trusted: Vec<IpAddr> = trusted.into_iter().filter(|ip| *ip != peer).collect();
            prop_assert_eq!(run(peer, &lines, &trusted), peer);
        }

        #[test]
        fn unparseable_nearest_hop_gives_the_peer(
            peer in peer(),
            mut lines in lines(),
            trusted in trusted_set(),
            junk in prop::sample::select(JUNK),
            new_line in any::<bool>(),
        ) {
            prop_assert_eq!(parse_hop(junk.as_bytes()), None);
            match lines.last_mut() {
                Some(last) if !new_line => {
                    last.push(',');
                    last.push_str(junk);
                }
                _ => lines.push(junk.to_string()),
            }
            prop_assert_eq!(run(peer, &lines, &trusted), peer.to_canonical());
        }

        #[test]
        fn agrees_with_the_reference(peer in peer(), lines in lines(), trusted in trusted_set()) {
            prop_assert_eq!(run(peer, &lines, &trusted), reference(peer, &lines, &trusted));
        }

        #[test]
        fn hops_round_trip(addr in any::<IpAddr>(), port in any::<u16>(), form in 0..3u8) {
            let text = match (addr, form) {
                (_, 0) => addr.to_string(),
                (IpAddr::V4(v4), _) => format!("{v4}:{port}"),
                (IpAddr::V6(v6), 1) => format!("[{v6}]:{port}"),
                (IpAddr::V6(v6), _) => format!("[{v6}]"),
            };
            prop_assert_eq!(parse_hop(text.as_bytes()), Some(addr.to_canonical()));
        }

        #[test]
        fn padded_ipv4_parts_are_refused(
            addr in any::<Ipv4Addr>(),
            part in 0..4usize,
            pad in 1..3usize,
        ) {
            let padded: Vec<String> = addr
                .octets()
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let zeros = if i == part { "0".repeat(pad) } else { String::new() };
                    format!("{zeros}{o}")
                })
                .collect();
            prop_assert_eq!(parse_hop(padded.join(".").as_bytes()), None);
        }

        #[test]
        fn ipv4_agrees_with_std(text in "[0-9.]{0,16}") {
            prop_assert_eq!(
                parse_hop(text.as_bytes()),
                text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
            );
        }
    }
}
