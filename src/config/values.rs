//! Value types of the config file that carry their own syntax: durations and sizes (shared with
//! the plugins, which parse the same syntax) and "a string or a list of strings". Each parses
//! while the TOML is deserialized, so a bad value is reported with the line it is on.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use pingap_plugins::settings::{ByteSize, ConfigDuration};

/// A key that takes one string or a list of them, such as `host`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![text.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Deserialize)]
    struct Sample {
        timeout: Option<ConfigDuration>,
        size: Option<ByteSize>,
        host: Option<OneOrMany>,
    }

    fn parse(text: &str) -> Result<Sample, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        let cases = [
            ("500ms", 500),
            ("10s", 10_000),
            ("1m", 60_000),
            ("1h 30m", 5_400_000),
        ];
        for (text, millis) in cases {
            let sample = parse(&format!("timeout = \"{text}\"")).unwrap();
            assert_eq!(sample.timeout.unwrap().get(), Duration::from_millis(millis));
        }
        let err = parse("timeout = \"10x\"").err().unwrap();
        assert!(err.contains("invalid duration \"10x\""), "{err}");
        let err = parse("timeout = 10").err().unwrap();
        assert!(err.contains("a duration such as"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse("size = \"8MB\"").unwrap().size,
            Some(ByteSize(8_000_000))
        );
        assert_eq!(
            parse("size = \"1MiB\"").unwrap().size,
            Some(ByteSize(1 << 20))
        );
        assert_eq!(parse("size = 1024").unwrap().size, Some(ByteSize(1024)));
        assert!(
            parse("size = \"lots\"")
                .err()
                .unwrap()
                .contains("invalid size")
        );
        assert!(parse("size = -1").err().unwrap().contains("negative"));
    }

    #[test]
    fn one_or_many() {
        assert_eq!(
            parse("host = \"a\"").unwrap().host.unwrap().0,
            ["a".to_string()]
        );
        assert_eq!(
            parse("host = [\"a\", \"b\"]").unwrap().host.unwrap().0,
            ["a", "b"]
        );
        assert!(parse("host = 3").is_err());
    }
}
