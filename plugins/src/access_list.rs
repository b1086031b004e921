//! The allow/deny rule shared by the plugins that admit or refuse a request by one part of it:
//! `ip_restriction` (the client address), `referer` (the host of the `Referer`) and `user_agent`
//! (the `User-Agent`).
//!
//! Each of them has an `allow` and a `deny` list of patterns. A subject is refused when a `deny`
//! pattern matches it; otherwise it is admitted when `allow` is empty or one of its patterns
//! matches. A plugin only says how its entries are parsed ([`Pattern`] for one entry, or
//! [`Matcher`] for a whole list) and what it matches them against; a refusal is a 403 with the
//! plugin's message ([`decide`]).

use http::StatusCode;
use serde::Deserialize;

use crate::{BuildError, Flow, Response, Settings};

/// One entry of an `allow` or `deny` list; a list of them is a [`Matcher`] that matches when any
/// entry does.
pub(crate) trait Pattern: Sized {
    /// What the pattern is matched against.
    type Subject: ?Sized;

    /// Parses one entry; the error is the message, without the key (the list adds it).
    fn parse(entry: &str) -> Result<Self, String>;

    /// Whether the pattern matches `subject`.
    fn matches(&self, subject: &Self::Subject) -> bool;
}

/// A whole `allow` or `deny` list, for plugins that match a list as one (a regex set, say).
pub(crate) trait Matcher: Sized {
    /// What the list is matched against.
    type Subject: ?Sized;

    /// Parses the entries of the list at `key`.
    fn parse(key: &str, entries: &[String]) -> Result<Self, BuildError>;

    /// Whether the list has no entry.
    fn is_empty(&self) -> bool;

    /// Whether some entry of the list matches `subject`.
    fn matches(&self, subject: &Self::Subject) -> bool;
}

impl<P: Pattern> Matcher for Vec<P> {
    type Subject = P::Subject;

    fn parse(key: &str, entries: &[String]) -> Result<Self, BuildError> {
        parse_entries(key, entries, P::parse)
    }

    fn is_empty(&self) -> bool {
        <[P]>::is_empty(self)
    }

    fn matches(&self, subject: &Self::Subject) -> bool {
        self.iter().any(|pattern| pattern.matches(subject))
    }
}

/// Parses each entry of the list at `key`; an error names its entry (`key[index]`).
pub(crate) fn parse_entries<T>(
    key: &str,
    entries: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, BuildError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            parse(entry).map_err(|message| BuildError::at(format!("{key}[{index}]"), message))
        })
        .collect()
}

/// The settings of a plugin that is nothing but an access list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// The `allow` and `deny` lists of one plugin.
pub(crate) struct AccessList<M> {
    allow: M,
    deny: M,
}

impl<M: Matcher> AccessList<M> {
    /// Parses the `allow` entries, then the `deny` entries; either may be empty.
    pub(crate) fn parse(allow: &[String], deny: &[String]) -> Result<Self, BuildError> {
        Ok(AccessList {
            allow: M::parse("allow", allow)?,
            deny: M::parse("deny", deny)?,
        })
    }

    /// Builds from the settings of a plugin that has no key but `allow` and `deny`, at least one
    /// of them with an entry.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, BuildError> {
        let config: Config = crate::settings::parse(settings)?;
        let list = Self::parse(&config.allow, &config.deny)?;
        if list.allow.is_empty() && list.deny.is_empty() {
            return Err(BuildError::at("allow", "set allow, deny or both"));
        }
        Ok(list)
    }

    /// Whether `subject` passes: no `deny` entry matches it, and `allow` is empty or one of its
    /// entries matches. No subject at all (`None`) matches no entry: it passes when `allow` is
    /// empty.
    pub(crate) fn admits(&self, subject: Option<&M::Subject>) -> bool {
        match subject {
            Some(subject) => {
                !self.deny.matches(subject)
                    && (self.allow.is_empty() || self.allow.matches(subject))
            }
            None => self.allow.is_empty(),
        }
    }
}

/// The request phase's answer: go on when `admitted`, else refuse with 403 and `message`.
pub(crate) fn decide(admitted: bool, message: &'static str) -> Flow {
    Flow::admit_if(admitted, || {
        Response::refuse(StatusCode::FORBIDDEN, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pattern that matches one exact word.
    struct Word(String);

    impl Pattern for Word {
        type Subject = str;
        fn parse(entry: &str) -> Result<Self, String> {
            if entry.is_empty() {
                Err("empty".into())
            } else {
                Ok(Word(entry.to_string()))
            }
        }
        fn matches(&self, subject: &str) -> bool {
            self.0 == subject
        }
    }

    fn list(allow: &[&str], deny: &[&str]) -> AccessList<Vec<Word>> {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AccessList::parse(&strings(allow), &strings(deny)).unwrap()
    }

    #[test]
    fn deny_wins_then_allow_limits() {
        let both = list(&["a", "b"], &["b"]);
        assert!(both.admits(Some("a")));
        assert!(!both.admits(Some("b")), "deny is checked first");
        assert!(!both.admits(Some("c")), "allow limits");
        assert!(!both.admits(None));
        let deny_only = list(&[], &["b"]);
        assert!(deny_only.admits(Some("a")));
        assert!(!deny_only.admits(Some("b")));
        assert!(deny_only.admits(None));
    }

    #[test]
    fn errors_name_the_entry_and_empty_lists_can_be_required() {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = AccessList::<Vec<Word>>::parse(&strings(&["a"]), &strings(&["b", ""]))
            .err()
            .unwrap();
        assert_eq!(err, BuildError::at("deny[1]", "empty"));
        let from = |text: &str| AccessList::<Vec<Word>>::from_settings(&text.parse().unwrap());
        let err = from("").err().unwrap();
        assert_eq!(err, BuildError::at("allow", "set allow, deny or both"));
        assert!(AccessList::<Vec<Word>>::parse(&[], &[]).is_ok());
        assert_eq!(from("allow = ['']").err().unwrap().key(), Some("allow[0]"));
        assert_eq!(from("alow = ['a']").err().unwrap().key(), Some("alow"));
        assert!(from("deny = ['a']").is_ok());
    }

    #[test]
    fn refusals_are_403_with_the_message() {
        assert!(matches!(decide(true, "no"), Flow::Continue));
        let Flow::Respond(response) = decide(false, "no") else {
            panic!("refused");
        };
        assert_eq!(response, Response::refuse(StatusCode::FORBIDDEN, "no"));
    }
}
