//! Energy per request. Each sampling interval, a GPU's energy (the delta of its NVML energy counter, or power
//! x time where the counter is unsupported) is split among the requests that ran on it during the interval,
//! in proportion to the tokens each generated in that interval; when none generated a token (all still in
//! prefill, or not streaming), evenly. GPU time is split the same way, for the GPU-hour price. A request's
//! trace is held until the sample after it ends, so it also gets its share of that last partial interval;
//! the joules handed out therefore add up to what the GPUs measured while requests ran.
use super::model::GpuSample;
use crate::sync::MutexExt;
use crate::trace::Trace;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Prices that turn a local request's energy and GPU time into USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LocalPrices {
    pub usd_per_kwh: f64,
    pub usd_per_gpu_hour: f64,
}

impl LocalPrices {
    pub fn cost_usd(&self, joules: f64, gpu_seconds: f64) -> f64 {
        joules / 3.6e6 * self.usd_per_kwh + gpu_seconds / 3600.0 * self.usd_per_gpu_hour
    }
}

/// Where a finished trace goes once its energy is known.
pub type Deliver = Box<dyn FnOnce(Trace) + Send>;

/// One request's running share.
pub struct Share {
    gpus: Vec<u32>,
    /// Tokens generated since the last sample.
    tokens: AtomicU64,
    totals: Mutex<Totals>,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    joules: f64,
    gpu_seconds: f64,
}

/// A running request's handle on the meter; the gateway counts tokens on it as they arrive.
pub struct EnergyTicket(Arc<Share>);

