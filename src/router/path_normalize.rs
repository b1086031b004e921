//! Normalisation of the path of an HTTP request target.
//!
//! Locations are matched, guarded and forwarded on one normalised path, so that what pingap
//! checks is what the backend gets. The rule enforced by [`normalize_path`]:
//!
//! - the path starts with `/` (the caller has already cut the query string off at the first
//!   `?`);
//! - every byte is one RFC 3986 allows in a path: unreserved characters (`A-Z a-z 0-9 - . _ ~`),
//!   sub-delims (`! $ & ' ( ) * + , ; =`), `:`, `@`, `/` and `%` escapes. Anything else
//!   (control characters, space, `#`, `?`, `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`,
//!   `[`, `]`, non-ASCII) is an error;
//! - a `%` must be followed by two hex digits. Escapes of unreserved characters are decoded
//!   (`/%61dmin` is `/admin`); every other escape is kept, with upper-case hex (`%2f` is `%2F`).
//!   An encoded slash `%2F` is therefore never a separator;
//! - dot segments are removed as in RFC 3986 §5.2.4, *after* unreserved characters are decoded
//!   (so `%2e` and `%2E%2E` are dot segments), and repeated slashes are merged;
//! - a path whose `..` segments climb above `/` is an error (answer 400), not clamped;
//! - a trailing slash is kept, and a final `.` or `..` segment leaves one (`/a/.` is `/a/`,
//!   `/a/b/..` is `/a/`).
//!
//! A path that is already normal is returned borrowed after one scan, without allocating.

use std::borrow::Cow;
use std::fmt;

use pingap_plugins::path_encode::{HEX_UPPER, is_segment_literal, is_unreserved};

/// Why a path was refused. The proxy answers such requests with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    NotAbsolute,
    /// A byte that may not appear in a path (control character, space, `#`, non-ASCII, ...).
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the path.
        offset: usize,
    },
    /// A `%` that is not followed by two hex digits.
    InvalidEscape {
        /// The offset of the `%` in the path.
        offset: usize,
    },
    /// The `..` segments climb above `/`.
    ClimbsAboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("the path does not start with /"),
            PathError::InvalidByte { byte, offset } => write!(
                f,
                "the path contains a byte not allowed in a path (0x{byte:02X} at offset {offset})"
            ),
            PathError::InvalidEscape { offset } => write!(
                f,
                "the path contains a % that is not followed by two hex digits (at offset {offset})"
            ),
            PathError::ClimbsAboveRoot => f.write_str("the path climbs above /"),
        }
    }
}

impl std::error::Error for PathError {}

/// Normalises the path of a request target (see the [module documentation](self) for the
/// rule).
///
/// Returns the input borrowed when it is already normal, which is the common case; otherwise
/// the normalised path, which is never longer than the input.
///
/// ```text
/// /%61dmin      -> /admin          //admin      -> /admin
/// /x/../admin   -> /admin          /%2e/admin   -> /admin
/// /%2fadmin     -> /%2Fadmin       /a/..        -> /
/// /a/../../b    -> Err(ClimbsAboveRoot)
/// ```
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if scan(bytes)? {
        Ok(Cow::Borrowed(path))
    } else {
        normalize_slow(bytes).map(Cow::Owned)
    }
}

/// The value of a hex digit (either case).
const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte encoded by the escape whose `%` is at `offset`, and whether it is already written
/// the normal way (upper-case hex).
fn decode_escape(bytes: &[u8], offset: usize) -> Result<(u8, bool), PathError> {
    let digit = |i: usize| bytes.get(i).copied().and_then(hex_value);
    match (digit(offset + 1), digit(offset + 2)) {
        (Some(high), Some(low)) => {
            let upper = bytes
                .get(offset + 1..offset + 3)
                .is_some_and(|hex| !hex.iter().any(u8::is_ascii_lowercase));
            Ok(((high << 4) | low, upper))
        }
        _ => Err(PathError::InvalidEscape { offset }),
    }
}

/// Whether a raw segment of a normal path may stand where it is: `.` and `..` never, the empty
/// segment only last (the trailing slash, or the root itself).
fn segment_is_normal(segment: &[u8], last: bool) -> bool {
    match segment {
        b"" => last,
        b"." | b".." => false,
        _ => true,
    }
}

/// Validates every byte and escape of `bytes` (which starts with `/`) and tells whether the
/// path is already normal.
fn scan(bytes: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    let mut segment_start = 1;
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' => {
                let segment = bytes.get(segment_start..i).unwrap_or_default();
                normal &= segment_is_normal(segment, false);
                segment_start = i + 1;
            }
            b'%' => {
                let (decoded, upper) = decode_escape(bytes, i)?;
                normal &= upper && !is_unreserved(decoded);
                i += 3;
                continue;
            }
            _ if is_segment_literal(b) => {}
            _ => return Err(PathError::InvalidByte { byte: b, offset: i }),
        }
        i += 1;
    }
    let last = bytes.get(segment_start..).unwrap_or_default();
    Ok(normal && segment_is_normal(last, true))
}

