//! What a new configuration changes compared with the running one, and what each change does to
//! the running process: the `plan` shown before an apply (`pingap plan`, the admin API's dry
//! runs) and the test the apply path uses to decide between a swap and a graceful upgrade.
//!
//! Entities are compared key by key on their parsed form, so a change of formatting or comments is
//! no change. The configurations compared are as written (`${ENV}` references not expanded), and
//! a value is shown as `***` when its key or its text mentions a secret (a password, a token, a
//! key, an authorization, users of an authentication plugin) or holds a PEM block.

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::schema::Config;

/// How an entity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It is new.
    Added,
    /// It is gone.
    Removed,
    /// Some of its keys changed.
    Changed,
}

/// One key of an entity that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// The key, e.g. `addrs` or `settings.limit`.
    pub key: String,
    /// Its value before (`None`: not set), shown as TOML; `"***"` for secrets.
    pub before: Option<String>,
    /// Its value after.
    pub after: Option<String>,
}

/// What a change does to the running process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Impact {
    /// It cannot be applied to the running process: pingap applies it by starting a new
    /// process that takes the listening sockets over (a graceful upgrade).
    Upgrade(String),
    /// State that lived in the running configuration starts over.
    StateReset(String),
    /// Anything else worth knowing.
    Note(String),
}

/// One entity that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `basic`, `servers.web`, `locations.api`, …
    pub entity: String,
    /// How.
    pub kind: ChangeKind,
    /// The keys that changed (for [`ChangeKind::Changed`]).
    pub keys: Vec<KeyChange>,
    /// What it does to the running process.
    pub impacts: Vec<Impact>,
}

/// Everything a new configuration changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// The entities that changed, in configuration order.
    pub entries: Vec<Change>,
    /// Warnings the new configuration has that the running one did not (a location now
    /// shadowed by another, …).
    pub new_warnings: Vec<String>,
}

/// Keys of `[basic]` that the running process cannot change: they are read once at start.
const START_ONLY_BASIC: [&str; 13] = [
    "threads",
    "work_stealing",
    "pid_file",
    "error_log",
    "upgrade_sock",
    "user",
    "group",
    "log_level",
    "log_format",
    "upstream_keepalive_pool_size",
    "client_header_timeout",
    "send_timeout",
    "graceful_shutdown_timeout",
];

/// Keys of a server that belong to its listener.
const LISTENER_KEYS: [&str; 5] = ["addr", "threads", "h2c", "enable_h2", "max_connections"];

/// Words that mark a value as a secret when its key's name or its own text has them; a few key
/// names that have them but hold none are shown.
const SECRET_WORDS: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "private",
    "users",
    "cookie",
];
const NOT_SECRET: [&str; 4] = ["hash_key", "key_headers", "key_cookies", "client_auth"];