impl EnergyTicket {
    pub fn add_tokens(&self, tokens: u64) {
        self.0.tokens.fetch_add(tokens, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct MeterState {
    /// GPU indices each engine runs on (configured, or found by its PID in a GPU's process list).
    engine_gpus: HashMap<String, Vec<u32>>,
    /// GPUs whose energy or power the last sample could read.
    measurable: HashSet<u32>,
    active: Vec<Arc<Share>>,
    /// Finished requests waiting for the next sample, with when they finished.
    pending: Vec<(Arc<Share>, Trace, Deliver, Instant)>,
    /// Per GPU: (energy counter in J or None, power in W or None, sample time in unix ms).
    last: HashMap<u32, (Option<f64>, Option<f64>, i64)>,
}

pub struct EnergyMeter {
    prices: LocalPrices,
    state: Mutex<MeterState>,
}

impl EnergyMeter {
    pub fn new(prices: LocalPrices) -> Self {
        Self { prices, state: Mutex::new(MeterState::default()) }
    }

    fn state(&self) -> MutexGuard<'_, MeterState> {
        // A panic while holding the lock leaves plain numbers behind; keep metering.
        self.state.locked()
    }

    /// Which GPUs each engine runs on, refreshed by the sampler.
    pub fn set_engine_gpus(&self, engine_gpus: HashMap<String, Vec<u32>>) {
        self.state().engine_gpus = engine_gpus;
    }

    /// Starts metering a request on `engine`; `None` when the engine runs on no GPU the daemon can measure.
    pub fn begin(&self, engine: &str) -> Option<EnergyTicket> {
        let mut state = self.state();
        let gpus: Vec<u32> =
            state.engine_gpus.get(engine)?.iter().copied().filter(|gpu| state.measurable.contains(gpu)).collect();
        if gpus.is_empty() {
            return None;
        }
        let share = Arc::new(Share { gpus, tokens: AtomicU64::new(0), totals: Mutex::default() });
        state.active.push(share.clone());
        Some(EnergyTicket(share))
    }

    /// Ends a metered request: its trace is delivered, with energy and cost, after the next sample.
    pub fn finish(&self, ticket: EnergyTicket, trace: Trace, deliver: Deliver) {
        let mut state = self.state();
        state.active.retain(|share| !Arc::ptr_eq(share, &ticket.0));
        state.pending.push((ticket.0, trace, deliver, Instant::now()));
    }

    /// Delivers the finished requests that have waited longer than `max_wait` for a sample, with the energy
    /// measured so far and a tag saying it is incomplete: a sampler stuck in a GPU driver call must not hold
    /// traces and budget settlements back.
    pub fn flush_overdue(&self, now: Instant, max_wait: Duration) {
        let overdue: Vec<_> = {
            let mut state = self.state();
            let (overdue, waiting) = std::mem::take(&mut state.pending)
                .into_iter()
                .partition(|(.., finished)| now.saturating_duration_since(*finished) > max_wait);
            state.pending = waiting;
            overdue
        };
        for (share, mut trace, deliver, _) in overdue {
            let note = format!("incomplete: no GPU sample within {} s of the request's end", max_wait.as_secs());
            trace.tags.insert("energy".into(), note);
            deliver(self.settle(&share, trace));
        }
    }

    /// Splits what each GPU used since the previous sample among the requests that ran on it, then
    /// delivers the finished ones.
    pub fn on_sample(&self, gpus: &[GpuSample], at_unix_ms: i64) {
        let ready = {
            let mut state = self.state();
            state.measurable.clear();
            let shares: Vec<Arc<Share>> =
                state.active.iter().chain(state.pending.iter().map(|(share, ..)| share)).cloned().collect();
            for gpu in gpus.iter().filter(|gpu| gpu.error.is_none()) {
                let now = (gpu.energy_joules_total, gpu.power_watts, at_unix_ms);
                if now.0.is_some() || now.1.is_some() {
                    state.measurable.insert(gpu.index);
                }
                let Some(previous) = state.last.insert(gpu.index, now) else { continue };
                let seconds = (at_unix_ms - previous.2).max(0) as f64 / 1000.0;
                let Some(joules) = interval_energy(previous, now, seconds) else { continue };
                split(&shares, gpu.index, joules, seconds);
            }
            for share in &shares {
                share.tokens.store(0, Ordering::Relaxed);
            }
            std::mem::take(&mut state.pending)
        };
        for (share, trace, deliver, _) in ready {
            deliver(self.settle(&share, trace));
        }
    }

    /// Delivers every finished request now, with what it has (at shutdown, or when sampling stops).
    pub fn flush(&self) {
        let pending = std::mem::take(&mut self.state().pending);
        for (share, trace, deliver, _) in pending {
            deliver(self.settle(&share, trace));
        }
    }

    fn settle(&self, share: &Share, mut trace: Trace) -> Trace {
        let totals = *share.totals.locked();
        trace.energy_joules = Some(totals.joules);
        if trace.cost_usd.is_none() {
            trace.cost_usd = Some(self.prices.cost_usd(totals.joules, totals.gpu_seconds));
        }
        trace
    }
}

/// Energy a GPU used between two samples: the counter's delta, else average power times time. A counter
/// that went backwards (driver reload) gives no reading for that interval.
fn interval_energy(
    previous: (Option<f64>, Option<f64>, i64),
    now: (Option<f64>, Option<f64>, i64),
    seconds: f64,
) -> Option<f64> {
    match (previous.0, now.0) {
        (Some(before), Some(after)) if after >= before => Some(after - before),
        (Some(_), Some(_)) => None,
        _ => {
            let watts = match (previous.1, now.1) {
                (Some(a), Some(b)) => (a + b) / 2.0,
                (_, Some(w)) | (Some(w), _) => w,
                _ => return None,
            };
            Some(watts * seconds)
        }
    }
}

fn split(shares: &[Arc<Share>], gpu: u32, joules: f64, seconds: f64) {
    let on_gpu: Vec<&Arc<Share>> = shares.iter().filter(|share| share.gpus.contains(&gpu)).collect();
    if on_gpu.is_empty() {
        return;
    }
    let tokens: Vec<u64> = on_gpu.iter().map(|share| share.tokens.load(Ordering::Relaxed)).collect();
    let total: u64 = tokens.iter().sum();
    for (share, tokens) in on_gpu.iter().zip(tokens) {
        let weight = if total == 0 { 1.0 / on_gpu.len() as f64 } else { tokens as f64 / total as f64 };
        let mut totals = share.totals.locked();
        totals.joules += joules * weight;
        totals.gpu_seconds += seconds * weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn gpu(index: u32, energy: Option<f64>, power: Option<f64>) -> GpuSample {
        GpuSample { index, energy_joules_total: energy, power_watts: power, ..GpuSample::default() }
    }

    fn meter(prices: LocalPrices) -> EnergyMeter {
        let meter = EnergyMeter::new(prices);
        meter.set_engine_gpus(HashMap::from([("vllm".to_string(), vec![0])]));
        meter.on_sample(&[gpu(0, Some(1000.0), Some(100.0))], 0);
        meter
    }

    fn deliver_to(sender: &mpsc::Sender<Trace>) -> Deliver {
        let sender = sender.clone();
        Box::new(move |trace| {
            let _ = sender.send(trace);
        })
    }

    #[test]
    fn a_sampler_that_never_answers_holds_no_trace_past_the_bound() {
        let meter = meter(LocalPrices::default());
        let ticket = meter.begin("vllm").expect("metered");
        meter.on_sample(&[gpu(0, Some(1400.0), Some(100.0))], 1000);
        let (sender, received) = mpsc::channel();
        meter.finish(ticket, Trace { id: "late".into(), ..Trace::default() }, deliver_to(&sender));
        let finished = Instant::now();
        meter.flush_overdue(finished + Duration::from_secs(1), Duration::from_secs(5));
        assert!(received.try_recv().is_err(), "within the bound it waits for the sample");
        meter.flush_overdue(finished + Duration::from_secs(6), Duration::from_secs(5));
        let trace = received.try_recv().expect("delivered without a sample");
        assert_eq!(trace.energy_joules, Some(400.0), "with what was measured before it ended");
        assert!(trace.tags.get("energy").is_some_and(|t| t.starts_with("incomplete")), "{:?}", trace.tags);
        meter.on_sample(&[gpu(0, Some(1500.0), Some(100.0))], 2000);
        assert!(received.try_recv().is_err(), "and delivered once only");
    }

    #[test]
    fn splits_counter_deltas_by_tokens_and_waits_for_the_next_sample() {
        let meter = meter(LocalPrices { usd_per_kwh: 0.36, usd_per_gpu_hour: 3.6 });
        let (a, b) = (meter.begin("vllm").expect("metered"), meter.begin("vllm").expect("metered"));
        a.add_tokens(30);
        b.add_tokens(10);
        meter.on_sample(&[gpu(0, Some(1400.0), Some(100.0))], 1000);
        let (sender, received) = mpsc::channel();
        meter.finish(a, Trace { id: "a".into(), ..Trace::default() }, deliver_to(&sender));
        assert!(received.try_recv().is_err(), "held until the next sample");
        // Nobody generated a token in this interval: an even split of 200 J.
        meter.on_sample(&[gpu(0, Some(1600.0), Some(100.0))], 2000);
        let trace = received.try_recv().expect("delivered after the sample");
        assert!((trace.energy_joules.expect("energy") - (300.0 + 100.0)).abs() < 1e-9);
        // 400 J = 1/9000 kWh at $0.36, plus 0.75 + 0.5 GPU-seconds at $3.6/h.
        let expected = 400.0 / 3.6e6 * 0.36 + 1.25 / 3600.0 * 3.6;
        assert!((trace.cost_usd.expect("cost") - expected).abs() < 1e-12);
        meter.finish(b, Trace::default(), deliver_to(&sender));
        meter.on_sample(&[gpu(0, Some(1600.0), Some(100.0))], 3000);
        let trace = received.try_recv().expect("b delivered");
        assert!((trace.energy_joules.expect("energy") - (100.0 + 100.0)).abs() < 1e-9);
    }

    #[test]
    fn falls_back_to_power_times_time_and_skips_unmeasurable_engines() {
        let meter = EnergyMeter::new(LocalPrices::default());
        meter.set_engine_gpus(HashMap::from([("vllm".to_string(), vec![0]), ("cpu".to_string(), vec![])]));
        assert!(meter.begin("vllm").is_none(), "no sample yet: nothing is measurable");
        meter.on_sample(&[gpu(0, None, Some(200.0))], 0);
        assert!(meter.begin("cpu").is_none() && meter.begin("unknown").is_none());
        let ticket = meter.begin("vllm").expect("power is measurable");
        meter.on_sample(&[gpu(0, None, Some(300.0))], 500);
        let (sender, received) = mpsc::channel();
        meter.finish(ticket, Trace::default(), deliver_to(&sender));
        meter.flush();
        let trace = received.try_recv().expect("flushed");
        assert!((trace.energy_joules.expect("energy") - 125.0).abs() < 1e-9, "250 W average for 0.5 s");
    }

    #[test]
    fn a_counter_reset_or_a_lost_gpu_attributes_nothing() {
        let meter = meter(LocalPrices::default());
        let ticket = meter.begin("vllm").expect("metered");
        meter.on_sample(&[gpu(0, Some(10.0), Some(100.0))], 1000);
        let lost = GpuSample { index: 0, error: Some("GPU lost".into()), ..GpuSample::default() };
        meter.on_sample(&[lost], 2000);
        let (sender, received) = mpsc::channel();
        meter.finish(ticket, Trace::default(), deliver_to(&sender));
        meter.on_sample(&[], 3000);
        assert_eq!(received.try_recv().expect("delivered").energy_joules, Some(0.0));
    }
}
