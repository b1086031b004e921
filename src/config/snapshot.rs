//! A configuration as its source holds it: the text of each document (a file of a directory, an
//! entity's key in etcd), before `${ENV}` interpolation.
//!
//! Snapshots are what the history keeps and what a rollback writes back, so secrets that come
//! from the environment never reach either. The digest names a configuration independently of
//! where it is stored: two snapshots with the same documents have the same digest.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ConfigErrors;
use super::load::{EnvLookup, Loaded, load_documents};

/// The documents of one configuration, by name, in the order they are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Snapshot {
    documents: BTreeMap<String, String>,
}

impl Snapshot {
    /// A snapshot of one document.
    pub fn single(name: impl Into<String>, text: impl Into<String>) -> Snapshot {
        Snapshot::from_documents([(name.into(), text.into())])
    }

    /// A snapshot of `documents` (name, text); they are merged in name order.
    pub fn from_documents(documents: impl IntoIterator<Item = (String, String)>) -> Snapshot {
        Snapshot {
            documents: documents.into_iter().collect(),
        }
    }

    /// The documents (name, text) in merge order.
    pub fn documents(&self) -> impl Iterator<Item = (&str, &str)> {
        self.documents
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
    }

    /// The text of document `name`.
    pub fn document(&self, name: &str) -> Option<&str> {
        self.documents.get(name).map(String::as_str)
    }

    /// How many documents it has.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether it has no document.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// `sha256:` and the hex SHA-256 of the documents' names and texts.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, text) in &self.documents {
            // Lengths first, so no two different snapshots hash the same bytes.
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(7 + 64);
        hex.push_str("sha256:");
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        hex
    }

    /// Reads the documents into a configuration, interpolating `${NAME}` with `env`. Errors name
    /// the document as their file.
    pub fn load(&self, env: EnvLookup<'_>) -> Result<Loaded, ConfigErrors> {
        load_documents(
            self.documents
                .iter()
                .map(|(name, text)| (Path::new(name.as_str()), text.as_str())),
            env,
        )
    }

    /// All documents as one text; each after the first is preceded by a comment naming it.
    /// For one document, exactly its text.
    pub fn to_text(&self) -> String {
        if self.documents.len() == 1 {
            return self.documents.values().next().cloned().unwrap_or_default();
        }
        let mut text = String::new();
        for (name, document) in &self.documents {
            if !text.is_empty() && !text.ends_with("\n\n") {
                text.push('\n');
            }
            text.push_str(&format!("# --- {name} ---\n"));
            text.push_str(document);
            if !document.ends_with('\n') {
                text.push('\n');
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_names_and_texts_only() {
        let a = Snapshot::from_documents([
            ("a.toml".to_string(), "x".to_string()),
            ("b.toml".to_string(), "y".to_string()),
        ]);
        let b = Snapshot::from_documents([
            ("b.toml".to_string(), "y".to_string()),
            ("a.toml".to_string(), "x".to_string()),
        ]);
        assert_eq!(a.digest(), b.digest());
        let moved = Snapshot::from_documents([
            ("a.toml".to_string(), "xb.toml".to_string()),
            ("".to_string(), "y".to_string()),
        ]);
        assert_ne!(a.digest(), moved.digest());
        assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    }

    #[test]
    fn errors_name_the_document() {
        let snapshot = Snapshot::single("etcd://prefix/servers/web", "[servers.web]\naddr = 1\n");
        let errors = snapshot.load(&|_| None).err().map(|e| e.to_string());
        assert!(
            errors
                .as_deref()
                .is_some_and(|e| e.contains("etcd://prefix/servers/web:2")),
            "{errors:?}"
        );
    }
}