impl Changes {
    /// The changes from `before` (the running configuration; `None` at the first start) to
    /// `after`, with the warnings of each.
    pub fn between(
        before: Option<&Config>,
        after: &Config,
        before_warnings: &[String],
        after_warnings: &[String],
    ) -> Changes {
        let empty = Config::default();
        let before = before.unwrap_or(&empty);
        let mut changes = Changes::default();
        changes.single("basic", table(&before.basic), table(&after.basic));
        for (section, b, a) in [
            ("metrics", table(&before.metrics), table(&after.metrics)),
            ("tracing", table(&before.tracing), table(&after.tracing)),
            ("admin", table(&before.admin), table(&after.admin)),
        ] {
            changes.single(section, b, a);
        }
        changes.named("servers", &before.servers, &after.servers);
        changes.named("upstreams", &before.upstreams, &after.upstreams);
        changes.named("locations", &before.locations, &after.locations);
        changes.named("plugins", &before.plugins, &after.plugins);
        changes.named("certificates", &before.certificates, &after.certificates);
        for entry in &mut changes.entries {
            entry.impacts = impacts(entry, before, after);
        }
        changes.new_warnings = after_warnings
            .iter()
            .filter(|w| !before_warnings.contains(w))
            .cloned()
            .collect();
        changes
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The reasons the change needs a graceful upgrade; empty when it can be swapped in.
    pub fn upgrade_reasons(&self) -> Vec<String> {
        self.entries
            .iter()
            .flat_map(|entry| &entry.impacts)
            .filter_map(|impact| match impact {
                Impact::Upgrade(reason) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// The plan as text for people: one block per entity, its keys and impacts.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if self.entries.is_empty() {
            text.push_str("No changes.\n");
        }
        for entry in &self.entries {
            let sign = match entry.kind {
                ChangeKind::Added => '+',
                ChangeKind::Removed => '-',
                ChangeKind::Changed => '~',
            };
            let _ = writeln!(text, "{sign} {} ({})", entry.entity, kind_word(entry.kind));
            for key in &entry.keys {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_string());
                let _ = writeln!(
                    text,
                    "    {}: {} -> {}",
                    key.key,
                    show(&key.before),
                    show(&key.after)
                );
            }
            for impact in &entry.impacts {
                let line = match impact {
                    Impact::Upgrade(m) => format!("! {m}"),
                    Impact::StateReset(m) => format!("! {m}"),
                    Impact::Note(m) => format!("* {m}"),
                };
                let _ = writeln!(text, "    {line}");
            }
        }
        for warning in &self.new_warnings {
            let _ = writeln!(text, "warning: {warning}");
        }
        let counts = |kind| self.entries.iter().filter(|e| e.kind == kind).count();
        let _ = writeln!(
            text,
            "Plan: {} to add, {} to change, {} to remove.{}",
            counts(ChangeKind::Added),
            counts(ChangeKind::Changed),
            counts(ChangeKind::Removed),
            if self.upgrade_reasons().is_empty() {
                ""
            } else {
                " Applied by a graceful upgrade (a new process takes the listening sockets over)."
            }
        );
        text
    }

    fn single(&mut self, entity: &str, before: toml::Table, after: toml::Table) {
        if before == after {
            return;
        }
        let kind = if before.is_empty() {
            ChangeKind::Added
        } else if after.is_empty() {
            ChangeKind::Removed
        } else {
            ChangeKind::Changed
        };
        self.entries.push(Change {
            entity: entity.to_string(),
            kind,
            keys: key_changes(&before, &after),
            impacts: Vec::new(),
        });
    }

    fn named<T: Serialize>(
        &mut self,
        section: &str,
        before: &indexmap::IndexMap<String, T>,
        after: &indexmap::IndexMap<String, T>,
    ) {
        for (name, entity) in after {
            let after_table = table(entity);
            match before.get(name) {
                None => self.entries.push(Change {
                    entity: format!("{section}.{name}"),
                    kind: ChangeKind::Added,
                    keys: Vec::new(),
                    impacts: Vec::new(),
                }),
                Some(previous) => {
                    let before_table = table(previous);
                    if before_table != after_table {
                        self.entries.push(Change {
                            entity: format!("{section}.{name}"),
                            kind: ChangeKind::Changed,
                            keys: key_changes(&before_table, &after_table),
                            impacts: Vec::new(),
                        });
                    }
                }
            }
        }
        for name in before.keys().filter(|name| !after.contains_key(*name)) {
            self.entries.push(Change {
                entity: format!("{section}.{name}"),
                kind: ChangeKind::Removed,
                keys: Vec::new(),
                impacts: Vec::new(),
            });
        }
    }
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

/// The entity as a TOML table (unset keys absent).
fn table<T: Serialize>(entity: &T) -> toml::Table {
    match toml::Value::try_from(entity) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::Table::new(),
    }
}

/// The keys that differ, flattening sub-tables (`settings.limit`).
fn key_changes(before: &toml::Table, after: &toml::Table) -> Vec<KeyChange> {
    let mut keys = Vec::new();
    collect_changes("", before, after, &mut keys);
    keys
}

fn collect_changes(
    prefix: &str,
    before: &toml::Table,
    after: &toml::Table,
    out: &mut Vec<KeyChange>,
) {
    let names = after
        .keys()
        .chain(before.keys().filter(|k| !after.contains_key(*k)));
    for name in names {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let (b, a) = (before.get(name), after.get(name));
        if b == a {
            continue;
        }
        if let (Some(toml::Value::Table(b)), Some(toml::Value::Table(a))) = (b, a) {
            collect_changes(&key, b, a, out);
            continue;
        }
        let secret_key = is_secret_key(name);
        let show = |value: Option<&toml::Value>| {
            value.map(|value| {
                let text = value.to_string();
                if secret_key || mentions_secret(&text) {
                    "***".to_string()
                } else {
                    shorten(&text)
                }
            })
        };
        out.push(KeyChange {
            key,
            before: show(b),
            after: show(a),
        });
    }
}

fn is_secret_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !NOT_SECRET.contains(&name.as_str()) && mentions_secret(&name)
}

