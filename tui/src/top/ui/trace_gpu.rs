//! "GPU at the time" in the trace detail: each GPU over the telemetry samples taken while the request ran
//! (the daemon keeps an hour of them), summarised as mean and peak.
use std::collections::BTreeMap;

use ratatui::text::{Line, Span};

use super::format::bytes_of;
use super::theme::Theme;
use crate::text::{one_line, UNSET};
use llmops_proto::v1 as pb;

/// One GPU over the samples: what it reported, never zeros for what it did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSpan {
    pub index: u32,
    pub name: String,
    pub samples: usize,
    pub utilization_mean: Option<f64>,
    pub utilization_max: Option<u32>,
    /// Peak memory used, with the total.
    pub memory: Option<(u64, u64)>,
    pub power_mean_watts: Option<f64>,
    pub temperature_max: Option<u32>,
    /// Every throttle reason seen in any sample.
    pub throttle: Vec<String>,
}

pub fn summarize(samples: &[pb::TelemetrySample]) -> Vec<GpuSpan> {
    let mut spans: BTreeMap<u32, (GpuSpan, Vec<u32>, Vec<f64>)> = BTreeMap::new();
    for gpu in samples.iter().flat_map(|s| &s.gpus).filter(|g| g.error.is_empty()) {
        let (span, utils, powers) = spans.entry(gpu.index).or_default();
        span.index = gpu.index;
        span.name.clone_from(&gpu.name);
        span.samples += 1;
        utils.extend(gpu.utilization_gpu_percent);
        powers.extend(gpu.power_watts);
        if let (Some(used), Some(total)) = (gpu.memory_used_bytes, gpu.memory_total_bytes) {
            span.memory = Some(span.memory.map_or((used, total), |(peak, _)| (peak.max(used), total)));
        }
        span.temperature_max = span.temperature_max.max(gpu.temperature_celsius);
        for reason in &gpu.throttle_reasons {
            if !span.throttle.contains(reason) {
                span.throttle.push(reason.clone());
            }
        }
    }
    spans
        .into_values()
        .map(|(mut span, utils, powers)| {
            let mean = |values: &[f64]| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
            span.utilization_mean = mean(&utils.iter().map(|&u| f64::from(u)).collect::<Vec<_>>());
            span.utilization_max = utils.iter().copied().max();
            span.power_mean_watts = mean(&powers);
            span
        })
        .collect()
}

/// The detail's lines: one per GPU (at most `max_lines`), or why there are none.
pub fn lines(
    gpu: Option<&Result<Vec<pb::TelemetrySample>, String>>,
    theme: &Theme,
    max_lines: usize,
) -> Vec<Line<'static>> {
    let note = |text: String| vec![Line::styled(format!("GPU at the time: {text}"), theme.dim())];
    let samples = match gpu {
        None => return note(format!("loading{}", theme.ellipsis())),
        Some(Err(error)) => return note(format!("not available: {}", one_line(error))),
        Some(Ok(samples)) => samples,
    };
    if samples.is_empty() {
        return note("no telemetry samples from then (the daemon keeps the last hour)".into());
    }
    let spans = summarize(samples);
    if spans.is_empty() {
        let reason = samples.iter().map(|s| s.gpu_unavailable.as_str()).find(|r| !r.is_empty());
        return note(reason.map_or_else(|| "no GPU was sampled".to_owned(), |r| format!("no GPU: {}", one_line(r))));
    }
    let dash = || UNSET.to_owned();
    let mut lines: Vec<Line<'static>> = spans
        .iter()
        .take(max_lines.max(1))
        .map(|span| {
            let util = match (span.utilization_mean, span.utilization_max) {
                (Some(mean), Some(max)) => format!("util {mean:.0}% (max {max}%)"),
                _ => format!("util {}", dash()),
            };
            let memory = span.memory.map_or_else(dash, |(used, total)| bytes_of(used, total));
            let power = span.power_mean_watts.map_or_else(dash, |w| format!("{w:.0} W"));
            let temperature = span.temperature_max.map_or_else(dash, |t| format!("{t}°C"));
            let throttle = if span.throttle.is_empty() { "none".to_owned() } else { span.throttle.join(",") };
            Line::from(vec![
                Span::styled(format!("GPU {} ", span.index), theme.dim()),
                Span::raw(format!(
                    "{util}{sep}mem {memory}{sep}{power}{sep}{temperature}{sep}throttle {throttle}",
                    sep = theme.sep()
                )),
                Span::styled(
                    format!("  ({} sample{})", span.samples, if span.samples == 1 { "" } else { "s" }),
                    theme.dim(),
                ),
            ])
        })
        .collect();
    if spans.len() > lines.len() {
        lines.push(Line::styled(format!("… and {} more GPUs", spans.len() - lines.len()), theme.dim()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(util: Option<u32>, used_gib: u64, power: Option<f64>, throttle: &[&str]) -> pb::TelemetrySample {
        pb::TelemetrySample {
            gpus: vec![pb::GpuSample {
                index: 0,
                name: "H100".into(),
                utilization_gpu_percent: util,
                memory_used_bytes: Some(used_gib << 30),
                memory_total_bytes: Some(80 << 30),
                power_watts: power,
                temperature_celsius: Some(60 + used_gib as u32),
                throttle_reasons: throttle.iter().map(|t| (*t).to_owned()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn mean_and_peak_over_the_samples_with_absent_values_left_out() {
        let samples = [sample(Some(40), 10, Some(200.0), &[]), sample(Some(80), 30, None, &["sw_power_cap"])];
        let spans = summarize(&samples);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!((span.samples, span.utilization_mean, span.utilization_max), (2, Some(60.0), Some(80)));
        assert_eq!(span.memory, Some((30 << 30, 80 << 30)), "peak memory");
        assert_eq!(span.power_mean_watts, Some(200.0), "the sample without power does not count as 0 W");
        assert_eq!(span.temperature_max, Some(90));
        assert_eq!(span.throttle, ["sw_power_cap"]);
        assert!(summarize(&[sample(None, 1, None, &[])])[0].utilization_mean.is_none());
    }

    #[test]
    fn says_why_when_there_is_nothing_to_show() {
        fn text(gpu: Option<&Result<Vec<pb::TelemetrySample>, String>>) -> String {
            let theme = Theme::new(crate::top::state::Look::default());
            lines(gpu, &theme, 4).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        }
        assert!(text(None).contains("loading"));
        assert!(text(Some(&Ok(vec![]))).contains("last hour"));
        let no_gpu = pb::TelemetrySample { gpu_unavailable: "NVML library not found".into(), ..Default::default() };
        assert!(text(Some(&Ok(vec![no_gpu]))).contains("no GPU: NVML library not found"));
        assert!(text(Some(&Err("refused".into()))).contains("not available: refused"));
    }
}
