//! Synthetic but realistic trace streams through the detectors: a shift at a known point is caught within a
//! stated number of requests with the right evidence, and stable streams raise nothing.
use super::*;

/// splitmix64: a small, seedable generator so the streams are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Lognormal with this mean and coefficient of variation.
    fn lognormal(&mut self, mean: f64, cv: f64) -> f64 {
        let sigma2 = (1.0 + cv * cv).ln();
        (mean.ln() - sigma2 / 2.0 + sigma2.sqrt() * self.normal()).exp()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// One request of a chat route: answers of ~180 tokens (CV 0.5) at ~25 ms a token after a ~120 ms TTFT;
/// 1% errors, 2% refusals, 5% cut at max_tokens. `slowdown` and `longer` scale per-token time and length.
fn request(rng: &mut Rng, slowdown: f64, longer: f64) -> Observation {
    let output = (rng.lognormal(180.0 * longer, 0.5)).round().max(1.0);
    let ttft = rng.lognormal(120.0, 0.3);
    let per_token = rng.lognormal(25.0 * slowdown, 0.1);
    let latency = ttft + output * per_token;
    let ok = !rng.chance(0.01);
    Observation {
        route: "chat".into(),
        model: "qwen".into(),
        prompt_version: "v1".into(),
        numbers: [
            ok.then_some(output),
            Some(rng.lognormal(600.0, 0.4).round()),
            ok.then_some(ttft),
            ok.then_some(latency),
            ok.then_some(output / (latency - ttft) * 1000.0),
        ],
        flags: [!ok, ok && rng.chance(0.02), false, ok && rng.chance(0.05)],
    }
}

fn raised(verdicts: Vec<Verdict>) -> Vec<Raised> {
    verdicts
        .into_iter()
        .filter_map(|v| match v {
            Verdict::Raise(r) | Verdict::Event(r) => Some(*r),
            Verdict::Resolve { .. } => None,
        })
        .collect()
}

#[test]
fn a_slowdown_with_longer_answers_alerts_within_tens_of_requests_with_the_evidence() {
    for seed in 1..=5 {
        let mut rng = Rng(seed);
        let mut engine = DriftEngine::new(DriftConfig::default());
        let shift_at = 1000;
        let mut first_shift = None;
        let mut first_window = None;
        for i in 0..2000 {
            let (slowdown, longer) = if i < shift_at { (1.0, 1.0) } else { (1.6, 1.5) };
            for alert in raised(engine.observe(&request(&mut rng, slowdown, longer))) {
                assert!(i >= shift_at, "seed {seed}: false alarm before the shift at request {i}: {alert:?}");
                if alert.evidence.statistic == "cusum" && first_shift.is_none() {
                    first_shift = Some((i - shift_at, alert.clone()));
                }
                if alert.key.ends_with(":latency_ms") && first_window.is_none() {
                    first_window = Some((i - shift_at, alert));
                }
            }
        }
        let (delay, alert) = first_shift.expect("the change-point detector fires");
        assert!(delay <= 60, "seed {seed}: change point found {delay} requests after the shift");
        assert_eq!((alert.rule.as_str(), alert.labels["route"].as_str()), ("drift", "chat"));
        assert!(alert.evidence.value > alert.evidence.threshold, "{alert:?}");
        // The window test needs `consecutive` windows of `window_size` after the shift.
        let (delay, alert) = first_window.expect("the window test fires on latency");
        let config = DriftConfig::default();
        let bound = (config.consecutive as usize + 1) * config.window_size;
        assert!(delay < bound, "seed {seed}: window test fired {delay} requests after the shift");
        let evidence = &alert.evidence;
        assert_eq!(evidence.statistic, "ks_p_value");
        assert!(evidence.value < evidence.threshold && evidence.threshold < 0.05 / 8.0, "{evidence:?}");
        let (reference, current) = (evidence.reference.as_ref().expect("ref"), evidence.current.as_ref().expect("cur"));
        // Mean latency is ~120 + 180 x 25 = 4620 ms before and ~120 + 270 x 40 = 10920 ms after.
        assert!((4000.0..5300.0).contains(&reference.mean), "{reference:?}");
        assert!((9500.0..12500.0).contains(&current.mean), "{current:?}");
        assert_eq!((evidence.reference_n, evidence.current_n), (reference.n, current.n));
    }
}

#[test]
fn stable_streams_of_ten_thousand_requests_raise_no_drift() {
    // Measured with DRIFT_SEEDS=100 when these defaults were set: no alert in 1,000,000 stable requests.
    let seeds: u64 = std::env::var("DRIFT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    for seed in 1..=seeds {
        let mut rng = Rng(1000 + seed);
        let mut engine = DriftEngine::new(DriftConfig::default());
        for i in 0..10_000 {
            let alerts = raised(engine.observe(&request(&mut rng, 1.0, 1.0)));
            assert!(alerts.is_empty(), "seed {seed}: false alarm at request {i}: {alerts:?}");
        }
    }
}

#[test]
fn a_new_prompt_version_gets_its_own_reference_and_a_huge_prompt_is_an_anomaly() {
    let mut rng = Rng(7);
    let mut engine = DriftEngine::new(DriftConfig::default());
    for _ in 0..600 {
        assert!(raised(engine.observe(&request(&mut rng, 1.0, 1.0))).is_empty());
    }
    // v2 answers twice as long from its first request: that is its baseline, not drift.
    for _ in 0..800 {
        let mut obs = request(&mut rng, 1.0, 2.0);
        obs.prompt_version = "v2".into();
        let alerts = raised(engine.observe(&obs));
        assert!(alerts.is_empty(), "{alerts:?}");
    }
    let mut huge = request(&mut rng, 1.0, 1.0);
    huge.numbers[Signal::InputTokens as usize] = Some(50_000.0);
    let alerts = raised(engine.observe(&huge));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "input_anomaly");
    assert_eq!(alerts[0].evidence.value, 50_000.0);
}

