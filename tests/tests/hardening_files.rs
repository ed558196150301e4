//! Files and launched processes, against the release binary: the data directory is 0700 and the databases
//! 0600 whatever the umask; launched engines get an explicit environment, lose their orphans when the leader
//! exits, have their secrets redacted from the log, and have their output kept across bytes that are not UTF-8.
use llmops_e2e::daemon::{binary, file_tail, wait_until, Daemon, StartOptions};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

/// An engine nobody answers for, launched with `script` (`/bin/sh -c`) and extra TOML lines.
fn launched(script: &str, extra: &str) -> String {
    format!(
        "[engines.launched]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n\
         launch = [\"/bin/sh\", \"-c\", {script:?}]\n{extra}"
    )
}

/// Starts `llmopsd` under umask 000 (through the shell: the tests may not call umask themselves), waits for its
/// ready line, calls `check` and stops it.
async fn with_daemon_under_umask_000(data_dir: &Path, check: impl FnOnce()) {
    let work = data_dir.parent().expect("the data dir has a parent");
    let config = work.join("llmopsd.toml");
    std::fs::write(&config, "[engines.e]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n")
        .expect("config");
    let log = std::fs::File::create(work.join("llmopsd.log")).expect("log");
    let mut child = tokio::process::Command::new("/bin/sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(binary("llmopsd").expect("llmopsd binary"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--http-listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--grpc-listen")
        .arg(format!("unix:{}", data_dir.join("llmopsd.sock").display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start llmopsd");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("llmopsd listening ") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready.ok(), Some(true), "llmopsd is not ready:\n{}", file_tail(&work.join("llmopsd.log"), 30));
    check();
    let pid = child.id().expect("running").to_string();
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let exited = tokio::time::timeout(WAIT, child.wait()).await;
    assert!(matches!(exited, Ok(Ok(status)) if status.success()), "llmopsd stops cleanly: {exited:?}");
}

fn assert_private(data_dir: &Path) {
    assert_eq!(mode(data_dir), 0o700, "the data dir {}", data_dir.display());
    let mut databases = Vec::new();
    for entry in std::fs::read_dir(data_dir).expect("read the data dir").filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("traces.db") || name.starts_with("state.db") {
            databases.push((name, mode(&entry.path())));
        }
    }
    databases.sort();
    let names: Vec<&str> = databases.iter().map(|(name, _)| name.as_str()).collect();
    for expected in ["state.db", "state.db-wal", "traces.db", "traces.db-wal"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(databases.iter().all(|(_, mode)| *mode == 0o600), "every database file is 0600: {databases:?}");
    assert_eq!(mode(&data_dir.join("llmopsd.sock")), 0o600, "the gRPC socket");
}

#[tokio::test]
async fn the_data_dir_and_databases_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Made by the daemon.
    let fresh = dir.path().join("fresh/data");
    std::fs::create_dir_all(fresh.parent().expect("parent")).expect("mkdir");
    with_daemon_under_umask_000(&fresh, || assert_private(&fresh)).await;

    // Left readable by an older version: tightened.
    let old = dir.path().join("old/data");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for name in ["traces.db", "state.db"] {
        std::fs::write(old.join(name), b"").expect("an empty database");
        std::fs::set_permissions(old.join(name), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    with_daemon_under_umask_000(&old, || assert_private(&old)).await;
}

/// Waits until `path` exists and returns its contents.
async fn wait_for_file(path: &Path, daemon: &Daemon) -> String {
    let found = wait_until(WAIT, move || async move { path.exists() }).await;
    assert!(found, "{} never appeared\n{}", path.display(), daemon.log_tail(30));
    std::fs::read_to_string(path).expect("read")
}

#[tokio::test]
async fn a_launched_engine_gets_the_allow_list_and_launch_env_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("engine.env");
    let script = format!("env > {0}.tmp && mv {0}.tmp {0}", out.display());
    let config =
        launched(&script, "launch_env = { MARK = \"from-launch-env\" }\nlaunch_inherit_env = [\"HF_TOKEN\"]\n");
    let env = [
        ("LLMOPS_TOKEN", "grpc-secret"),
        ("OPENAI_API_KEY", "sk-upstream"),
        ("HF_TOKEN", "hf-passed-on"),
        ("SOMETHING_ELSE", "not-on-the-list"),
        ("LC_ALL", "C"),
    ];
    let options = StartOptions { env: env.map(|(k, v)| (k.to_string(), v.to_string())).to_vec(), ..Default::default() };
    let daemon = Daemon::start_with(&config, dir.path(), &options).await.expect("llmopsd starts");
    let seen = wait_for_file(&out, &daemon).await;
    let names: Vec<&str> = seen.lines().filter_map(|line| line.split_once('=').map(|(name, _)| name)).collect();
    for absent in ["LLMOPS_TOKEN", "OPENAI_API_KEY", "SOMETHING_ELSE"] {
        assert!(!names.contains(&absent), "{absent} reached the engine:\n{seen}");
    }
    for present in ["MARK=from-launch-env", "HF_TOKEN=hf-passed-on", "LC_ALL=C"] {
        assert!(seen.lines().any(|line| line == present), "{present} missing:\n{seen}");
    }
    assert!(names.contains(&"PATH"), "PATH is passed on:\n{seen}");
}

/// Whether `pid` runs (an exited orphan waiting to be reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
        state.is_some_and(|s| s != "Z" && s != "X")
    })
}

