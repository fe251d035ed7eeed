//! The dialogues in service: the current catalog, plus every version a lead was pinned to.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::dialogue::{self, Catalog, Script};
use crate::storage::{self, Db, StorageError, Tx};

/// Current dialogues and a cache of pinned versions.
pub struct Scripts {
    catalog: Catalog,
    by_version: RwLock<HashMap<String, Arc<Script>>>,
}

impl Scripts {
    /// Wraps a loaded catalog.
    pub fn new(catalog: Catalog) -> Scripts {
        let mut map = HashMap::new();
        for entry in catalog.entries() {
            map.insert(entry.script.version.clone(), Arc::new(entry.script.clone()));
        }
        Scripts {
            catalog,
            by_version: RwLock::new(map),
        }
    }

    /// Stores every current version, so leads pinned to it survive later edits of the file.
    pub async fn remember_all(&self, db: &Db, now: i64) -> Result<(), StorageError> {
        for entry in self.catalog.entries() {
            let v = storage::dialogues::StoredVersion {
                version: entry.script.version.clone(),
                dialogue_id: entry.script.id.clone(),
                locale: entry.script.locale.clone(),
                file_name: entry.file_name.clone(),
                source: entry.source.clone(),
            };
            storage::dialogues::remember(db, &v, now).await?;
        }
        Ok(())
    }

    /// The dialogue a new lead gets (SPEC section 5).
    pub fn select(&self, source: &str, language_code: Option<&str>) -> Option<Arc<Script>> {
        let script = self.catalog.select(source, language_code)?;
        self.cached(&script.version)
    }

    fn cached(&self, version: &str) -> Option<Arc<Script>> {
        self.by_version.read().ok()?.get(version).cloned()
    }

    /// The script of a pinned version: from memory, or compiled from the stored source (read
    /// through the caller's transaction).
    pub async fn version(
        &self,
        tx: &mut Tx,
        version: &str,
    ) -> Result<Option<Arc<Script>>, StorageError> {
        if let Some(s) = self.cached(version) {
            return Ok(Some(s));
        }
        let Some(stored) = storage::dialogues::find_in(tx, version).await? else {
            return Ok(None);
        };
        match dialogue::compile(&stored.file_name, &stored.source) {
            Ok(compiled) => {
                let script = Arc::new(compiled.script);
                if let Ok(mut map) = self.by_version.write() {
                    map.insert(version.to_owned(), script.clone());
                }
                Ok(Some(script))
            }
            Err(diags) => Err(StorageError::Corrupt(format!(
                "stored dialogue version {version} no longer compiles: {}",
                diags.first().map(|d| d.to_string()).unwrap_or_default()
            ))),
        }
    }
}

impl Scripts {
    /// Step names of a dialogue in file order (for the funnel).
    pub fn step_order(&self, dialogue_id: &str) -> Option<Vec<String>> {
        self.catalog
            .entries()
            .find(|e| e.script.id == dialogue_id)
            .map(|e| e.script.steps.iter().map(|s| s.name.clone()).collect())
    }
}
