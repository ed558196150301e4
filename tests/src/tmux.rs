//! A terminal for end-to-end tests of `llmops-top`: a private tmux server (its own socket in a temp dir, so
//! tests never touch the user's sessions) running one command in a fixed-size window, driven with
//! `send-keys` and read with `capture-pane`.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Whether tmux is installed (`scripts/setup.sh` installs it).
    pub fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
    }

    /// Starts `shell_command` (run by `sh -c`) in a `width`x`height` window with TERM=xterm-256color. End the
    /// command with a `sleep` to read what it printed last: tmux may close a finished pane before showing it.
    pub fn start(shell_command: &str, width: u16, height: u16) -> anyhow::Result<Tmux> {
        let dir = tempfile::tempdir()?;
        let tmux = Tmux { socket: dir.path().join("tmux.sock"), _dir: dir };
        let size = [width.to_string(), height.to_string()];
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &size[0],
            "-y",
            &size[1],
            "-e",
            "TERM=xterm-256color",
            shell_command,
        ])?;
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .with_context(|| format!("cannot run tmux {}", args.join(" ")))?;
        if !output.status.success() {
            bail!("tmux {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        }
        Ok(output)
    }

    /// Sends keys by tmux name ("Enter", "Escape", "C-c") or literal text.
    pub fn send_keys(&self, keys: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args).map(drop)
    }

    /// The visible screen as text.
    pub fn capture(&self) -> anyhow::Result<String> {
        let output = self.run(&["capture-pane", "-p", "-t", "top"])?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A tmux format value of the pane, e.g. `#{alternate_on}` or `#{pane_dead}`.
    pub fn pane_format(&self, format: &str) -> anyhow::Result<String> {
        let output = self.run(&["display-message", "-p", "-t", "top", format])?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Polls the screen until `condition` holds; the error carries the last screen.
    pub fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture()?;
            if condition(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; the screen was:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").output();
    }
}
