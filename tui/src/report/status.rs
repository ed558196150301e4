//! `llmopsctl status`.
use std::fmt::Display;

use chrono::TimeZone;
use llmops_proto::v1::{EngineBuild, EngineStatus, Status, StoreStatus};

use super::Report;
use crate::names::engine_health_name;
use crate::table::{Column, Table};
use crate::text::{dash_if_empty, one_line, truncate};
use crate::when::{format_uptime, full_time};

const LAST_ERROR_MAX_CHARS: usize = 60;

/// "2 running, 1 waiting, KV 12%" (embedded; a scraped engine may add "prefix-cache hits 61%"), "launched:
/// healthy, pid 7, 0 restarts" (supervised), or "-".
fn engine_load(engine: &EngineStatus) -> String {
    let mut parts = Vec::new();
    if let Some(running) = engine.running {
        parts.push(format!("{running} running"));
    }
    if let Some(waiting) = engine.waiting {
        parts.push(format!("{waiting} waiting"));
    }
    if let Some(kv) = engine.kv_cache_used_fraction {
        parts.push(format!("KV {:.0}%", kv * 100.0));
    }
    if let Some(rate) = engine.prefix_cache_hit_rate {
        parts.push(format!("prefix-cache hits {:.0}%", rate * 100.0));
    }
    if let Some(process) = &engine.process {
        parts.push(format!("launched: {}, pid {}, {} restarts", process.state, process.pid, process.restarts));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// "x86-64-v3: AVX AVX2 FMA ... (host also has AVX512 AMX_INT8, unused)".
fn engine_build(build: &EngineBuild) -> String {
    let mut text = format!("{}: {}", dash_if_empty(&build.target_cpu), dash_if_empty(&build.in_use.join(" ")));
    if !build.missing_on_host.is_empty() {
        text.push_str(&format!(" (MISSING on this host: {})", build.missing_on_host.join(" ")));
    }
    if !build.unused_on_host.is_empty() {
        text.push_str(&format!(" (host also has {}, unused)", build.unused_on_host.join(" ")));
    }
    text
}

pub fn render_status<Tz: TimeZone>(status: &Status, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    let mut report = Report::default();
    let uptime = format_uptime(status.uptime_seconds);
    let started = full_time(status.started_at_unix_ms, zone);
    report.field("version", dash_if_empty(&status.version));
    report.field("uptime", format!("{uptime} (since {started})"));
    report.field("http listen", dash_if_empty(&status.http_listen));
    report.field("grpc listen", dash_if_empty(&status.grpc_listen));
    let privacy = if status.privacy_mode { "on (only hashes and lengths of bodies are stored)" } else { "off" };
    report.field("privacy mode", privacy);
    report.field("in flight", status.requests_in_flight);
    if let Some(build) = &status.engine_build {
        report.field("engine build", engine_build(build));
    }

    report.section("ENGINES");
    let mut engines = Table::new(&[
        Column::left("NAME"),
        Column::left("KIND"),
        Column::left("URL"),
        Column::left("MODELS"),
        Column::left("HEALTH"),
        Column::left("LOAD"),
        Column::left("LAST ERROR"),
    ]);
    for engine in &status.engines {
        engines.push(vec![
            engine.name.clone(),
            dash_if_empty(&engine.kind),
            dash_if_empty(&engine.base_url),
            dash_if_empty(&engine.models.join(",")),
            engine_health_name(engine.health).to_owned(),
            engine_load(engine),
            truncate(&one_line(&engine.last_error), LAST_ERROR_MAX_CHARS),
        ]);
    }
    report.block(&engines.render());

    report.section("ROUTES");
    let mut routes = Table::new(&[Column::left("NAME"), Column::left("TARGETS (fallback order)")]);
    for route in &status.routes {
        routes.push(vec![route.name.clone(), route.targets.join(" -> ")]);
    }
    report.block(&routes.render());

    report.section("STORE");
    match &status.store {
        Some(store) => store_fields(&mut report, store),
        None => report.block("(not reported)"),
    }
    if let Some(otlp) = &status.otlp_export {
        report.section("OTLP EXPORT");
        otlp_fields(&mut report, otlp);
    }
    report.text
}

fn otlp_fields(report: &mut Report, otlp: &llmops_proto::v1::OtlpExportStatus) {
    report
        .field("endpoint", format!("{} ({}, profile {})", dash_if_empty(&otlp.endpoint), otlp.protocol, otlp.profile));
    let state = match otlp.state.as_str() {
        "retrying" => format!("retrying in {:.1} s", otlp.retry_in_ms as f64 / 1000.0),
        other => other.to_string(),
    };
    report.field("state", state);
    report.field("outbox", format!("{} / {} waiting", otlp.pending, otlp.capacity));
    report.field("exported", format!("{} traces, {} scores", otlp.exported, otlp.exported_scores));
    report.field("dropped (full)", otlp.dropped);
    report.field("rejected", otlp.rejected);
    report.field("failed sends", otlp.failures);
    if !otlp.last_error.is_empty() {
        report.field("last error", otlp.last_error.clone());
    }
    let last = if otlp.last_success_unix_ms > 0 {
        crate::when::full_time(otlp.last_success_unix_ms, &chrono::Local)
    } else {
        "none since start".to_string()
    };
    report.field("last success", last);
}

fn store_fields(report: &mut Report, store: &StoreStatus) {
    let size = format!("{} ({} bytes)", format_bytes(store.size_bytes), store.size_bytes);
    report.field("path", dash_if_empty(&store.path));
    report.field("size", size);
    report.field("traces", store.trace_count);
    report.field("write queue", format!("{} / {}", store.queue_depth, store.queue_capacity));
    report.field("written", store.written);
    report.field("dropped", store.dropped);
    report.field("write errors", store.write_errors);
    report.field("retention deleted", store.retention_deleted);
}

/// Binary units with one decimal, e.g. "1.5 MiB".
pub fn format_bytes(bytes: u64) -> String {
    match binary_unit(bytes) {
        (1, unit) => format!("{bytes} {unit}"),
        (divisor, unit) => format!("{:.1} {unit}", bytes as f64 / divisor as f64),
    }
}

/// The binary unit `bytes` reads best in, with its size in bytes: `(1, "B")` below 1 KiB.
pub(super) fn binary_unit(bytes: u64) -> (u64, &'static str) {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut divisor = 1_u64;
    let mut unit = 0;
    while bytes / divisor >= 1024 && unit + 1 < UNITS.len() {
        divisor *= 1024;
        unit += 1;
    }
    (divisor, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use llmops_proto::v1::{EngineHealth, EngineStatus, RouteStatus};

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn status_report_lists_engines_routes_and_store() {
        let status = Status {
            version: "0.1.0".into(),
            uptime_seconds: 3661.0,
            engines: vec![EngineStatus {
                name: "ollama".into(),
                kind: "openai".into(),
                base_url: "http://127.0.0.1:11434/v1".into(),
                models: vec!["a".into(), "b".into()],
                health: EngineHealth::Healthy as i32,
                ..EngineStatus::default()
            }],
            routes: vec![RouteStatus { name: "small".into(), targets: vec!["ollama/a".into(), "x/b".into()] }],
            store: Some(StoreStatus { queue_depth: 3, queue_capacity: 1024, ..StoreStatus::default() }),
            ..Status::default()
        };
        let text = render_status(&status, &Utc);
        assert!(text.contains("uptime            1h 1m 1s (since -)\n"), "{text}");
        assert!(text.contains("ollama  openai  http://127.0.0.1:11434/v1  a,b     healthy  -\n"), "{text}");
        assert!(text.contains("small  ollama/a -> x/b\n"), "{text}");
        assert!(text.contains("write queue       3 / 1024\n"), "{text}");
        assert!(!text.contains("(not reported)"), "{text}");
        assert!(!text.contains("engine build"), "{text}");
    }

    #[test]
    fn engine_load_shows_the_prefix_cache_hit_rate_after_kv() {
        let engine = EngineStatus {
            running: Some(2),
            waiting: Some(1),
            kv_cache_used_fraction: Some(0.125),
            prefix_cache_hit_rate: Some(0.61),
            ..EngineStatus::default()
        };
        assert_eq!(engine_load(&engine), "2 running, 1 waiting, KV 12%, prefix-cache hits 61%");
        let gauge_only = EngineStatus { prefix_cache_hit_rate: Some(0.0), ..EngineStatus::default() };
        assert_eq!(engine_load(&gauge_only), "prefix-cache hits 0%");
    }

    #[test]
    fn engine_build_names_the_level_the_features_in_use_and_what_the_host_leaves_unused() {
        let build = EngineBuild {
            target_cpu: "x86-64-v3".into(),
            in_use: vec!["AVX2".into(), "FMA".into()],
            unused_on_host: vec!["AVX512".into(), "AMX_INT8".into()],
            ..EngineBuild::default()
        };
        let status = Status { engine_build: Some(build.clone()), ..Status::default() };
        let text = render_status(&status, &Utc);
        assert!(
            text.contains("engine build      x86-64-v3: AVX2 FMA (host also has AVX512 AMX_INT8, unused)\n"),
            "{text}"
        );
        let missing = EngineBuild { missing_on_host: vec!["AVX2".into()], unused_on_host: vec![], ..build };
        assert_eq!(engine_build(&missing), "x86-64-v3: AVX2 FMA (MISSING on this host: AVX2)");
    }
}
