//! Alert rules on what the sampler sees: GPUs too hot, too full or throttled for power or heat, engines down
//! or restarting repeatedly, and per route a latency SLO and error-rate spikes. Each raises while the condition
//! holds (repeats fold into one alert) and resolves, saying how things stand now, when it clears.
use super::model::{GpuSample, TelemetrySample};
use super::requests::RouteWindowStats;
use crate::alerts::{AlertManager, Evidence, Raised, Severity};
use crate::config::AlertsConfig;
use crate::engine::Engines;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How far back engine restarts are counted.
const RESTART_WINDOW: Duration = Duration::from_secs(600);

/// What the engine rules need to know of one engine at one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineView {
    pub name: String,
    pub unhealthy: bool,
    pub last_error: String,
    /// For engines the daemon launches: restarts so far and how the last run ended.
    pub process: Option<(u64, String)>,
}

impl EngineView {
    pub fn of(engines: &Engines) -> Vec<EngineView> {
        engines
            .iter()
            .map(|engine| {
                let health = engine.health();
                EngineView {
                    name: engine.name().to_string(),
                    unhealthy: health.health == crate::engine::Health::Unhealthy,
                    last_error: health.last_error,
                    process: engine.process().map(|p| (p.restarts, p.last_exit)),
                }
            })
            .collect()
    }
}

/// A rule's verdict at one sample.
enum Outcome {
    Firing {
        severity: Severity,
        title: String,
        message: String,
        evidence: Evidence,
    },
    /// Not (or no longer) firing; the text says how things stand, for an alert this resolves.
    Clear(String),
}

