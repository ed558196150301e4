//! `llmopsctl gpus`: the latest telemetry sample (GPUs and their processes, the host, engines' load), and the
//! one-line-per-GPU updates of `llmopsctl gpus --watch`.
use std::fmt::Display;

use chrono::{DateTime, TimeZone};
use llmops_proto::v1::{EngineLoadSample, GpuSample, HostSample, TelemetrySample, TelemetryUpdate};

use super::status::{binary_unit, format_bytes};
use super::Report;
use crate::table::{join_cells, Column, Table};
use crate::text::{dash_if_empty, one_line, truncate, UNSET};
use crate::when::{full_time, short_time};

const ERROR_MAX_CHARS: usize = 60;

/// The `gpus --watch` columns; rows arrive one at a time, so each has a fixed width.
const WATCH_COLUMNS: [Column; 7] = [
    Column::left("TIME").streamed(8),
    Column::right("IDX").streamed(3),
    Column::right("UTIL").streamed(9),
    Column::right("MEM").streamed(13),
    Column::right("POWER").streamed(9),
    Column::right("TEMP").streamed(4),
    Column::left("ERROR"),
];

pub fn render_gpus<Tz: TimeZone>(sample: &TelemetrySample, zone: &Tz) -> String
where
    Tz::Offset: Display,
{
    let mut report = Report::default();
    let gpus_unavailable = !sample.gpu_unavailable.is_empty();
    if gpus_unavailable {
        report.block(&format!("no GPU data: {}", one_line(&sample.gpu_unavailable)));
    } else {
        report.field("driver", dash_if_empty(&sample.driver_version));
    }
    report.field("sampled", full_time(sample.at_unix_ms, zone));

    // Without GPU data an empty table would only repeat the line above.
    if !gpus_unavailable || !sample.gpus.is_empty() {
        report.section("GPUS");
        report.block(&gpu_table(&sample.gpus));
        if let Some(processes) = gpu_processes_table(&sample.gpus) {
            report.section("GPU PROCESSES");
            report.block(&processes);
        }
    }

    report.section("HOST");
    match &sample.host {
        Some(host) => host_fields(&mut report, host),
        None => report.block("(not reported)"),
    }

    report.section("ENGINES");
    report.block(&engines_table(&sample.engines));
    report.text
}

fn gpu_table(gpus: &[GpuSample]) -> String {
    let mut columns = vec![
        Column::right("IDX"),
        Column::left("NAME"),
        Column::right("MEM"),
        Column::right("UTIL"),
        Column::right("POWER"),
        Column::right("TEMP"),
        Column::right("CLOCKS"),
        Column::left("THROTTLE"),
    ];
    // Errors are rare; a column of blanks would only widen every line.
    let any_error = gpus.iter().any(|gpu| !gpu.error.is_empty());
    if any_error {
        columns.push(Column::left("ERROR"));
    }
    let mut table = Table::new(&columns);
    for gpu in gpus {
        let mut row = vec![
            gpu.index.to_string(),
            dash_if_empty(&gpu.name),
            used_of_total(gpu.memory_used_bytes, gpu.memory_total_bytes),
            utilization(gpu),
            power(gpu),
            temperature(gpu.temperature_celsius),
            pair(gpu.sm_clock_mhz.map(|mhz| mhz.to_string()), gpu.memory_clock_mhz.map(|mhz| mhz.to_string()), " MHz"),
            throttle(gpu),
        ];
        if any_error {
            row.push(truncate(&one_line(&gpu.error), ERROR_MAX_CHARS));
        }
        table.push(row);
    }
    table.render()
}

/// The processes on every GPU, or `None` when no GPU lists any.
fn gpu_processes_table(gpus: &[GpuSample]) -> Option<String> {
    let mut table =
        Table::new(&[Column::right("IDX"), Column::right("PID"), Column::left("ENGINE"), Column::right("MEMORY")]);
    let mut any = false;
    for gpu in gpus {
        for process in &gpu.processes {
            any = true;
            table.push(vec![
                gpu.index.to_string(),
                process.pid.to_string(),
                dash_if_empty(&process.engine),
                process.used_memory_bytes.map_or_else(|| UNSET.to_owned(), format_bytes),
            ]);
        }
    }
    any.then(|| table.render())
}

