//! nginx as the one-hop reverse-proxy baseline: a throwaway config in a temp dir, keep-alive to the
//! upstream and no buffering, like a gateway in front of a streaming model server.
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running nginx master process and the temp dir holding its config, logs and pid file.
pub struct Nginx {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// The `nginx` executable when it is on PATH.
pub fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("nginx")).find(|candidate| candidate.is_file())
}

fn free_local_port() -> anyhow::Result<u16> {
    // Bind-and-release: another process could take the port in between, which only fails the start.
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn config(dir: &Path, listen_port: u16, upstream: SocketAddr, workers: usize) -> String {
    let dir = dir.display();
    format!(
        r#"daemon off;
worker_processes {workers};
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream up {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

impl Nginx {
    /// Starts `nginx` with `workers` worker processes proxying to `upstream`; returns once its port accepts
    /// connections.
    pub async fn start(nginx: &Path, upstream: SocketAddr, workers: usize) -> anyhow::Result<Nginx> {
        let dir = tempfile::tempdir().context("cannot create a temp dir for nginx")?;
        // Workers may run as an unprivileged user when started by root: let them into the temp dir.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let port = free_local_port()?;
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config(dir.path(), port, upstream, workers.max(1)))?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot start {}", nginx.display()))?;
        let mut started = Nginx { base_url: format!("http://127.0.0.1:{port}/v1"), child, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(started);
            }
            if let Some(status) = started.child.try_wait()? {
                bail!("nginx exited ({status}) at start:\n{}", started.logs());
            }
            if Instant::now() >= deadline {
                bail!("nginx did not listen on port {port} within {START_TIMEOUT:?}:\n{}", started.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                format!("--- {name} ---\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn signal_terminate(&self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM to the master stops its workers too; SIGKILL would leave them running.
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }

    /// Stops nginx: SIGTERM, then SIGKILL if it is still there after a few seconds.
    pub async fn stop(mut self) {
        self.signal_terminate();
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.signal_terminate();
    }
}
