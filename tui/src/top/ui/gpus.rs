//! The overview's GPU panels: a box per GPU (utilisation and memory with bars and sparklines, power,
//! temperature, throttling) in a grid, or one line per GPU when the screen is short.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::format::{bar, bytes_of, fraction, sparkline};
use super::theme::Theme;
use super::widgets::{message, panel};
use super::Ctx;
use crate::text::{dash_if_empty, one_line, UNSET};
use crate::top::state::{GpuHistory, Host};
use llmops_proto::v1 as pb;

/// Lines inside one GPU box.
const PANEL_LINES: u16 = 3;
/// Narrowest a GPU box gets before the grid uses fewer columns.
const PANEL_MIN_WIDTH: u16 = 48;
const BAR_WIDTH: usize = 10;

/// How the GPU section will be drawn, chosen by the overview from the room it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Panels { columns: u16, rows: u16 },
    Lines,
}

impl Fit {
    pub fn height(self, host: &Host) -> u16 {
        let gpus = gpu_count(host);
        match self {
            _ if gpus == 0 => 3,
            Fit::Panels { rows, .. } => rows * (PANEL_LINES + 2),
            Fit::Lines => gpus + 2,
        }
    }
}

fn gpu_count(host: &Host) -> u16 {
    host.telemetry.as_ref().map_or(0, |t| u16::try_from(t.gpus.len()).unwrap_or(u16::MAX))
}

/// Boxes in as few columns as fit in `max_height` (full-width boxes show the longest sparklines), else one
/// line per GPU.
pub fn fit(host: &Host, width: u16, max_height: u16) -> Fit {
    let gpus = gpu_count(host).max(1);
    let max_columns = (width / PANEL_MIN_WIDTH).clamp(1, gpus);
    (1..=max_columns)
        .map(|columns| Fit::Panels { columns, rows: gpus.div_ceil(columns) })
        .find(|panels| panels.height(host) <= max_height)
        .unwrap_or(Fit::Lines)
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>, fit: Fit) {
    let (host, theme) = (ctx.app.host(), ctx.theme);
    let Some(telemetry) = &host.telemetry else {
        let reason = host.unavailable.get("telemetry");
        let text = reason.map_or_else(
            || format!("waiting for data{}", theme.ellipsis()),
            |r| format!("not served by this llmopsd: {}", one_line(r)),
        );
        return boxed_message(frame, area, &theme, text);
    };
    if telemetry.gpus.is_empty() {
        let text = if telemetry.gpu_unavailable.is_empty() {
            "no GPU reported".to_owned()
        } else {
            format!("no GPU: {}", one_line(&telemetry.gpu_unavailable))
        };
        return boxed_message(frame, area, &theme, text);
    }
    let empty = GpuHistory::default();
    let history = |gpu: &pb::GpuSample| host.gpu_history.get(&gpu.index).unwrap_or(&empty);
    match fit {
        Fit::Lines => {
            let block = panel(&theme, format!(" GPUs ({}) ", telemetry.gpus.len()));
            let inner = block.inner(area);
            frame.render_widget(block, area);
            let lines: Vec<Line<'_>> =
                telemetry.gpus.iter().map(|gpu| gpu_line(gpu, history(gpu), &theme, inner.width)).collect();
            frame.render_widget(Paragraph::new(lines), inner);
        }
        Fit::Panels { columns, rows } => {
            let row_areas = Layout::vertical(vec![Constraint::Length(PANEL_LINES + 2); usize::from(rows)]).split(area);
            for (row, chunk) in row_areas.iter().zip(telemetry.gpus.chunks(usize::from(columns))) {
                let cells = Layout::horizontal(vec![Constraint::Ratio(1, u32::from(columns)); usize::from(columns)])
                    .split(*row);
                for (cell, gpu) in cells.iter().zip(chunk) {
                    gpu_panel(frame, *cell, gpu, history(gpu), &theme);
                }
            }
        }
    }
}