fn host_fields(report: &mut Report, host: &HostSample) {
    report.field("hostname", dash_if_empty(&host.hostname));
    report.field("cpus", host.cpu_count);
    report.field("cpu", format!("{:.1}%", host.cpu_percent));
    report.field("memory", used_of_total(Some(host.memory_used_bytes), Some(host.memory_total_bytes)));
    report.field("load 1/5/15m", format!("{:.2} {:.2} {:.2}", host.load_1m, host.load_5m, host.load_15m));
    report.section("HOST PROCESSES");
    let mut processes =
        Table::new(&[Column::left("NAME"), Column::right("PID"), Column::right("CPU %"), Column::right("RSS")]);
    for process in &host.processes {
        processes.push(vec![
            dash_if_empty(&process.name),
            process.pid.to_string(),
            format!("{:.1}", process.cpu_percent),
            format_bytes(process.rss_bytes),
        ]);
    }
    report.block(&processes.render());
}

fn engines_table(engines: &[EngineLoadSample]) -> String {
    let mut table = Table::new(&[
        Column::left("NAME"),
        Column::right("RUNNING"),
        Column::right("WAITING"),
        Column::right("KV %"),
        Column::right("PREFIX %"),
        Column::left("ERROR"),
    ]);
    let count = |value: Option<u64>| value.map_or_else(|| UNSET.to_owned(), |n| n.to_string());
    for engine in engines {
        table.push(vec![
            dash_if_empty(&engine.name),
            count(engine.running),
            count(engine.waiting),
            engine.kv_cache_used_fraction.map_or_else(|| UNSET.to_owned(), |used| format!("{:.0}", used * 100.0)),
            // Prompt tokens served from the engine's prefix cache since the previous sample.
            engine.prefix_cache_hit_rate.map_or_else(|| UNSET.to_owned(), |rate| format!("{:.0}", rate * 100.0)),
            truncate(&one_line(&engine.error), ERROR_MAX_CHARS),
        ]);
    }
    table.render()
}

/// Header for `gpus --watch`.
pub fn gpu_watch_header() -> String {
    let titles: Vec<String> = WATCH_COLUMNS.iter().map(|c| c.title.to_owned()).collect();
    join_watch_cells(&titles)
}

/// The `gpus --watch` lines for one update: one per GPU that changed, and one when GPU data went away.
pub fn gpu_watch_lines<Tz: TimeZone>(update: &TelemetryUpdate, now: &DateTime<Tz>) -> Vec<String>
where
    Tz::Offset: Display,
{
    let time = short_time(update.at_unix_ms, now);
    let mut lines = Vec::new();
    if let Some(reason) = update.gpu_unavailable.as_deref().filter(|reason| !reason.is_empty()) {
        lines.push(format!("{time:<8}  no GPU data: {}", one_line(reason)));
    }
    for gpu in &update.gpus {
        lines.push(join_watch_cells(&[
            time.clone(),
            gpu.index.to_string(),
            utilization(gpu),
            used_of_total(gpu.memory_used_bytes, gpu.memory_total_bytes),
            power(gpu),
            temperature(gpu.temperature_celsius),
            one_line(&gpu.error),
        ]));
    }
    lines
}

fn join_watch_cells(cells: &[String]) -> String {
    let widths: Vec<usize> = WATCH_COLUMNS.iter().map(|c| c.stream_width).collect();
    join_cells(&WATCH_COLUMNS, &widths, cells)
}

/// "first/second" and a unit, with "-" for a half that is not known; just "-" when neither is.
fn pair(first: Option<String>, second: Option<String>, unit: &str) -> String {
    if first.is_none() && second.is_none() {
        return UNSET.to_owned();
    }
    let known = |value: Option<String>| value.unwrap_or_else(|| UNSET.to_owned());
    format!("{}/{}{unit}", known(first), known(second))
}

/// Used and total bytes in the total's binary unit, e.g. "61.2/80.0 GiB".
fn used_of_total(used: Option<u64>, total: Option<u64>) -> String {
    let Some(reference) = total.or(used) else {
        return UNSET.to_owned();
    };
    let (divisor, unit) = binary_unit(reference);
    let amount = |bytes: u64| {
        if divisor == 1 {
            bytes.to_string()
        } else {
            format!("{:.1}", bytes as f64 / divisor as f64)
        }
    };
    pair(used.map(amount), total.map(amount), &format!(" {unit}"))
}

/// GPU and memory-controller busy percentages, e.g. "93%/41%".
fn utilization(gpu: &GpuSample) -> String {
    let percent = |value: u32| format!("{value}%");
    pair(gpu.utilization_gpu_percent.map(percent), gpu.utilization_memory_percent.map(percent), "")
}

