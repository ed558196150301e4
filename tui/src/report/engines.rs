//! `llmopsctl engines`: one row per engine, with the process columns filled for engines llmopsd launches.
use llmops_proto::v1::EngineStatus;

use crate::names::engine_health_name;
use crate::table::{Column, Table};
use crate::text::{dash_if_empty, one_line, truncate, UNSET};

const LAST_EXIT_ERROR_MAX_CHARS: usize = 70;

/// The table, or "(none)" under the header when there are no engines.
pub fn render_engines(engines: &[EngineStatus]) -> String {
    let mut table = Table::new(&[
        Column::left("NAME"),
        Column::left("KIND"),
        Column::left("HEALTH"),
        Column::left("STATE"),
        Column::right("PID"),
        Column::right("RESTARTS"),
        Column::right("RUNNING"),
        Column::right("WAITING"),
        Column::right("KV %"),
        Column::right("PREFIX %"),
        Column::left("LAST EXIT / LAST ERROR"),
    ]);
    let count = |value: Option<u64>| value.map_or_else(|| UNSET.to_owned(), |n| n.to_string());
    for engine in engines {
        let process = engine.process.as_ref();
        table.push(vec![
            engine.name.clone(),
            dash_if_empty(&engine.kind),
            engine_health_name(engine.health).to_owned(),
            process.map_or_else(|| UNSET.to_owned(), |p| dash_if_empty(&p.state)),
            // PID 0 means no process runs now (between restarts, or stopped).
            count(process.map(|p| u64::from(p.pid)).filter(|&pid| pid != 0)),
            count(process.map(|p| p.restarts)),
            count(engine.running),
            count(engine.waiting),
            engine.kv_cache_used_fraction.map_or_else(|| UNSET.to_owned(), |used| format!("{:.0}", used * 100.0)),
            // Prompt tokens served from the engine's prefix cache since the daemon's previous scrape.
            engine.prefix_cache_hit_rate.map_or_else(|| UNSET.to_owned(), |rate| format!("{:.0}", rate * 100.0)),
            truncate(&last_exit_and_error(engine), LAST_EXIT_ERROR_MAX_CHARS),
        ]);
    }
    table.render()
}

/// "exit / error" with "-" for the missing half, so each half stays under its title; "-" when neither is set.
fn last_exit_and_error(engine: &EngineStatus) -> String {
    let last_exit = engine.process.as_ref().map_or("", |p| p.last_exit.as_str());
    if last_exit.is_empty() && engine.last_error.is_empty() {
        return UNSET.to_owned();
    }
    format!("{} / {}", dash_if_empty(&one_line(last_exit)), dash_if_empty(&one_line(&engine.last_error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmops_proto::v1::{EngineHealth, EngineProcess};

    fn launched() -> EngineStatus {
        EngineStatus {
            name: "vllm".into(),
            kind: "openai".into(),
            health: EngineHealth::Healthy as i32,
            running: Some(2),
            waiting: Some(0),
            kv_cache_used_fraction: Some(0.125),
            prefix_cache_hit_rate: Some(0.61),
            process: Some(EngineProcess {
                state: "healthy".into(),
                restarts: 1,
                pid: 4242,
                last_exit: "signal: 9 (SIGKILL)".into(),
                log_tail: vec!["listening".into()],
            }),
            ..EngineStatus::default()
        }
    }

    fn remote() -> EngineStatus {
        EngineStatus {
            name: "ollama".into(),
            kind: "openai".into(),
            health: EngineHealth::Unhealthy as i32,
            last_error: "connection refused\n(os error 111)".into(),
            ..EngineStatus::default()
        }
    }

    #[test]
    fn launched_engines_show_their_process_and_others_dashes() {
        let text = render_engines(&[launched(), remote()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME    KIND    HEALTH     STATE     PID  RESTARTS  RUNNING  WAITING  KV %  PREFIX %  \
                 LAST EXIT / LAST ERROR",
                "vllm    openai  healthy    healthy  4242         1        2        0    12        61  \
                 signal: 9 (SIGKILL) / -",
                "ollama  openai  unhealthy  -           -         -        -        -     -         -  \
                 - / connection refused (os error 111)",
            ],
            "{text}"
        );
    }

    #[test]
    fn a_process_between_runs_has_no_pid_and_long_errors_are_cut() {
        let mut engine = launched();
        let process = engine.process.as_mut().expect("process");
        process.pid = 0;
        process.state = "restarting".into();
        process.last_exit = "exit status: 1".into();
        engine.last_error = "x".repeat(200);
        let text = render_engines(&[engine]);
        let row = text.lines().nth(1).expect("a row");
        assert!(row.contains("restarting    -         1"), "{row}");
        assert!(row.ends_with('…'), "{row}");
        assert!(row.contains("exit status: 1 / xxx"), "{row}");
    }

    #[test]
    fn no_engines_says_so() {
        assert!(render_engines(&[]).ends_with("(none)\n"));
        let quiet = EngineStatus { name: "e".into(), ..EngineStatus::default() };
        assert!(render_engines(&[quiet]).lines().nth(1).expect("row").ends_with("  -"));
    }
}
