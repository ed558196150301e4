//! Drift per route, model and prompt version. Each key keeps a reference (its first `reference_size`
//! requests: a new model or prompt version is a new key, so it gets a fresh reference) and compares
//! tumbling windows of `window_size` later requests with it: numbers by Kolmogorov-Smirnov (reference up
//! to `ks_max_reference`) or normed Wasserstein distance, rates by a two-proportion z-test. One check tests
//! every signal, so the test level is Bonferroni-corrected over them; an alert needs `consecutive` drifted
//! windows in a row and resolves at the first clean one. Latency and output length also feed CUSUM
//! detectors, which alert on a sudden shift within tens of requests; a shift, like an unusually long prompt, is
//! a one-off event ([`Verdict::Event`]) that no later window clears: the runner ends it after
//! `event_alert_timeout_secs` without a recurrence.
use super::changepoint::CusumConfig;
use super::shift::{percentile, rate_summary, summary, ShiftDetector};
use super::{stats, texts};
use crate::alerts::{Evidence, Raised, Summary};
use crate::trace::{Trace, TraceStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    pub enabled: bool,
    /// Requests that form a key's reference.
    pub reference_size: usize,
    /// Requests in each compared window.
    pub window_size: usize,
    /// Confidence of the statistical tests (Evidently's default 0.95), before the correction over signals.
    pub confidence: f64,
    /// Normed Wasserstein distance that counts as drift, for references above `ks_max_reference`.
    pub distance_threshold: f64,
    pub ks_max_reference: usize,
    /// Drifted windows in a row before an alert.
    pub consecutive: u32,
    /// CUSUM decision interval on latency and output length, in standard deviations (0: off).
    pub cusum_h: f64,
    /// Answers whose first 200 characters contain one of these (lower-case) count as refusals.
    pub refusal_patterns: Vec<String>,
    /// A prompt this many times the reference's p99 input tokens raises an input anomaly (0: off).
    pub input_anomaly_factor: f64,
    /// CUSUM shift and input anomaly alerts mark one-off events that no later request clears: each resolves
    /// this long after its last occurrence (an acknowledged one that recurs fires again).
    pub event_alert_timeout_secs: u64,
}

impl DriftConfig {
    /// Refusal patterns lower-cased once, as `Observation::from_trace` compares them.
    pub fn normalized(mut self) -> Self {
        for pattern in &mut self.refusal_patterns {
            *pattern = pattern.to_lowercase();
        }
        self
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.reference_size < 30 || self.window_size < 30 {
            return Err(format!(
                "drift.reference_size = {} and drift.window_size = {} must be at least 30",
                self.reference_size, self.window_size
            ));
        }
        if !(0.5..1.0).contains(&self.confidence) {
            return Err(format!("drift.confidence = {} must be in [0.5, 1)", self.confidence));
        }
        if self.consecutive == 0 {
            return Err("drift.consecutive must be at least 1".into());
        }
        if self.event_alert_timeout_secs == 0 {
            return Err("drift.event_alert_timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reference_size: 500,
            window_size: 200,
            confidence: 0.95,
            distance_threshold: 0.1,
            ks_max_reference: 1000,
            consecutive: 3,
            cusum_h: 15.0,
            refusal_patterns: [
                "i'm sorry, but i can",
                "i am sorry, but i can",
                "i cannot help",
                "i can't help",
                "i can't assist",
                "i cannot assist",
                "i'm not able to",
                "as an ai language model",
            ]
            .map(String::from)
            .to_vec(),
            input_anomaly_factor: 5.0,
            event_alert_timeout_secs: 3600,
        }
    }
}

/// The numbers drift watches, in the order of [`Observation::numbers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    OutputTokens,
    InputTokens,
    TtftMs,
    LatencyMs,
    TokensPerS,
}

impl Signal {
    pub const ALL: [Signal; 5] =
        [Self::OutputTokens, Self::InputTokens, Self::TtftMs, Self::LatencyMs, Self::TokensPerS];

