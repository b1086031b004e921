//! Reading configuration files: one file or every `.toml` file of a directory, with `${ENV}`
//! interpolation, merged into one [`Config`] that remembers where each table came from.
//!
//! Each named table (`[locations.api]`, ...) is deserialized on its own, so one bad table does not
//! hide errors in the others, and every error carries the file and line the TOML parser gives.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::env;
use super::error::{ConfigError, ConfigErrors, Origin, Origins};
use super::schema::Config;

/// A configuration as read from its files, not yet validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged configuration.
    pub config: Config,
    /// Where each table was defined.
    pub origins: Origins,
}

/// Looks up environment variables for `${NAME}`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads `path`: a `.toml` file, or a directory whose `.toml` files are merged in name order.
pub fn load_path(path: &Path, env: EnvLookup<'_>) -> Result<Loaded, ConfigErrors> {
    let files = config_files(path).map_err(|e| ConfigErrors(vec![e]))?;
    let mut loader = Loader::new(env);
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => loader.add_file(&file, &text),
            Err(e) => loader.errors.push(ConfigError {
                file: Some(Arc::from(file.as_path())),
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    loader.finish()
}

/// Reads configuration text as if it were the file `name` (used for the embedded default).
pub fn load_text(name: &Path, text: &str, env: EnvLookup<'_>) -> Result<Loaded, ConfigErrors> {
    load_documents([(name, text)], env)
}

/// Reads several documents as if each were the file it is named after, merged in the order given.
pub fn load_documents<'a>(
    documents: impl IntoIterator<Item = (&'a Path, &'a str)>,
    env: EnvLookup<'_>,
) -> Result<Loaded, ConfigErrors> {
    let mut loader = Loader::new(env);
    for (name, text) in documents {
        loader.add_file(name, text);
    }
    loader.finish()
}

/// The files `path` stands for: itself, or the `.toml` files of the directory in name order.
pub(super) fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let place = |message: String| ConfigError {
        file: Some(Arc::from(path)),
        line: None,
        key: String::new(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| place(format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|e| place(format!("cannot list: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| place(format!("cannot list: {e}")))?;
        let file = entry.path();
        if file.extension().is_some_and(|ext| ext == "toml") && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(place("the directory holds no .toml file".to_string()));
    }
    files.sort();
    Ok(files)
}

/// Top-level tables that hold one table each.
const SINGLE_TABLES: [&str; 4] = ["basic", "metrics", "tracing", "admin"];
/// Top-level tables that hold named tables.
const NAMED_TABLES: [&str; 5] = [
    "upstreams",
    "locations",
    "servers",
    "plugins",
    "certificates",
];

struct Loader<'e> {
    env: EnvLookup<'e>,
    config: Config,
    origins: Origins,
    errors: Vec<ConfigError>,
}

/// One file being read.
struct Source {
    file: Arc<Path>,
    /// The byte offset where each line starts (the first is 0), to find the line of a span by
    /// binary search: every key of every table is placed, so counting newlines from the start of
    /// the file each time would cost time quadratic in its size.
    line_starts: Vec<usize>,
}

impl Source {
    fn new(file: Arc<Path>, text: &str) -> Source {
        let mut line_starts = Vec::with_capacity(text.len() / 32 + 1);
        line_starts.push(0);
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(at, _)| at + 1),
        );
        Source { file, line_starts }
    }

    /// The 1-based line of byte `offset` (offsets past the end are on the last line).
    fn line(&self, offset: usize) -> usize {
        // Lines starting at or before the offset; the first always does.
        self.line_starts.partition_point(|&start| start <= offset)
    }

    fn error(&self, span: Option<Range<usize>>, key: String, message: String) -> ConfigError {
        ConfigError {
            file: Some(self.file.clone()),
            line: span.map(|s| self.line(s.start)),
            key,
            message,
        }
    }

    fn origin(&self, value: &Spanned<DeValue<'_>>) -> Origin {
        let key_lines = match value.get_ref() {
            DeValue::Table(table) => table
                .iter()
                .map(|(key, _)| (key.get_ref().to_string(), self.line(key.span().start)))
                .collect(),
            _ => HashMap::new(),
        };
        Origin {
            file: self.file.clone(),
            line: self.line(value.span().start),
            key_lines,
        }
    }
}

impl<'e> Loader<'e> {
    fn new(env: EnvLookup<'e>) -> Self {
        Loader {
            env,
            config: Config::default(),
            origins: Origins::default(),
            errors: Vec::new(),
        }
    }

    fn finish(self) -> Result<Loaded, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(Loaded {
                config: self.config,
                origins: self.origins,
            })
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    fn add_file(&mut self, path: &Path, text: &str) {
        let source = Source::new(Arc::from(path), text);
        let mut document = match DeTable::parse(text) {
            Ok(document) => document,
            Err(e) => {
                let message = format!("invalid TOML: {}", e.message());
                self.errors
                    .push(source.error(e.span(), String::new(), message));
                return;
            }
        };
        for (key, value) in document.get_mut().iter_mut() {
            let mut path = key.get_ref().to_string();
            self.interpolate(&source, value, &mut path);
        }
        for (key, value) in document.into_inner() {
            let section = key.get_ref().as_ref();
            if SINGLE_TABLES.contains(&section) {
                self.add_single(&source, section, value);
            } else if NAMED_TABLES.contains(&section) {
                self.add_named(&source, section, value);
            } else {
                self.errors.push(source.error(
                    Some(key.span()),
                    section.to_string(),
                    format!(
                        "unknown section; expected one of: {}",
                        [SINGLE_TABLES.as_slice(), NAMED_TABLES.as_slice()]
                            .concat()
                            .join(", ")
                    ),
                ));
            }
        }
    }

    /// Replaces `${NAME}` in every string under `value`.
    fn interpolate(
        &mut self,
        source: &Source,
        value: &mut Spanned<DeValue<'_>>,
        path: &mut String,
    ) {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(text) => match env::interpolate(text, self.env) {
                Ok(std::borrow::Cow::Owned(replaced)) => *text = replaced.into(),
                Ok(std::borrow::Cow::Borrowed(_)) => {}
                Err(message) => self
                    .errors
                    .push(source.error(Some(span), path.clone(), message)),
            },
            DeValue::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{index}]"));
                    self.interpolate(source, item, path);
                    path.truncate(len);
                }
            }
            DeValue::Table(table) => {
                for (key, item) in table.iter_mut() {
                    let len = path.len();
                    path.push('.');
                    path.push_str(key.get_ref());
                    self.interpolate(source, item, path);
                    path.truncate(len);
                }
            }
            DeValue::Integer(_)
            | DeValue::Float(_)
            | DeValue::Boolean(_)
            | DeValue::Datetime(_) => {}
        }
    }

    fn add_single(&mut self, source: &Source, section: &str, value: Spanned<DeValue<'_>>) {
        if let Some(previous) = self.origins.get(section) {
            let message = format!(
                "defined twice: in {}:{} and in {}:{}",
                previous.file.display(),
                previous.line,
                source.file.display(),
                source.line(value.span().start)
            );
            self.errors
                .push(source.error(Some(value.span()), section.to_string(), message));
            return;
        }
        let origin = source.origin(&value);
        let parsed = match section {
            "basic" => deserialize(source, section, value).map(|v| self.config.basic = v),
            "metrics" => deserialize(source, section, value).map(|v| self.config.metrics = Some(v)),
            "tracing" => deserialize(source, section, value).map(|v| self.config.tracing = Some(v)),
            _ => deserialize(source, section, value).map(|v| self.config.admin = Some(v)),
        };
        match parsed {
            Ok(()) => self.origins.insert(section.to_string(), origin),
            Err(e) => self.errors.push(e),
        }
    }

    fn add_named(&mut self, source: &Source, section: &str, value: Spanned<DeValue<'_>>) {
        let span = value.span();
        let DeValue::Table(entries) = value.into_inner() else {
            self.errors.push(source.error(
                Some(span),
                section.to_string(),
                format!("must be a table of named tables, e.g. [{section}.NAME]"),
            ));
            return;
        };
        for (name, entry) in entries {
            let table = format!("{section}.{}", name.get_ref());
            if let Err(message) = check_name(name.get_ref()) {
                self.errors
                    .push(source.error(Some(name.span()), table, message));
                continue;
            }
            if let Some(previous) = self.origins.get(&table) {
                let message = format!(
                    "defined twice: in {}:{} and in {}:{}",
                    previous.file.display(),
                    previous.line,
                    source.file.display(),
                    source.line(name.span().start)
                );
                self.errors
                    .push(source.error(Some(name.span()), table, message));
                continue;
            }
            let origin = source.origin(&entry);
            let name = name.into_inner().into_owned();
            let config = &mut self.config;
            let added = match section {
                "upstreams" => insert(&mut config.upstreams, source, &table, name, entry),
                "locations" => insert(&mut config.locations, source, &table, name, entry),
                "servers" => insert(&mut config.servers, source, &table, name, entry),
                "plugins" => insert(&mut config.plugins, source, &table, name, entry),
                _ => insert(&mut config.certificates, source, &table, name, entry),
            };
            match added {
                Ok(()) => self.origins.insert(table, origin),
                Err(e) => self.errors.push(e),
            }
        }
    }
}

