//! Runs the real `llmopsd` binary for end-to-end tests: start it on free ports with a given config, learn
//! its addresses from its ready line, talk to it over HTTP, gRPC and `llmopsctl`, and stop it.
use std::collections::HashSet;
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

/// Finds a workspace binary: in `$LLMOPS_BIN_DIR` if set (trusted as it is), else next to the running executable
/// or one directory up (test executables live in `target/<profile>/deps/`, binaries in `target/<profile>/`).
/// One found in `target/` is refused when it is older than a source file it is built from (see
/// [`stale_source`]): the tests must not pass or fail on an old build.
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
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let workspace = workspace.canonicalize().unwrap_or(workspace);
        let crates: Vec<PathBuf> = built_from(name).iter().map(|dir| workspace.join(dir)).collect();
        if let Some(source) = stale_source(found, &crates)? {
            bail!(
                "{} is stale, rebuild with cargo build --release --workspace --bins ({} changed after it was \
                 built; set LLMOPS_BIN_DIR to run binaries from elsewhere as they are)",
                found.display(),
                source.display()
            );
        }
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "binary `{name}` not found (looked at {}); build it first with `cargo build --release --workspace --bins` \
         (the tests run release binaries), or set LLMOPS_BIN_DIR",
        looked.join(", ")
    )
}

/// The workspace crates (directories) a binary is built from. Others (`fake-upstream`) are built by cargo
/// together with the tests that use them, so they cannot be stale.
fn built_from(name: &str) -> &'static [&'static str] {
    match name {
        "llmopsd" => &["daemon", "proto"],
        "llmops-top" | "llmopsctl" => &["tui", "proto"],
        _ => &[],
    }
}

/// The newest source file of `crates` that changed after `binary` was built (modified later than it), if any.
///
/// A crate's sources are the files under its `src/`, its `build.rs` and, for `proto`, its `.proto` files. Where
/// cargo left the binary's dep-info file (`<binary>.d`, beside it), only the sources listed there count:
/// files only tests compile (`#[cfg(test)]` modules in their own file, fixtures) never make cargo relink the
/// binary, so counting them would call a binary stale that no rebuild can refresh. `Cargo.toml` is not
/// counted for the same reason: cargo does not rebuild for an edit that changes nothing it builds (a
/// comment), and an edit that does change the build changes the binary too.
fn stale_source(binary: &Path, crates: &[PathBuf]) -> anyhow::Result<Option<PathBuf>> {
    let built = modified(binary)?.ok_or_else(|| anyhow!("cannot read {}'s modification time", binary.display()))?;
    let mut files = Vec::new();
    for dir in crates {
        for part in ["src", "build.rs", "proto"] {
            collect_files(&dir.join(part), &mut files);
        }
    }
    let listed = binary.file_name().and_then(|name| {
        let dep_info = binary.with_file_name(format!("{}.d", name.to_string_lossy()));
        std::fs::read_to_string(dep_info).ok().map(|text| dep_info_paths(&text))
    });
    if let Some(listed) = listed {
        let listed: HashSet<PathBuf> = listed.iter().filter_map(|path| path.canonicalize().ok()).collect();
        files.retain(|file| file.canonicalize().is_ok_and(|file| listed.contains(&file)));
    }
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for file in files {
        if let Ok(Some(changed)) = modified(&file) {
            if changed > built && newest.as_ref().is_none_or(|(time, _)| changed > *time) {
                newest = Some((changed, file));
            }
        }
    }
    Ok(newest.map(|(_, file)| file))
}

fn modified(path: &Path) -> anyhow::Result<Option<std::time::SystemTime>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.modified().ok()),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Every file under `path` (or `path` itself, if it is a file); nothing if it does not exist.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            collect_files(&entry.path(), out);
        }
    }
}

