//! The quick start, as a new user runs it: `scripts/run.sh` with no config (set-up, the release build, the
//! default model, the daemon), on a free port and a fresh data directory. It must answer one chat completion
//! through the embedded engine with content, show the trace through `llmopsctl traces --json`, and stop cleanly
//! on SIGTERM. A daemon that crashes on its first request (llama.cpp's AMX kernels on some Sapphire Rapids
//! hosts, ggml-org/llama.cpp#20824) fails it.
use llmops_e2e::daemon::{binary, file_tail};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Set-up and the (no-op) release build come first; on a cold machine the build check alone takes a while.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// This process's environment less what cargo and nextest add for tests (`CARGO_MANIFEST_DIR`, `OUT_DIR`,
/// `LD_LIBRARY_PATH`, ...): what a user's shell has. Some build scripts (ring's) rerun when those change, so
/// run.sh's `cargo build` would otherwise rebuild the binaries that other tests are running.
fn user_environment() -> Vec<(String, String)> {
    let added_for_tests = |name: &str| {
        (name.starts_with("CARGO") && name != "CARGO_HOME")
            || name.starts_with("NEXTEST")
            || ["OUT_DIR", "LD_LIBRARY_PATH", "RUST_RECURSION_COUNT", "FAKE_NVML_LIB"].contains(&name)
    };
    std::env::vars().filter(|(name, _)| !added_for_tests(name)).collect()
}

/// Sends SIGTERM to `pid` with `kill` (unsafe code is denied here).
fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// Kills run.sh's whole process group (the script and the daemon it started) if the test ends early.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0)]).status();
    }
}

/// Reads run.sh's output until its "try:" line; returns the HTTP address the daemon announced.
async fn wait_for_try_line(child: &mut Child, log: &Path) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut http = None;
    let mut seen = Vec::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("llmopsd listening ") {
                http = rest.split_whitespace().find_map(|f| f.strip_prefix("http=")).map(str::to_string);
            }
            let done = line.trim_start().starts_with("try:");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    };
    let found = tokio::time::timeout(READY_TIMEOUT, read).await.unwrap_or(false);
    assert!(found, "run.sh printed no \"try:\" line:\n{}\nstderr:\n{}", seen.join("\n"), file_tail(log, 40));
    // Keep draining its stdout so that the script never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    http.unwrap_or_else(|| panic!("no \"llmopsd listening\" line before \"try:\":\n{}", seen.join("\n")))
}

#[tokio::test]
async fn the_quick_start_answers_a_chat_completion_records_its_trace_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("run.log");
    let stderr = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new("bash")
        .arg(repo_root().join("scripts/run.sh"))
        .env_clear()
        .envs(user_environment())
        .env("LLMOPS_HTTP_LISTEN", "127.0.0.1:0")
        .env("LLMOPS_DATA_DIR", data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("run.sh starts");
    let pid = child.id().expect("run.sh has a pid");
    let _group = Group(pid);

    let started = std::time::Instant::now();
    let http = wait_for_try_line(&mut child, &log).await;
    eprintln!("quick start ready after {:?}", started.elapsed());
    let ready: Value = reqwest::get(format!("http://{http}/readyz")).await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");

    // The README's first request.
    let response = reqwest::Client::new()
        .post(format!("http://{http}/v1/chat/completions"))
        .json(&json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "What is the capital of Germany?"}],
        }))
        .timeout(ANSWER_TIMEOUT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the first request failed (did llmopsd crash?): {e}\n{}", file_tail(&log, 40)));
    assert_eq!(response.status(), 200, "{}", file_tail(&log, 40));
    let trace_id = response.headers()["x-request-id"].to_str().expect("ascii").to_string();
    let body: Value = response.json().await.expect("json body");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(!content.trim().is_empty(), "no content: {body}");

    // The README's traces command (the daemon writes traces in batches: poll until it is there).
    let traces = llmops_e2e::daemon::wait_until(ANSWER_TIMEOUT, || async {
        let output = tokio::process::Command::new(binary("llmopsctl").expect("llmopsctl"))
            .args(["traces", "--json"])
            .env("LLMOPS_DATA_DIR", data.path())
            .output()
            .await
            .expect("llmopsctl runs");
        String::from_utf8_lossy(&output.stdout).contains(&trace_id)
    })
    .await;
    assert!(traces, "trace {trace_id} not listed by `llmopsctl traces --json`\n{}", file_tail(&log, 40));

    eprintln!("answered and traced after {:?}", started.elapsed());
    terminate(pid);
    let status = tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("run.sh still running {STOP_TIMEOUT:?} after SIGTERM\n{}", file_tail(&log, 40)))
        .expect("wait");
    assert!(status.success(), "run.sh exited with {status} after SIGTERM\n{}", file_tail(&log, 40));
    eprintln!("stopped after {:?}", started.elapsed());
    // The daemon itself is gone too: nothing listens on its port any more.
    assert!(reqwest::get(format!("http://{http}/healthz")).await.is_err(), "llmopsd still answers after SIGTERM");
}
