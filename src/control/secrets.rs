//! What counts as a secret in a configuration, and masking it: plans and diffs show `***` for
//! secret values, and the admin API never answers with one.
//!
//! A value is secret when its key's name says so (`password`, `secret`, `token`, `*_key`, …) or
//! when its text holds a private key or a credential header. In the API, `"***"` written back
//! where a secret was means "keep the current value" ([`restore_json`], [`restore_document`]),
//! so a configuration read through the API can be edited and saved without the secrets.

use toml_edit::{DocumentMut, Item, Value};

/// What a masked value is shown as.
pub const MASK: &str = "***";

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

/// Keys naming files of keys: their value is shown when it is a path rather than inline PEM.
const KEY_FILES: [&str; 3] = ["tls_key", "client_key", "acme_account_key"];

/// Credential headers, as they appear in header rules (`"Authorization: Bearer …"`).
const SECRET_HEADERS: [&str; 6] = [
    "authorization:",
    "proxy-authorization:",
    "cookie:",
    "set-cookie:",
    "x-api-key:",
    "x-auth-token:",
];

/// Sections whose tables are named entities (`[locations.NAME]`).
const NAMED_SECTIONS: [&str; 6] = [
    "servers",
    "locations",
    "upstreams",
    "plugins",
    "certificates",
    "storages",
];

/// Whether a key with this name holds a secret.
pub fn is_secret_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !NOT_SECRET.contains(&name.as_str()) && mentions_secret(&name)
}

/// Whether `text` names a secret (`Authorization: Bearer …`, `api_key`) or holds a PEM block:
/// the broad test of plans and diffs, which show only what changed.
pub fn mentions_secret(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("-----begin") || SECRET_WORDS.iter().any(|w| text.contains(w))
}

/// Whether the admin API masks `value` under key `key` (the narrower test of API answers,
/// which show whole entities: a location's path `/auth` is not a secret there).
fn masked_in_api(key: Option<&str>, value: &str) -> bool {
    let lower = value.trim_start().to_ascii_lowercase();
    if lower.contains("private key-----") || SECRET_HEADERS.iter().any(|h| lower.starts_with(h)) {
        return true;
    }
    match key {
        Some(key) if KEY_FILES.contains(&key) => lower.starts_with("-----begin"),
        Some(key) => is_secret_key(key),
        None => false,
    }
}

/// Masks the secrets of an entity's JSON in place (every key of it is checked).
pub fn mask_json(value: &mut serde_json::Value) {
    mask_json_under(value, None, false);
}

fn mask_json_under(value: &mut serde_json::Value, key: Option<&str>, secret: bool) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                let inner = secret || secret_key_in_api(name);
                mask_json_under(child, Some(name), inner);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                mask_json_under(item, key, secret);
            }
        }
        serde_json::Value::String(text) if secret || masked_in_api(key, text) => {
            *text = MASK.to_string();
        }
        // Numbers and booleans under a secret key are hidden too.
        other if secret => *other = serde_json::Value::String(MASK.to_string()),
        _ => {}
    }
}