/// Appends `segment` (found at `offset` in the path) to `out`, decoding escapes of unreserved
/// characters and upper-casing the others.
fn push_segment(segment: &[u8], offset: usize, out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = segment.get(i) {
        if b == b'%' {
            let (decoded, _) = decode_escape(segment, i)
                .map_err(|_| PathError::InvalidEscape { offset: offset + i })?;
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(decoded >> 4)]));
                out.push(char::from(HEX_UPPER[usize::from(decoded & 0xF)]));
            }
            i += 3;
        } else if is_segment_literal(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(PathError::InvalidByte {
                byte: b,
                offset: offset + i,
            });
        }
    }
    Ok(())
}

/// Builds the normal form of `bytes` (which starts with `/`).
fn normalize_slow(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut segments = bytes
        .get(1..)
        .unwrap_or_default()
        .split(|&b| b == b'/')
        .peekable();
    let mut offset = 1;
    // Whether the path ends with a slash: its last segment was empty, `.` or `..`.
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        // `out` holds `/seg/seg...` without a trailing slash, each segment already decoded.
        let start = out.len();
        out.push('/');
        push_segment(segment, offset, &mut out)?;
        offset += segment.len() + 1;
        match out.as_bytes().get(start + 1..) {
            Some(b"" | b".") => {
                out.truncate(start);
                trailing_slash = last;
            }
            Some(b"..") => {
                out.truncate(start);
                match out.rfind('/') {
                    Some(parent) => out.truncate(parent),
                    None => return Err(PathError::ClimbsAboveRoot),
                }
                trailing_slash = last;
            }
            _ => trailing_slash = false,
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize_path(path).map(Cow::into_owned)
    }

    fn is_borrowed(path: &str) -> bool {
        matches!(normalize_path(path), Ok(Cow::Borrowed(_)))
    }

    #[test]
    fn spellings_of_admin() {
        for path in [
            "/admin",
            "/%61dmin",
            "//admin",
            "/./admin",
            "/x/../admin",
            "/%2e/admin",
        ] {
            assert_eq!(norm(path).as_deref(), Ok("/admin"), "{path}");
        }
        for path in [
            "/ad%6din/",
            "/admin//",
            "/admin/.",
            "/admin/./",
            "/x/../admin/",
        ] {
            assert_eq!(norm(path).as_deref(), Ok("/admin/"), "{path}");
        }
        assert_eq!(norm("/%2E%2E/x"), Err(PathError::ClimbsAboveRoot));
        assert_eq!(norm("/x/%2E%2E/admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/x/.%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/%41%44%4D%49%4E").as_deref(), Ok("/ADMIN"));
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        assert_eq!(norm("/%2fadmin").as_deref(), Ok("/%2Fadmin"));
        assert_eq!(norm("/%2Fadmin").as_deref(), Ok("/%2Fadmin"));
        assert!(is_borrowed("/%2Fadmin"));
        assert_eq!(norm("/a%2f..%2fadmin").as_deref(), Ok("/a%2F..%2Fadmin"));
        assert_eq!(norm("/a/..%2Fb").as_deref(), Ok("/a/..%2Fb"));
        assert_eq!(norm("/a/b%2F../..").as_deref(), Ok("/a/"));
    }

    #[test]
    fn other_escapes_are_kept_upper_case() {
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(norm("/a%3fb%3F").as_deref(), Ok("/a%3Fb%3F"));
        assert_eq!(norm("/%c3%a9").as_deref(), Ok("/%C3%A9"));
        assert_eq!(norm("/%00").as_deref(), Ok("/%00"));
        assert_eq!(norm("/%252e").as_deref(), Ok("/%252e"), "decoded once only");
        assert_eq!(norm("/%5c..%5c").as_deref(), Ok("/%5C..%5C"));
        assert!(is_borrowed("/a%20b"));
        assert!(!is_borrowed("/a%2fb"));
    }

    #[test]
    fn dot_segments() {
        let cases = [
            ("/", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("//", "/"),
            ("///", "/"),
            ("/a/", "/a/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/./b/./c/.", "/a/b/c/"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/c/../../d", "/a/d"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/.c/c.", "/a/..b/.c/c."),
            ("/.well-known/acme", "/.well-known/acme"),
            ("/%2E", "/"),
            ("/a/%2e%2E", "/"),
            ("/a/%2e%2E/", "/"),
        ];
        for (input, expected) in cases {
            assert_eq!(norm(input).as_deref(), Ok(expected), "{input}");
        }
        assert!(is_borrowed("/.well-known/acme"));
        assert!(is_borrowed("/a/..b/.c/c."));
    }

    #[test]
    fn climbing_above_the_root_is_an_error() {
        for path in [
            "/..",
            "/../",
            "/../a",
            "/a/../..",
            "/a/../../b",
            "/./../a",
            "//..//a",
            "/%2e%2e",
            "/.%2E/etc/passwd",
        ] {
            assert_eq!(norm(path), Err(PathError::ClimbsAboveRoot), "{path}");
        }
        assert_eq!(
            PathError::ClimbsAboveRoot.to_string(),
            "the path climbs above /"
        );
    }

    #[test]
    fn invalid_bytes_and_escapes() {
        assert_eq!(norm(""), Err(PathError::NotAbsolute));
        assert_eq!(norm("admin"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
        assert_eq!(norm("http://a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("%2Fadmin"), Err(PathError::NotAbsolute));
        for (path, offset) in [
            ("/%", 1),
            ("/a%4", 2),
            ("/%zz", 1),
            ("/%4g", 1),
            ("/a/%%41", 3),
        ] {
            assert_eq!(
                norm(path),
                Err(PathError::InvalidEscape { offset }),
                "{path}"
            );
        }
        for (path, byte, offset) in [
            ("/a b", b' ', 2),
            ("/a#b", b'#', 2),
            ("/a?b", b'?', 2),
            ("/a\\..\\b", b'\\', 2),
            ("/a\tb", b'\t', 2),
            ("/a\r\nb", b'\r', 2),
            ("/a\0", 0, 2),
            ("/a\x7f", 0x7f, 2),
            ("/é", 0xC3, 1),
            ("/<script>", b'<', 1),
            ("/a|b", b'|', 2),
            ("/{x}", b'{', 1),
            ("/[x]", b'[', 1),
            ("/\"", b'"', 1),
            ("/`", b'`', 1),
            ("/^", b'^', 1),
            ("//a b", b' ', 3),
            ("/../a b", b' ', 5),
        ] {
            assert_eq!(
                norm(path),
                Err(PathError::InvalidByte { byte, offset }),
                "{path}"
            );
        }
        // Errors are reported with the same offset by the slow path.
        assert_eq!(
            norm("/x/../%zz"),
            Err(PathError::InvalidEscape { offset: 6 })
        );
        assert_eq!(
            PathError::InvalidByte {
                byte: b' ',
                offset: 2
            }
            .to_string(),
            "the path contains a byte not allowed in a path (0x20 at offset 2)"
        );
    }

    #[test]
    fn all_allowed_literals_pass_unchanged() {
        let path = "/AZaz09-._~!$&'()*+,;=:@/x";
        assert_eq!(norm(path).as_deref(), Ok(path));
        assert!(is_borrowed(path));
    }

    #[test]
    fn common_paths_are_borrowed() {
        for path in [
            "/",
            "/admin",
            "/api/v1/users/42",
            "/a/",
            "/static/app.js",
            "/a%20b/%2F",
        ] {
            assert!(is_borrowed(path), "{path}");
        }
        for path in ["//", "/a/.", "/%61", "/%2f", "/a//b"] {
            assert!(!is_borrowed(path), "{path}");
        }
    }

    /// The invariants of a normalised path.
    fn assert_normal(out: &str) {
        assert!(out.starts_with('/'), "{out:?} does not start with /");
        assert!(!out.contains("//"), "{out:?} contains //");
        for segment in out[1..].split('/') {
            assert!(
                segment != "." && segment != "..",
                "{out:?} has a dot segment"
            );
        }
        let bytes = out.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'%' {
                let hex = &bytes[i + 1..i + 3];
                assert!(
                    hex.iter()
                        .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                    "{out:?} has a non-upper-case escape"
                );
                let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
                assert!(!is_unreserved(value), "{out:?} escapes an unreserved char");
            } else {
                assert!(b == b'/' || is_segment_literal(b), "{out:?} has byte {b}");
            }
        }
        assert!(out.len() == 1 || !out.ends_with("/.") && !out.ends_with("/.."));
        // Idempotent, and a normal path is returned as is.
        match normalize_path(out) {
            Ok(Cow::Borrowed(again)) => assert_eq!(again, out),
            other => panic!("{out:?} normalised again to {other:?}"),
        }
    }

    /// Pieces from which interesting paths are assembled.
    const TOKENS: &[&str] = &[
        "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%61", "%7e", "%7E", "%41", "%20",
        "%5c", "a", "b", "admin", "~", "-", "_", "//", "%252e", "!", ":", "@", "%", "%4", "%zz",
        "#", " ", "é",
    ];

    fn token_path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..16)
            .prop_map(|tokens| format!("/{}", tokens.concat()))
    }

    /// A segment that is neither empty nor a dot segment, possibly with encoded slashes.
    fn real_segment() -> impl Strategy<Value = (String, String)> {
        (
            "[a-z0-9_~-]{0,3}",
            prop::sample::select(&["", "%2F", "%2f", "%2F%2f"][..]),
            "[a-z0-9_~-]{1,3}",
        )
            .prop_map(|(a, slash, b)| {
                (
                    format!("{a}{slash}{b}"),
                    format!("{a}{}{b}", slash.to_ascii_uppercase()),
                )
            })
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_normal(
            path in prop_oneof![any::<String>(), "/[ -~]{0,40}", "/[/.%2eEfFa]{0,20}"],
        ) {
            if let Ok(out) = normalize_path(&path) {
                assert_normal(&out);
            }
        }

        #[test]
        fn token_paths_normalise_to_normal_paths(path in token_path()) {
            match normalize_path(&path) {
                Ok(Cow::Borrowed(out)) => {
                    prop_assert_eq!(out, path.as_str());
                    assert_normal(out);
                }
                Ok(Cow::Owned(out)) => {
                    prop_assert!(out.len() <= path.len());
                    prop_assert_ne!(&out, &path);
                    assert_normal(&out);
                }
                Err(_) => {}
            }
        }

        #[test]
        fn fast_path_borrows(path in "/[a-zA-Z0-9/._~!$&'()*+,;=:@-]{0,30}") {
            if !path.contains("//") && !path.contains("/.") {
                prop_assert!(matches!(normalize_path(&path), Ok(Cow::Borrowed(_))));
            }
        }

        #[test]
        fn decoding_unreserved_first_changes_nothing(
            pairs in prop::collection::vec(prop::sample::select(&[
                ("%2e", "."), ("%2E", "."), ("%61", "a"), ("%7E", "~"), ("%2D", "-"),
                ("%5f", "_"), ("%30", "0"), (".", "."), ("/", "/"), ("a", "a"),
                ("%2f", "%2F"), ("%2F", "%2F"), ("%3a", "%3A"), ("//", "//"),
            ][..]), 0..16)
        ) {
            let encoded: String = pairs.iter().map(|(e, _)| *e).collect();
            let plain: String = pairs.iter().map(|(_, p)| *p).collect();
            prop_assert_eq!(norm(&format!("/{encoded}")), norm(&format!("/{plain}")));
        }

        #[test]
        fn encoded_slashes_keep_the_separators(
            segments in prop::collection::vec(
                prop_oneof![
                    3 => real_segment().prop_map(Some),
                    1 => prop::sample::select(&["", ".", "%2e", "%2E"][..]).prop_map(|_| None),
                ],
                0..8,
            ),
            noise in prop::collection::vec(prop::sample::select(&["", ".", "%2e"][..]), 8),
        ) {
            let mut input = String::new();
            let mut expected = String::new();
            let mut trailing = false;
            for (i, segment) in segments.iter().enumerate() {
                input.push('/');
                match segment {
                    Some((raw, normal)) => {
                        input.push_str(raw);
                        expected.push('/');
                        expected.push_str(normal);
                        trailing = false;
                    }
                    None => {
                        input.push_str(noise[i]);
                        trailing = true;
                    }
                }
            }
            if input.is_empty() {
                input.push('/');
            }
            if expected.is_empty() || trailing {
                expected.push('/');
            }
            let out = norm(&input).unwrap();
            prop_assert_eq!(&out, &expected);
            let real = segments.iter().flatten().count();
            prop_assert_eq!(
                out.matches('/').count(),
                real.max(1) + usize::from(trailing && real > 0)
            );
            prop_assert_eq!(
                out.matches("%2F").count(),
                input.to_ascii_uppercase().matches("%2F").count()
            );
        }

        #[test]
        fn dot_dot_undoes_a_real_segment(
            prefix in prop::collection::vec(real_segment(), 0..4),
            inner in real_segment(),
            rest in prop::collection::vec(real_segment(), 1..4),
        ) {
            let join = |segments: &[(String, String)], raw: bool| -> String {
                segments
                    .iter()
                    .map(|(r, n)| format!("/{}", if raw { r } else { n }))
                    .collect()
            };
            let input = format!("{}/{}/..{}", join(&prefix, true), inner.0, join(&rest, true));
            let expected = format!("{}{}", join(&prefix, false), join(&rest, false));
            prop_assert_eq!(norm(&input).unwrap(), expected);
            // One `..` more than there are segments climbs above /.
            let climb = format!(
                "/{}{}{}",
                inner.0,
                join(&prefix, true),
                "/..".repeat(prefix.len() + 2)
            );
            prop_assert_eq!(norm(&climb), Err(PathError::ClimbsAboveRoot));
        }
    }
}
