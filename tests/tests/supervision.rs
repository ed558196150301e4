//! Engines the daemon launches itself: restarted after SIGKILL, backed off when they die at once, and stopped
//! (no orphans) when the daemon stops.
use llmops_e2e::daemon::{binary, wait_until, Daemon};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The launched engine's process record from `llmopsctl status --json`.
async fn process(daemon: &Daemon) -> Value {
    let output = daemon.llmopsctl_async(&["status", "--json"]).await.expect("llmopsctl status");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    status["engines"][0]["process"].clone()
}

async fn wait_for(daemon: &Daemon, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = tokio::time::timeout_at(deadline, process(daemon))
            .await
            .unwrap_or_else(|_| panic!("{what}: llmopsctl status did not answer within {WAIT:?}"));
        if check(&last) {
            return last;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {WAIT:?}; last seen {last}\n{}", daemon.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The most restarts a backoff of 0.5 s, 1 s, 2 s, ... (doubling) allows within `elapsed` of the first start:
/// the n-th restart comes no sooner than 0.5 s × (2^n − 1) after it, however fast the machine.
fn most_restarts_within(elapsed: Duration) -> u64 {
    (0..64)
        .take_while(|&n| Duration::from_millis(500_u64.saturating_mul((1_u64 << n) - 1)) <= elapsed)
        .last()
        .unwrap_or(0)
}

async fn chat_status(daemon: &Daemon) -> u16 {
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]});
    let response = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await;
    response.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// `llmopsctl ARGS`'s stdout, failing the test unless it exits 0.
async fn llmopsctl_ok(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "llmopsctl {args:?}: {:?} {stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `llmopsctl engines` and `llmopsctl logs` agree with `status` on the launched engine.
async fn check_engines_and_logs(daemon: &Daemon, pid: u64) {
    let table = llmopsctl_ok(daemon, &["engines"]).await;
    let row = table.lines().find(|line| line.starts_with("launched ")).expect("a row for the engine");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // NAME KIND HEALTH STATE PID RESTARTS ...
    assert_eq!(cells.get(3), Some(&"healthy"), "{table}");
    assert_eq!(cells.get(4), Some(&pid.to_string().as_str()), "{table}");
    assert_eq!(cells.get(5), Some(&"0"), "{table}");
    let engines: Value = serde_json::from_str(&llmopsctl_ok(daemon, &["engines", "--json"]).await).expect("JSON");
    assert_eq!(engines[0]["process"]["pid"].as_u64(), Some(pid), "{engines}");

    let logs = llmopsctl_ok(daemon, &["logs", "launched"]).await;
    assert!(logs.lines().any(|line| line.contains("fake-upstream listening")), "{logs}");
    let newest = llmopsctl_ok(daemon, &["logs", "launched", "--lines", "1", "--json"]).await;
    let newest: Value = serde_json::from_str(&newest).expect("JSON");
    assert_eq!(newest["lines"].as_array().map(Vec::len), Some(1), "{newest}");
    assert_eq!(newest["process"]["state"], "healthy", "{newest}");

    let unknown = daemon.llmopsctl_async(&["logs", "nope"]).await.expect("llmopsctl runs");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"nope\"") && stderr.contains("known engines: launched"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn backoff_bounds_the_restarts() {
    let most = |ms: u64| most_restarts_within(Duration::from_millis(ms));
    assert_eq!([most(0), most(499), most(500), most(1499), most(1500), most(3500), most(7499)], [0, 0, 1, 1, 2, 3, 3]);
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_killed_engine_is_restarted_and_stopped_with_the_daemon() {
    let port = free_port();
    let fake = binary("fake-upstream").expect("fake-upstream binary");
    let config = format!(
        "[engines.launched]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodels = [\"fake-model\"]\n\
         launch = [\"{}\", \"--listen\", \"127.0.0.1:{port}\"]\n",
        fake.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let first = wait_for(&daemon, "the launched engine becomes healthy", |p| p["state"] == "healthy").await;
    assert_eq!(chat_status(&daemon).await, 200);
    assert!(first["log_tail"].to_string().contains("fake-upstream listening"), "its output is kept: {first}");
    let pid = first["pid"].as_u64().expect("pid");
    check_engines_and_logs(&daemon, pid).await;

    // The shell's builtin kill: no procps needed.
    let killed =
        std::process::Command::new("/bin/sh").args(["-c", &format!("kill -KILL {pid}")]).status().expect("kill");
    assert!(killed.success());
    let second = wait_for(&daemon, "the engine is restarted and healthy again", |p| {
        p["state"] == "healthy" && p["restarts"] == 1 && p["pid"].as_u64() != Some(pid)
    })
    .await;
    assert!(second["last_exit"].as_str().unwrap_or_default().contains("signal: 9"), "{second}");
    assert_eq!(chat_status(&daemon).await, 200, "the restarted engine serves");

    let pid = second["pid"].as_u64().expect("pid");
    daemon.terminate();
    daemon.wait_exit(WAIT).await.expect("daemon exits");
    let gone = wait_until(Duration::from_secs(5), || async move { !alive(pid) }).await;
    assert!(gone, "the launched engine (pid {pid}) outlived the daemon");
}

#[tokio::test]
async fn an_engine_that_exits_at_once_is_retried_with_backoff() {
    let config =
        "[engines.broken]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"fake-model\"]\n\
                  launch = [\"/bin/sh\", \"-c\", \"echo cannot load weights >&2; exit 3\"]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    // Before the daemon starts, so before the engine's first start.
    let started = Instant::now();
    let daemon = Daemon::start(config, dir.path()).await.expect("llmopsd starts");
    wait_for(&daemon, "a first restart", |p| p["restarts"].as_u64() >= Some(1)).await;
    // Backoff 0.5 s, 1 s, 2 s, ...: 3 restarts take at least 3.5 s, where a hot loop would make hundreds.
    let state = wait_for(&daemon, "a third restart", |p| p["restarts"].as_u64() >= Some(3)).await;
    let elapsed = started.elapsed();
    let restarts = state["restarts"].as_u64().expect("restarts");
    let most = most_restarts_within(elapsed);
    assert!((3..=most).contains(&restarts), "restarts = {restarts} after {elapsed:?} (at most {most}): {state}");
    assert!(state["last_exit"].as_str().unwrap_or_default().contains("exit status: 3"), "{state}");
    assert!(state["log_tail"].to_string().contains("cannot load weights"), "{state}");
    assert_ne!(chat_status(&daemon).await, 200);
}
