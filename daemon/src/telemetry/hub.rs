//! The telemetry hub: the latest sample, a ring of recent ones, and a broadcast of each new one. The
//! sampler writes; gRPC, `/metrics` and the energy meter read.
use super::energy::{EnergyMeter, LocalPrices};
use super::model::TelemetrySample;
use super::requests::RequestMetrics;
use super::scores::ScoreMetrics;
use crate::sync::{MutexExt, RwLockExt};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// Samples a watcher may fall behind by before it is dropped (it is told how many it missed).
pub const WATCH_BACKLOG: usize = 16;

pub struct Telemetry {
    pub interval: Duration,
    pub requests: RequestMetrics,
    /// Feedback scores per route and prompt.
    pub scores: ScoreMetrics,
    pub energy: EnergyMeter,
    capacity: usize,
    latest: RwLock<Arc<TelemetrySample>>,
    ring: Mutex<VecDeque<Arc<TelemetrySample>>>,
    updates: broadcast::Sender<Arc<TelemetrySample>>,
    /// GPU indices each engine runs on, as the sampler last found them.
    engine_gpus: RwLock<HashMap<String, Vec<u32>>>,
}

impl Telemetry {
    pub fn new(interval: Duration, history: Duration, prices: LocalPrices) -> Self {
        let capacity = (history.as_millis() / interval.as_millis().max(1)).max(1) as usize;
        let (updates, _) = broadcast::channel(WATCH_BACKLOG);
        Self {
            interval,
            requests: RequestMetrics::new(),
            scores: ScoreMetrics::new(),
            energy: EnergyMeter::new(prices),
            capacity,
            latest: RwLock::new(Arc::new(TelemetrySample::default())),
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            updates,
            engine_gpus: RwLock::default(),
        }
    }

    pub fn set_engine_gpus(&self, engine_gpus: HashMap<String, Vec<u32>>) {
        *self.engine_gpus.write_locked() = engine_gpus;
    }

    /// The highest share of memory in use on the GPUs `engine` runs on, at the last sample.
    pub fn gpu_memory_fraction(&self, engine: &str) -> Option<f64> {
        let engine_gpus = self.engine_gpus.read_locked();
        let gpus = engine_gpus.get(engine)?;
        let latest = self.latest();
        latest
            .gpus
            .devices
            .iter()
            .filter(|gpu| gpus.contains(&gpu.index))
            .filter_map(|gpu| Some(gpu.memory_used_bytes? as f64 / gpu.memory_total_bytes.filter(|t| *t > 0)? as f64))
            .reduce(f64::max)
    }

    /// The newest sample (all defaults before the first one).
    pub fn latest(&self) -> Arc<TelemetrySample> {
        self.latest.read_locked().clone()
    }

    pub fn publish(&self, sample: TelemetrySample) {
        let sample = Arc::new(sample);
        *self.latest.write_locked() = sample.clone();
        {
            let mut ring = self.ring.locked();
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(sample.clone());
        }
        // No receivers is fine: nobody is watching.
        let _ = self.updates.send(sample);
    }

    /// Samples taken in `[from, to]` (unix ms; 0 leaves that end open), every `step`-th one, oldest first.
    pub fn range(&self, from_unix_ms: i64, to_unix_ms: i64, step: usize) -> Vec<Arc<TelemetrySample>> {
        let to = if to_unix_ms == 0 { i64::MAX } else { to_unix_ms };
        let ring = self.ring.locked();
        ring.iter()
            .filter(|sample| (from_unix_ms..=to).contains(&sample.at_unix_ms))
            .step_by(step.max(1))
            .cloned()
            .collect()
    }

    /// New samples as they are taken. A receiver that lags `WATCH_BACKLOG` behind gets `Lagged(missed)`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TelemetrySample>> {
        self.updates.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(capacity: u64) -> Telemetry {
        Telemetry::new(Duration::from_secs(1), Duration::from_secs(capacity), LocalPrices::default())
    }

    #[test]
    fn ring_keeps_the_newest_and_answers_ranges() {
        let telemetry = hub(3);
        for at in 1..=5 {
            telemetry.publish(TelemetrySample { at_unix_ms: at * 1000, ..TelemetrySample::default() });
        }
        let times = |samples: Vec<Arc<TelemetrySample>>| samples.iter().map(|s| s.at_unix_ms).collect::<Vec<_>>();
        assert_eq!(times(telemetry.range(0, 0, 1)), [3000, 4000, 5000]);
        assert_eq!(times(telemetry.range(3500, 4500, 1)), [4000]);
        assert_eq!(times(telemetry.range(0, 0, 2)), [3000, 5000]);
        assert_eq!(telemetry.latest().at_unix_ms, 5000);
    }

    #[tokio::test]
    async fn a_slow_watcher_learns_how_many_it_missed() {
        let telemetry = hub(60);
        let mut watcher = telemetry.subscribe();
        for at in 0..(WATCH_BACKLOG as i64 + 3) {
            telemetry.publish(TelemetrySample { at_unix_ms: at, ..TelemetrySample::default() });
        }
        assert!(matches!(watcher.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
    }
}
