//! False-alarm rates and detection delays of the defaults, measured on seeded lognormal streams.
use super::*;

/// splitmix64 (Steele, Lea, Flood 2014) + Box-Muller: deterministic lognormal noise.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn lognormal(&mut self, sigma: f64) -> f64 {
        (sigma * self.normal()).exp()
    }
}

trait Detector {
    fn feed(&mut self, x: f64) -> bool;
}
impl Detector for PageHinkley {
    fn feed(&mut self, x: f64) -> bool {
        self.update(x)
    }
}
impl Detector for Cusum {
    fn feed(&mut self, x: f64) -> bool {
        self.update(x)
    }
}

struct Measured {
    false_alarms_per_10k: f64,
    /// Trials (of 200) with a false alarm during the 300 pre-change samples; left out of `delays`.
    spoiled: usize,
    /// Sorted delays of the other trials; `usize::MAX` = not detected within 300 shifted samples.
    delays: Vec<usize>,
}

fn measure<D: Detector>(make: impl Fn() -> D, sigma: f64, seed: u64) -> Measured {
    let mut rng = Rng(seed);
    let (mut alarms, mut total) = (0usize, 0usize);
    for _ in 0..100 {
        let mut d = make();
        for _ in 0..5000 {
            alarms += usize::from(d.feed(rng.lognormal(sigma)));
            total += 1;
        }
    }
    let (mut spoiled, mut delays) = (0, Vec::new());
    for _ in 0..200 {
        let mut d = make();
        let early = (0..300).fold(false, |early, _| d.feed(rng.lognormal(sigma)) | early);
        let delay = (1..=300).find(|_| d.feed(1.5 * rng.lognormal(sigma))).unwrap_or(usize::MAX);
        if early {
            spoiled += 1;
        } else {
            delays.push(delay);
        }
    }
    delays.sort_unstable();
    Measured { false_alarms_per_10k: alarms as f64 * 1e4 / total as f64, spoiled, delays }
}

fn report(name: &str, sigma: f64, m: &Measured) -> (usize, usize, usize) {
    let q = |p: f64| m.delays[((m.delays.len() - 1) as f64 * p).round() as usize];
    let (median, p95, max) = (q(0.5), q(0.95), q(1.0));
    let missed = m.delays.iter().filter(|&&d| d == usize::MAX).count();
    eprintln!(
        "{name} sigma={sigma}: {:.2} false alarms/10k samples; {} of 200 trials with a pre-change false alarm; \
         delay median {median} p95 {p95} max {max} ({missed} missed)",
        m.false_alarms_per_10k, m.spoiled
    );
    (median, p95, max)
}

#[test]
fn page_hinkley_defaults_detect_a_50_percent_jump_within_tens_of_samples() {
    let low = measure(|| PageHinkley::new(PageHinkleyConfig::default()), 0.3, 1);
    let (median, p95, max) = report("page-hinkley", 0.3, &low);
    assert!(low.false_alarms_per_10k <= 0.5 && median <= 25 && p95 <= 40 && max <= 60);
    let high = measure(|| PageHinkley::new(PageHinkleyConfig::default()), 0.5, 2);
    let (median, p95, _) = report("page-hinkley", 0.5, &high);
    assert!(high.false_alarms_per_10k <= 10.0 && median <= 25 && p95 <= 60);
}

#[test]
fn cusum_defaults_detect_a_50_percent_jump_within_tens_of_samples() {
    let low = measure(|| Cusum::new(CusumConfig::default()), 0.3, 3);
    let (median, p95, max) = report("cusum", 0.3, &low);
    assert!(low.false_alarms_per_10k <= 3.0 && median <= 15 && p95 <= 30 && max <= 60);
    let high = measure(|| Cusum::new(CusumConfig::default()), 0.5, 4);
    let (median, p95, _) = report("cusum", 0.5, &high);
    assert!(high.false_alarms_per_10k <= 3.0 && median <= 30 && p95 <= 100);
}

#[test]
fn directions_are_respected_and_detectors_reset() {
    let mut rng = Rng(7);
    let config = PageHinkleyConfig { direction: Direction::Up, ..Default::default() };
    let (mut up_only, mut both) = (PageHinkley::new(config), Cusum::new(CusumConfig::default()));
    for _ in 0..200 {
        let x = 100.0 * rng.lognormal(0.2);
        assert!(!up_only.update(x) && !both.update(x));
    }
    let mut up_alarm = false;
    for _ in 0..300 {
        let x = 50.0 * rng.lognormal(0.2); // latency halves
        up_alarm |= up_only.update(x);
        both.update(x);
    }
    assert!(!up_alarm, "an Up-only detector ignores a decrease");
    let change = both.last_change().expect("decrease detected");
    assert_eq!(change.direction, Direction::Down);
    assert!(change.statistic > both.config().h && change.samples > 100);
    assert!(both.baseline().is_none_or(|(mu, _)| mu < 80.0), "re-learnt the new level after the reset");
    assert!(!up_only.update(f64::NAN) && up_only.statistic() >= 0.0);
}

#[test]
fn constant_baseline_then_step_alarms_within_a_few_samples() {
    let mut ph = PageHinkley::new(PageHinkleyConfig::default());
    let mut cusum = Cusum::new(CusumConfig::default());
    for _ in 0..100 {
        assert!(!ph.update(10.0) && !cusum.update(10.0));
    }
    assert_eq!(ph.statistic(), 0.0);
    let steps = (1..=50).find(|_| cusum.update(20.0)).expect("cusum alarms");
    assert_eq!(steps, 3, "clipped z = 4 per sample against h = 10");
    assert_eq!(cusum.last_change().map(|c| (c.run, c.samples)), Some((3, 103)), "the run is the shifted samples");
    let steps = (1..=50).find(|_| ph.update(20.0)).expect("page-hinkley alarms");
    assert!(steps <= 10, "page-hinkley took {steps} samples");
    let change = ph.last_change().expect("a change");
    assert_eq!((change.direction, change.run), (Direction::Up, steps as u64));
}
