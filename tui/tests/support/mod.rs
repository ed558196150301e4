//! Helpers shared by the `llmopsctl_*` integration tests: serve fake llmopsd services on a Unix socket and run
//! the real `llmopsctl` binary against it.

// Each test file compiles this module on its own and uses only some of these helpers.
#![allow(dead_code)]
// Test support: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tonic::transport::server::Router;
use tonic::transport::Server;

/// Serves the services `add` puts on a fresh socket (named after `name`) for the rest of the test.
pub async fn serve(name: &str, add: impl FnOnce(&mut Server) -> Router) -> PathBuf {
    let socket = std::env::temp_dir().join(format!("llmopsctl-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind socket");
    let server =
        add(&mut Server::builder()).serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    tokio::spawn(server);
    socket
}

/// Runs llmopsctl against `socket` with no token, no `USER` and times in UTC.
pub async fn llmopsctl(socket: &Path, args: &[&str]) -> Output {
    llmopsctl_with_env(socket, args, &[]).await
}

/// Runs llmopsctl like [`llmopsctl`], with `env` set on top.
pub async fn llmopsctl_with_env(socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_llmopsctl"))
        .arg("--connect")
        .arg(format!("unix:{}", socket.display()))
        .args(args)
        .env_remove("LLMOPS_TOKEN")
        .env_remove("LLMOPS_CONNECT")
        .env_remove("USER")
        .env("TZ", "UTC")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run llmopsctl")
}

/// A successful run's stdout.
pub fn stdout_text(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A successful run's stdout, parsed as JSON.
pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_str(&stdout_text(output)).expect("stdout is JSON")
}

/// A failed run: its exit status and its stderr, which must be one line.
pub fn failure(output: &Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    (output.status.code(), stderr)
}
