//! CUSUM on one per-request signal (latency, output length), keeping the values behind its baseline and its
//! latest ones, so that a detected shift comes with the reference and recent windows it compared.
use super::changepoint::{Cusum, CusumConfig, Direction};
use crate::alerts::Summary;
use std::collections::VecDeque;

/// Recent values kept for evidence; a CUSUM run longer than this is summarised by its last this-many values.
const RECENT: usize = 512;

/// What a detected shift looked like.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    /// `Up` or `Down`.
    pub direction: Direction,
    /// The CUSUM statistic that crossed the threshold, in standard deviations of the log.
    pub statistic: f64,
    /// The values the baseline was learnt from.
    pub reference: Summary,
    /// The values since the detector's estimate of when the change began.
    pub current: Summary,
    /// Geometric means (the detector works on logarithms) and the log standard deviation of the baseline.
    pub reference_geomean: f64,
    pub current_geomean: f64,
    pub log_sd: f64,
}

pub struct ShiftDetector {
    cusum: Cusum,
    /// Values of the current baseline (its warm-up), as observed.
    baseline: Vec<f64>,
    /// The latest values after the warm-up, newest last.
    recent: VecDeque<f64>,
}

impl ShiftDetector {
    pub fn new(config: CusumConfig) -> Self {
        Self { cusum: Cusum::new(config), baseline: Vec::new(), recent: VecDeque::new() }
    }

    /// Feeds one positive value (latency, length); its logarithm goes to the CUSUM, since latencies and lengths
    /// are right-skewed (roughly lognormal): on the log the normal-theory false-alarm rate holds, and a shift by
    /// a factor is a shift by a constant. On a shift the detector resets and learns the new level as baseline.
    pub fn update(&mut self, x: f64) -> Option<Shift> {
        if !x.is_finite() {
            return None;
        }
        // Read before the update: a detection resets the detector, baseline included.
        let baseline = self.cusum.baseline();
        if baseline.is_none() {
            self.baseline.push(x);
        } else {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(x);
        }
        if !self.cusum.update(x.max(1e-3).ln()) {
            return None;
        }
        let change = self.cusum.last_change()?;
        let run = usize::try_from(change.run).unwrap_or(usize::MAX).clamp(1, self.recent.len().max(1));
        let current: Vec<f64> = self.recent.iter().skip(self.recent.len().saturating_sub(run)).copied().collect();
        let shift = Shift {
            direction: change.direction,
            statistic: change.statistic,
            reference: summary(&self.baseline),
            current: summary(&current),
            reference_geomean: baseline.map_or(f64::NAN, |(log_mean, _)| log_mean.exp()),
            current_geomean: geomean(&current),
            log_sd: baseline.map_or(f64::NAN, |(_, sd)| sd),
        };
        self.baseline.clear();
        self.recent.clear();
        Some(shift)
    }
}

fn geomean(values: &[f64]) -> f64 {
    let n = values.len().max(1) as f64;
    (values.iter().map(|v| v.max(1e-3).ln()).sum::<f64>() / n).exp()
}

/// Nearest-rank percentile of finite values; `None` for none.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * q).round() as usize).copied()
}

/// Size, mean, median and p95 of a window.
pub fn summary(values: &[f64]) -> Summary {
    let n = values.len();
    Summary {
        n: n as u64,
        mean: values.iter().sum::<f64>() / n.max(1) as f64,
        p50: percentile(values, 0.5).unwrap_or(f64::NAN),
        p95: percentile(values, 0.95).unwrap_or(f64::NAN),
    }
}

/// A rate as the summary of its 0/1 outcomes: the mean is the share, the percentiles are 0 or 1.
pub fn rate_summary(hits: u64, n: u64) -> Summary {
    let share = hits as f64 / n.max(1) as f64;
    // Nearest rank over n - hits zeros then hits ones.
    let at = |q: f64| {
        let index = (n.saturating_sub(1) as f64 * q).round() as u64;
        if n == 0 {
            f64::NAN
        } else if index >= n - hits.min(n) {
            1.0
        } else {
            0.0
        }
    };
    Summary { n, mean: share, p50: at(0.5), p95: at(0.95) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_reports_the_baseline_and_the_run_that_crossed() {
        let config = CusumConfig { warmup: 30, h: 15.0, ..CusumConfig::default() };
        let mut detector = ShiftDetector::new(config);
        for i in 0..61 {
            // A steady length with a little jitter (ending at 38, where S+ is back at 0), then 50% longer answers.
            assert_eq!(detector.update(38.0 + f64::from(i % 3)), None, "request {i}");
        }
        let shift = (0..20).find_map(|_| detector.update(58.0)).expect("the shift is detected");
        assert_eq!(shift.direction, Direction::Up);
        assert!(shift.statistic > 15.0, "{shift:?}");
        assert_eq!(shift.reference.n, 30, "the warm-up is the reference");
        assert!((shift.reference.mean - 39.0).abs() < 0.1 && shift.reference.p95 == 40.0, "{shift:?}");
        assert!(shift.current.n >= 1 && shift.current.n <= 20, "{shift:?}");
        assert_eq!((shift.current.mean, shift.current.p50), (58.0, 58.0), "only the shifted values: {shift:?}");
        assert!((shift.reference_geomean - 39.0).abs() < 0.1 && (shift.current_geomean - 58.0).abs() < 1e-9);
        // The detector starts over: a new baseline at the new level.
        for _ in 0..30 {
            assert_eq!(detector.update(58.0), None);
        }
        assert!(detector.update(f64::NAN).is_none());
    }

    #[test]
    fn summaries_of_values_and_rates() {
        let s = summary(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.n, s.mean, s.p50, s.p95), (4, 2.5, 3.0, 4.0));
        assert!(summary(&[]).p50.is_nan() && summary(&[]).n == 0);
        assert_eq!(rate_summary(0, 30), Summary { n: 30, mean: 0.0, p50: 0.0, p95: 0.0 });
        assert_eq!(rate_summary(3, 30), Summary { n: 30, mean: 0.1, p50: 0.0, p95: 1.0 });
        assert_eq!(rate_summary(30, 30), Summary { n: 30, mean: 1.0, p50: 1.0, p95: 1.0 });
        assert!(rate_summary(0, 0).p50.is_nan());
    }
}