fn firing(severity: Severity, title: String, message: String, evidence: Evidence) -> Outcome {
    Outcome::Firing { severity, title, message, evidence }
}

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
        self.check_at(sample, &EngineView::of(engines), Instant::now());
    }

    /// [`HostRules::check`] with the engines' state and the time given (tests move time).
    pub fn check_at(&mut self, sample: &TelemetrySample, engines: &[EngineView], now: Instant) {
        for gpu in &sample.gpus.devices {
            self.check_gpu(gpu);
        }
        for engine in engines {
            self.check_engine(engine, now);
        }
    }

    /// The three GPU rules: temperature, memory and throttling, each raising or resolving its own alert.
    fn check_gpu(&self, gpu: &GpuSample) {
        let labels = BTreeMap::from([
            ("gpu".to_string(), gpu.index.to_string()),
            ("uuid".to_string(), gpu.uuid.clone()),
            ("name".to_string(), gpu.name.clone()),
        ]);
        let names = GpuNames::of(gpu);
        let temperature = gpu_temperature(gpu, &names, self.config.gpu_temperature_celsius);
        self.rule(format!("gpu:{}:temperature", gpu.uuid), &labels, temperature);
        let memory = gpu_memory(gpu, &names, self.config.gpu_memory_fraction);
        self.rule(format!("gpu:{}:memory", gpu.uuid), &labels, memory);
        self.rule(format!("gpu:{}:throttle", gpu.uuid), &labels, gpu_throttle(gpu, &names));
    }

    fn check_engine(&mut self, engine: &EngineView, now: Instant) {
        let name = engine.name.as_str();
        let labels = BTreeMap::from([("engine".to_string(), name.to_string())]);
        let since = if engine.unhealthy {
            Some(*self.down_since.entry(name.to_string()).or_insert(now))
        } else {
            self.down_since.remove(name);
            None
        };
        let limit = Duration::from_secs(self.config.engine_down_secs);
        let down_for = since.map(|s| now.saturating_duration_since(s));
        let down = match down_for {
            Some(d) if self.config.engine_down_secs > 0 && d >= limit => {
                let seconds = d.as_secs_f64();
                let mut e = evidence("unhealthy_seconds", seconds, limit.as_secs_f64());
                e.detail = engine.last_error.clone();
                let error = if engine.last_error.is_empty() {
                    String::new()
                } else {
                    format!("; last error: {}", engine.last_error)
                };
                firing(
                    Severity::Critical,
                    format!("engine {name} down for {seconds:.0} s"),
                    format!(
                        "Engine {name} has been unhealthy for {seconds:.0} s (alert after {} s){error}.",
                        self.config.engine_down_secs
                    ),
                    e,
                )
            }
            Some(_) if self.config.engine_down_secs == 0 => Outcome::Clear("engine down alerts are off".into()),
            Some(d) => Outcome::Clear(format!("engine {name} unhealthy for {:.0} s only", d.as_secs_f64())),
            None => Outcome::Clear(format!("engine {name} is healthy again")),
        };
        self.rule(format!("engine:{name}:down"), &labels, down);

        let Some((restarts, last_exit)) = &engine.process else { return };
        let seen = self.restarts.entry(name.to_string()).or_default();
        seen.push_back((now, *restarts));
        while seen.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > RESTART_WINDOW) {
            seen.pop_front();
        }
        let recent = restarts.saturating_sub(seen.front().map_or(*restarts, |(_, n)| *n));
        let limit = self.config.engine_restarts;
        let looping = if limit > 0 && recent >= limit {
            let mut e = evidence("restarts_in_10_min", recent as f64, limit as f64);
            e.detail = format!("last exit: {last_exit}");
            firing(
                Severity::Critical,
                format!("engine {name} restarted {} in 10 minutes", times(recent)),
                format!(
                    "Launched engine {name} restarted {} in the last 10 minutes (alert at {limit}); last exit: \
                     {last_exit}.",
                    times(recent)
                ),
                e,
            )
        } else {
            Outcome::Clear(format!("engine {name} restarted {} in the last 10 minutes, under {limit}", times(recent)))
        };
        self.rule(format!("engine:{name}:restarts"), &labels, looping);
    }

    /// Latency SLO and error-rate spikes per route, from the rolling request windows.
    pub fn check_requests(&mut self, windows: &[RouteWindowStats]) {
        let minutes = self.config.latency_slo_minutes;
        let slo_secs = u64::from(minutes) * 60;
        let slo = self.config.latency_p95_ms;
        for window in windows.iter().filter(|w| !w.model.is_empty()) {
            let (route, model) = (&window.route, &window.model);
            let labels = BTreeMap::from([("route".to_string(), route.clone()), ("model".to_string(), model.clone())]);
            if window.window_secs == slo_secs && slo > 0.0 {
                let latency = match window.latency.p95 {
                    Some(p95) if p95 > slo => {
                        let mut e = evidence("p95_latency_ms", p95, slo);
                        e.current_n = window.requests;
                        firing(
                            Severity::Warning,
                            format!("{route} p95 latency {p95:.0} ms over the last {minutes} min"),
                            format!(
                                "Route {route} (model {model}): p95 latency {p95:.0} ms over the last {minutes} min, \
                                 above the {slo:.0} ms SLO ({} requests).",
                                window.requests
                            ),
                            e,
                        )
                    }
                    Some(p95) => Outcome::Clear(format!("p95 latency back to {p95:.0} ms, within the {slo:.0} ms SLO")),
                    None => Outcome::Clear(format!("no requests in the last {minutes} min")),
                };
                self.rule(format!("latency_slo:{route}:{model}"), &labels, latency);
            }
            let threshold = self.config.error_rate;
            if window.window_secs == 60 && threshold > 0.0 {
                let (errors, requests) = (window.errors, window.requests);
                let share = percent(window.error_rate);
                let errors_now = if requests >= self.config.error_rate_min_requests && window.error_rate >= threshold {
                    let mut e = evidence("error_rate", window.error_rate, threshold);
                    e.current_n = requests;
                    e.detail = format!("{errors} of {requests} requests failed");
                    firing(
                        Severity::Critical,
                        format!("{route} failing: {share} of the last minute's requests"),
                        format!(
                            "Route {route} (model {model}): {errors} of {requests} requests failed in the last minute \
                             ({share}), at or over the {} alert threshold.",
                            percent(threshold)
                        ),
                        e,
                    )
                } else {
                    Outcome::Clear(format!(
                        "error rate back to {share} of the last minute's {requests} requests (alert at {} of at least {})",
                        percent(threshold),
                        self.config.error_rate_min_requests
                    ))
                };
                self.rule(format!("error_rate:{route}:{model}"), &labels, errors_now);
            }
        }
    }

    fn rule(&self, key: String, labels: &BTreeMap<String, String>, outcome: Outcome) {
        match outcome {
            Outcome::Firing { severity, title, message, evidence } => {
                let rule = key.split(':').next().unwrap_or("host").to_string();
                self.alerts.raise(Raised { key, rule, severity, title, message, evidence, labels: labels.clone() });
            }
            Outcome::Clear(reason) => {
                self.alerts.resolve(&key, &reason);
            }
        }
    }
}

