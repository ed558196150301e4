//! A falling pass rate of a feedback score, as a drift signal. Per route, model, prompt version and score
//! name, the first `reference_size` pass/fail scores form the reference and each later `window_size` scores
//! a window; a window whose pass rate is lower than the reference's by a one-sided two-proportion z-test (at
//! the level of one of the request signals) counts as drifted, `consecutive` such windows raise an alert and
//! the first clean one resolves it. A rising pass rate is good news, never an alert. Keys per route are
//! bounded as the request signals' are (the least recently scored pair goes first).
use super::monitor::{DriftConfig, Verdict, MAX_KEYS_PER_ROUTE};
use super::shift::rate_summary;
use super::stats;
use crate::alerts::{Evidence, Raised, Severity};
use std::collections::{BTreeMap, HashMap};

/// The request signals' count (five numbers, four rates): the score test shares their level.
const SIGNALS: usize = 9;

/// One pass/fail score on a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreObservation {
    pub route: String,
    pub model: String,
    pub prompt_version: String,
    /// The score's name as metrics count it (bounded).
    pub name: String,
    pub passed: bool,
}

#[derive(Default)]
struct PassRate {
    seen: usize,
    last_seen: u64,
    /// (passed, scores).
    reference: (u64, u64),
    window: (u64, u64),
    streak: u32,
}

/// (model, prompt version, score name) per route, and its pass rates.
type RouteKeys = Vec<((String, String, String), PassRate)>;

pub struct ScoreDrift {
    config: DriftConfig,
    keys: HashMap<String, RouteKeys>,
    observed: u64,
}

impl ScoreDrift {
    pub fn new(config: DriftConfig) -> Self {
        Self { config, keys: HashMap::new(), observed: 0 }
    }

    pub fn observe(&mut self, obs: &ScoreObservation) -> Vec<Verdict> {
        self.observed += 1;
        let config = &self.config;
        let keys = self.keys.entry(obs.route.clone()).or_default();
        let wanted = (obs.model.clone(), obs.prompt_version.clone(), obs.name.clone());
        let index = match keys.iter().position(|(key, _)| *key == wanted) {
            Some(index) => index,
            None => {
                if keys.len() >= MAX_KEYS_PER_ROUTE {
                    if let Some(oldest) = (0..keys.len()).min_by_key(|&i| keys[i].1.last_seen) {
                        keys.swap_remove(oldest);
                    }
                }
                keys.push((wanted, PassRate::default()));
                keys.len() - 1
            }
        };
        let Some((_, rate)) = keys.get_mut(index) else { return Vec::new() };
        rate.last_seen = self.observed;
        let in_reference = rate.seen < config.reference_size;
        rate.seen += 1;
        let side = if in_reference { &mut rate.reference } else { &mut rate.window };
        side.0 += u64::from(obs.passed);
        side.1 += 1;
        let window_full = !in_reference && (rate.seen - config.reference_size).is_multiple_of(config.window_size);
        if !window_full {
            return Vec::new();
        }
        let window = std::mem::take(&mut rate.window);
        let key = format!("drift:{}:{}:{}:score:{}", obs.route, obs.model, obs.prompt_version, obs.name);
        match fell(rate.reference, window, config) {
            Some(evidence) => {
                rate.streak += 1;
                if rate.streak >= config.consecutive {
                    return vec![Verdict::Raise(Box::new(raised(key, obs, evidence, config.window_size)))];
                }
                Vec::new()
            }
            None => {
                let was_firing = rate.streak >= config.consecutive;
                rate.streak = 0;
                if was_firing {
                    let reason =
                        format!("the pass rate of the last {} scores matches the reference again", config.window_size);
                    return vec![Verdict::Resolve { key, reason }];
                }
                Vec::new()
            }
        }
    }
}

/// The evidence when the window's pass rate is significantly below the reference's.
fn fell(reference: (u64, u64), window: (u64, u64), config: &DriftConfig) -> Option<Evidence> {
    // The normal approximation needs about 5 expected passes and fails on each side (as for the rates).
    let pooled = (reference.0 + window.0) as f64 / (reference.1 + window.1).max(1) as f64;
    if [reference.1, window.1].iter().any(|n| (*n as f64) * pooled.min(1.0 - pooled) < 5.0) {
        return None;
    }
    let test = stats::two_proportion_z(reference.0, reference.1, window.0, window.1).ok()?;
    // Two-sided p, halved for the one direction that matters when the window is the lower one.
    let one_sided = test.p_value / 2.0;
    let alpha = (1.0 - config.confidence) / SIGNALS as f64;
    let share = |(hits, n): (u64, u64)| hits as f64 / n.max(1) as f64;
    let falling = share(window) < share(reference);
    (falling && one_sided < alpha).then(|| {
        let (r, c) = (rate_summary(reference.0, reference.1), rate_summary(window.0, window.1));
        Evidence {
            statistic: "z_test_p_value".into(),
            value: one_sided,
            threshold: alpha,
            reference_n: reference.1,
            current_n: window.1,
            detail: format!("pass rate {:.3} -> {:.3}, z = {:.2} (one-sided)", r.mean, c.mean, test.statistic),
            reference: Some(r),
            current: Some(c),
        }
    })
}