fn insert<T: DeserializeOwned>(
    map: &mut IndexMap<String, T>,
    source: &Source,
    table: &str,
    name: String,
    value: Spanned<DeValue<'_>>,
) -> Result<(), ConfigError> {
    let value = deserialize(source, table, value)?;
    map.insert(name, value);
    Ok(())
}

fn deserialize<T: DeserializeOwned>(
    source: &Source,
    table: &str,
    value: Spanned<DeValue<'_>>,
) -> Result<T, ConfigError> {
    let table_span = value.span();
    let deserializer = toml::de::ValueDeserializer::from(value);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let key = if path == "." {
            table.to_string()
        } else {
            format!("{table}.{path}")
        };
        let inner = error.into_inner();
        let span = inner.span().unwrap_or(table_span);
        source.error(Some(span), key, inner.message().to_string())
    })
}

/// Names of tables appear in logs, metrics labels and URLs: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name must have 1 to 64 characters".to_string());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("a name may only hold letters, digits, '_', '-' and '.'".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<Loaded, ConfigErrors> {
        load_text(Path::new("/etc/pingap.toml"), text, &no_env)
    }

    fn messages(text: &str) -> Vec<String> {
        load(text)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn loads_named_tables_in_order() {
        let loaded = load(
            "[upstreams.b]\naddrs = ['127.0.0.1:1']\n[upstreams.a]\naddrs = ['127.0.0.1:2']\n\
             [locations.x]\nupstream = 'a'\npath = '/x'\n",
        )
        .unwrap();
        let names: Vec<_> = loaded.config.upstreams.keys().cloned().collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(loaded.config.locations["x"].path.as_deref(), Some("/x"));
        assert_eq!(loaded.origins.get("locations.x").unwrap().line, 5);
    }

    #[test]
    fn lines_are_found_by_the_index_as_by_counting_newlines() {
        for text in [
            "",
            "a",
            "\n",
            "a\nb",
            "a\n\nbc\n",
            "[x]\r\ny = 1\n\n\nz = 2",
        ] {
            let source = Source::new(Arc::from(Path::new("/t.toml")), text);
            for offset in 0..text.len() + 3 {
                let counted = text.as_bytes()[..offset.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                assert_eq!(source.line(offset), counted, "{text:?} at {offset}");
            }
        }
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let errors = messages(
            "[upstreams.a]\naddrs = ['127.0.0.1:1']\n\n[locations.api_v1]\nupstream = 'a'\nrewrit = '/'\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("/etc/pingap.toml:6: locations.api_v1.rewrit: unknown field `rewrit`"),
            "{errors:?}"
        );
    }

    #[test]
    fn reports_errors_of_every_table() {
        let errors = messages(
            "[basic]\ngraceful_shutdown_timeout = '10 parsecs'\n\
             [upstreams.a]\nconnection_timeout = 'soon'\n\
             [servers.s]\naddr = '127.0.0.1:1'\nlisten = 1\n\
             [nonsense]\n",
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].contains(":2: basic.graceful_shutdown_timeout: invalid duration"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains(":4: upstreams.a.connection_timeout: invalid duration"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains(":7: servers.s.listen: unknown field"),
            "{errors:?}"
        );
        assert!(
            errors[3].contains(":8: nonsense: unknown section"),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let errors = messages("[basic]\nname = \"unterminated\n");
        assert!(
            errors[0].starts_with("/etc/pingap.toml:2: invalid TOML"),
            "{errors:?}"
        );
    }

    #[test]
    fn interpolates_environment_variables() {
        let env = |name: &str| (name == "PORT").then(|| "8080".to_string());
        let loaded = load_text(
            Path::new("/c.toml"),
            "[servers.s]\naddr = '127.0.0.1:${PORT}'\n",
            &env,
        )
        .unwrap();
        assert_eq!(loaded.config.servers["s"].addr, "127.0.0.1:8080");
        let errors = load_text(
            Path::new("/c.toml"),
            "[servers.s]\naddr = '127.0.0.1:${NO_SUCH_PORT}'\n",
            &env,
        )
        .unwrap_err();
        assert_eq!(
            errors.0[0].to_string(),
            "/c.toml:2: servers.s.addr: environment variable NO_SUCH_PORT is not set"
        );
    }

    #[test]
    fn plugin_settings_keep_their_own_keys() {
        let loaded =
            load("[plugins.auth]\ntype = 'jwt'\npriority = 3\nsecret = 'x'\nleeway = '5s'\n")
                .unwrap();
        let plugin = &loaded.config.plugins["auth"];
        assert_eq!(plugin.kind, "jwt");
        assert_eq!(plugin.priority, Some(3));
        assert_eq!(plugin.settings.len(), 2);
        assert_eq!(plugin.settings["secret"].as_str(), Some("x"));
    }

    #[test]
    fn names_must_be_plain() {
        let errors = messages("[upstreams.'has space']\naddrs = ['127.0.0.1:1']\n");
        assert!(
            errors[0].contains("upstreams.has space: a name may only hold"),
            "{errors:?}"
        );
    }

    #[test]
    fn directories_merge_and_refuse_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "[upstreams.api]\naddrs = ['127.0.0.1:1']\n[basic]\nname = 'x'\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "[locations.l]\nupstream = 'api'\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not toml").unwrap();
        let loaded = load_path(dir.path(), &no_env).unwrap();
        assert!(loaded.config.upstreams.contains_key("api"));
        assert!(loaded.config.locations.contains_key("l"));
        assert_eq!(
            loaded.origins.get("locations.l").unwrap().file.as_ref(),
            dir.path().join("b.toml")
        );

        std::fs::write(
            dir.path().join("c.toml"),
            "[upstreams.api]\naddrs = ['127.0.0.1:2']\n[basic]\nname = 'y'\n",
        )
        .unwrap();
        let errors = load_path(dir.path(), &no_env).unwrap_err();
        assert_eq!(errors.0.len(), 2, "{errors}");
        let text = errors.to_string();
        assert!(text.contains("upstreams.api: defined twice: in "), "{text}");
        assert!(text.contains("a.toml:1 and in "), "{text}");
        assert!(text.contains("c.toml:1"), "{text}");
        assert!(text.contains("basic: defined twice"), "{text}");
    }

    #[test]
    fn missing_paths_are_named() {
        let errors = load_path(Path::new("/no/such/pingap.toml"), &no_env).unwrap_err();
        assert!(
            errors.0[0]
                .to_string()
                .starts_with("/no/such/pingap.toml: cannot read:"),
            "{errors}"
        );
    }
}