#[test]
fn made_up_prompt_versions_keep_memory_flat_and_the_busy_version_watched() {
    let mut rng = Rng(11);
    let mut engine = DriftEngine::new(DriftConfig::default());
    // The version in real use keeps getting traffic between 9,000 one-off versions from a client.
    for i in 0..9_000 {
        let mut junk = request(&mut rng, 1.0, 1.0);
        junk.prompt_version = format!("junk-{i}");
        engine.observe(&junk);
        engine.observe(&request(&mut rng, 1.0, 1.0));
        assert!(engine.watched() <= MAX_KEYS_PER_ROUTE);
    }
    let busy = engine.keys.get("chat").and_then(|v| v.iter().find(|(_, version, _)| version == "v1"));
    let busy = busy.expect("the busy version is still watched");
    assert_eq!(busy.2.seen, 9_000, "and has kept its whole history");
}

/// A steady request of the "chat" route: `output` tokens, refused or not.
fn steady(output: f64, refused: bool) -> Observation {
    Observation {
        route: "chat".into(),
        model: "qwen".into(),
        prompt_version: "v1".into(),
        numbers: [Some(output), Some(50.0), Some(100.0), Some(400.0), Some(25.0)],
        flags: [false, refused, false, false],
    }
}

#[test]
fn window_and_rate_drift_read_as_sentences_with_both_windows() {
    let config =
        DriftConfig { reference_size: 30, window_size: 30, consecutive: 1, cusum_h: 0.0, ..Default::default() };
    let mut engine = DriftEngine::new(config);
    let mut verdicts = Vec::new();
    for i in 0..60 {
        verdicts.extend(engine.observe(&if i < 30 { steady(10.0, false) } else { steady(20.0, true) }));
    }
    let alerts = raised(verdicts);
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let output = alerts.iter().find(|a| a.key == "drift:chat:qwen:v1:output_tokens").expect("output length");
    assert_eq!(output.title, "output length drifted up on route chat (model qwen, prompt version v1)");
    assert!(
        output.message.starts_with(
            "Output length drifted up on route chat (model qwen, prompt version v1): mean from 10 tokens to \
             20 tokens (+100%), median from 10 tokens to 20 tokens, p95 from 10 tokens to 20 tokens, \
             over the last 30 requests against 30 reference requests (Kolmogorov-Smirnov p = "
        ),
        "{}",
        output.message
    );
    assert!(output.message.ends_with("matches the reference again."), "{}", output.message);
    assert_eq!(output.labels.get("signal").map(String::as_str), Some("output_tokens"));

    let refusals = alerts.iter().find(|a| a.key.ends_with(":refusal_rate")).expect("refusal rate");
    assert!(
        refusals.message.contains("Refusal rate drifted up on route chat (model qwen, prompt version v1): from 0.0% of 30 reference requests to 100.0% of the last 30 (two-proportion z-test p = "),
        "{}",
        refusals.message
    );
    let e = &refusals.evidence;
    assert_eq!((e.statistic.as_str(), e.reference_n, e.current_n), ("z_test_p_value", 30, 30));
    assert_eq!(e.reference.as_ref().map(|s| (s.n, s.mean)), Some((30, 0.0)));
    assert_eq!(e.current.as_ref().map(|s| (s.n, s.mean, s.p50)), Some((30, 1.0, 1.0)));
    for alert in &alerts {
        assert!(!format!("{} {} {}", alert.title, alert.message, alert.evidence.detail).contains("Some("), "{alert:?}");
    }

    // Back to the reference: both resolve, saying why.
    let mut resolved = Vec::new();
    for _ in 0..30 {
        for verdict in engine.observe(&steady(10.0, false)) {
            if let Verdict::Resolve { key, reason } = verdict {
                resolved.push((key, reason));
            }
        }
    }
    resolved.sort();
    let reason = "the last 30 requests match the reference again".to_string();
    assert_eq!(
        resolved,
        [
            ("drift:chat:qwen:v1:output_tokens".to_string(), reason.clone()),
            ("drift:chat:qwen:v1:refusal_rate".to_string(), reason)
        ]
    );
}

