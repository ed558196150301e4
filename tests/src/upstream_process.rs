//! The fake upstream as a process of its own (the `fake-upstream` binary), for benchmarks that must not
//! share a runtime or a CPU budget with their load generator.
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::daemon::binary;

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `fake-upstream`; killed when dropped.
pub struct UpstreamProcess {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    pub addr: SocketAddr,
    child: Child,
}

impl UpstreamProcess {
    /// Starts `fake-upstream ARGS` on a free loopback port and waits for its listening line.
    pub async fn start(args: &[&str]) -> anyhow::Result<UpstreamProcess> {
        let program = binary("fake-upstream")?;
        let mut child = Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("fake-upstream stdout was not captured"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| anyhow!("fake-upstream printed nothing within {READY_TIMEOUT:?}"))??
            .ok_or_else(|| anyhow!("fake-upstream exited before it was listening"))?;
        let Some(base_url) = line.trim().strip_prefix("fake-upstream listening on ") else {
            bail!("unexpected first line from fake-upstream: {line:?}");
        };
        let addr: SocketAddr = base_url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/v1"))
            .ok_or_else(|| anyhow!("cannot read an address from {base_url:?}"))?
            .parse()
            .with_context(|| format!("cannot read an address from {base_url:?}"))?;
        // Nothing more is printed; the pipe is dropped with the reader.
        Ok(UpstreamProcess { base_url: base_url.to_owned(), addr, child })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
