//! The mock job side's work kept in a folder when asked (`--state-dir`):
//! `jobside.sqlite3` holds the orders, jobs, deliveries, queues and agents, one row per
//! item, and `files/` the stored files (see [`FileStore::saved_in`](super::FileStore::saved_in)).
//! Every change is committed, synchronously, before its request is answered, and only
//! the items it changed are written: `kill -9` of the server loses nothing it
//! acknowledged. A `work.json` from the earlier format is imported once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{params, Connection};
use serde_json::{Map, Value};

use super::model::Model;

/// The database file of a state folder.
const DATABASE: &str = "jobside.sqlite3";

/// The work file of earlier versions, imported once.
const LEGACY_WORK: &str = "work.json";

/// One stored item: the model's field, and the item's key in it. A field kept whole
/// (a counter, a list) is stored under its name with [`WHOLE`] before it, which no
/// field name has, so no item's key (even an empty one) can be taken for it.
type Key = (String, String);

/// Marks a field stored whole.
const WHOLE: &str = "=";

/// The work store of one state folder.
pub struct WorkStore {
    path: PathBuf,
    conn: Mutex<Stored>,
}

/// The connection, and each item's text as last written, so a save writes only what
/// changed.
struct Stored {
    conn: Connection,
    written: HashMap<Key, String>,
}

impl WorkStore {
    /// Opens (or creates) the store in `state_dir`, and the work saved there, if any.
    pub fn open(state_dir: &Path) -> anyhow::Result<(WorkStore, Option<Model>)> {
        let path = state_dir.join(DATABASE);
        let conn = Connection::open(&path)
            .and_then(|conn| {
                // FULL: a commit is on disk before the request that made it is answered.
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                     CREATE TABLE IF NOT EXISTS work (
                         field TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
                         PRIMARY KEY (field, key));",
                )
                .map(|()| conn)
            })
            .with_context(|| format!("cannot open the job side's store {}", path.display()))?;
        let store = WorkStore {
            path: path.clone(),
            conn: Mutex::new(Stored {
                conn,
                written: HashMap::new(),
            }),
        };
        let saved = store.load()?;
        let legacy = state_dir.join(LEGACY_WORK);
        if saved.is_none() && legacy.exists() {
            let model = import(&legacy)?;
            store.save(&model)?;
            let imported = legacy.with_extension("json.imported");
            std::fs::rename(&legacy, &imported)
                .with_context(|| format!("cannot rename {}", legacy.display()))?;
            tracing::info!(
                "imported {} into {}; the old file is kept as {}",
                legacy.display(),
                path.display(),
                imported.display()
            );
            return Ok((store, Some(model)));
        }
        Ok((store, saved))
    }

    /// The work as saved, if any was.
    fn load(&self) -> anyhow::Result<Option<Model>> {
        let mut stored = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<(String, String, String)> = {
            let mut statement = stored
                .conn
                .prepare("SELECT field, key, body FROM work ORDER BY field, key")?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows
        };
        if rows.is_empty() {
            return Ok(None);
        }
        let mut work = Map::new();
        for (field, key, body) in &rows {
            let value: Value = serde_json::from_str(body).with_context(|| {
                format!("{}: item {field}/{key} cannot be read", self.path.display())
            })?;
            if let Some(whole) = field.strip_prefix(WHOLE) {
                work.insert(whole.to_string(), value);
            } else if let Value::Object(items) = work
                .entry(field.clone())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                items.insert(key.clone(), value);
            }
        }
        let model = serde_json::from_value(Value::Object(work))
            .with_context(|| format!("{} is not the job side's work", self.path.display()))?;
        stored.written = rows
            .into_iter()
            .map(|(field, key, body)| ((field, key), body))
            .collect();
        Ok(Some(model))
    }

    /// Writes what changed in `model` since the last save, in one transaction.
    pub fn save(&self, model: &Model) -> anyhow::Result<()> {
        let items = items(model)?;
        let mut stored = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Stored { conn, written } = &mut *stored;
        let tx = conn.transaction()?;
        for (key, body) in &items {
            if written.get(key) != Some(body) {
                tx.execute(
                    "INSERT INTO work (field, key, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (field, key) DO UPDATE SET body = ?3",
                    params![key.0, key.1, body],
                )?;
            }
        }
        for key in written.keys().filter(|key| !items.contains_key(*key)) {
            tx.execute(
                "DELETE FROM work WHERE field = ?1 AND key = ?2",
                params![key.0, key.1],
            )?;
        }
        tx.commit()
            .with_context(|| format!("cannot save to {}", self.path.display()))?;
        *written = items;
        Ok(())
    }
}