#[test]
fn a_cusum_shift_carries_the_reference_and_recent_windows() {
    let config = DriftConfig { reference_size: 30, window_size: 1000, ..Default::default() };
    let mut engine = DriftEngine::new(config);
    // Ends on 38, where the upward statistic is back at zero.
    for i in 0..41 {
        assert!(engine.observe(&steady(38.0 + f64::from(i % 2), false)).is_empty());
    }
    let event = (0..20)
        .flat_map(|_| engine.observe(&steady(57.0, false)))
        .find_map(|v| match v {
            Verdict::Event(raised) => Some(*raised),
            _ => None,
        })
        .expect("a shift event");
    assert_eq!(event.key, "drift:chat:qwen:v1:output_tokens:shift");
    assert_eq!(event.title, "output length shifted up on route chat (model qwen, prompt version v1)");
    let e = &event.evidence;
    assert_eq!((e.statistic.as_str(), e.threshold, e.reference_n), ("cusum", 15.0, 30));
    assert!(e.value > 15.0 && e.current_n >= 1 && e.current_n < 20, "{e:?}");
    assert_eq!(e.reference.as_ref().map(|s| s.n), Some(30));
    assert_eq!(e.current.as_ref().map(|s| (s.n, s.mean)), Some((e.current_n, 57.0)));
    assert!(e.detail.starts_with("output_tokens shifted up: geometric mean 38.5 tokens -> 57"), "{e:?}");
    let expected = format!(
        "Output length shifted up on route chat (model qwen, prompt version v1): mean from 38.5 tokens over 30 \
         reference requests to 57 tokens (+48%) over the last {}, p95 from 39 tokens to 57 tokens",
        e.current_n
    );
    assert!(event.message.starts_with(&expected), "{}\n{expected}", event.message);
    assert!(event.message.ends_with("acknowledge it to silence it until the next one."), "{}", event.message);
}