/// Draw and limit, e.g. "245/300 W".
fn power(gpu: &GpuSample) -> String {
    let watts = |value: f64| format!("{value:.0}");
    pair(gpu.power_watts.map(watts), gpu.power_limit_watts.map(watts), " W")
}

fn temperature(celsius: Option<u32>) -> String {
    celsius.map_or_else(|| UNSET.to_owned(), |c| format!("{c}C"))
}

/// "none" when the GPU reports no active reason, "-" when it does not report them at all.
fn throttle(gpu: &GpuSample) -> String {
    if !gpu.throttle_reported {
        UNSET.to_owned()
    } else if gpu.throttle_reasons.is_empty() {
        "none".to_owned()
    } else {
        gpu.throttle_reasons.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use llmops_proto::v1::{GpuProcess, ProcessSample};

    const GIB: u64 = 1024 * 1024 * 1024;

    fn busy_gpu() -> GpuSample {
        GpuSample {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: "GPU-1".into(),
            memory_total_bytes: Some(80 * GIB),
            memory_used_bytes: Some(61 * GIB + GIB / 5),
            utilization_gpu_percent: Some(93),
            utilization_memory_percent: Some(41),
            power_watts: Some(245.4),
            power_limit_watts: Some(700.0),
            energy_joules_total: Some(1.0e6),
            temperature_celsius: Some(61),
            sm_clock_mhz: Some(1980),
            memory_clock_mhz: Some(2619),
            throttle_reasons: vec!["sw_power_cap".into(), "hw_slowdown".into()],
            throttle_reported: true,
            processes: vec![GpuProcess { pid: 4242, used_memory_bytes: Some(60 * GIB), engine: "vllm".into() }],
            processes_reported: true,
            error: String::new(),
        }
    }

    fn sample() -> TelemetrySample {
        TelemetrySample {
            at_unix_ms: 1_717_000_000_123,
            gpu_unavailable: String::new(),
            driver_version: "550.54.15".into(),
            gpus: vec![
                busy_gpu(),
                GpuSample {
                    index: 1,
                    name: "NVIDIA H100 80GB HBM3".into(),
                    throttle_reported: true,
                    ..GpuSample::default()
                },
            ],
            host: Some(HostSample {
                hostname: "gpu-box".into(),
                cpu_count: 32,
                cpu_percent: 12.5,
                memory_total_bytes: 512 * GIB,
                memory_used_bytes: 100 * GIB,
                load_1m: 1.5,
                load_5m: 1.25,
                load_15m: 0.75,
                processes: vec![ProcessSample { name: "llmopsd".into(), pid: 17, cpu_percent: 150.0, rss_bytes: GIB }],
            }),
            engines: vec![
                EngineLoadSample {
                    name: "vllm".into(),
                    running: Some(3),
                    waiting: Some(0),
                    kv_cache_used_fraction: Some(0.125),
                    error: String::new(),
                    prefix_cache_hit_rate: Some(0.61),
                    prefix_cache_queried_tokens: Some(2_000),
                    prefix_cache_hit_tokens: Some(1_220),
                },
                EngineLoadSample {
                    name: "ollama".into(),
                    error: "metrics: 404 Not Found".into(),
                    ..EngineLoadSample::default()
                },
            ],
            interval_ms: 1000,
        }
    }

    #[test]
    fn gpus_report_shows_gpus_processes_host_and_engines() {
        let text = render_gpus(&sample(), &Utc);
        assert!(text.starts_with("driver            550.54.15\nsampled           2024-05-29 16:26:40.123 +00:00\n"));
        assert!(text.contains("\nGPUS\nIDX  NAME"), "{text}");
        assert!(
            text.contains(
                "  0  NVIDIA H100 80GB HBM3  61.2/80.0 GiB  93%/41%  245/700 W   61C  1980/2619 MHz  sw_power_cap,hw_slowdown\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nGPU PROCESSES\nIDX   PID  ENGINE    MEMORY\n  0  4242  vllm    60.0 GiB\n"), "{text}");
        assert!(text.contains("hostname          gpu-box\n"), "{text}");
        assert!(text.contains("memory            100.0/512.0 GiB\n"), "{text}");
        assert!(text.contains("load 1/5/15m      1.50 1.25 0.75\n"), "{text}");
        assert!(text.contains("llmopsd   17  150.0  1.0 GiB\n"), "{text}");
        assert!(text.contains("\nENGINES\nNAME    RUNNING  WAITING  KV %  PREFIX %  ERROR\n"), "{text}");
        assert!(text.contains("vllm          3        0    12        61\n"), "{text}");
        assert!(text.contains("ollama        -        -     -         -  metrics: 404 Not Found\n"), "{text}");
        assert!(!text.contains("ERROR  \n") && !text.contains("THROTTLE  ERROR"), "no GPU error column: {text}");
    }

    #[test]
    fn absent_gpu_fields_are_dashes_never_zeros() {
        let text = render_gpus(&sample(), &Utc);
        // GPU 1 reports nothing but "no throttling".
        assert!(
            text.contains("  1  NVIDIA H100 80GB HBM3              -        -          -     -              -  none\n"),
            "{text}"
        );
        let half = GpuSample { memory_total_bytes: Some(80 * GIB), power_watts: Some(99.6), ..GpuSample::default() };
        assert_eq!(used_of_total(half.memory_used_bytes, half.memory_total_bytes), "-/80.0 GiB");
        assert_eq!(power(&half), "100/- W");
        assert_eq!(utilization(&half), "-");
        assert_eq!(temperature(None), "-");
        assert_eq!(used_of_total(Some(512), Some(1000)), "512/1000 B");
    }

    #[test]
    fn throttle_none_differs_from_not_reported() {
        let reported = GpuSample { throttle_reported: true, ..GpuSample::default() };
        assert_eq!(throttle(&reported), "none");
        assert_eq!(throttle(&GpuSample::default()), "-");
        assert_eq!(throttle(&busy_gpu()), "sw_power_cap,hw_slowdown");
    }

    #[test]
    fn gpu_errors_get_a_column_only_when_present() {
        let mut sample = sample();
        sample.gpus[1].error = "GPU is lost".into();
        let text = render_gpus(&sample, &Utc);
        assert!(text.contains("THROTTLE                  ERROR\n"), "{text}");
        assert!(text.contains("  none                      GPU is lost\n"), "{text}");
    }

    #[test]
    fn unavailable_gpus_say_why_and_still_show_host_and_engines() {
        let sample = TelemetrySample {
            gpu_unavailable: "NVML library not found".into(),
            driver_version: String::new(),
            gpus: Vec::new(),
            ..sample()
        };
        let text = render_gpus(&sample, &Utc);
        assert!(text.starts_with("no GPU data: NVML library not found\n"), "{text}");
        assert!(!text.contains("driver") && !text.contains("GPUS"), "{text}");
        assert!(text.contains("\nHOST\nhostname          gpu-box\n"), "{text}");
        assert!(text.contains("\nENGINES\nNAME"), "{text}");
        let bare = render_gpus(&TelemetrySample::default(), &Utc);
        assert!(bare.contains("driver            -\nsampled           -\n"), "{bare}");
        assert!(bare.contains("\nGPUS\nIDX  NAME  MEM  UTIL  POWER  TEMP  CLOCKS  THROTTLE\n(none)\n"), "{bare}");
        assert!(bare.contains("\nHOST\n(not reported)\n"), "{bare}");
        assert!(!bare.contains("GPU PROCESSES"), "{bare}");
    }

    #[test]
    fn watch_lines_line_up_with_their_header() {
        let now = Utc.with_ymd_and_hms(2024, 5, 29, 18, 0, 0).single().expect("valid date");
        let update = TelemetryUpdate {
            at_unix_ms: 1_717_000_000_123,
            gpus: vec![busy_gpu(), GpuSample { index: 1, error: "GPU is lost".into(), ..GpuSample::default() }],
            gpu_unavailable: Some(String::new()),
            ..TelemetryUpdate::default()
        };
        let header = gpu_watch_header();
        let lines = gpu_watch_lines(&update, &now);
        assert_eq!(header, "TIME      IDX       UTIL            MEM      POWER  TEMP  ERROR");
        assert_eq!(
            lines,
            [
                "16:26:40    0    93%/41%  61.2/80.0 GiB  245/700 W   61C",
                "16:26:40    1          -              -          -     -  GPU is lost",
            ]
        );
        let gone = TelemetryUpdate { gpu_unavailable: Some("driver not loaded".into()), ..update };
        assert_eq!(gpu_watch_lines(&gone, &now)[0], "16:26:40  no GPU data: driver not loaded");
    }
}
