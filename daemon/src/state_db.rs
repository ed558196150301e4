//! The daemon's own state database (`<data_dir>/state.db`): API keys, budget counters and alerts, each in
//! tables of its own over a connection of its own. One way to open it, so every connection agrees on WAL
//! (readers never wait for the writer) and waits out another connection's write instead of failing.
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
}

/// Opens (creating its directory and file if needed) the database at `path` and applies `schema`.
pub fn open(path: &Path, schema: &str) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir { path: dir.to_path_buf(), source })?;
    }
    let open = || -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(schema)?;
        Ok(conn)
    };
    open().map_err(|source| OpenError::Open { path: path.to_path_buf(), source })
}
