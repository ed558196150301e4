//! CPU time of a process from `/proc/PID/stat`, and its memory from `/proc/PID/status`.
use anyhow::Context;

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name in parentheses may hold spaces; fields after it start at field 3 (state).
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields.get(n - 3).context("short /proc/PID/stat")?.parse().with_context(|| format!("field {n} of {path}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`; sysconf would need unsafe code).
pub fn clock_ticks() -> anyhow::Result<f64> {
    let output = std::process::Command::new("getconf").arg("CLK_TCK").output().context("cannot run getconf")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse::<f64>().with_context(|| format!("getconf CLK_TCK printed {text:?}"))
}

/// A `/proc/PID/status` field in kB, e.g. `status_kib(pid, "VmRSS:")`.
// Each benchmark binary includes this file; not all of them read memory.
#[allow(dead_code)]
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status.lines().find_map(|l| l.strip_prefix(field)).with_context(|| format!("no {field} in {path}"))?;
    line.trim().trim_end_matches("kB").trim().parse().with_context(|| format!("{field} is not a number of kB"))
}
