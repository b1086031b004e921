//! A plugin's settings: the keys of its `[plugins.NAME]` table other than `type` and `priority`.

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::BuildError;

/// The raw settings of one plugin instance.
pub type Settings = toml::Table;

/// Deserializes settings into a plugin's own settings struct, naming the offending key on error.
///
/// Declare the struct with `#[serde(deny_unknown_fields)]` so that a misspelt key is an error
/// rather than a silently ignored line.
pub fn parse<T: DeserializeOwned>(settings: &Settings) -> Result<T, BuildError> {
    let value = toml::Value::Table(settings.clone());
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        BuildError::Invalid {
            key: (path != ".").then_some(path),
            message: error.into_inner().message().to_string(),
        }
    })
}

/// A duration written as `"500ms"`, `"10s"`, `"1m"`, `"1h 30m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The longest duration a configuration may give: longer ones are mistakes, and a time that
    /// far ahead cannot be added to a clock without overflowing.
    pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Parses `"500ms"`, `"10s"`, `"1m"` …, at most [`ConfigDuration::MAX`].
    pub fn parse(text: &str) -> Result<ConfigDuration, String> {
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("invalid duration \"{text}\": {e} (write e.g. \"500ms\", \"10s\" or \"1m\")")
        })?;
        if duration > Self::MAX {
            return Err(format!(
                "duration \"{text}\" is longer than the longest accepted, 365 days"
            ));
        }
        Ok(ConfigDuration(duration))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"10s\" or \"1m\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A size in bytes written as `"8MB"`, `"512KiB"` or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"8MB\", \"512KiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                text.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|size| ByteSize(size.as_u64()))
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid size \"{text}\": {e} (write e.g. \"8MB\" or \"512KiB\")"
                        ))
                    })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

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

/// Parses a list of `"Name: value"` headers from the setting `key`.
pub fn header_list(
    key: &str,
    rules: &[String],
) -> Result<Vec<(HeaderName, HeaderValue)>, BuildError> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let at = |message: String| BuildError::at(format!("{key}[{index}]"), message);
            let (name, value) = rule
                .split_once(':')
                .ok_or_else(|| at(format!("\"{rule}\" is not \"Name: value\"")))?;
            let name = HeaderName::try_from(name.trim())
                .map_err(|_| at(format!("\"{}\" is not a valid header name", name.trim())))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| at(format!("\"{}\" is not a valid header value", value.trim())))?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        header: String,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        size: u32,
    }

    fn settings(text: &str) -> Settings {
        text.parse().unwrap()
    }

    #[test]
    fn names_unknown_keys() {
        let err = parse::<Sample>(&settings("header = 'x'\nheadr = 'y'")).unwrap_err();
        assert_eq!(err.key(), Some("headr"), "{err}");
        let err = parse::<Sample>(&settings("header = 'x'\nnested = { sise = 1 }")).unwrap_err();
        assert_eq!(err.key(), Some("nested.sise"), "{err}");
    }

    #[test]
    fn names_bad_values() {
        let err = parse::<Sample>(&settings("header = 1")).unwrap_err();
        assert_eq!(err.key(), Some("header"), "{err}");
        assert!(err.to_string().contains("string"), "{err}");
        let err =
            parse::<Sample>(&settings("header = 'x'\nnested = { size = 'big' }")).unwrap_err();
        assert_eq!(err.key(), Some("nested.size"), "{err}");
    }

    #[test]
    fn reports_missing_keys() {
        let err = parse::<Sample>(&settings("")).unwrap_err();
        assert!(err.to_string().contains("missing field `header`"), "{err}");
    }

    #[derive(Deserialize)]
    struct Values {
        timeout: Option<ConfigDuration>,
        size: Option<ByteSize>,
        host: Option<OneOrMany>,
    }

    fn values(text: &str) -> Result<Values, String> {
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
            let sample = values(&format!("timeout = \"{text}\"")).unwrap();
            assert_eq!(sample.timeout.unwrap().get(), Duration::from_millis(millis));
        }
        let err = values("timeout = \"10x\"").err().unwrap();
        assert!(err.contains("invalid duration \"10x\""), "{err}");
        let err = values("timeout = 10").err().unwrap();
        assert!(err.contains("a duration such as"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(
            values("size = \"8MB\"").unwrap().size,
            Some(ByteSize(8_000_000))
        );
        assert_eq!(
            values("size = \"1MiB\"").unwrap().size,
            Some(ByteSize(1 << 20))
        );
        assert_eq!(values("size = 1024").unwrap().size, Some(ByteSize(1024)));
        assert!(
            values("size = \"lots\"")
                .err()
                .unwrap()
                .contains("invalid size")
        );
        assert!(values("size = -1").err().unwrap().contains("negative"));
    }

    #[test]
    fn one_or_many() {
        assert_eq!(
            values("host = \"a\"").unwrap().host.unwrap().0,
            ["a".to_string()]
        );
        assert_eq!(
            values("host = [\"a\", \"b\"]").unwrap().host.unwrap().0,
            ["a", "b"]
        );
        assert!(values("host = 3").is_err());
    }
}
