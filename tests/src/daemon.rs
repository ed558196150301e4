//! Runs the real `llmopsd` binary for end-to-end tests: start it on free ports with a given config, learn
//! its addresses from its ready line, talk to it over HTTP, gRPC and `llmopsctl`, and stop it.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long the daemon may take to print its ready line (a cold debug build can be slow).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of the daemon's log an error message quotes.
const LOG_TAIL_LINES: usize = 40;

/// A running `llmopsd`; killed when dropped.
pub struct Daemon {
    /// `http://127.0.0.1:PORT`, without the `/v1`.
    pub http_base: String,
    /// The Unix socket (for a TCP listener, `HOST:PORT` as a path; see `grpc_listen`).
    pub grpc_socket: PathBuf,
    /// The gRPC address as the daemon announced it: `unix:/path` or `HOST:PORT`.
    pub grpc_listen: String,
    pub data_dir: PathBuf,
    /// The daemon's stderr (its logs).
    pub log_path: PathBuf,
    child: Child,
}

/// Finds a workspace binary: in `$LLMOPS_BIN_DIR` if set, else next to the running executable or one
/// directory up (test executables live in `target/<profile>/deps/`, binaries in `target/<profile>/`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LLMOPS_BIN_DIR").filter(|d| !d.is_empty()) {
        let path = PathBuf::from(dir).join(name);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "{} does not exist (LLMOPS_BIN_DIR is set); build it with `cargo build --release --workspace --bins`",
            path.display()
        );
    }
    let exe = std::env::current_exe().context("cannot tell where the running executable is")?;
    let exe_dir = exe.parent().ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?;
    let candidates: Vec<PathBuf> =
        std::iter::successors(Some(exe_dir), |dir| dir.parent()).take(2).map(|dir| dir.join(name)).collect();
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "binary `{name}` not found (looked at {}); build it first with `cargo build --release --workspace --bins` \
         (the tests run release binaries), or set LLMOPS_BIN_DIR",
        looked.join(", ")
    )
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub fn file_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Polls `condition` every 20 ms until it holds (true) or `timeout` passes (false).
pub async fn wait_until<F, Fut>(timeout: Duration, condition: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How to start the daemon beyond its config file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `--grpc-listen` (default: `unix:<data_dir>/llmopsd.sock`).
    pub grpc_listen: Option<String>,
    /// Extra environment variables (e.g. the gRPC token).
    pub env: Vec<(String, String)>,
}

/// Addresses announced by `llmopsd listening http=127.0.0.1:PORT grpc=unix:/path/llmopsd.sock`.
fn parse_ready_line(line: &str) -> Option<(String, PathBuf)> {
    let rest = line.trim().strip_prefix("llmopsd listening ")?;
    let mut http = None;
    let mut grpc = None;
    for field in rest.split_whitespace() {
        if let Some(addr) = field.strip_prefix("http=") {
            http = Some(format!("http://{addr}"));
        } else if let Some(socket) = field.strip_prefix("grpc=") {
            grpc = Some(PathBuf::from(socket.strip_prefix("unix:").unwrap_or(socket)));
        }
    }
    Some((http?, grpc?))
}

impl Daemon {
    /// Writes `config_toml` to `data_dir/llmopsd.toml` and starts `llmopsd` on a free HTTP port and a Unix
    /// gRPC socket in `data_dir`; returns once the daemon says it is listening.
    pub async fn start(config_toml: &str, data_dir: &Path) -> anyhow::Result<Daemon> {
        Self::start_with(config_toml, data_dir, &StartOptions::default()).await
    }