/// The model as stored items: each entry of a map field its own row, other fields
/// whole.
fn items(model: &Model) -> anyhow::Result<HashMap<Key, String>> {
    let Value::Object(fields) = serde_json::to_value(model)? else {
        anyhow::bail!("the job side's work is not a JSON object");
    };
    let mut items = HashMap::new();
    for (field, value) in fields {
        match value {
            Value::Object(entries) => {
                for (key, entry) in entries {
                    items.insert((field.clone(), key), entry.to_string());
                }
            }
            whole => {
                items.insert(
                    (format!("{WHOLE}{field}"), String::new()),
                    whole.to_string(),
                );
            }
        }
    }
    Ok(items)
}

/// The work in an earlier version's `work.json`.
fn import(path: &Path) -> anyhow::Result<Model> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a saved mock server state", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mockserver::model::{Delivery, DeliveryState, Settings};

    fn delivery(id: &str, state: DeliveryState) -> Delivery {
        Delivery {
            id: id.into(),
            job: "J-1001".into(),
            queue: "indigo".into(),
            send_count: 1,
            state,
            leases: 1,
            last_failure: None,
            events: vec![],
        }
    }

    #[test]
    fn every_delivery_state_reads_back_and_a_removed_item_stays_removed() {
        let dir = tempfile::tempdir().unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let agent = || "floor-1".to_string();
        let states = [
            DeliveryState::Pending { not_before: None },
            DeliveryState::Pending {
                not_before: Some(at),
            },
            DeliveryState::Leased {
                agent: agent(),
                expires_at: at,
            },
            DeliveryState::Completed {
                agent: agent(),
                files: vec![],
            },
            DeliveryState::Failed {
                agent: agent(),
                reason: "hotfolder missing".into(),
            },
        ];
        let mut model = Model::new(Settings::default());
        // An empty key is an item like any other.
        model
            .deliveries_mut()
            .insert(String::new(), delivery("", states[0].clone()));
        for (n, state) in states.iter().enumerate() {
            let id = format!("D-{n}");
            model
                .deliveries_mut()
                .insert(id.clone(), delivery(&id, state.clone()));
        }
        let (store, none) = WorkStore::open(dir.path()).unwrap();
        assert!(none.is_none());
        store.save(&model).unwrap();
        model.deliveries_mut().remove("D-0");
        model.deliveries_mut().remove("");
        store.save(&model).unwrap();
        drop(store);
        let (_, read) = WorkStore::open(dir.path()).unwrap();
        let read = read.expect("saved work");
        let read_states: Vec<&DeliveryState> =
            read.deliveries().values().map(|d| &d.state).collect();
        assert_eq!(read_states, states[1..].iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_work_json_is_imported_once_and_a_damaged_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new(Settings::default());
        model.deliveries_mut().insert(
            "D-1".into(),
            delivery("D-1", DeliveryState::Pending { not_before: None }),
        );
        std::fs::write(
            dir.path().join(LEGACY_WORK),
            serde_json::to_vec(&model).unwrap(),
        )
        .unwrap();
        let (_, imported) = WorkStore::open(dir.path()).unwrap();
        assert_eq!(imported.unwrap().deliveries().len(), 1);
        assert!(!dir.path().join(LEGACY_WORK).exists());
        assert!(dir.path().join("work.json.imported").exists());

        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(LEGACY_WORK), "{\"jobs\": [").unwrap();
        let message = format!("{:#}", WorkStore::open(other.path()).err().unwrap());
        assert!(
            message.contains("work.json is not a saved mock server state"),
            "{message}"
        );
    }
}