/// The paths a Makefile-style dep-info file names (`target: dep dep ...`; a space inside a path is `\ `).
fn dep_info_paths(text: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else { continue };
        let mut current = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => current.push(chars.next().unwrap_or(' ')),
                ' ' => paths.extend((!current.is_empty()).then(|| PathBuf::from(std::mem::take(&mut current)))),
                _ => current.push(c),
            }
        }
        paths.extend((!current.is_empty()).then(|| PathBuf::from(current)));
    }
    paths
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
    /// Another `llmopsd` executable (default: [`binary`]`("llmopsd")`), e.g. an older build to compare.
    pub program: Option<PathBuf>,
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
        let program = match &options.program {
            Some(program) => program.clone(),
            None => binary("llmopsd")?,
        };
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

    #[test]
    fn a_binary_older_than_a_source_it_is_built_from_is_stale() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        let file = |relative: &str, secs: u64| {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, relative).expect("write");
            touch(&path, at(secs));
            path
        };
        let daemon = dir.path().join("daemon");
        let (lib, main) = (file("daemon/src/lib.rs", 0), file("daemon/src/engine/main.rs", 0));
        let (build, manifest) = (file("daemon/build.rs", 0), file("daemon/Cargo.toml", 0));
        let proto = file("proto/proto/v1/a.proto", 0);
        let bin = file("target/release/llmopsd", 10);
        let crates = [daemon.clone(), dir.path().join("proto")];
        let stale = |crates: &[PathBuf]| stale_source(&bin, crates).expect("readable");

        assert_eq!(stale(&crates), None, "built after every source");
        touch(&lib, at(10));
        assert_eq!(stale(&crates), None, "a source as old as the binary");
        touch(&lib, at(20));
        touch(&main, at(30));
        assert_eq!(stale(&crates), Some(main.clone()), "the newest changed source is named");
        touch(&main, at(0));
        assert_eq!(stale(&crates), Some(lib.clone()));
        touch(&lib, at(0));
        for changed in [&build, &proto] {
            touch(changed, at(20));
            assert_eq!(stale(&crates), Some(changed.clone()), "{}", changed.display());
            touch(changed, at(0));
        }
        assert_eq!(stale(&crates[..1]), None, "only the crates it is built from count");
        touch(&proto, at(20));
        assert_eq!(stale(&crates[..1]), None, "only the crates it is built from count");
        touch(&manifest, at(20));
        let test_only = file("daemon/src/engine/tests.rs", 20);
        assert_eq!(stale(&crates[..1]), Some(test_only.clone()), "without dep-info every file under src/");

        // With cargo's dep-info beside the binary, only what the build read counts: not a test-only module,
        // nor Cargo.toml (cargo rebuilds nothing for a comment there).
        let dotted = daemon.join("src/engine/../lib.rs");
        let dep_info = format!(
            "{}: {} {} {}\n\n{}:\n",
            bin.display(),
            dotted.display(),
            main.display(),
            build.display(),
            main.display()
        );
        std::fs::write(bin.with_file_name("llmopsd.d"), dep_info).expect("write dep-info");
        assert_eq!(stale(&crates[..1]), None, "{} and Cargo.toml are not built into it", test_only.display());
        touch(&main, at(40));
        assert_eq!(stale(&crates[..1]), Some(main.clone()));
        touch(&main, at(0));
        touch(&lib, at(50));
        assert_eq!(stale(&crates[..1]), Some(lib.clone()), "a listed path with `..` in it");

        assert!(stale_source(&dir.path().join("missing"), &crates).is_err(), "no binary: an error, not fresh");
        assert_eq!(built_from("llmopsctl"), ["tui", "proto"]);
        assert!(built_from("fake-upstream").is_empty(), "built with the tests that run it");
    }

    fn touch(path: &Path, time: std::time::SystemTime) {
        let file = std::fs::File::options().write(true).open(path).expect("open");
        file.set_modified(time).expect("set mtime");
    }

    #[test]
    fn dep_info_names_every_path() {
        let text = "/t/bin: /w/a.rs /w/with\\ space.rs /w/b.rs\n\n/w/a.rs:\n/w/b.rs:\n";
        let paths = dep_info_paths(text);
        let expected = ["/w/a.rs", "/w/with space.rs", "/w/b.rs"].map(PathBuf::from);
        assert_eq!(paths, expected);
    }

    #[tokio::test]
    async fn wait_until_reports_success_and_timeout() {
        assert!(wait_until(Duration::from_secs(1), || async { true }).await);
        let started = std::time::Instant::now();
        assert!(!wait_until(Duration::from_millis(60), || async { false }).await);
        assert!(started.elapsed() >= Duration::from_millis(60));
    }
}