#[tokio::test]
async fn what_a_launched_engine_forked_is_stopped_when_the_leader_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("worker.pid");
    // The first run leaves a worker behind; later runs (restarts) just exit.
    let script =
        format!("if [ ! -e {0} ]; then sleep 60 & echo $! > {0}.tmp && mv {0}.tmp {0}; fi; exit 0", pid_file.display());
    let mut daemon = Daemon::start(&launched(&script, ""), dir.path()).await.expect("llmopsd starts");
    let worker: u32 = wait_for_file(&pid_file, &daemon).await.trim().parse().expect("a PID");
    let stopped = wait_until(Duration::from_secs(15), || async move { !running(worker) }).await;
    assert!(stopped, "the worker (pid {worker}) outlived its leader\n{}", daemon.log_tail(30));
    daemon.terminate();
    daemon.wait_exit(WAIT).await.expect("daemon exits");
}

#[tokio::test]
async fn secrets_on_the_launch_command_line_are_not_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = "[engines.launched]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n\
                  launch = [\"/bin/sh\", \"-c\", \"exit 0\", \"sh\", \"--api-key\", \"sk-SECRET-ONE\", \
                  \"--hf-token=SECRET-TWO\", \"HF_TOKEN=SECRET-THREE\", \"--max-tokens\", \"77\"]\n";
    let daemon = Daemon::start(config, dir.path()).await.expect("llmopsd starts");
    let daemon_ref = &daemon;
    let logged = wait_until(WAIT, move || async move { daemon_ref.log_tail(1000).contains("launched engine") }).await;
    assert!(logged, "the launch is logged\n{}", daemon.log_tail(30));
    let log = daemon.log_tail(1000);
    let status = daemon.llmopsctl_async(&["status", "--json"]).await.expect("llmopsctl status");
    let shown = format!("{log}\n{}", String::from_utf8_lossy(&status.stdout));
    for secret in ["SECRET-ONE", "SECRET-TWO", "SECRET-THREE"] {
        assert!(!shown.contains(secret), "{secret} was logged or shown:\n{shown}");
    }
    let line = log.lines().find(|line| line.contains("launched engine")).expect("the launch line");
    assert!(line.contains("--api-key") && line.contains("--hf-token=***") && line.contains("HF_TOKEN=***"), "{line}");
    assert!(line.contains("77"), "what is not secret stays readable: {line}");
}

#[tokio::test]
async fn output_that_is_not_utf8_is_kept_and_huge_lines_are_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "printf 'first line\\n\\377\\376 not utf-8\\n'; head -c 100000 /dev/zero | tr '\\000' x; \
                  printf '\\nafter the long line\\nlast line\\n'; exec sleep 60";
    let mut daemon = Daemon::start(&launched(script, ""), dir.path()).await.expect("llmopsd starts");
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let output = daemon.llmopsctl_async(&["logs", "launched", "--json"]).await.expect("llmopsctl logs");
        let logs: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        lines = logs["lines"].as_array().cloned().unwrap_or_default();
        if lines.iter().any(|line| line == "last line") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts: Vec<&str> = lines.iter().filter_map(Value::as_str).collect();
    assert_eq!(
        texts.len(),
        5,
        "{:?}",
        texts.iter().map(|t| t.chars().take(60).collect::<String>()).collect::<Vec<_>>()
    );
    assert_eq!(texts[0], "first line");
    assert_eq!(texts[1], "\u{fffd}\u{fffd} not utf-8");
    assert!(texts[2].starts_with("xxxx") && texts[2].contains("more bytes"), "{}", &texts[2][..60.min(texts[2].len())]);
    assert!(texts[2].len() < 4200, "the long line is cut: {} bytes", texts[2].len());
    assert_eq!(&texts[3..], ["after the long line", "last line"]);
    daemon.terminate();
    daemon.wait_exit(WAIT).await.expect("daemon exits");
}
