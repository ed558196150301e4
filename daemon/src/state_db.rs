//! The daemon's own state database (`<data_dir>/state.db`): API keys, budget counters and alerts, each in
//! tables of its own over a connection of its own. One way to open it, so every connection agrees on WAL
//! (readers never wait for the writer) and waits out another connection's write instead of failing.
//!
//! Also the rule for every file holding prompts or keys: the data directory is 0700 and each SQLite database
//! 0600, whatever the umask ([`private_dir`], [`private_db_file`]).
use rusqlite::Connection;
use std::fs::Permissions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SQLite's files beside a database: it gives each the database file's mode when it creates it.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot make {path} private (mode 0600): {source}")]
    Private { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
}

/// Creates `dir` (and its parents) if needed and sets it to 0700 (owner only), whatever the umask and however
/// it was made before.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Makes the SQLite database at `path` private before SQLite opens it: creates the file with mode 0600 if it
/// does not exist, and sets it and any `-wal`, `-shm` or `-journal` file beside it to 0600. SQLite gives the
/// side files it creates later the database's mode, so none of them is ever readable by others.
/// `:memory:` and empty paths are left alone.
pub fn private_db_file(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(());
    }
    // Nothing is written: a new empty file is an empty database to SQLite.
    let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    for suffix in SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::set_permissions(&side, Permissions::from_mode(0o600)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// Creates the parent directory of a database (0700 when this makes it; an existing one is left as it is).
pub fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.exists() => private_dir(dir),
        _ => Ok(()),
    }
}

/// Opens (creating its directory and file if needed) the database at `path` and applies `schema`.
pub fn open(path: &Path, schema: &str) -> Result<Connection, OpenError> {
    create_parent(path)
        .map_err(|source| OpenError::CreateDir { path: path.parent().unwrap_or(path).to_path_buf(), source })?;
    private_db_file(path).map_err(|source| OpenError::Private { path: path.to_path_buf(), source })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    /// Every file of the database, side files included, as (name, mode).
    fn db_files(dir: &Path) -> Vec<(String, u32)> {
        let mut files: Vec<(String, u32)> = std::fs::read_dir(dir)
            .expect("read_dir")
            .filter_map(Result::ok)
            .map(|entry| (entry.file_name().to_string_lossy().into_owned(), mode(&entry.path())))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_new_database_and_its_side_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fresh/state.db");
        let conn = open(&path, "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);").expect("open");
        let files = db_files(&dir.path().join("fresh"));
        // While the connection is open, WAL mode keeps the -wal and -shm files.
        assert!(files.iter().any(|(name, _)| name == "state.db-wal"), "{files:?}");
        assert!(files.iter().all(|(_, mode)| *mode == 0o600), "{files:?}");
        assert_eq!(mode(&dir.path().join("fresh")), 0o700, "a directory it creates is private");
        drop(conn);
    }

    #[test]
    fn the_trace_store_is_private_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::trace::Store::open(&dir.path().join("traces.db")).expect("open");
        let files = db_files(dir.path());
        // Its schema was written: the -wal file exists.
        assert!(files.iter().any(|(name, _)| name == "traces.db-wal"), "{files:?}");
        assert!(files.iter().all(|(_, mode)| *mode == 0o600), "{files:?}");
        drop(store);
    }

    #[test]
    fn an_existing_readable_database_is_narrowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        for name in ["state.db", "state.db-wal", "state.db-shm"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
            std::fs::set_permissions(dir.path().join(name), Permissions::from_mode(0o644)).expect("chmod");
        }
        private_db_file(&path).expect("private");
        assert!(db_files(dir.path()).iter().all(|(_, mode)| *mode == 0o600), "{:?}", db_files(dir.path()));
        open(&path, "CREATE TABLE IF NOT EXISTS t (x INTEGER);").expect("the empty files open as a database");
    }

    #[test]
    fn the_data_dir_is_created_or_tightened_to_0700() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = dir.path().join("a/b");
        private_dir(&made).expect("create");
        assert_eq!(mode(&made), 0o700);
        std::fs::set_permissions(&made, Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&made).expect("tighten");
        assert_eq!(mode(&made), 0o700);
    }
}
