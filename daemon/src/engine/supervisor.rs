//! Engines the daemon runs itself (`launch = [...]`): started in their own process group with an explicit
//! environment, watched until they answer, restarted with exponential backoff when they exit (so one that
//! dies at once does not loop hot), their output's tail kept for `status`, and their whole process group
//! stopped with SIGTERM, then SIGKILL, when the leader exits or the daemon stops. Their command line is only
//! ever logged or shown with its secrets as `***`.
mod command;
mod group;
mod output;

use super::OpenAiEngine;
use crate::config::OpenAiEngineConfig;
use crate::shutdown::Shutdown;
use crate::sync::MutexExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that stayed up this long earns a fresh backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Once healthy, probes are rarer.
const PROBE_HEALTHY_EVERY: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Healthy,
    Unhealthy,
    Restarting,
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProcessState {
    pub phase: Phase,
    pub restarts: u64,
    pub pid: Option<u32>,
    /// How the last run ended (exit status or spawn error); empty before the first end.
    pub last_exit: String,
}

pub struct Supervisor {
    engine: String,
    /// What it runs with: the command, its environment settings (`launch_env`, `launch_inherit_env`), its
    /// working directory.
    config: OpenAiEngineConfig,
    /// The command as it may be logged or shown (secrets as `***`).
    shown: Vec<String>,
    state: Mutex<ProcessState>,
    log: output::Tail,
}

impl Supervisor {
    pub fn new(engine: &str, config: &OpenAiEngineConfig) -> Option<Arc<Self>> {
        if config.launch.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            engine: engine.to_string(),
            config: config.clone(),
            shown: command::redact(&config.launch),
            state: Mutex::new(ProcessState {
                phase: Phase::Starting,
                restarts: 0,
                pid: None,
                last_exit: String::new(),
            }),
            log: output::Tail::default(),
        }))
    }

    /// The command line with its secrets as `***`: the only form in which it may be logged or shown.
    pub fn command(&self) -> &[String] {
        &self.shown
    }

    pub fn state(&self) -> ProcessState {
        self.state.locked().clone()
    }

    /// The last lines the process wrote (stdout and stderr interleaved), oldest first.
    pub fn log_tail(&self) -> Vec<String> {
        self.log.locked().iter().cloned().collect()
    }

    fn update(&self, change: impl FnOnce(&mut ProcessState)) {
        change(&mut self.state.locked());
    }

    /// Keeps the engine running until `stop` fires, then stops it.
    pub async fn run(self: Arc<Self>, engine: Arc<OpenAiEngine>, mut stop: Shutdown) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            self.update(|s| s.phase = Phase::Starting);
            let ended = match self.spawn() {
                Ok(child) => {
                    let started = Instant::now();
                    let ended = self.watch(child, &engine, &mut stop).await;
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = BACKOFF_FIRST;
                    }
                    ended
                }
                Err(error) => {
                    Some(format!("cannot start {:?}: {error}", self.shown.first().map_or("", String::as_str)))
                }
            };
            let Some(how) = ended else {
                self.update(|s| {
                    s.phase = Phase::Stopped;
                    s.pid = None;
                });
                return;
            };
            tracing::warn!(engine = self.engine, ended = %how, retry_in_ms = backoff.as_millis() as u64, "launched engine ended; restarting");
            self.update(|s| {
                s.phase = Phase::Restarting;
                s.pid = None;
                s.last_exit = how;
            });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait() => {
                    self.update(|s| s.phase = Phase::Stopped);
                    return;
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            self.update(|s| s.restarts += 1);
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let (program, args) = self.config.launch.split_first().ok_or(std::io::ErrorKind::InvalidInput)?;
        let mut command = Command::new(program);
        command
            .args(args)
            // Not the daemon's tokens and upstream keys: a short allow-list, then `launch_env`.
            .env_clear()
            .envs(command::environment(&self.config, std::env::vars_os()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so stopping it reaches the workers it forks (vLLM, SGLang) too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.config.launch_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(output::keep_tail(out, self.log.clone(), LOG_TAIL_LINES));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(output::keep_tail(err, self.log.clone(), LOG_TAIL_LINES));
        }
        let pid = child.id();
        tracing::info!(engine = self.engine, pid, command = ?self.shown, "launched engine");
        self.update(|s| s.pid = pid);
        Ok(child)
    }

    /// Probes the running process until it exits (Some: how) or the daemon stops (None, after stopping it).
    /// Either way its process group is stopped, so nothing it forked outlives it.
    async fn watch(&self, mut child: Child, engine: &OpenAiEngine, stop: &mut Shutdown) -> Option<String> {
        let group = child.id();
        let mut ever_healthy = false;
        loop {
            let every = if ever_healthy { PROBE_HEALTHY_EVERY } else { PROBE_EVERY };
            tokio::select! {
                exit = child.wait() => {
                    let how = match exit {
                        Ok(status) => format!("exited: {status}"),
                        Err(error) => format!("lost: {error}"),
                    };
                    // Not serving any more, while its workers (which would keep GPU memory and the port from the
                    // next run) are stopped.
                    self.update(|s| {
                        s.phase = Phase::Restarting;
                        s.pid = None;
                    });
                    group::stop(group, &mut child, STOP_GRACE, &self.engine).await;
                    return Some(how);
                }
                _ = stop.wait() => {
                    group::stop(group, &mut child, STOP_GRACE, &self.engine).await;
                    return None;
                }
                _ = tokio::time::sleep(every) => {
                    let healthy = engine.probe().await;
                    ever_healthy |= healthy;
                    let phase = match (healthy, ever_healthy) {
                        (true, _) => Phase::Healthy,
                        (false, true) => Phase::Unhealthy,
                        (false, false) => Phase::Starting,
                    };
                    self.update(|s| s.phase = phase);
                }
            }
        }
    }
}
