//! The fleet view: one row per daemon with its link, version, GPUs, request rate, errors, spend and alerts.
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::Cell;
use ratatui::Frame;

use super::chrome::link_span;
use super::format::{bytes_of, dollars};
use super::widgets::{panel, right, Windowed};
use super::{Ctx, ListHit};
use crate::alert_enums;
use crate::text::UNSET;
use crate::top::state::Host;
use llmops_proto::v1::AlertState;

pub fn draw(frame: &mut Frame<'_>, area: Rect, ctx: Ctx<'_>) -> ListHit {
    let (app, theme) = (ctx.app, ctx.theme);
    let header = ["host", "link", "version", "GPUs", "util", "GPU memory", "req/s", "err %", "$/h", "alerts"];
    let table = Windowed {
        header: header.iter().map(|title| Cell::from(*title)).collect(),
        widths: vec![
            Constraint::Min(14),
            Constraint::Length(13),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(17),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(6),
        ],
        total: app.hosts.len(),
        selected: Some(app.fleet_selected),
    };
    let block = panel(&theme, format!(" Fleet {} hosts ", app.hosts.len()));
    table.render(frame, area, block, &theme, |index| {
        let Some(host) = app.hosts.get(index) else {
            return Vec::new();
        };
        let summary = Summary::of(host);
        let firing = host.alerts.iter().filter(|alert| alert_enums::state(alert) == AlertState::Firing).count();
        let alert_style = if firing > 0 { theme.error() } else { theme.plain() };
        vec![
            Cell::from(host.address.clone()),
            Cell::from(link_span(&host.link, &theme)),
            Cell::from(host.status.as_ref().map_or_else(|| UNSET.to_owned(), |s| s.version.clone())),
            right(summary.gpus, theme.plain()),
            right(summary.util, theme.plain()),
            right(summary.memory, theme.plain()),
            right(summary.rate, theme.plain()),
            right(summary.errors, theme.plain()),
            right(summary.burn, theme.plain()),
            Cell::from(Span::styled(format!("{firing:>6}"), alert_style)),
        ]
    })
}

/// One host's row values; "-" where the daemon has not sent the data.
struct Summary {
    gpus: String,
    util: String,
    memory: String,
    rate: String,
    errors: String,
    burn: String,
}

impl Summary {
    fn of(host: &Host) -> Self {
        let dash = || UNSET.to_owned();
        let (mut gpus, mut util, mut memory) = (dash(), dash(), dash());
        if let Some(telemetry) = &host.telemetry {
            gpus = telemetry.gpus.len().to_string();
            let utils: Vec<u32> = telemetry.gpus.iter().filter_map(|g| g.utilization_gpu_percent).collect();
            if !utils.is_empty() {
                util = format!("{}%", utils.iter().sum::<u32>() / utils.len() as u32);
            }
            let used: Option<u64> = telemetry.gpus.iter().map(|g| g.memory_used_bytes).sum();
            let total: Option<u64> = telemetry.gpus.iter().map(|g| g.memory_total_bytes).sum();
            if let (Some(used), Some(total)) = (used, total) {
                if total > 0 {
                    memory = bytes_of(used, total);
                }
            }
        }
        let (mut rate, mut errors) = (dash(), dash());
        if let Some(metrics) = &host.metrics {
            let minute: Vec<_> = metrics.windows.iter().filter(|w| w.window_seconds == 60).collect();
            let requests: u64 = minute.iter().map(|w| w.requests).sum();
            let failed: u64 = minute.iter().map(|w| w.errors).sum();
            rate = format!("{:.1}", minute.iter().map(|w| w.requests_per_second).fold(0.0, |sum, v| sum + v));
            if requests > 0 {
                errors = format!("{:.1}", failed as f64 * 100.0 / requests as f64);
            }
        }
        Self { gpus, util, memory, rate, errors, burn: burn_per_hour(host).map_or_else(dash, dollars) }
    }
}

/// The host's spend per hour over the last minute, summed over routes (as the overview's "burn now").
pub fn burn_per_hour(host: &Host) -> Option<f64> {
    let windows = &host.metrics.as_ref()?.windows;
    Some(windows.iter().filter(|w| w.window_seconds == 60).map(|w| w.cost_usd_per_hour).fold(0.0, |sum, v| sum + v))
}