fn raised(key: String, obs: &ScoreObservation, evidence: Evidence, window_size: usize) -> Raised {
    let (r, c) = (evidence.reference.clone().unwrap_or_default(), evidence.current.clone().unwrap_or_default());
    let version =
        if obs.prompt_version.is_empty() { String::new() } else { format!(", prompt version {}", obs.prompt_version) };
    let title = format!("score {:?} pass rate fell on route {} (model {}{version})", obs.name, obs.route, obs.model);
    let message = format!(
        "The pass rate of score {:?} on route {} fell from {:.1}% of {} reference scores to {:.1}% of the last {} \
         (one-sided two-proportion z-test p = {:.2e}, under {:.2e}). It resolves when a later window of \
         {window_size} scores matches the reference again.",
        obs.name,
        obs.route,
        r.mean * 100.0,
        r.n,
        c.mean * 100.0,
        c.n,
        evidence.value,
        evidence.threshold,
    );
    let labels = BTreeMap::from([
        ("route".to_string(), obs.route.clone()),
        ("model".to_string(), obs.model.clone()),
        ("prompt_version".to_string(), obs.prompt_version.clone()),
        ("signal".to_string(), "score_pass_rate".to_string()),
        ("score".to_string(), obs.name.clone()),
    ]);
    Raised { key, rule: "drift".into(), severity: Severity::Warning, title, message, evidence, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DriftConfig {
        DriftConfig { reference_size: 100, window_size: 50, consecutive: 2, ..DriftConfig::default() }
    }

    /// `n` scores passing `share` of the time, spread evenly.
    fn feed(drift: &mut ScoreDrift, n: usize, share: f64, version: &str) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        for i in 0..n {
            // Exactly round(n * share) passes per call, spread evenly.
            let passed = ((i + 1) as f64 * share).round() > (i as f64 * share).round();
            let obs = ScoreObservation {
                route: "chat".into(),
                model: "m".into(),
                prompt_version: version.into(),
                name: "thumbs".into(),
                passed,
            };
            verdicts.extend(drift.observe(&obs));
        }
        verdicts
    }

    #[test]
    fn a_falling_pass_rate_raises_after_consecutive_windows_and_resolves() {
        let mut drift = ScoreDrift::new(config());
        assert!(feed(&mut drift, 100, 0.8, "1").is_empty(), "the reference");
        assert!(feed(&mut drift, 50, 0.8, "1").is_empty(), "a steady window");
        assert!(feed(&mut drift, 50, 0.3, "1").is_empty(), "one drifted window is not enough");
        let raised = feed(&mut drift, 50, 0.3, "1");
        let [Verdict::Raise(alert)] = raised.as_slice() else { panic!("{raised:?}") };
        assert_eq!(alert.key, "drift:chat:m:1:score:thumbs");
        assert!(alert.title.contains("\"thumbs\" pass rate fell on route chat"), "{}", alert.title);
        assert!(
            alert.message.contains("from 80.0% of 100 reference scores to 30.0% of the last 50"),
            "{}",
            alert.message
        );
        let resolved = feed(&mut drift, 50, 0.8, "1");
        assert!(matches!(resolved.as_slice(), [Verdict::Resolve { key, .. }] if key == "drift:chat:m:1:score:thumbs"));
    }

    #[test]
    fn a_rising_pass_rate_or_a_new_prompt_version_is_no_alert() {
        let mut drift = ScoreDrift::new(config());
        feed(&mut drift, 100, 0.3, "1");
        assert!(feed(&mut drift, 300, 0.95, "1").is_empty(), "better is not drift");
        // A new prompt version starts its own reference.
        assert!(feed(&mut drift, 300, 0.1, "2").is_empty());
    }

    #[test]
    fn the_detector_thread_raises_the_alert_through_the_alert_manager() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alerts = crate::alerts::AlertManager::open(&dir.path().join("state.db"), Vec::new()).expect("alerts");
        let mut worker = crate::drift::runner::Worker::new(config(), alerts.clone(), Box::new(|| 0));
        let score = |passed: bool| ScoreObservation {
            route: "chat".into(),
            model: "m".into(),
            name: "thumbs".into(),
            passed,
            ..ScoreObservation::default()
        };
        for i in 0..100 + 2 * 50 {
            let passed = if i < 100 { i % 5 != 0 } else { i % 5 == 0 };
            worker.observe_score(&score(passed));
        }
        let active = alerts.active();
        let alert = active.iter().find(|a| a.key == "drift:chat:m::score:thumbs").expect("a score drift alert");
        assert_eq!(alert.labels.get("signal").map(String::as_str), Some("score_pass_rate"));
    }

    #[test]
    fn keys_per_route_are_bounded() {
        let mut drift = ScoreDrift::new(config());
        for version in 0..MAX_KEYS_PER_ROUTE * 3 {
            feed(&mut drift, 1, 1.0, &version.to_string());
        }
        assert_eq!(drift.keys.get("chat").map(Vec::len), Some(MAX_KEYS_PER_ROUTE));
    }
}
