//! Strict parsing of the `Host` header (or of the authority of an absolute-form target).
//!
//! The rule enforced by [`parse_host`]: the host is exactly one of
//!
//! - a reg-name of ASCII letters, digits, `-`, `.` and `_`, at most 253 characters, with no
//!   empty label; one trailing dot is allowed and removed (`example.com.` is `example.com`);
//! - an IPv4 literal in strict dotted-quad form (four decimal parts 0–255, no leading zeros). A
//!   name whose last label is numeric (all digits, or `0x` and hex digits) is taken as an IPv4
//!   literal and must be a valid dotted quad, so `127.1`, `0x7f.0.0.1`, `2130706433` and
//!   `010.0.0.1`, which other parsers read as addresses, are refused;
//! - an IPv6 literal in brackets that parses as an [`Ipv6Addr`] (zone ids are refused);
//!
//! followed by at most one `:port` of 1 to 5 decimal digits with a value up to 65535. Anything
//! else is an error (answer 400): a second `:` outside brackets (a repeated port or a bare
//! IPv6 address), an empty port, spaces, `/`, `@`, `%`, ...
//!
//! The name is lower-cased into a caller-provided buffer, so parsing never allocates.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// The longest reg-name accepted (without its optional trailing dot), as in DNS.
pub const MAX_NAME_LEN: usize = 253;

/// A parsed host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host<'b> {
    /// The host name, lower-cased, without trailing dot. An IPv6 literal keeps its brackets
    /// (`[::1]`); it is lower-cased but not otherwise rewritten.
    pub name: &'b str,
    /// The port, if one was given.
    pub port: Option<u16>,
}

/// Why a host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// The host is empty.
    Empty,
    /// A byte that may not appear in a host name.
    InvalidChar {
        /// The offending byte.
        byte: u8,
    },
    /// The name has an empty label (`a..b`, `.a`, `.`, `a..`).
    EmptyLabel,
    /// The name is longer than [`MAX_NAME_LEN`].
    TooLong,
    /// The name ends in a numeric label but is not a strict dotted-quad IPv4 address.
    InvalidIpv4,
    /// A `[` without its `]`.
    UnclosedBracket,
    /// The text in brackets is not an IPv6 address.
    InvalidIpv6,
    /// The IPv6 literal has a zone id (`[fe80::1%eth0]`).
    ZoneId,
    /// Something other than `:port` follows the `]` of an IPv6 literal.
    AfterIpv6,
    /// More than one `:` outside brackets: a repeated port, or an IPv6 address without
    /// brackets.
    ExtraColon,
    /// Nothing follows the `:`.
    EmptyPort,
    /// The port is not 1 to 5 decimal digits.
    InvalidPort,
    /// The port is above 65535.
    PortOutOfRange,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Empty => f.write_str("the host is empty"),
            HostError::InvalidChar { byte } => {
                write!(
                    f,
                    "the host contains a byte not allowed in a host (0x{byte:02X})"
                )
            }
            HostError::EmptyLabel => f.write_str("the host name has an empty label"),
            HostError::TooLong => write!(f, "the host name is longer than {MAX_NAME_LEN} bytes"),
            HostError::InvalidIpv4 => {
                f.write_str("the host ends in a number but is not a dotted-quad IPv4 address")
            }
            HostError::UnclosedBracket => f.write_str("the host has a [ without its ]"),
            HostError::InvalidIpv6 => f.write_str("the host in brackets is not an IPv6 address"),
            HostError::ZoneId => f.write_str("the IPv6 host has a zone id"),
            HostError::AfterIpv6 => {
                f.write_str("the IPv6 host is followed by something other than :port")
            }
            HostError::ExtraColon => f.write_str(concat!(
                "the host has more than one : outside brackets ",
                "(a second port, or an IPv6 address without brackets)"
            )),
            HostError::EmptyPort => f.write_str("the port after : is empty"),
            HostError::InvalidPort => f.write_str("the port is not 1 to 5 decimal digits"),
            HostError::PortOutOfRange => f.write_str("the port is above 65535"),
        }
    }
}

impl std::error::Error for HostError {}

