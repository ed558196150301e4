//! Where the daemon keeps its data and its gRPC socket by default. Daemon and clients both use this, so
//! `llmopsctl` finds a daemon started with no flags.
use std::path::PathBuf;

/// File name of the gRPC Unix socket.
pub const SOCKET_NAME: &str = "llmopsd.sock";

/// `$LLMOPS_DATA_DIR`, else `$XDG_DATA_HOME/llmops`, else `~/.local/share/llmops`, else `./.llmops-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("LLMOPS_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty_env("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("llmops");
    }
    if let Some(home) = non_empty_env("HOME") {
        return PathBuf::from(home).join(".local/share/llmops");
    }
    PathBuf::from(".llmops-data")
}

/// `$XDG_RUNTIME_DIR/llmops/llmopsd.sock` when a runtime dir exists, else the socket in the data dir.
pub fn default_socket_path(data_dir: &std::path::Path) -> PathBuf {
    match non_empty_env("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("llmops").join(SOCKET_NAME),
        None => data_dir.join(SOCKET_NAME),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