/// `new` with every `"***"` replaced by the value at the same place in `old` (an entity written
/// back after it was read masked). A `"***"` with nothing to keep is an error naming its key.
pub fn restore_json(
    new: &mut serde_json::Value,
    old: Option<&serde_json::Value>,
    path: &str,
) -> Result<(), String> {
    match new {
        serde_json::Value::String(text) if text == MASK => match old {
            Some(old) => {
                *new = old.clone();
                Ok(())
            }
            None => Err(format!(
                "{path}: \"***\" stands for a secret kept from before, and there is none here"
            )),
        },
        serde_json::Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                let old_child = old.and_then(|o| o.get(name));
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                restore_json(child, old_child, &child_path)?;
            }
            Ok(())
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let old_item = old.and_then(|o| o.get(index));
                restore_json(item, old_item, &format!("{path}[{index}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A configuration document with its secrets masked, formatting and comments kept. Text that is
/// not TOML is not shown at all.
pub fn mask_document(text: &str) -> String {
    let Ok(mut document) = text.parse::<DocumentMut>() else {
        return "# (not valid TOML; not shown because it may hold secrets)\n".to_string();
    };
    for (section, item) in document.as_table_mut().iter_mut() {
        let depth = if NAMED_SECTIONS.contains(&section.get()) {
            1
        } else {
            0
        };
        mask_item(item, None, false, depth);
    }
    document.to_string()
}

/// Whether what is under key `name` is secret (`secret`: its parent is), and the key masking
/// decides by; at a `structural` level the name is a section's or an entity's, not a key.
fn below(name: &str, secret: bool, structural: usize) -> (bool, Option<&str>) {
    if structural > 0 {
        (secret, None)
    } else {
        (secret || secret_key_in_api(name), Some(name))
    }
}

/// Whether every value under key `name` is masked (the files of keys are shown as paths).
fn secret_key_in_api(name: &str) -> bool {
    is_secret_key(name) && !KEY_FILES.contains(&name)
}

/// `structural` levels of tables below this one are names (sections, entities), not keys.
fn mask_item(item: &mut Item, key: Option<&str>, secret: bool, structural: usize) {
    match item {
        Item::Table(table) => {
            for (name, child) in table.iter_mut() {
                let (inner, child_key) = below(name.get(), secret, structural);
                mask_item(child, child_key, inner, structural.saturating_sub(1));
            }
        }
        Item::ArrayOfTables(tables) => {
            for table in tables.iter_mut() {
                for (name, child) in table.iter_mut() {
                    let (inner, child_key) = below(name.get(), secret, 0);
                    mask_item(child, child_key, inner, 0);
                }
            }
        }
        Item::Value(value) => mask_value(value, key, secret, structural),
        Item::None => {}
    }
}

fn mask_value(value: &mut Value, key: Option<&str>, secret: bool, structural: usize) {
    match value {
        Value::String(text) if secret || masked_in_api(key, text.value()) => {
            let decor = text.decor().clone();
            *value = Value::from(MASK);
            *value.decor_mut() = decor;
        }
        Value::Array(array) => {
            for element in array.iter_mut() {
                mask_value(element, key, secret, 0);
            }
        }
        Value::InlineTable(table) => {
            for (name, child) in table.iter_mut() {
                let (inner, child_key) = below(name.get(), secret, structural);
                mask_value(child, child_key, inner, structural.saturating_sub(1));
            }
        }
        other if secret => {
            let decor = other.decor().clone();
            *other = Value::from(MASK);
            *other.decor_mut() = decor;
        }
        _ => {}
    }
}

/// `new_text` (a document written back after it was read masked) with every `"***"` replaced by
/// the value at the same key in `old` (the running configuration's merged tables).
pub fn restore_document(new_text: &str, old: &toml::Table) -> Result<String, String> {
    let mut document = new_text
        .parse::<DocumentMut>()
        .map_err(|e| format!("invalid TOML: {e}"))?;
    let old = toml::Value::Table(old.clone());
    restore_item(document.as_item_mut(), Some(&old), "")?;
    Ok(document.to_string())
}

fn restore_item(item: &mut Item, old: Option<&toml::Value>, path: &str) -> Result<(), String> {
    match item {
        Item::Table(table) => {
            for (name, child) in table.iter_mut() {
                let child_old = old.and_then(|o| o.get(name.get()));
                restore_item(child, child_old, &join(path, name.get()))?;
            }
            Ok(())
        }
        Item::ArrayOfTables(tables) => {
            for (index, table) in tables.iter_mut().enumerate() {
                let table_old = old.and_then(|o| o.get(index));
                for (name, child) in table.iter_mut() {
                    let child_old = table_old.and_then(|o| o.get(name.get()));
                    restore_item(child, child_old, &format!("{path}[{index}].{}", name.get()))?;
                }
            }
            Ok(())
        }
        Item::Value(value) => restore_value(value, old, path),
        Item::None => Ok(()),
    }
}

fn restore_value(value: &mut Value, old: Option<&toml::Value>, path: &str) -> Result<(), String> {
    match value {
        Value::String(text) if text.value() == MASK => {
            let old = old.ok_or_else(|| {
                format!(
                    "{path}: \"***\" stands for a secret kept from before, and there is none here"
                )
            })?;
            let decor = text.decor().clone();
            *value = toml_value(old)?;
            *value.decor_mut() = decor;
            Ok(())
        }
        Value::Array(array) => {
            for (index, element) in array.iter_mut().enumerate() {
                restore_value(
                    element,
                    old.and_then(|o| o.get(index)),
                    &format!("{path}[{index}]"),
                )?;
            }
            Ok(())
        }
        Value::InlineTable(table) => {
            for (name, child) in table.iter_mut() {
                let child_old = old.and_then(|o| o.get(name.get()));
                restore_value(child, child_old, &join(path, name.get()))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A `toml` value as a `toml_edit` one.
fn toml_value(value: &toml::Value) -> Result<Value, String> {
    let text = format!("v = {value}");
    let document = text
        .parse::<DocumentMut>()
        .map_err(|e| format!("cannot restore a value: {e}"))?;
    document
        .get("v")
        .and_then(Item::as_value)
        .cloned()
        .ok_or_else(|| "cannot restore a value".to_string())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_mask_secrets_but_not_names_or_paths() {
        let text = r#"# the API
[locations.auth]
path = "/auth"
upstream = "backend"
request_headers = ["Authorization: Bearer abc", "X-Ok: 1"]

[plugins.keys]
type = "key_auth"
keys = ["k1", "k2"]

[certificates.site]
tls_cert = "site.crt"
tls_key = "site.key"

[admin]
password = "hunter2"
"#;
        let masked = mask_document(text);
        assert!(
            masked.starts_with("# the API\n[locations.auth]\npath = \"/auth\""),
            "{masked}"
        );
        assert!(
            masked.contains(r#"request_headers = ["***", "X-Ok: 1"]"#),
            "{masked}"
        );
        assert!(masked.contains(r#"keys = ["***", "***"]"#), "{masked}");
        assert!(masked.contains(r#"tls_key = "site.key""#), "{masked}");
        assert!(masked.contains(r#"password = "***""#), "{masked}");
        assert!(!masked.contains("hunter2") && !masked.contains("abc"));

        let old: toml::Table = text.parse().unwrap_or_default();
        let restored = restore_document(&masked, &old).unwrap_or_default();
        assert_eq!(restored, text);
    }

    #[test]
    fn json_masks_and_restores() {
        let original = serde_json::json!({
            "type": "jwt", "secret": "s3cret", "path": "/auth",
            "nested": {"password": "p", "ttl": 5}, "tls_key": "-----BEGIN PRIVATE KEY-----\nx"
        });
        let mut masked = original.clone();
        mask_json(&mut masked);
        assert_eq!(masked["secret"], "***");
        assert_eq!(masked["path"], "/auth");
        assert_eq!(masked["nested"]["password"], "***");
        assert_eq!(masked["nested"]["ttl"], 5);
        assert_eq!(masked["tls_key"], "***");
        let mut back = masked.clone();
        assert!(restore_json(&mut back, Some(&original), "").is_ok());
        assert_eq!(back, original);
        let mut orphan = serde_json::json!({"password": "***"});
        let error = restore_json(&mut orphan, None, "plugins.x");
        assert!(error.is_err_and(|e| e.starts_with("plugins.x.password")));
    }
}