    pub fn name(self) -> &'static str {
        match self {
            Self::OutputTokens => "output_tokens",
            Self::InputTokens => "input_tokens",
            Self::TtftMs => "ttft_ms",
            Self::LatencyMs => "latency_ms",
            Self::TokensPerS => "tokens_per_s",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const RATES: [&str; 4] = ["error_rate", "refusal_rate", "empty_rate", "length_finish_rate"];

/// What drift looks at in one trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub route: String,
    pub model: String,
    pub prompt_version: String,
    /// By [`Signal`]: `numbers[Signal::InputTokens as usize]`, or [`Observation::number`].
    pub numbers: [Option<f64>; 5],
    pub flags: [bool; 4],
}

impl Observation {
    pub fn number(&self, signal: Signal) -> Option<f64> {
        self.numbers[signal.index()]
    }
}

impl Observation {
    pub fn from_trace(trace: &Trace, config: &DriftConfig) -> Option<Self> {
        if matches!(trace.status, TraceStatus::InFlight | TraceStatus::Rejected | TraceStatus::Cancelled) {
            return None;
        }
        let ok = trace.status == TraceStatus::Ok;
        // Refusals start the answer; looking at its beginning keeps this cheap for long answers.
        let head: String = trace.response_text.chars().take(200).collect::<String>().to_lowercase();
        let refusal = ok && config.refusal_patterns.iter().any(|p| head.contains(p.as_str()));
        let generation_ms = trace.ttft_ms.map(|ttft| trace.latency_ms - ttft).filter(|ms| *ms > 0.0);
        let tokens_per_s =
            generation_ms.filter(|_| trace.output_tokens > 1).map(|ms| trace.output_tokens as f64 / ms * 1000.0);
        Some(Self {
            route: trace.route.clone(),
            model: trace.model_served.clone(),
            prompt_version: trace.prompt_version.clone(),
            numbers: [
                ok.then_some(trace.output_tokens as f64),
                Some(trace.input_tokens as f64),
                trace.ttft_ms.filter(|_| ok),
                ok.then_some(trace.latency_ms),
                tokens_per_s.filter(|_| ok),
            ],
            flags: [!ok, refusal, ok && trace.response_text.trim().is_empty(), ok && trace.finish_reason == "length"],
        })
    }
}

/// One number's values: the reference, then the window being filled.
#[derive(Default)]
struct Series {
    reference: Vec<f64>,
    window: Vec<f64>,
    /// Drifted windows in a row.
    streak: u32,
}

#[derive(Default)]
struct RateSignal {
    reference: (u64, u64),
    window: (u64, u64),
    streak: u32,
}

struct KeyState {
    seen: usize,
    /// The engine's observation count when this key last had one: the least recent is evicted first.
    last_seen: u64,
    numbers: [Series; 5],
    rates: [RateSignal; 4],
    /// On latency and output tokens.
    cusum: [ShiftDetector; 2],
    input_p99: Option<f64>,
    /// The reference's input tokens, for input anomaly evidence.
    input_reference: Option<Summary>,
}

/// What one observation changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A condition that holds (a drifted window); a later clean window resolves it.
    Raise(Box<Raised>),
    /// A one-off event (a change point, an anomalous prompt) that nothing clears: it ends by timeout, and
    /// fires again if it recurs after an acknowledgement.
    Event(Box<Raised>),
    Resolve {
        key: String,
        reason: String,
    },
}

/// The detectors of every key; synchronous and deterministic (the daemon runs it on its own thread).
pub struct DriftEngine {
    config: DriftConfig,
    keys: HashMap<String, Vec<(String, String, KeyState)>>,
    /// Observations so far, the clock of `KeyState::last_seen`.
    observed: u64,
}

/// (model, prompt version) pairs watched per route. Routes come from the config, but prompt versions come from
/// clients: past this many, the pair seen least recently is forgotten, so a stream of made-up versions keeps
/// memory flat and can only push out other idle versions, never stop a route from being watched.
pub const MAX_KEYS_PER_ROUTE: usize = 32;

