//! Reading and editing the entities of a configuration in its documents, as the source holds
//! them: an entity is replaced or removed where it is defined, with the formatting and comments
//! of everything else kept; a new one goes beside its kind (or, in etcd, into a key of its own).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item};
use utoipa::ToSchema;

use crate::config::Snapshot;

/// The kinds of named entity the API edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `[servers.NAME]`
    Servers,
    /// `[locations.NAME]`
    Locations,
    /// `[upstreams.NAME]`
    Upstreams,
    /// `[plugins.NAME]`
    Plugins,
    /// `[certificates.NAME]`
    Certificates,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Servers,
        Kind::Locations,
        Kind::Upstreams,
        Kind::Plugins,
        Kind::Certificates,
    ];

    /// The configuration section (and path segment) of the kind.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Servers => "servers",
            Kind::Locations => "locations",
            Kind::Upstreams => "upstreams",
            Kind::Plugins => "plugins",
            Kind::Certificates => "certificates",
        }
    }

    /// The kind whose section is `text`.
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.section() == text)
    }
}

/// Why an edit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// A document of the configuration is not TOML (it could not be edited in place).
    #[error("document {0} cannot be edited: {1}")]
    Unparsable(String, String),
    /// The entity is not there.
    #[error("there is no {0}")]
    Missing(String),
    /// The new value is not a TOML table.
    #[error("{0}")]
    Invalid(String),
}

/// The documents parsed as plain tables (for reading).
fn tables(snapshot: &Snapshot) -> Vec<(String, toml::Table)> {
    snapshot
        .documents()
        .filter_map(|(name, text)| Some((name.to_string(), text.parse::<toml::Table>().ok()?)))
        .collect()
}

/// Every entity of `kind`, as written (`${ENV}` references kept), in document order.
pub fn entities(snapshot: &Snapshot, kind: Kind) -> IndexMap<String, toml::Table> {
    let mut found = IndexMap::new();
    for (_, table) in tables(snapshot) {
        if let Some(toml::Value::Table(section)) = table.get(kind.section()) {
            for (name, value) in section {
                if let toml::Value::Table(entity) = value {
                    found.insert(name.clone(), entity.clone());
                }
            }
        }
    }
    found
}

/// Entity `name` of `kind`, as written.
pub fn entity(snapshot: &Snapshot, kind: Kind, name: &str) -> Option<toml::Table> {
    entities(snapshot, kind).shift_remove(name)
}

/// Every document's tables merged into one (what `***` in a whole configuration refers to).
pub fn merged(snapshot: &Snapshot) -> toml::Table {
    let mut merged = toml::Table::new();
    for (_, table) in tables(snapshot) {
        merge_into(&mut merged, table);
    }
    merged
}

fn merge_into(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge_into(existing, table)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// `snapshot` with entity `name` of `kind` set to `value`: replaced where it is defined, or added
/// to the document that holds most of its kind (the first document when none does; a document
/// of its own, named as etcd keys are, when `own_document` is set).
pub fn put(
    snapshot: &Snapshot,
    kind: Kind,
    name: &str,
    value: toml::Table,
    own_document: bool,
) -> Result<Snapshot, EditError> {
    let item = entity_item(kind, name, value)?;
    let mut documents = parse_all(snapshot)?;
    let holder = documents
        .iter()
        .position(|(_, doc)| find(doc, kind, name).is_some());
    let target = match holder {
        Some(index) => index,
        None if own_document || documents.is_empty() => {
            documents.push((format!("{}/{name}", kind.section()), DocumentMut::new()));
            documents.len() - 1
        }
        None => documents
            .iter()
            .enumerate()
            .max_by_key(|(index, (_, doc))| (count(doc, kind), std::cmp::Reverse(*index)))
            .map_or(0, |(index, _)| index),
    };
    let document = &mut documents[target].1;
    let section = document.entry(kind.section()).or_insert_with(|| {
        let mut table = toml_edit::Table::new();
        table.set_implicit(true);
        Item::Table(table)
    });
    let Some(section) = section.as_table_like_mut() else {
        return Err(EditError::Invalid(format!(
            "{} in {} is not a table",
            kind.section(),
            documents[target].0
        )));
    };
    section.insert(name, item);
    Ok(rebuild(documents))
}

/// `snapshot` without entity `name` of `kind` (a document left empty is dropped).
pub fn remove(snapshot: &Snapshot, kind: Kind, name: &str) -> Result<Snapshot, EditError> {
    let mut documents = parse_all(snapshot)?;
    let mut removed = false;
    for (_, document) in &mut documents {
        if let Some(section) = document
            .get_mut(kind.section())
            .and_then(Item::as_table_like_mut)
        {
            removed |= section.remove(name).is_some();
            if section.is_empty() {
                document.remove(kind.section());
            }
        }
    }
    if !removed {
        return Err(EditError::Missing(format!("{}.{name}", kind.section())));
    }
    documents.retain(|(_, document)| !document.to_string().trim().is_empty());
    Ok(rebuild(documents))
}

fn parse_all(snapshot: &Snapshot) -> Result<Vec<(String, DocumentMut)>, EditError> {
    snapshot
        .documents()
        .map(|(name, text)| {
            text.parse::<DocumentMut>()
                .map(|doc| (name.to_string(), doc))
                .map_err(|e| EditError::Unparsable(name.to_string(), e.to_string()))
        })
        .collect()
}

fn rebuild(documents: Vec<(String, DocumentMut)>) -> Snapshot {
    Snapshot::from_documents(
        documents
            .into_iter()
            .map(|(name, document)| (name, document.to_string())),
    )
}

fn find<'a>(document: &'a DocumentMut, kind: Kind, name: &str) -> Option<&'a Item> {
    document.get(kind.section())?.as_table_like()?.get(name)
}