/// How alerts name a GPU: short in titles, with its UUID in messages (indexes change across reboots).
struct GpuNames {
    /// "GPU 0 (NVIDIA H100)", or "GPU 0" when the name is unknown.
    which: String,
    /// `which` and the UUID.
    full: String,
}

impl GpuNames {
    fn of(gpu: &GpuSample) -> Self {
        let which = if gpu.name.is_empty() {
            format!("GPU {}", gpu.index)
        } else {
            format!("GPU {} ({})", gpu.index, gpu.name)
        };
        let full = format!("{which}, {}", gpu.uuid);
        Self { which, full }
    }
}

/// Warning at `limit` °C, critical 10 °C above it.
fn gpu_temperature(gpu: &GpuSample, names: &GpuNames, limit: u32) -> Outcome {
    let critical = limit + 10;
    let GpuNames { which, full } = names;
    match gpu.temperature_celsius {
        Some(t) if t >= limit => firing(
            if t >= critical { Severity::Critical } else { Severity::Warning },
            format!("{which} at {t} °C"),
            format!("{full} is at {t} °C, at or over the {limit} °C alert threshold (critical from {critical} °C)."),
            evidence("temperature_c", f64::from(t), f64::from(limit)),
        ),
        Some(t) => Outcome::Clear(format!("GPU {} back to {t} °C, under the {limit} °C threshold", gpu.index)),
        None => Outcome::Clear(format!("GPU {} no longer reports its temperature", gpu.index)),
    }
}

/// Warning when the share of memory in use reaches `fraction`.
fn gpu_memory(gpu: &GpuSample, names: &GpuNames, fraction: f64) -> Outcome {
    // A total of 0 would make the share meaningless: treated as not reported.
    let Some((used, total)) = gpu.memory_used_bytes.zip(gpu.memory_total_bytes.filter(|t| *t > 0)) else {
        return Outcome::Clear(format!("GPU {} no longer reports its memory", gpu.index));
    };
    let share = used as f64 / total as f64;
    if share < fraction {
        return Outcome::Clear(format!(
            "GPU {} memory back to {} in use, under the {} threshold",
            gpu.index,
            percent(share),
            percent(fraction)
        ));
    }
    firing(
        Severity::Warning,
        format!("{} memory {} full", names.which, percent(share)),
        format!(
            "{} has {} of {} GB of memory in use ({}), at or over the {} alert threshold.",
            names.full,
            gigabytes(used),
            gigabytes(total),
            percent(share),
            percent(fraction)
        ),
        evidence("memory_used_fraction", share, fraction),
    )
}

/// Warning while the GPU holds its clocks down for power or heat (other throttle reasons, such as idle, are
/// normal).
fn gpu_throttle(gpu: &GpuSample, names: &GpuNames) -> Outcome {
    let throttled: Vec<&str> = gpu
        .throttle_reasons
        .iter()
        .flatten()
        .filter(|r| r.contains("power") || r.contains("thermal") || r.contains("hw_slowdown"))
        .map(String::as_str)
        .collect();
    if throttled.is_empty() {
        return Outcome::Clear(format!("GPU {} no longer throttled for power or heat", gpu.index));
    }
    let reasons = throttled.join(", ");
    let mut e = evidence("throttle_reasons", throttled.len() as f64, 0.0);
    e.detail = reasons.clone();
    firing(
        Severity::Warning,
        format!("{} throttled: {reasons}", names.which),
        format!(
            "{} is holding its clocks down for power or heat ({reasons}): requests on it run slower until it cools \
             down or its power draw falls.",
            names.full
        ),
        e,
    )
}

fn evidence(statistic: &str, value: f64, threshold: f64) -> Evidence {
    Evidence { statistic: statistic.into(), value, threshold, ..Evidence::default() }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

fn times(n: u64) -> String {
    if n == 1 {
        "1 time".into()
    } else {
        format!("{n} times")
    }
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e9)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
