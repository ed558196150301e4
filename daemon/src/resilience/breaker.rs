//! A circuit breaker per target: Closed (send) → Open after N consecutive failures or an error ratio over a
//! sliding window → HalfOpen after a cooldown (a few probes) → Closed on a probe's success, Open on its failure.
use crate::sync::MutexExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sub-buckets of the error-ratio window: old outcomes leave it a tenth of a window at a time.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many failures in a row; 0 turns this trigger off.
    pub consecutive_failures: u32,
    /// Open when failures / requests in the window reach this share (0 < ratio <= 1) ...
    pub error_ratio: f64,
    /// ... once the window holds at least this many requests (so 1 failure of 1 request does not trip it).
    pub min_requests: u32,
    #[serde(rename = "window_ms", with = "super::serde_ms::millis")]
    pub window: Duration,
    /// How long an open breaker refuses before letting probes through.
    #[serde(rename = "cooldown_ms", with = "super::serde_ms::millis")]
    pub cooldown: Duration,
    /// Concurrent probe requests allowed while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            error_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(15),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Values serde accepts but a breaker cannot work with, named for the config error message.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.error_ratio > 0.0 && self.error_ratio <= 1.0) {
            return Err(format!("error_ratio = {}: must be > 0 and <= 1", self.error_ratio));
        }
        if self.window < Duration::from_millis(BUCKETS as u64) {
            return Err(format!("window_ms = {}: must be at least {BUCKETS}", self.window.as_millis()));
        }
        if self.half_open_probes == 0 {
            return Err("half_open_probes = 0: must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Why a target was skipped; the router records it on the trace attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenCause {
    /// The breaker is open, or half-open with all probe slots taken.
    Breaker,
    /// The target asked to be left alone (429/503 with `Retry-After`).
    RetryAfter,
}

/// A refusal. `retry_in` is zero while half-open probes are in flight (the target is available again as soon
/// as one finishes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub retry_in: Duration,
    pub cause: OpenCause,
}

/// Numbers for status displays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerStatus {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Failures ever reported (not reset by state changes).
    pub failures: u64,
    /// Times the breaker has opened.
    pub opened_count: u64,
    pub window_requests: u32,
    pub window_failures: u32,
    /// Until when `Retry-After` keeps the target skipped.
    pub blocked_for: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    requests: u32,
    failures: u32,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every transition, so outcomes of permits granted in an earlier state are ignored.
    generation: u64,
    consecutive: u32,
    /// Slots are counted from the first instant seen; buckets are indexed by slot modulo BUCKETS.
    origin: Option<Instant>,
    latest_slot: u64,
    buckets: [Bucket; BUCKETS],
    blocked_until: Option<Instant>,
    failures: u64,
    opened_count: u64,
}

/// Cheap to clone: clones share one breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: Arc<BreakerConfig>,
    inner: Arc<Mutex<Inner>>,
}

/// Permission to send one request. Report its outcome with `success` or `failure`; dropping it reports neither
/// (a cancelled request says nothing about the target) but frees a half-open probe slot.
#[derive(Debug)]
#[must_use = "report the outcome with success() or failure()"]
pub struct Permit {
    inner: Arc<Mutex<Inner>>,
    config: Arc<BreakerConfig>,
    generation: u64,
    probe: bool,
    done: bool,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        let inner = Inner {
            state: State::Closed,
            generation: 0,
            consecutive: 0,
            origin: None,
            latest_slot: 0,
            buckets: [Bucket::default(); BUCKETS],
            blocked_until: None,
            failures: 0,
            opened_count: 0,
        };
        Self { config: Arc::new(config), inner: Arc::new(Mutex::new(inner)) }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub fn try_acquire(&self, now: Instant) -> Result<Permit, Open> {
        let mut inner = self.inner.locked();
        if let Some(until) = inner.blocked_until.filter(|&until| until > now) {
            return Err(Open { retry_in: until - now, cause: OpenCause::RetryAfter });
        }
        if let State::Open { until } = inner.state {
            if now < until {
                return Err(Open { retry_in: until - now, cause: OpenCause::Breaker });
            }
            inner.transition(State::HalfOpen { in_flight: 0 });
        }
        let probe = match &mut inner.state {
            State::Closed => false,
            State::HalfOpen { in_flight } if *in_flight < self.config.half_open_probes => {
                *in_flight += 1;
                true
            }
            State::HalfOpen { .. } | State::Open { .. } => {
                return Err(Open { retry_in: Duration::ZERO, cause: OpenCause::Breaker })
            }
        };
        let generation = inner.generation;
        Ok(Permit { inner: self.inner.clone(), config: self.config.clone(), generation, probe, done: false })
    }