fn count(document: &DocumentMut, kind: Kind) -> usize {
    document
        .get(kind.section())
        .and_then(Item::as_table_like)
        .map_or(0, |table| table.len())
}

/// The entity as a `toml_edit` table, laid out as `toml` writes it.
fn entity_item(kind: Kind, name: &str, value: toml::Table) -> Result<Item, EditError> {
    let mut entity = toml::Table::new();
    entity.insert(name.to_string(), toml::Value::Table(value));
    let mut wrapper = toml::Table::new();
    wrapper.insert(kind.section().to_string(), toml::Value::Table(entity));
    let text = toml::to_string(&wrapper).map_err(|e| EditError::Invalid(e.to_string()))?;
    let mut document = text
        .parse::<DocumentMut>()
        .map_err(|e| EditError::Invalid(e.to_string()))?;
    document
        .get_mut(kind.section())
        .and_then(Item::as_table_like_mut)
        .and_then(|section| section.remove(name))
        .ok_or_else(|| EditError::Invalid("cannot lay the entity out as TOML".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn edits_keep_the_rest_of_the_document() {
        let text = "# pingap\n[upstreams.a]\naddrs = [\"127.0.0.1:1\"] # first\n\n[locations.x]\nupstream = \"a\"\n";
        let snapshot = Snapshot::single("pingap.toml", text);
        let changed = put(
            &snapshot,
            Kind::Locations,
            "x",
            table("upstream = \"a\"\npath = \"/x\""),
            false,
        );
        let Ok(changed) = changed else {
            panic!("{changed:?}")
        };
        let new_text = changed.document("pingap.toml").unwrap_or_default();
        assert!(
            new_text.starts_with("# pingap\n[upstreams.a]\naddrs = [\"127.0.0.1:1\"] # first\n"),
            "{new_text}"
        );
        assert_eq!(
            entity(&changed, Kind::Locations, "x"),
            Some(table("upstream = \"a\"\npath = \"/x\""))
        );

        let added = put(
            &changed,
            Kind::Upstreams,
            "new one",
            table("addrs = [\"127.0.0.1:2\"]"),
            false,
        );
        let Ok(added) = added else {
            panic!("{added:?}")
        };
        assert_eq!(added.len(), 1);
        assert!(entity(&added, Kind::Upstreams, "new one").is_some());

        let removed = remove(&added, Kind::Locations, "x");
        let Ok(removed) = removed else {
            panic!("{removed:?}")
        };
        assert!(entity(&removed, Kind::Locations, "x").is_none());
        assert!(matches!(
            remove(&removed, Kind::Locations, "x"),
            Err(EditError::Missing(_))
        ));
    }

    #[test]
    fn own_documents_as_etcd_keys() {
        let snapshot = Snapshot::from_documents([(
            "upstreams/a".to_string(),
            "[upstreams.a]\naddrs = [\"127.0.0.1:1\"]\n".to_string(),
        )]);
        let added = put(
            &snapshot,
            Kind::Plugins,
            "p",
            table("type = \"ping\""),
            true,
        );
        let Ok(added) = added else {
            panic!("{added:?}")
        };
        assert_eq!(
            added.documents().map(|(n, _)| n).collect::<Vec<_>>(),
            ["plugins/p", "upstreams/a"]
        );
        let removed = remove(&added, Kind::Upstreams, "a");
        let Ok(removed) = removed else {
            panic!("{removed:?}")
        };
        assert_eq!(removed.len(), 1);
    }
}
