//! Keys made at run time, kept in the daemon's state database as hashes (the key itself is never stored).
use super::{KeyError, KeyRecord};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub struct KeyStore {
    connection: Connection,
    path: String,
}

impl KeyStore {
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let display = path.display().to_string();
        let connection = Connection::open(path).map_err(|e| store_error(&display, e))?;
        Self::init(connection, display)
    }

    pub fn in_memory() -> Result<Self, KeyError> {
        let connection = Connection::open_in_memory().map_err(|e| store_error(":memory:", e))?;
        Self::init(connection, ":memory:".into())
    }

    fn init(connection: Connection, path: String) -> Result<Self, KeyError> {
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS api_keys (
                     id TEXT PRIMARY KEY,
                     sha256 TEXT NOT NULL UNIQUE,
                     tenant TEXT NOT NULL,
                     name TEXT NOT NULL,
                     created_unix_ms INTEGER NOT NULL,
                     revoked_unix_ms INTEGER
                 );",
            )
            .map_err(|e| store_error(&path, e))?;
        Ok(Self { connection, path })
    }

    /// Every stored key, revoked ones included, by hash.
    pub fn all(&self) -> Result<Vec<(String, KeyRecord)>, KeyError> {
        let mut statement = self
            .connection
            .prepare("SELECT sha256, id, tenant, name, created_unix_ms, revoked_unix_ms FROM api_keys")
            .map_err(|e| store_error(&self.path, e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    KeyRecord {
                        id: row.get(1)?,
                        tenant: row.get(2)?,
                        name: row.get(3)?,
                        created_unix_ms: row.get(4)?,
                        revoked: row.get::<_, Option<i64>>(5)?.is_some(),
                        source: "store",
                    },
                ))
            })
            .map_err(|e| store_error(&self.path, e))?;
        rows.collect::<Result<_, _>>().map_err(|e| store_error(&self.path, e))
    }

    pub fn insert(&self, sha256: &str, tenant: &str, name: &str) -> Result<KeyRecord, KeyError> {
        let record = KeyRecord {
            id: format!("key-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
            tenant: tenant.to_string(),
            name: name.to_string(),
            created_unix_ms: crate::clock::unix_ms(),
            revoked: false,
            source: "store",
        };
        self.connection
            .execute(
                "INSERT INTO api_keys (id, sha256, tenant, name, created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![record.id, sha256, record.tenant, record.name, record.created_unix_ms],
            )
            .map_err(|e| store_error(&self.path, e))?;
        Ok(record)
    }

    pub fn revoke(&self, id: &str) -> Result<(), KeyError> {
        let exists: Option<String> = self
            .connection
            .query_row("SELECT id FROM api_keys WHERE id = ?1", [id], |row| row.get(0))
            .optional()
            .map_err(|e| store_error(&self.path, e))?;
        if exists.is_none() {
            return Err(KeyError::NoSuchKey(id.to_string()));
        }
        self.connection
            .execute(
                "UPDATE api_keys SET revoked_unix_ms = ?2 WHERE id = ?1 AND revoked_unix_ms IS NULL",
                params![id, crate::clock::unix_ms()],
            )
            .map_err(|e| store_error(&self.path, e))?;
        Ok(())
    }
}

fn store_error(path: &str, error: rusqlite::Error) -> KeyError {
    KeyError::Store { path: path.to_string(), message: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopening_and_revocation_sticks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let id = {
            let store = KeyStore::open(&path).expect("open");
            store.insert(&"a".repeat(64), "acme", "ci").expect("insert").id
        };
        let store = KeyStore::open(&path).expect("reopen");
        store.revoke(&id).expect("revoke");
        let all = store.all().expect("all");
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].1.tenant.as_str(), all[0].1.revoked), ("acme", true));
        assert!(matches!(store.revoke("key-nope"), Err(KeyError::NoSuchKey(_))));
    }
}