    /// Skip the target until `until` (a provider's `Retry-After`) without counting a failure: rate limiting
    /// says the target is busy, not broken. A later block never shortens an earlier one.
    pub fn block_until(&self, now: Instant, until: Instant) {
        let mut inner = self.inner.locked();
        if until > now && inner.blocked_until.is_none_or(|current| current < until) {
            inner.blocked_until = Some(until);
        }
    }

    /// The state as last moved: an open breaker whose cooldown has passed reports Open until the next
    /// `try_acquire` moves it to HalfOpen.
    pub fn state(&self) -> BreakerState {
        match self.inner.locked().state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub fn failures(&self) -> u64 {
        self.inner.locked().failures
    }

    pub fn opened_count(&self) -> u64 {
        self.inner.locked().opened_count
    }

    pub fn status(&self, now: Instant) -> BreakerStatus {
        let state = self.state();
        let inner = self.inner.locked();
        let (window_requests, window_failures) = inner.window_totals(&self.config, now);
        BreakerStatus {
            state,
            consecutive_failures: inner.consecutive,
            failures: inner.failures,
            opened_count: inner.opened_count,
            window_requests,
            window_failures,
            blocked_for: inner.blocked_until.filter(|&until| until > now).map(|until| until - now),
        }
    }
}

impl Permit {
    pub fn success(mut self, now: Instant) {
        self.finish(Some(true), now);
    }

    pub fn failure(mut self, now: Instant) {
        self.finish(Some(false), now);
    }

    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    fn finish(&mut self, ok: Option<bool>, now: Instant) {
        self.done = true;
        let mut inner = self.inner.locked();
        if ok == Some(false) {
            inner.failures += 1;
        }
        if inner.generation != self.generation {
            return;
        }
        match (inner.state, ok) {
            (State::HalfOpen { in_flight }, None) => {
                inner.state = State::HalfOpen { in_flight: in_flight.saturating_sub(1) }
            }
            (State::HalfOpen { .. }, Some(true)) => inner.transition(State::Closed),
            (State::HalfOpen { .. }, Some(false)) => inner.trip(&self.config, now),
            (State::Closed, Some(ok)) => {
                inner.consecutive = if ok { 0 } else { inner.consecutive + 1 };
                inner.record(&self.config, now, ok);
                let (requests, failures) = inner.window_totals(&self.config, now);
                let by_streak =
                    self.config.consecutive_failures > 0 && inner.consecutive >= self.config.consecutive_failures;
                let by_ratio = requests > 0
                    && requests >= self.config.min_requests
                    && f64::from(failures) / f64::from(requests) >= self.config.error_ratio;
                if !ok && (by_streak || by_ratio) {
                    inner.trip(&self.config, now);
                }
            }
            (State::Closed, None) | (State::Open { .. }, _) => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            // `now` only matters for outcomes, and there is none.
            self.finish(None, Instant::now());
        }
    }
}

impl Inner {
    fn transition(&mut self, state: State) {
        self.state = state;
        self.generation += 1;
        self.consecutive = 0;
        self.buckets = [Bucket::default(); BUCKETS];
    }

    fn trip(&mut self, config: &BreakerConfig, now: Instant) {
        self.transition(State::Open { until: now + config.cooldown });
        self.opened_count += 1;
    }

    /// The bucket slot of `now`; never moves backwards, so a thread with a slightly stale `now` counts into
    /// the current bucket instead of a recycled one.
    fn slot(&mut self, config: &BreakerConfig, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let width = (config.window.as_nanos() / BUCKETS as u128).max(1);
        let slot = u64::try_from(now.saturating_duration_since(origin).as_nanos() / width).unwrap_or(u64::MAX);
        self.latest_slot = self.latest_slot.max(slot);
        self.latest_slot
    }

    fn record(&mut self, config: &BreakerConfig, now: Instant, ok: bool) {
        let slot = self.slot(config, now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket { slot, ..Bucket::default() };
        }
        bucket.requests += 1;
        bucket.failures += u32::from(!ok);
    }

    fn window_totals(&self, config: &BreakerConfig, now: Instant) -> (u32, u32) {
        let Some(origin) = self.origin else { return (0, 0) };
        let width = (config.window.as_nanos() / BUCKETS as u128).max(1);
        let slot = u64::try_from(now.saturating_duration_since(origin).as_nanos() / width)
            .unwrap_or(u64::MAX)
            .max(self.latest_slot);
        self.buckets
            .iter()
            .filter(|b| b.requests > 0 && b.slot + BUCKETS as u64 > slot)
            .fold((0, 0), |(r, f), b| (r + b.requests, f + b.failures))
    }
}