fn boxed_message(frame: &mut Frame<'_>, area: Rect, theme: &Theme, text: String) {
    let block = panel(theme, " GPUs ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    message(frame, inner, theme, text);
}

fn gpu_panel(frame: &mut Frame<'_>, area: Rect, gpu: &pb::GpuSample, history: &GpuHistory, theme: &Theme) {
    let title = format!(" GPU {} {} ", gpu.index, dash_if_empty(&gpu.name));
    let block = panel(theme, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if !gpu.error.is_empty() {
        return message(frame, inner, theme, format!("unreadable: {}", one_line(&gpu.error)));
    }
    // Label, value and bar take a fixed 24 cells; the sparkline gets the rest.
    let spark_width = usize::from(inner.width).saturating_sub(24);
    let memory = memory_fraction(gpu);
    let lines = vec![
        Line::from(vec![
            Span::styled("util ", theme.dim()),
            Span::raw(format!("{:>5} ", percent(gpu.utilization_gpu_percent.map(f64::from)))),
            Span::styled(
                format!("[{}] ", bar(theme, util_fraction(gpu), BAR_WIDTH)),
                level_style(theme, util_fraction(gpu)),
            ),
            Span::styled(sparkline(theme, history.utilization_percent.iter(), 100, spark_width), theme.accent()),
        ]),
        Line::from(vec![
            Span::styled("mem  ", theme.dim()),
            Span::raw(format!("{:>5} ", percent(memory.map(|f| f * 100.0)))),
            Span::styled(format!("[{}] ", bar(theme, memory, BAR_WIDTH)), level_style(theme, memory)),
            Span::styled(sparkline(theme, history.memory_used_percent.iter(), 100, spark_width), theme.accent()),
        ]),
        Line::from(vec![
            Span::raw(memory_text(gpu)),
            Span::styled(theme.sep(), theme.dim()),
            Span::raw(power(gpu)),
            Span::styled(theme.sep(), theme.dim()),
            Span::raw(temperature(gpu, theme)),
            Span::styled(theme.sep(), theme.dim()),
            Span::styled("throttle ", theme.dim()),
            throttle(gpu, theme),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

/// "0 H100 util 57% ▂▃▅ mem 41.2/80.0 GiB 250/350 W 67°C throttle none" for short screens.
fn gpu_line<'a>(gpu: &'a pb::GpuSample, history: &GpuHistory, theme: &Theme, width: u16) -> Line<'a> {
    let name = theme.cut(&dash_if_empty(&gpu.name), 16);
    if !gpu.error.is_empty() {
        return Line::from(vec![
            Span::raw(format!("{} {name:<16} ", gpu.index)),
            Span::styled(format!("unreadable: {}", one_line(&gpu.error)), theme.error()),
        ]);
    }
    let spark_width = if width >= 100 { 16 } else { 6 };
    Line::from(vec![
        Span::raw(format!("{} {name:<16} ", gpu.index)),
        Span::styled("util ", theme.dim()),
        Span::raw(format!("{:>4} ", percent(gpu.utilization_gpu_percent.map(f64::from)))),
        Span::styled(
            format!("{:<spark_width$} ", sparkline(theme, history.utilization_percent.iter(), 100, spark_width)),
            theme.accent(),
        ),
        Span::styled("mem ", theme.dim()),
        Span::raw(format!("{:<15} ", memory_text(gpu))),
        Span::raw(format!("{:<11} ", power(gpu))),
        Span::raw(format!("{:<5} ", temperature(gpu, theme))),
        throttle(gpu, theme),
    ])
}

fn util_fraction(gpu: &pb::GpuSample) -> Option<f64> {
    gpu.utilization_gpu_percent.and_then(|u| fraction(f64::from(u), 100.0))
}

fn memory_fraction(gpu: &pb::GpuSample) -> Option<f64> {
    fraction(gpu.memory_used_bytes? as f64, gpu.memory_total_bytes? as f64)
}

/// Green when there is room, yellow past 80%, red past 95%.
fn level_style(theme: &Theme, fraction: Option<f64>) -> ratatui::style::Style {
    match fraction {
        Some(f) if f > 0.95 => theme.error(),
        Some(f) if f > 0.8 => theme.warn(),
        Some(_) => theme.ok(),
        None => theme.dim(),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| UNSET.to_owned(), |v| format!("{v:.0}%"))
}

fn memory_text(gpu: &pb::GpuSample) -> String {
    match (gpu.memory_used_bytes, gpu.memory_total_bytes) {
        (Some(used), Some(total)) => bytes_of(used, total),
        _ => UNSET.to_owned(),
    }
}

fn power(gpu: &pb::GpuSample) -> String {
    let watts = |w: Option<f64>| w.map_or_else(|| UNSET.to_owned(), |w| format!("{w:.0}"));
    format!("{}/{} W", watts(gpu.power_watts), watts(gpu.power_limit_watts))
}

fn temperature(gpu: &pb::GpuSample, theme: &Theme) -> String {
    gpu.temperature_celsius.map_or_else(|| UNSET.to_owned(), |t| format!("{t}{}", theme.degree()))
}

fn throttle<'a>(gpu: &pb::GpuSample, theme: &Theme) -> Span<'a> {
    if !gpu.throttle_reported {
        Span::styled(UNSET, theme.dim())
    } else if gpu.throttle_reasons.is_empty() {
        Span::styled("none", theme.ok())
    } else {
        Span::styled(gpu.throttle_reasons.join(","), theme.warn())
    }
}
