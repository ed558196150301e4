//! Alert rules on what the sampler sees: GPUs too hot, too full or throttled for power or heat, and
//! launched engines restarting repeatedly. Each raises while the condition holds (repeats fold into one
//! alert) and resolves when it clears.
use super::model::TelemetrySample;
use crate::alerts::{AlertManager, Evidence, Raised, Severity};
use crate::config::AlertsConfig;
use crate::engine::Engines;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How far back engine restarts are counted.
const RESTART_WINDOW: Duration = Duration::from_secs(600);

pub struct HostRules {
    config: AlertsConfig,
    alerts: AlertManager,
    /// Per engine: the restart count seen at each sample in the window.
    restarts: HashMap<String, VecDeque<(Instant, u64)>>,
}

impl HostRules {
    pub fn new(config: AlertsConfig, alerts: AlertManager) -> Self {
        Self { config, alerts, restarts: HashMap::new() }
    }

    pub fn check(&mut self, sample: &TelemetrySample, engines: &Engines) {
        for gpu in &sample.gpus.devices {
            let labels =
                BTreeMap::from([("gpu".to_string(), gpu.index.to_string()), ("uuid".to_string(), gpu.uuid.clone())]);
            let hot = gpu.temperature_celsius.filter(|t| *t >= self.config.gpu_temperature_celsius);
            let critical = self.config.gpu_temperature_celsius + 10;
            self.rule(
                format!("gpu:{}:temperature", gpu.uuid),
                hot.map(|t| {
                    let severity = if t >= critical { Severity::Critical } else { Severity::Warning };
                    (
                        severity,
                        format!("GPU {} at {t} C", gpu.index),
                        evidence("temperature_c", f64::from(t), f64::from(self.config.gpu_temperature_celsius)),
                    )
                }),
                &labels,
            );
            let used =
                gpu.memory_used_bytes.zip(gpu.memory_total_bytes.filter(|t| *t > 0)).map(|(u, t)| u as f64 / t as f64);
            let full = used.filter(|f| *f >= self.config.gpu_memory_fraction);
            self.rule(
                format!("gpu:{}:memory", gpu.uuid),
                full.map(|f| {
                    (
                        Severity::Warning,
                        format!("GPU {} memory {:.0}% used", gpu.index, f * 100.0),
                        evidence("memory_used_fraction", f, self.config.gpu_memory_fraction),
                    )
                }),
                &labels,
            );
            let throttled: Vec<&String> = gpu
                .throttle_reasons
                .iter()
                .flatten()
                .filter(|r| r.contains("power") || r.contains("thermal") || r.contains("hw_slowdown"))
                .collect();
            self.rule(
                format!("gpu:{}:throttle", gpu.uuid),
                (!throttled.is_empty()).then(|| {
                    let reasons = throttled.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
                    let mut e = evidence("throttle_reasons", throttled.len() as f64, 0.0);
                    e.detail = reasons.clone();
                    (Severity::Warning, format!("GPU {} throttled: {reasons}", gpu.index), e)
                }),
                &labels,
            );
        }
        let now = Instant::now();
        for engine in engines.iter() {
            let Some(process) = engine.process() else { continue };
            let seen = self.restarts.entry(engine.name().to_string()).or_default();
            seen.push_back((now, process.restarts));
            while seen.front().is_some_and(|(at, _)| now.duration_since(*at) > RESTART_WINDOW) {
                seen.pop_front();
            }
            let recent = process.restarts - seen.front().map_or(process.restarts, |(_, n)| *n);
            let labels = BTreeMap::from([("engine".to_string(), engine.name().to_string())]);
            let limit = self.config.engine_restarts;
            self.rule(
                format!("engine:{}:restarts", engine.name()),
                (limit > 0 && recent >= limit).then(|| {
                    let mut e = evidence("restarts_in_10_min", recent as f64, limit as f64);
                    e.detail = format!("last exit: {}", process.last_exit);
                    (Severity::Critical, format!("engine {} restarted {recent} times in 10 minutes", engine.name()), e)
                }),
                &labels,
            );
        }
    }

    fn rule(&self, key: String, firing: Option<(Severity, String, Evidence)>, labels: &BTreeMap<String, String>) {
        match firing {
            Some((severity, title, evidence)) => {
                let rule = key.split(':').next().unwrap_or("host").to_string();
                self.alerts.raise(Raised {
                    key,
                    rule,
                    severity,
                    message: title.clone(),
                    title,
                    evidence,
                    labels: labels.clone(),
                });
            }
            None => {
                self.alerts.resolve(&key, "back under the threshold");
            }
        }
    }
}

fn evidence(statistic: &str, value: f64, threshold: f64) -> Evidence {
    Evidence { statistic: statistic.into(), value, threshold, ..Evidence::default() }
}
