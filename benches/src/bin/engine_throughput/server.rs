//! The servers under test as child processes: each started on a free loopback port, polled until it
//! answers a chat completion, and killed when stopped or dropped (so also on errors and Ctrl-C).
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use llmops_e2e::daemon::file_tail;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::stream::{self, Prompt};

/// Loading a small GGUF takes seconds; a cold page cache and a busy machine get some slack.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Each readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;
/// Context of each sequence, for both servers.
pub const CONTEXT_PER_SEQUENCE: usize = 2048;

pub struct Server {
    /// "llama-server" or "llmopsd".
    pub label: &'static str,
    /// `http://127.0.0.1:PORT`, without `/v1`.
    pub base_url: String,
    /// The first id of `GET /v1/models`.
    pub model: String,
    log_path: PathBuf,
    child: Child,
}

impl Server {
    /// `llama-server` with `parallel` slots of [`CONTEXT_PER_SEQUENCE`] tokens each.
    pub async fn llama_server(
        program: &Path,
        model: &Path,
        threads: usize,
        parallel: usize,
        work_dir: &Path,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut args: Vec<String> = vec!["-m".into(), model.display().to_string()];
        for (flag, value) in [("-t", threads), ("-np", parallel), ("-c", parallel * CONTEXT_PER_SEQUENCE)] {
            args.extend([flag.to_owned(), value.to_string()]);
        }
        args.extend(["--host", "127.0.0.1", "--port", &port.to_string(), "--metrics"].map(String::from));
        let log = work_dir.join(format!("llama-server-np{parallel}.log"));
        Self::spawn("llama-server", program, &args, port, log).await
    }

    /// `llmopsd` serving `model` with its embedded engine.
    pub async fn llmopsd(
        program: &Path,
        model: &Path,
        threads: usize,
        parallel: usize,
        work_dir: &Path,
    ) -> anyhow::Result<Server> {
        let data_dir = work_dir.join("llmopsd");
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        // A JSON string is a valid TOML basic string.
        let model_toml = Value::String(model.display().to_string()).to_string();
        let config = format!(
            "[engines.local]\nkind = \"embedded\"\nmodel = {model_toml}\nthreads = {threads}\n\
             parallel = {parallel}\ncontext_size = {CONTEXT_PER_SEQUENCE}\n"
        );
        let config_path = data_dir.join("llmopsd.toml");
        std::fs::write(&config_path, config).with_context(|| format!("cannot write {}", config_path.display()))?;
        let port = free_port()?;
        let args = vec![
            "--config".to_owned(),
            config_path.display().to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--http-listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--grpc-listen".to_owned(),
            format!("unix:{}", data_dir.join("llmopsd.sock").display()),
        ];
        Self::spawn("llmopsd", program, &args, port, work_dir.join("llmopsd.log")).await
    }

    async fn spawn(
        label: &'static str,
        program: &Path,
        args: &[String],
        port: u16,
        log_path: PathBuf,
    ) -> anyhow::Result<Server> {
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log.try_clone().context("cannot share the log file")?;
        eprintln!("starting {} {}", program.display(), args.join(" "));
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let base_url = format!("http://127.0.0.1:{port}");
        let mut server = Server { label, base_url, model: String::new(), log_path, child };
        match server.wait_ready().await {
            Ok(model) => {
                server.model = model;
                Ok(server)
            }
            // `server` is dropped here, which kills the process.
            Err(e) => bail!("{label} is not ready: {e:#}\n{}", server.log_tail()),
        }
    }

    /// Waits until the server lists a model and completes one short chat request (which also warms it up).
    async fn wait_ready(&mut self) -> anyhow::Result<String> {
        let client = stream::client(PROBE_TIMEOUT)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("cannot poll the child process")? {
                bail!("it exited ({status})");
            }
            match probe(&client, &self.base_url).await {
                Ok(model) => return Ok(model),
                Err(e) => last_error = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("no successful chat completion within {READY_TIMEOUT:?} (last error: {last_error})")
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base_url)
    }

    pub fn log_tail(&self) -> String {
        format!(
            "--- {} (last {LOG_TAIL_LINES} lines) ---\n{}",
            self.log_path.display(),
            file_tail(&self.log_path, LOG_TAIL_LINES)
        )
    }

    /// Kills the process and waits for it, so it holds no CPU, memory or port when the next one starts.
    pub async fn stop(mut self) {
        match tokio::time::timeout(STOP_TIMEOUT, self.child.kill()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot kill {}: {e}", self.label),
            Err(_) => eprintln!("{} did not exit within {STOP_TIMEOUT:?} of SIGKILL", self.label),
        }
    }
}

async fn probe(client: &reqwest::Client, base_url: &str) -> anyhow::Result<String> {
    let response = client.get(format!("{base_url}/v1/models")).send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET /v1/models: HTTP {status}");
    }
    let models: Value = response.json().await.context("GET /v1/models: not JSON")?;
    let model =
        models.pointer("/data/0/id").and_then(Value::as_str).context("GET /v1/models lists no model")?.to_owned();
    let prompt = Prompt { system: "You are a helpful assistant.".into(), user: "Say hello.".into() };
    let body = stream::request_body(&model, &prompt, 4);
    stream::run(client, &format!("{base_url}/v1/chat/completions"), &body, None).await.context("warm-up request")?;
    Ok(model)
}

/// A port that was free a moment ago (the server binds it right after; a clash fails the start loudly).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr().context("cannot read the free port")?.port())
}

/// `PROGRAM --version`, first non-empty line of its output, bounded in time.
pub async fn version(program: &Path) -> String {
    let output = Command::new(program).arg("--version").stdin(Stdio::null()).kill_on_drop(true).output();
    match tokio::time::timeout(Duration::from_secs(15), output).await {
        Ok(Ok(output)) => {
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            lines
                .iter()
                .find(|l| l.starts_with("version"))
                .or(lines.first())
                .map_or("(no output)".into(), |l| l.to_string())
        }
        Ok(Err(e)) => format!("(cannot run: {e})"),
        Err(_) => "(--version timed out)".into(),
    }
}
