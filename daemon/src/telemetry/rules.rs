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
    /// Per engine: since when it has been unhealthy.
    down_since: HashMap<String, Instant>,
}

impl HostRules {
    pub fn new(config: AlertsConfig, alerts: AlertManager) -> Self {
        Self { config, alerts, restarts: HashMap::new(), down_since: HashMap::new() }
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
            let health = engine.health();
            let down = health.health == crate::engine::Health::Unhealthy;
            let since =
                if down { Some(*self.down_since.entry(engine.name().to_string()).or_insert(now)) } else { None };
            if !down {
                self.down_since.remove(engine.name());
            }
            let limit = Duration::from_secs(self.config.engine_down_secs);
            let long_down = since.filter(|s| self.config.engine_down_secs > 0 && now.duration_since(*s) >= limit);
            let labels = BTreeMap::from([("engine".to_string(), engine.name().to_string())]);
            self.rule(
                format!("engine:{}:down", engine.name()),
                long_down.map(|s| {
                    let seconds = now.duration_since(s).as_secs_f64();
                    let mut e = evidence("unhealthy_seconds", seconds, limit.as_secs_f64());
                    e.detail = health.last_error.clone();
                    (Severity::Critical, format!("engine {} down for {seconds:.0} s", engine.name()), e)
                }),
                &labels,
            );
        }
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

    /// Latency SLO and error-rate spikes per route, from the rolling request windows.
    pub fn check_requests(&mut self, windows: &[crate::telemetry::requests::RouteWindowStats]) {
        let slo_secs = u64::from(self.config.latency_slo_minutes) * 60;
        for window in windows.iter().filter(|w| !w.model.is_empty()) {
            let labels = BTreeMap::from([
                ("route".to_string(), window.route.clone()),
                ("model".to_string(), window.model.clone()),
            ]);
            if window.window_secs == slo_secs && self.config.latency_p95_ms > 0.0 {
                let p95 = window.latency.p95.filter(|p| *p > self.config.latency_p95_ms);
                self.rule(
                    format!("latency_slo:{}:{}", window.route, window.model),
                    p95.map(|p95| {
                        let title = format!(
                            "{} p95 latency {p95:.0} ms over {} min",
                            window.route, self.config.latency_slo_minutes
                        );
                        (Severity::Warning, title, evidence("p95_latency_ms", p95, self.config.latency_p95_ms))
                    }),
                    &labels,
                );
            }
            if window.window_secs == 60 && self.config.error_rate > 0.0 {
                let spiking = window.requests >= self.config.error_rate_min_requests
                    && window.error_rate >= self.config.error_rate;
                self.rule(
                    format!("error_rate:{}:{}", window.route, window.model),
                    spiking.then(|| {
                        let title = format!(
                            "{} failing: {:.0}% of the last minute's requests",
                            window.route,
                            window.error_rate * 100.0
                        );
                        let mut e = evidence("error_rate", window.error_rate, self.config.error_rate);
                        e.current_n = window.requests;
                        (Severity::Critical, title, e)
                    }),
                    &labels,
                );
            }
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
