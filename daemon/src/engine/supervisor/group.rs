//! A launched engine runs in a process group of its own (its PID is the group's id), so the workers it forks
//! (vLLM, SGLang) are reached through the group. Whenever a run ends, because the daemon stops it or because
//! the leader exits on its own, the whole group is stopped: SIGTERM, then SIGKILL to what is left after the
//! grace. No orphan keeps GPU memory or the port when the engine is restarted.
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use std::time::{Duration, Instant};
use tokio::process::Child;

/// How often the group is looked at while it stops.
const POLL: Duration = Duration::from_millis(20);

/// Stops the group that `child` leads (`group`: its PID, taken while it ran) and reaps the leader: SIGTERM,
/// then, once `grace` has passed with the leader or any other live member left, SIGKILL. True when SIGKILL
/// was needed.
pub async fn stop(group: Option<u32>, child: &mut Child, grace: Duration, engine: &str) -> bool {
    let Some(group) = group.and_then(|pid| i32::try_from(pid).ok()).and_then(Pid::from_raw) else {
        let _ = child.wait().await;
        return false;
    };
    match kill_process_group(group, Signal::TERM) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(error) => tracing::warn!(engine, %error, "cannot signal the launched engine's process group"),
    }
    let deadline = Instant::now() + grace;
    loop {
        let leader_reaped = !matches!(child.try_wait(), Ok(None));
        if leader_reaped && !has_live_members(group) {
            return false;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::warn!(
        engine,
        grace_secs = grace.as_secs_f64(),
        "launched engine's processes ignored SIGTERM; killing them"
    );
    let _ = kill_process_group(group, Signal::KILL);
    let _ = child.wait().await;
    true
}

/// Whether a process of `group` still runs. Zombies do not count: an orphan that has exited waits for PID 1
/// to reap it, which some containers' PID 1 never does.
fn has_live_members(group: Pid) -> bool {
    if test_kill_process_group(group).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    let group = group.as_raw_nonzero().get();
    entries.filter_map(Result::ok).any(|entry| {
        let is_pid = entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        is_pid && std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| live_in_group(&stat, group))
    })
}

/// From `/proc/PID/stat` ("pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses): whether
/// the process is in `group` and not a zombie.
fn live_in_group(stat: &str, group: i32) -> bool {
    let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return false };
    let mut fields = after_comm.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
    pgrp == Some(group) && !matches!(state, "Z" | "X" | "x")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// Whether `pid` runs (gone, or a zombie, is not running).
    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
            state.is_some_and(|s| s != "Z" && s != "X")
        })
    }

    /// Starts `script` as a group leader; returns it, its PID and the first line it prints (a child's PID).
    async fn leader(script: &str) -> (Child, Option<u32>, i32) {
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("sh");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let line = BufReader::new(stdout).lines().next_line().await.expect("read").expect("a line");
        (child, pid, line.trim().parse().expect("a PID"))
    }

    #[tokio::test]
    async fn when_the_leader_exits_the_rest_of_its_group_is_stopped() {
        let (mut child, group, worker) = leader("sleep 30 & echo $!; exit 0").await;
        assert!(child.wait().await.expect("wait").success());
        assert!(running(worker), "the worker outlives its leader until the group is stopped");
        assert!(!stop(group, &mut child, Duration::from_secs(10), "t").await, "SIGTERM was enough");
        assert!(!running(worker), "the worker was left running");
    }

    #[tokio::test]
    async fn a_member_that_ignores_sigterm_is_killed_after_the_grace() {
        // An ignored signal stays ignored in the children the shell starts.
        let (mut child, group, worker) = leader("trap '' TERM; sleep 30 & echo $!; wait").await;
        assert!(stop(group, &mut child, Duration::from_millis(300), "t").await, "SIGKILL was needed");
        assert!(child.try_wait().expect("try_wait").is_some(), "the leader is reaped");
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(worker) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        assert!(!running(worker), "the worker survived SIGKILL");
    }

    #[test]
    fn stat_lines_are_read_past_odd_names() {
        assert!(live_in_group("12 (a) b (c)) S 1 77 77 0 -1", 77));
        assert!(!live_in_group("12 (sleep) Z 1 77 77 0 -1", 77));
        assert!(!live_in_group("12 (sleep) S 1 78 78 0 -1", 77));
        assert!(!live_in_group("garbage", 77));
    }
}