/// Parses a `Host` header value (see the [module documentation](self) for the rule), writing
/// the lower-cased name into `buf`.
///
/// ```text
/// API.Example.COM:8080 -> name "api.example.com", port Some(8080)
/// example.com.         -> name "example.com",     port None
/// [::1]:443            -> name "[::1]",           port Some(443)
/// host:80:80, ::1, host:, [::1, a b, 127.1 -> errors
/// ```
pub fn parse_host<'b>(raw: &[u8], buf: &'b mut [u8; 256]) -> Result<Host<'b>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    let (name, port) = if raw.first() == Some(&b'[') {
        split_ipv6(raw)?
    } else {
        split_reg_name(raw)?
    };
    let port = match port {
        Some(digits) => Some(parse_port(digits)?),
        None => None,
    };
    let out = buf.get_mut(..name.len()).ok_or(HostError::TooLong)?;
    for (dst, src) in out.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    // Every byte was checked to be ASCII.
    let name = std::str::from_utf8(out).map_err(|_| HostError::InvalidChar { byte: 0xFF })?;
    Ok(Host { name, port })
}

/// Splits `[v6]` or `[v6]:port` after validating the address.
fn split_ipv6(raw: &[u8]) -> Result<(&[u8], Option<&[u8]>), HostError> {
    let close = raw
        .iter()
        .position(|&b| b == b']')
        .ok_or(HostError::UnclosedBracket)?;
    let (literal, rest) = raw.split_at(close + 1);
    let inner = literal.get(1..close).unwrap_or_default();
    if inner.contains(&b'%') {
        return Err(HostError::ZoneId);
    }
    let valid = std::str::from_utf8(inner)
        .ok()
        .is_some_and(|text| Ipv6Addr::from_str(text).is_ok());
    if !valid {
        return Err(HostError::InvalidIpv6);
    }
    match rest.split_first() {
        None => Ok((literal, None)),
        Some((b':', port)) => Ok((literal, Some(port))),
        Some(_) => Err(HostError::AfterIpv6),
    }
}

/// Splits `name` or `name:port`, validating the name; the trailing dot is dropped.
fn split_reg_name(raw: &[u8]) -> Result<(&[u8], Option<&[u8]>), HostError> {
    let (name, port) = match raw.iter().position(|&b| b == b':') {
        Some(colon) => {
            let (name, rest) = raw.split_at(colon);
            let port = rest.get(1..).unwrap_or_default();
            if port.contains(&b':') {
                return Err(HostError::ExtraColon);
            }
            (name, Some(port))
        }
        None => (raw, None),
    };
    if let Some(&byte) = name
        .iter()
        .find(|&&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
    {
        return Err(HostError::InvalidChar { byte });
    }
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        // `:80` or `.`
        return Err(if raw.first() == Some(&b'.') {
            HostError::EmptyLabel
        } else {
            HostError::Empty
        });
    }
    if name.split(|&b| b == b'.').any(<[u8]>::is_empty) {
        return Err(HostError::EmptyLabel);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong);
    }
    let last_label = name.rsplit(|&b| b == b'.').next().unwrap_or_default();
    if is_numeric_label(last_label) && !is_dotted_quad(name) {
        return Err(HostError::InvalidIpv4);
    }
    Ok((name, port))
}

/// Whether a label reads as a number to URL parsers: all decimal digits, or `0x` followed by
/// hex digits (possibly none).
fn is_numeric_label(label: &[u8]) -> bool {
    match label {
        [b'0', b'x' | b'X', hex @ ..] => hex.iter().all(u8::is_ascii_hexdigit),
        _ => !label.is_empty() && label.iter().all(u8::is_ascii_digit),
    }
}

/// Four decimal parts 0–255 without leading zeros.
fn is_dotted_quad(name: &[u8]) -> bool {
    let mut parts = 0;
    for part in name.split(|&b| b == b'.') {
        parts += 1;
        let valid = match part {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] if rest.len() <= 2 => {
                rest.iter().all(u8::is_ascii_digit)
                    && part
                        .iter()
                        .fold(0u16, |value, &d| value * 10 + u16::from(d - b'0'))
                        <= 255
            }
            _ => false,
        };
        if !valid || parts > 4 {
            return false;
        }
    }
    parts == 4
}