impl DriftEngine {
    pub fn new(config: DriftConfig) -> Self {
        Self { config: config.normalized(), keys: HashMap::new(), observed: 0 }
    }

    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    /// (model, prompt version) pairs watched now, over all routes.
    pub fn watched(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    pub fn observe(&mut self, obs: &Observation) -> Vec<Verdict> {
        self.observed += 1;
        let now = self.observed;
        let config = &self.config;
        let Some(state) = key_state(&mut self.keys, config, obs) else { return Vec::new() };
        state.last_seen = now;
        let labels = || {
            BTreeMap::from([
                ("route".to_string(), obs.route.clone()),
                ("model".to_string(), obs.model.clone()),
                ("prompt_version".to_string(), obs.prompt_version.clone()),
            ])
        };
        let key_of = |signal: &str| format!("drift:{}:{}:{}:{signal}", obs.route, obs.model, obs.prompt_version);
        let mut verdicts = one_off_events(state, config, obs, &key_of, &labels);
        let in_reference = state.seen < config.reference_size;
        state.seen += 1;
        for (series, value) in state.numbers.iter_mut().zip(obs.numbers) {
            let Some(value) = value else { continue };
            if in_reference {
                series.reference.push(value)
            } else {
                series.window.push(value)
            }
        }
        for (rate, flag) in state.rates.iter_mut().zip(obs.flags) {
            let side = if in_reference { &mut rate.reference } else { &mut rate.window };
            side.0 += u64::from(flag);
            side.1 += 1;
        }
        if state.seen == config.reference_size {
            let input = &state.numbers[Signal::InputTokens.index()].reference;
            state.input_p99 = percentile(input, 0.99);
            state.input_reference = Some(summary(input));
        }
        let window_full = !in_reference && (state.seen - config.reference_size).is_multiple_of(config.window_size);
        if window_full {
            verdicts.extend(check_window(state, config, &key_of, &labels));
        }
        verdicts
    }
}

/// The detectors of the observation's (route, model, prompt version), made when new (forgetting the
/// least recently seen pair of the route when it has [`MAX_KEYS_PER_ROUTE`]). Always `Some`.
fn key_state<'k>(
    keys: &'k mut HashMap<String, Vec<(String, String, KeyState)>>,
    config: &DriftConfig,
    obs: &Observation,
) -> Option<&'k mut KeyState> {
    // By route, then a short list of (model, prompt version): found without allocating per trace.
    if !keys.contains_key(&obs.route) {
        keys.insert(obs.route.clone(), Vec::new());
    }
    let versions = keys.get_mut(&obs.route)?;
    let found = versions.iter().position(|(model, version, _)| *model == obs.model && *version == obs.prompt_version);
    let position = found.unwrap_or_else(|| {
        if versions.len() >= MAX_KEYS_PER_ROUTE {
            if let Some(oldest) = (0..versions.len()).min_by_key(|&i| versions[i].2.last_seen) {
                versions.swap_remove(oldest);
            }
        }
        // The baseline comes from the whole reference: a short warm-up misjudges skewed latencies.
        let warmup = config.reference_size.max(2) as u64;
        let cusum =
            [0, 1].map(|_| ShiftDetector::new(CusumConfig { h: config.cusum_h, warmup, ..CusumConfig::default() }));
        let state = KeyState {
            seen: 0,
            last_seen: 0,
            numbers: Default::default(),
            rates: Default::default(),
            cusum,
            input_p99: None,
            input_reference: None,
        };
        versions.push((obs.model.clone(), obs.prompt_version.clone(), state));
        versions.len() - 1
    });
    versions.get_mut(position).map(|(_, _, state)| state)
}

/// Events judged on this one observation: a prompt far longer than the reference's, and a change point
/// (CUSUM) in latency or output tokens.
fn one_off_events(
    state: &mut KeyState,
    config: &DriftConfig,
    obs: &Observation,
    key_of: &dyn Fn(&str) -> String,
    labels: &dyn Fn() -> BTreeMap<String, String>,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if let (Some(p99), Some(input)) = (state.input_p99, obs.number(Signal::InputTokens)) {
        if config.input_anomaly_factor > 0.0 && input > p99 * config.input_anomaly_factor {
            verdicts.push(Verdict::Event(Box::new(texts::input_anomaly(
                format!("input_anomaly:{}:{}", obs.route, obs.model),
                input,
                p99,
                config.input_anomaly_factor,
                state.input_reference.clone(),
                &labels(),
                config.event_alert_timeout_secs,
            ))));
        }
    }
    if config.cusum_h > 0.0 {
        for (detector, signal) in state.cusum.iter_mut().zip([Signal::LatencyMs, Signal::OutputTokens]) {
            let Some(x) = obs.number(signal) else { continue };
            if let Some(shift) = detector.update(x) {
                let name = signal.name();
                let key = key_of(&format!("{name}:shift"));
                let raised =
                    texts::shift(key, name, &shift, config.cusum_h, &labels(), config.event_alert_timeout_secs);
                verdicts.push(Verdict::Event(Box::new(raised)));
            }
        }
    }
    verdicts
}