    /// [`Daemon::start`] with another gRPC listener or extra environment.
    pub async fn start_with(config_toml: &str, data_dir: &Path, options: &StartOptions) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let config_path = data_dir.join("llmopsd.toml");
        std::fs::write(&config_path, config_toml).with_context(|| format!("cannot write {}", config_path.display()))?;
        let log_path = data_dir.join("llmopsd.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let socket = data_dir.join("llmopsd.sock");
        let program = binary("llmopsd")?;
        let mut child = Command::new(&program)
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--grpc-listen")
            .arg(options.grpc_listen.clone().unwrap_or_else(|| format!("unix:{}", socket.display())))
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("llmopsd stdout was not captured"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut before_ready = Vec::new();
        let waited = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addresses) = parse_ready_line(&line) {
                    return Ok(Some(addresses));
                }
                before_ready.push(line);
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let failure = match waited {
            Ok(Ok(Some((http_base, grpc_socket)))) => {
                tokio::spawn(drain(lines));
                let grpc_listen = if grpc_socket.is_absolute() {
                    format!("unix:{}", grpc_socket.display())
                } else {
                    grpc_socket.display().to_string()
                };
                let data_dir = data_dir.to_path_buf();
                return Ok(Daemon { http_base, grpc_socket, grpc_listen, data_dir, log_path, child });
            }
            Ok(Ok(None)) => match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(Ok(status)) => format!("llmopsd exited ({status}) before it was ready"),
                _ => "llmopsd closed its stdout before it was ready".to_owned(),
            },
            Ok(Err(e)) => format!("cannot read llmopsd's stdout: {e}"),
            Err(_) => format!("llmopsd printed no ready line within {READY_TIMEOUT:?}"),
        };
        let _ = child.start_kill();
        bail!(
            "{failure}\n--- stdout ---\n{}\n--- {} (last {LOG_TAIL_LINES} lines) ---\n{}",
            before_ready.join("\n"),
            log_path.display(),
            file_tail(&log_path, LOG_TAIL_LINES)
        )
    }

    /// `http_base` + `path`, e.g. `url("/v1/models")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The end of the daemon's log, to put in assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path, lines)
    }

    /// Asks the daemon to shut down gracefully (SIGTERM, sent with `kill` as unsafe code is denied here).
    /// A failure is printed, and shows up as a timeout in [`Daemon::wait_exit`].
    pub fn terminate(&mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        match std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status() {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("kill -TERM {pid} failed: {status}"),
            Err(e) => eprintln!("cannot run kill -TERM {pid}: {e}"),
        }
    }

    /// Waits for the daemon to exit on its own, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("llmopsd still running after {timeout:?}; log tail:\n{}", self.log_tail(LOG_TAIL_LINES)),
        }
    }

    /// A gRPC channel over the daemon's Unix socket.
    pub async fn grpc_channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        self.grpc_channel_with(|endpoint| endpoint).await
    }

    /// [`Daemon::grpc_channel`] with endpoint settings of the test's own (e.g. a small HTTP/2 window).
    pub async fn grpc_channel_with(
        &self,
        configure: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
    ) -> anyhow::Result<tonic::transport::Channel> {
        let socket = self.grpc_socket.clone();
        // The URI is required by tonic but unused: the connector below always dials the socket.
        let channel = configure(tonic::transport::Endpoint::try_from("http://[::]:50051")?)
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .with_context(|| format!("cannot connect to gRPC socket {}", self.grpc_socket.display()))?;
        Ok(channel)
    }

    /// The trace with this id, once the daemon has written it (traces are written off the request path, and
    /// GPU requests only after the next telemetry sample).
    pub async fn wait_for_trace(&self, id: &str) -> anyhow::Result<llmops_proto::v1::Trace> {
        use llmops_proto::v1::{trace_service_client::TraceServiceClient, GetTraceRequest};
        let mut client = TraceServiceClient::new(self.grpc_channel().await?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match client.get_trace(GetTraceRequest { id: id.to_string() }).await {
                Ok(trace) => return Ok(trace.into_inner()),
                Err(status) if status.code() == tonic::Code::NotFound && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => bail!("trace {id} not found: {status}\n{}", self.log_tail(30)),
            }
        }
    }

    fn llmopsctl_command(&self, args: &[&str]) -> anyhow::Result<std::process::Command> {
        let mut command = std::process::Command::new(binary("llmopsctl")?);
        command.arg("--connect").arg(format!("unix:{}", self.grpc_socket.display())).args(args);
        command.stdin(Stdio::null());
        Ok(command)
    }

    /// Runs `llmopsctl --connect unix:<socket> <args>` and returns its output (exit status unchecked).
    pub fn llmopsctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut command = self.llmopsctl_command(args)?;
        command.output().with_context(|| format!("cannot run llmopsctl {}", args.join(" ")))
    }

    /// [`Daemon::llmopsctl`] without blocking the async runtime.
    pub async fn llmopsctl_async(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut command = Command::from(self.llmopsctl_command(args)?);
        command.kill_on_drop(true);
        command.output().await.with_context(|| format!("cannot run llmopsctl {}", args.join(" ")))
    }
}

/// Reads and discards the daemon's stdout so the pipe never fills and blocks it.
async fn drain(mut lines: tokio::io::Lines<BufReader<ChildStdout>>) {
    while let Ok(Some(_)) = lines.next_line().await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_addresses() {
        let parsed = parse_ready_line("llmopsd listening http=127.0.0.1:4321 grpc=unix:/tmp/x/llmopsd.sock\n");
        assert_eq!(parsed, Some(("http://127.0.0.1:4321".to_owned(), PathBuf::from("/tmp/x/llmopsd.sock"))));
        assert_eq!(parse_ready_line("something else"), None);
        assert_eq!(parse_ready_line("llmopsd listening http=127.0.0.1:1"), None);
    }

    #[tokio::test]
    async fn wait_until_reports_success_and_timeout() {
        assert!(wait_until(Duration::from_secs(1), || async { true }).await);
        let started = std::time::Instant::now();
        assert!(!wait_until(Duration::from_millis(60), || async { false }).await);
        assert!(started.elapsed() >= Duration::from_millis(60));
    }
}