/// Whether `text` names a secret (`Authorization: Bearer …`, `api_key`) or holds a PEM block.
fn mentions_secret(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("-----begin") || SECRET_WORDS.iter().any(|w| text.contains(w))
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// What `change` does to the running process.
fn impacts(change: &Change, before: &Config, after: &Config) -> Vec<Impact> {
    let (section, name) = change
        .entity
        .split_once('.')
        .unwrap_or((change.entity.as_str(), ""));
    let changed = |key: &str| {
        change
            .keys
            .iter()
            .any(|k| k.key == key || k.key.starts_with(&format!("{key}.")))
    };
    let mut impacts = Vec::new();
    match (section, change.kind) {
        ("basic", _) => {
            let start_only: Vec<&str> = START_ONLY_BASIC
                .iter()
                .copied()
                .filter(|key| changed(key))
                .collect();
            if !start_only.is_empty() {
                impacts.push(Impact::Upgrade(format!(
                    "process setting {} changed: applied by a graceful upgrade",
                    start_only.join(", ")
                )));
            }
        }
        ("metrics" | "tracing", _) => impacts.push(Impact::Upgrade(format!(
            "[{section}] changed: applied by a graceful upgrade"
        ))),
        ("servers", ChangeKind::Added | ChangeKind::Removed) => {
            impacts.push(Impact::Upgrade(format!(
                "listener change: server \"{name}\" {}: applied by a graceful upgrade",
                kind_word(change.kind)
            )))
        }
        ("servers", ChangeKind::Changed) => {
            let is_tls = |config: &Config| {
                config
                    .servers
                    .get(name)
                    .is_some_and(|s| s.tls == Some(true) || s.tls_cert.is_some())
            };
            let mut keys: Vec<&str> = LISTENER_KEYS
                .iter()
                .copied()
                .filter(|key| changed(key))
                .collect();
            if is_tls(before) != is_tls(after) {
                keys.push("TLS on/off");
            }
            if !keys.is_empty() {
                impacts.push(Impact::Upgrade(format!(
                    "listener change: {} of server \"{name}\": applied by a graceful upgrade",
                    keys.join(", ")
                )));
            }
            if changed("tls_cert") || changed("tls_key") || changed("tls_min_version") {
                impacts.push(Impact::Note(
                    "certificate replaced for new TLS handshakes; open connections keep theirs"
                        .to_string(),
                ));
            }
            if changed("client_ca") || changed("client_auth") {
                impacts.push(Impact::Note(
                    "client certificates checked with the new settings from the next TLS handshake"
                        .to_string(),
                ));
            }
            if changed("access_log") || changed("access_log_rotate") {
                impacts.push(Impact::Note("access log reopened".to_string()));
            }
        }
        ("upstreams", ChangeKind::Changed) if changed("addrs") => {
            impacts.push(Impact::Note(
                "backends that stay keep their health and circuit state; new ones start healthy"
                    .to_string(),
            ));
        }
        ("plugins", ChangeKind::Changed) => {
            let is_cache = after.plugins.get(name).is_some_and(|p| p.kind == "cache")
                && before.plugins.get(name).is_some_and(|p| p.kind == "cache");
            if is_cache {
                impacts.push(Impact::Note(format!(
                    "cache \"{name}\": settings changed; stored entries are kept (trimmed to the new max_size)"
                )));
            } else {
                impacts.push(Impact::StateReset(format!(
                    "plugin \"{name}\": settings changed, its state (counters, slots, caches) starts over"
                )));
            }
        }
        ("plugins", ChangeKind::Removed) => impacts.push(Impact::StateReset(format!(
            "plugin \"{name}\": removed with its state"
        ))),
        ("certificates", _) => impacts.push(Impact::Note(
            "certificates served from the next TLS handshake; open connections keep theirs"
                .to_string(),
        )),
        _ => {}
    }
    impacts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Snapshot;

    fn config(text: &str) -> Config {
        match Snapshot::single("t.toml", text).load(&|_| None) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn keys_impacts_and_secrets() {
        let before = config(
            "[upstreams.u]\naddrs = [\"127.0.0.1:1\"]\n[servers.s]\naddr = \"127.0.0.1:1\"\n\
             [plugins.p]\ntype = \"basic_auth\"\nauthorizations = [\"YTpi\"]\n",
        );
        let after = config(
            "[upstreams.u]\naddrs = [\"127.0.0.1:2\"]\n[servers.s]\naddr = \"127.0.0.1:2\"\n\
             [plugins.p]\ntype = \"basic_auth\"\nauthorizations = [\"YzpkCg==\"]\n[locations.l]\n",
        );
        let changes = Changes::between(Some(&before), &after, &[], &[]);
        let text = changes.render();
        assert!(
            text.contains(
                "~ upstreams.u (changed)\n    addrs: [\"127.0.0.1:1\"] -> [\"127.0.0.1:2\"]"
            ),
            "{text}"
        );
        assert!(text.contains("+ locations.l (added)"), "{text}");
        assert!(
            text.contains("listener change: addr of server \"s\""),
            "{text}"
        );
        assert!(text.contains("authorizations: *** -> ***"), "{text}");
        assert!(!text.contains("YzpkCg"), "{text}");
        assert!(
            text.contains("Plan: 1 to add, 3 to change, 0 to remove."),
            "{text}"
        );
        assert_eq!(changes.upgrade_reasons().len(), 1);
        assert!(Changes::between(Some(&after), &after, &[], &[]).is_empty());
    }
}