/// Compares the window that just filled with the reference, signal by signal, then starts the next window.
fn check_window(
    state: &mut KeyState,
    config: &DriftConfig,
    key_of: &dyn Fn(&str) -> String,
    labels: &dyn Fn() -> BTreeMap<String, String>,
) -> Vec<Verdict> {
    let alpha = (1.0 - config.confidence) / (Signal::ALL.len() + RATES.len()) as f64;
    let mut verdicts = Vec::new();
    let mut judge = |streak: &mut u32, name: &str, drifted: Option<Evidence>| match drifted {
        Some(evidence) => {
            *streak += 1;
            if *streak >= config.consecutive {
                let (key, labels, size) = (key_of(name), labels(), config.window_size);
                let raised = if name.ends_with("_rate") {
                    texts::rate_drift(key, name, evidence, &labels, size)
                } else {
                    texts::window_drift(key, name, evidence, &labels, size)
                };
                verdicts.push(Verdict::Raise(Box::new(raised)));
            }
        }
        None => {
            if *streak >= config.consecutive {
                verdicts
                    .push(Verdict::Resolve { key: key_of(name), reason: texts::window_resolved(config.window_size) });
            }
            *streak = 0;
        }
    };
    for (series, signal) in state.numbers.iter_mut().zip(Signal::ALL) {
        let window = std::mem::take(&mut series.window);
        if series.reference.len() < 30 || window.len() < 30 {
            continue;
        }
        judge(&mut series.streak, signal.name(), numeric_drift(&series.reference, &window, config, alpha));
    }
    for (rate, name) in state.rates.iter_mut().zip(RATES) {
        let window = std::mem::take(&mut rate.window);
        // The z-test's normal approximation needs about 5 expected hits and misses in each window (the usual
        // chi-square validity rule); rarer events are not judged yet.
        let pooled = (rate.reference.0 + window.0) as f64 / (rate.reference.1 + window.1).max(1) as f64;
        let expected = [rate.reference.1, window.1].map(|n| n as f64 * pooled.min(1.0 - pooled));
        if expected.iter().any(|e| *e < 5.0) {
            judge(&mut rate.streak, name, None);
            continue;
        }
        let test = stats::two_proportion_z(rate.reference.0, rate.reference.1, window.0, window.1).ok();
        let drifted = test.filter(|t| t.p_value < alpha).map(|t| {
            let (reference, current) =
                (rate_summary(rate.reference.0, rate.reference.1), rate_summary(window.0, window.1));
            Evidence {
                statistic: "z_test_p_value".into(),
                value: t.p_value,
                threshold: alpha,
                reference_n: rate.reference.1,
                current_n: window.1,
                detail: format!("{name} {:.3} -> {:.3}, z = {:.2}", reference.mean, current.mean, t.statistic),
                reference: Some(reference),
                current: Some(current),
            }
        });
        judge(&mut rate.streak, name, drifted);
    }
    verdicts
}

fn numeric_drift(reference: &[f64], window: &[f64], config: &DriftConfig, alpha: f64) -> Option<Evidence> {
    let (statistic, value, threshold, drifted) = if reference.len() <= config.ks_max_reference {
        // The asymptotic p-value (Stephens' correction): the exact one costs O(n*m) per test, most of the
        // detectors' CPU, and decides the same at these sample sizes.
        let ks = stats::ks_two_sample_with(reference, window, stats::KsMethod::Asymptotic).ok()?;
        ("ks_p_value", ks.p_value, alpha, ks.p_value < alpha)
    } else {
        let distance = stats::wasserstein_normed(reference, window).ok()?;
        ("wasserstein_normed", distance, config.distance_threshold, distance > config.distance_threshold)
    };
    drifted.then(|| Evidence {
        statistic: statistic.into(),
        value,
        threshold,
        reference: Some(summary(reference)),
        current: Some(summary(window)),
        reference_n: reference.len() as u64,
        current_n: window.len() as u64,
        detail: String::new(),
    })
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
