//! Percent-encoding of a value inserted into one path segment (rewrite templates).
//!
//! The rule enforced by [`push_path_encoded`]: the characters a path segment may hold
//! literally are kept — unreserved characters (`A-Z a-z 0-9 - . _ ~`), sub-delims
//! (`! $ & ' ( ) * + , ; =`), `:` and `@` — and every other byte becomes `%XX` with upper-case
//! hex: `/`, `?`, `#`, `%`, space, CR, LF, other control characters, `"`, `<`, `>`, `\`, `^`,
//! `` ` ``, `{`, `|`, `}`, `[`, `]`, and each byte of a non-ASCII character's UTF-8 encoding.
//! A value can therefore never add a separator, a query or a fragment to the path it is put
//! in: `../../admin` becomes `..%2F..%2Fadmin`, `x?admin=true` becomes `x%3Fadmin=true`.
//!
//! What this cannot do: a value that is exactly `.` or `..` stays a dot segment when it makes
//! up a whole segment (`/v2/$x/y` with `x = ".."`), since `%2E` is decoded back to `.` by
//! normalisation. Such a path must still be normalised (or refused) after the template is
//! filled in.
//!
//! The output is a valid path segment under RFC 3986 and is left unchanged by path
//! normalisation (it only holds escapes of reserved or disallowed bytes, in upper case).

use std::borrow::Cow;

/// Upper-case hex digits, indexed by value.
pub const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `ALPHA / DIGIT / "-" / "." / "_" / "~"` (RFC 3986 §2.3).
pub const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `b` may appear literally in a path segment: unreserved characters, sub-delims, `:`
/// and `@` (RFC 3986 `pchar` without `pct-encoded`).
pub const fn is_segment_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Appends `value` to `out`, percent-encoded for use inside one path segment (see the
/// [module documentation](self) for which bytes are kept).
///
/// ```text
/// ../../admin  -> ..%2F..%2Fadmin
/// x?admin=true -> x%3Fadmin=true
/// a\r\nb       -> a%0D%0Ab
/// é            -> %C3%A9
/// ```
pub fn push_path_encoded(value: &str, out: &mut String) {
    out.reserve(value.len());
    for &b in value.as_bytes() {
        if is_segment_literal(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0xF)]));
        }
    }
}

/// Whether [`push_path_encoded`] would change `value`, that is whether it holds any byte that
/// a path segment may not hold literally.
pub fn needs_path_encoding(value: &str) -> bool {
    !value.bytes().all(is_segment_literal)
}

/// `value` encoded for one path segment, borrowed when nothing needs encoding (the common
/// case), so that it does not allocate.
pub fn encode_path_segment(value: &str) -> Cow<'_, str> {
    if needs_path_encoding(value) {
        let mut out = String::with_capacity(value.len() + 16);
        push_path_encoded(value, &mut out);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn encode(value: &str) -> String {
        let mut out = String::new();
        push_path_encoded(value, &mut out);
        out
    }

    #[test]
    fn examples() {
        let cases = [
            ("", ""),
            ("admin", "admin"),
            ("../../admin", "..%2F..%2Fadmin"),
            ("x?admin=true", "x%3Fadmin=true"),
            ("a\r\nb", "a%0D%0Ab"),
            ("a b", "a%20b"),
            ("a#b", "a%23b"),
            ("100%", "100%25"),
            ("%2F", "%252F"),
            ("a\\b", "a%5Cb"),
            ("é", "%C3%A9"),
            ("日本", "%E6%97%A5%E6%9C%AC"),
            ("\0\x7f", "%00%7F"),
            ("\"<>^`{|}[]", "%22%3C%3E%5E%60%7B%7C%7D%5B%5D"),
            ("AZaz09-._~!$&'()*+,;=:@", "AZaz09-._~!$&'()*+,;=:@"),
        ];
        for (value, expected) in cases {
            assert_eq!(encode(value), expected, "{value:?}");
            assert_eq!(needs_path_encoding(value), value != expected, "{value:?}");
            assert_eq!(encode_path_segment(value), expected, "{value:?}");
        }
    }

    #[test]
    fn appends() {
        let mut out = String::from("/v2/");
        push_path_encoded("a/b", &mut out);
        out.push_str("/tail");
        assert_eq!(out, "/v2/a%2Fb/tail");
    }

    #[test]
    fn borrows_when_nothing_to_encode() {
        assert!(matches!(
            encode_path_segment("users"),
            Cow::Borrowed("users")
        ));
        assert!(matches!(encode_path_segment("a/b"), Cow::Owned(_)));
    }

    /// Decodes `%XX` escapes, checking they are upper case.
    fn decode(encoded: &str) -> Vec<u8> {
        let bytes = encoded.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                assert_eq!(hex, hex.to_ascii_uppercase());
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z./?#% \r\n\\\\%2Ff:@=&é]{0,20}",]
    }

    proptest! {
        #[test]
        fn output_is_kept_chars_and_escapes(value in value()) {
            let out = encode(&value);
            let bytes = out.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    prop_assert!(i + 2 < bytes.len());
                    prop_assert!(bytes[i + 1..i + 3]
                        .iter()
                        .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)));
                    let decoded = u8::from_str_radix(&out[i + 1..i + 3], 16).unwrap();
                    prop_assert!(!is_segment_literal(decoded), "{decoded:#x} was escaped needlessly");
                    i += 3;
                } else {
                    prop_assert!(is_segment_literal(bytes[i]), "{:?} kept {}", out, bytes[i]);
                    i += 1;
                }
            }
        }

        #[test]
        fn decoding_gives_the_input_back(value in value()) {
            prop_assert_eq!(decode(&encode(&value)), value.as_bytes());
        }

        #[test]
        fn no_separator_query_or_fragment(value in value()) {
            let out = encode(&value);
            prop_assert!(!out.contains(['/', '?', '#']));
        }

        #[test]
        fn needs_encoding_iff_changed(value in value()) {
            let out = encode(&value);
            prop_assert_eq!(needs_path_encoding(&value), out != value);
            prop_assert_eq!(encode_path_segment(&value), out.as_str());
        }

        #[test]
        fn appends_without_touching_the_prefix(prefix in any::<String>(), value in value()) {
            let mut out = prefix.clone();
            push_path_encoded(&value, &mut out);
            prop_assert!(out.starts_with(&prefix));
            prop_assert_eq!(&out[prefix.len()..], encode(&value));
        }
    }
}