/// 1 to 5 decimal digits, at most 65535.
fn parse_port(digits: &[u8]) -> Result<u16, HostError> {
    if digits.is_empty() {
        return Err(HostError::EmptyPort);
    }
    if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HostError::InvalidPort);
    }
    let value = digits
        .iter()
        .fold(0u32, |value, &d| value * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| HostError::PortOutOfRange)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(raw: &str) -> Result<(String, Option<u16>), HostError> {
        let mut buf = [0u8; 256];
        parse_host(raw.as_bytes(), &mut buf).map(|host| (host.name.to_string(), host.port))
    }

    fn ok(name: &str, port: Option<u16>) -> Result<(String, Option<u16>), HostError> {
        Ok((name.to_string(), port))
    }

    #[test]
    fn valid_hosts() {
        assert_eq!(parse("example.com"), ok("example.com", None));
        assert_eq!(
            parse("API.Example.COM:8080"),
            ok("api.example.com", Some(8080))
        );
        assert_eq!(parse("example.com."), ok("example.com", None));
        assert_eq!(parse("example.com.:443"), ok("example.com", Some(443)));
        assert_eq!(parse("localhost"), ok("localhost", None));
        assert_eq!(parse("my_svc-1.internal"), ok("my_svc-1.internal", None));
        assert_eq!(parse("a:0"), ok("a", Some(0)));
        assert_eq!(parse("a:65535"), ok("a", Some(65535)));
        assert_eq!(parse("a:00080"), ok("a", Some(80)));
        assert_eq!(parse("1.2.3.4"), ok("1.2.3.4", None));
        assert_eq!(parse("1.2.3.4.:80"), ok("1.2.3.4", Some(80)));
        assert_eq!(parse("255.255.255.255"), ok("255.255.255.255", None));
        assert_eq!(parse("0.0.0.0"), ok("0.0.0.0", None));
        assert_eq!(parse("1.2.3.com"), ok("1.2.3.com", None));
        assert_eq!(parse("123abc"), ok("123abc", None));
        assert_eq!(parse("[::1]"), ok("[::1]", None));
        assert_eq!(parse("[::1]:443"), ok("[::1]", Some(443)));
        assert_eq!(parse("[2001:DB8::A]"), ok("[2001:db8::a]", None));
        assert_eq!(
            parse("[::ffff:1.2.3.4]:80"),
            ok("[::ffff:1.2.3.4]", Some(80))
        );
        let long = format!("{}.com", "a".repeat(249));
        assert_eq!(parse(&long), ok(&long, None));
        assert_eq!(parse(&format!("{long}.")), ok(&long, None));
    }

    #[test]
    fn refused_hosts() {
        let cases: &[(&str, HostError)] = &[
            ("", HostError::Empty),
            (":80", HostError::Empty),
            ("internal.example:80:80", HostError::ExtraColon),
            ("a b", HostError::InvalidChar { byte: b' ' }),
            (" a", HostError::InvalidChar { byte: b' ' }),
            ("a/b", HostError::InvalidChar { byte: b'/' }),
            ("@", HostError::InvalidChar { byte: b'@' }),
            ("user@host", HostError::InvalidChar { byte: b'@' }),
            ("%", HostError::InvalidChar { byte: b'%' }),
            ("a%2eb", HostError::InvalidChar { byte: b'%' }),
            ("é.com", HostError::InvalidChar { byte: 0xC3 }),
            ("a\r\nb", HostError::InvalidChar { byte: b'\r' }),
            ("a]", HostError::InvalidChar { byte: b']' }),
            ("a[1]", HostError::InvalidChar { byte: b'[' }),
            ("a[::1]", HostError::ExtraColon),
            ("[::1", HostError::UnclosedBracket),
            ("[", HostError::UnclosedBracket),
            ("::1", HostError::ExtraColon),
            ("2001:db8::1", HostError::ExtraColon),
            ("[]", HostError::InvalidIpv6),
            ("[1.2.3.4]", HostError::InvalidIpv6),
            ("[example.com]", HostError::InvalidIpv6),
            ("[fe80::1%eth0]", HostError::ZoneId),
            ("[fe80::1%25eth0]", HostError::ZoneId),
            ("[::1]80", HostError::AfterIpv6),
            ("[::1]]", HostError::AfterIpv6),
            ("[::1]:", HostError::EmptyPort),
            ("[::1]:80:80", HostError::InvalidPort),
            ("host:", HostError::EmptyPort),
            ("host:abc", HostError::InvalidPort),
            ("host:+80", HostError::InvalidPort),
            ("host: 80", HostError::InvalidPort),
            ("host:123456", HostError::InvalidPort),
            ("host:99999", HostError::PortOutOfRange),
            ("host:65536", HostError::PortOutOfRange),
            (".", HostError::EmptyLabel),
            ("..", HostError::EmptyLabel),
            (".a", HostError::EmptyLabel),
            ("a..b", HostError::EmptyLabel),
            ("a..", HostError::EmptyLabel),
            ("127.1", HostError::InvalidIpv4),
            ("2130706433", HostError::InvalidIpv4),
            ("0x7f.0.0.1", HostError::InvalidIpv4),
            ("foo.0x10", HostError::InvalidIpv4),
            ("foo.0x", HostError::InvalidIpv4),
            ("010.0.0.1", HostError::InvalidIpv4),
            ("1.2.3.256", HostError::InvalidIpv4),
            ("1.2.3.4.5", HostError::InvalidIpv4),
            ("example.123", HostError::InvalidIpv4),
        ];
        for (raw, error) in cases {
            assert_eq!(parse(raw), Err(*error), "{raw:?}");
        }
        let long = format!("{}.com", "a".repeat(250));
        assert_eq!(parse(&long), Err(HostError::TooLong));
        assert_eq!(parse(&"a".repeat(300)), Err(HostError::TooLong));
        assert_eq!(HostError::Empty.to_string(), "the host is empty");
    }

    /// A label that cannot make the name numeric when last.
    fn last_label() -> impl Strategy<Value = String> {
        "[a-zA-Z_-][a-zA-Z0-9_-]{0,15}"
    }

    fn reg_name() -> impl Strategy<Value = String> {
        (
            prop::collection::vec("[a-zA-Z0-9_-]{1,20}", 0..6),
            last_label(),
        )
            .prop_map(|(mut labels, last)| {
                labels.push(last);
                labels.join(".")
            })
    }

    fn with_port(name: &str, port: Option<u16>) -> String {
        match port {
            Some(port) => format!("{name}:{port}"),
            None => name.to_string(),
        }
    }

    proptest! {
        #[test]
        fn reg_names_round_trip(
            name in reg_name(),
            dot in any::<bool>(),
            port in any::<Option<u16>>(),
        ) {
            let raw = with_port(&format!("{name}{}", if dot { "." } else { "" }), port);
            prop_assert_eq!(parse(&raw), Ok((name.to_ascii_lowercase(), port)));
        }

        #[test]
        fn ipv4_round_trips(addr in any::<Ipv4Addr>(), port in any::<Option<u16>>()) {
            let raw = with_port(&addr.to_string(), port);
            prop_assert_eq!(parse(&raw), Ok((addr.to_string(), port)));
        }

        #[test]
        fn ipv6_round_trips(
            addr in any::<Ipv6Addr>(),
            port in any::<Option<u16>>(),
            upper in any::<bool>(),
        ) {
            let literal = format!("[{addr}]");
            let raw = if upper { literal.to_ascii_uppercase() } else { literal.clone() };
            let (name, parsed_port) = parse(&with_port(&raw, port)).unwrap();
            prop_assert_eq!(&name, &literal);
            prop_assert_eq!(parsed_port, port);
            prop_assert_eq!(name[1..name.len() - 1].parse::<Ipv6Addr>().unwrap(), addr);
        }

        #[test]
        fn two_colons_outside_brackets_are_refused(
            head in prop_oneof![
                "[^\\[\\]]{0,20}".prop_map(|s| s),
                any::<Ipv6Addr>().prop_map(|a| format!("[{a}]")),
            ],
            middle in "[^\\[\\]]{0,10}",
            tail in "[^\\[\\]]{0,10}",
        ) {
            let raw = format!("{head}:{middle}:{tail}");
            prop_assert!(parse(&raw).is_err(), "{raw:?} was accepted");
        }

        #[test]
        fn never_panics_and_results_are_well_formed(
            raw in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = [0u8; 256];
            if let Ok(host) = parse_host(&raw, &mut buf) {
                check_host(host);
            }
        }

        #[test]
        fn host_like_bytes_parse_to_well_formed_hosts(
            raw in "[a-zA-Z0-9.:\\[\\]_%x -]{0,40}"
        ) {
            let mut buf = [0u8; 256];
            if let Ok(host) = parse_host(raw.as_bytes(), &mut buf) {
                check_host(host);
            }
        }
    }

    fn check_host(host: Host<'_>) {
        let name = host.name;
        assert!(!name.is_empty());
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        if let Some(inner) = name.strip_prefix('[') {
            let inner = inner.strip_suffix(']').unwrap();
            inner.parse::<Ipv6Addr>().unwrap();
        } else {
            assert!(name.len() <= MAX_NAME_LEN);
            assert!(!name.contains(':'));
            assert!(name.split('.').all(|label| !label.is_empty()));
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            );
        }
        // Parsing the name again gives the same name.
        let mut again = [0u8; 256];
        let reparsed = parse_host(name.as_bytes(), &mut again).unwrap();
        assert_eq!(reparsed.name, name);
        assert_eq!(reparsed.port, None);
    }
}
