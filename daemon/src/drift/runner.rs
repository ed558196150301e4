//! Runs the drift detectors off the request path: finished traces and pass/fail feedback scores are queued
//! (bounded; a full queue drops and counts, never blocks a request) to one thread that feeds the detectors and
//! raises or resolves alerts.
//! The thread has no tokio runtime; the alert manager delivers webhooks on its own.
//!
//! One-off alerts (CUSUM shifts, input anomalies) have no condition that clears: the thread resolves each
//! `event_alert_timeout_secs` after its last occurrence, also across daemon restarts (from the stored alert).
use super::monitor::{DriftConfig, DriftEngine, Observation, Verdict};
use super::scores::{ScoreDrift, ScoreObservation};
use super::texts;
use crate::alerts::AlertManager;
use crate::trace::Trace;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Observations waiting for the detector thread.
const QUEUE: usize = 4096;
/// How long the thread lets observations queue up between batches while they keep coming (the queue holds
/// `QUEUE`, far more than arrive in this time).
const BATCH_PAUSE: Duration = Duration::from_millis(20);
/// The longest the thread sleeps between expiry checks, so a wall-clock step cannot delay one for long.
const MAX_WAIT_MS: i64 = 60_000;

/// Wall-clock milliseconds; injected so tests can move time.
pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// What the detector thread is fed.
enum Input {
    Trace(Observation),
    Score(ScoreObservation),
}

pub struct DriftMonitor {
    config: DriftConfig,
    queue: Option<SyncSender<Input>>,
    /// Observations dropped because the detector thread fell behind.
    pub dropped: AtomicU64,
}

impl DriftMonitor {
    pub fn start(config: DriftConfig, alerts: AlertManager) -> Arc<Self> {
        let config = config.normalized();
        if !config.enabled {
            return Arc::new(Self { config, queue: None, dropped: AtomicU64::new(0) });
        }
        let (sender, receiver) = sync_channel::<Input>(QUEUE);
        let worker = Worker::new(config.clone(), alerts, Box::new(crate::clock::unix_ms));
        let spawned = std::thread::Builder::new().name("llmops-drift".into()).spawn(move || worker.run(receiver));
        let queue = match spawned {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::error!(%error, "cannot start the drift detector thread; drift detection is off");
                None
            }
        };
        Arc::new(Self { config, queue, dropped: AtomicU64::new(0) })
    }

    /// Queues a finished trace for the detectors.
    pub fn observe(&self, trace: &Trace) {
        let Some(queue) = &self.queue else { return };
        let Some(observation) = Observation::from_trace(trace, &self.config) else { return };
        if let Err(TrySendError::Full(_)) = queue.try_send(Input::Trace(observation)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a pass/fail feedback score for the falling-pass-rate detector.
    pub fn observe_score(&self, score: ScoreObservation) {
        let Some(queue) = &self.queue else { return };
        if let Err(TrySendError::Full(_)) = queue.try_send(Input::Score(score)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// When each one-off alert last occurred, to resolve it `timeout_ms` later.
#[derive(Debug, Default)]
pub struct Expiry {
    timeout_ms: i64,
    last: HashMap<String, i64>,
}

impl Expiry {
    pub fn new(timeout_secs: u64) -> Self {
        let timeout_ms = i64::try_from(timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self { timeout_ms, last: HashMap::new() }
    }

    pub fn occurred(&mut self, key: &str, at_ms: i64) {
        let last = self.last.entry(key.to_string()).or_insert(at_ms);
        *last = (*last).max(at_ms);
    }

    /// When the next alert is due to end.
    pub fn next_due(&self) -> Option<i64> {
        self.last.values().min().map(|at| at.saturating_add(self.timeout_ms))
    }

    /// The keys whose timeout has passed at `now_ms`, forgotten.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<String> {
        let due: Vec<String> = self
            .last
            .iter()
            .filter(|(_, at)| now_ms >= at.saturating_add(self.timeout_ms))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &due {
            self.last.remove(key);
        }
        due
    }
}

/// The detector thread's state: the detectors, the alerts they raise and the one-off alerts to end.
pub struct Worker {
    engine: DriftEngine,
    scores: ScoreDrift,
    alerts: AlertManager,
    expiry: Expiry,
    clock: Clock,
}

/// One-off alerts raised by a previous run are ended on schedule too.
fn is_one_off(alert: &crate::alerts::Alert) -> bool {
    alert.rule == "input_anomaly" || (alert.rule == "drift" && alert.key.ends_with(":shift"))
}

impl Worker {
    pub fn new(config: DriftConfig, alerts: AlertManager, clock: Clock) -> Self {
        let mut expiry = Expiry::new(config.event_alert_timeout_secs);
        for alert in alerts.active().iter().filter(|a| is_one_off(a)) {
            expiry.occurred(&alert.key, alert.updated_at_unix_ms);
        }
        Self {
            scores: ScoreDrift::new(config.clone().normalized()),
            engine: DriftEngine::new(config),
            alerts,
            expiry,
            clock,
        }
    }

    /// Until every sender is gone (the daemon is stopping).
    fn run(mut self, receiver: Receiver<Input>) {
        loop {
            let now = self.expire();
            let next = match self.expiry.next_due() {
                Some(due) => {
                    let wait = (due.saturating_sub(now)).clamp(1, MAX_WAIT_MS);
                    receiver.recv_timeout(Duration::from_millis(wait.unsigned_abs()))
                }
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(input) => self.take(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Under load, take what queued up once per pause instead of being woken for every trace (a futex
            // wake and a context switch per request); an idle queue is waited on as before.
            let mut taken = 0usize;
            while let Ok(input) = receiver.try_recv() {
                self.take(input);
                taken += 1;
            }
            if taken > 0 {
                std::thread::sleep(BATCH_PAUSE);
            }
        }
    }

    fn take(&mut self, input: Input) {
        match input {
            Input::Trace(observation) => self.observe(&observation),
            Input::Score(score) => self.observe_score(&score),
        }
    }

    /// Feeds one observation to the detectors and acts on what they say.
    pub fn observe(&mut self, observation: &Observation) {
        let verdicts = self.engine.observe(observation);
        self.act(verdicts);
    }

    /// Feeds one pass/fail score to the score detector and acts on what it says.
    pub fn observe_score(&mut self, score: &ScoreObservation) {
        let verdicts = self.scores.observe(score);
        self.act(verdicts);
    }

    fn act(&mut self, verdicts: Vec<Verdict>) {
        for verdict in verdicts {
            match verdict {
                Verdict::Raise(raised) => {
                    self.alerts.raise(*raised);
                }
                Verdict::Event(raised) => {
                    self.expiry.occurred(&raised.key, (self.clock)());
                    self.alerts.raise_recurring(*raised);
                }
                Verdict::Resolve { key, reason } => {
                    self.alerts.resolve(&key, &reason);
                }
            }
        }
    }

    /// Resolves the one-off alerts whose timeout has passed; returns the time it judged by.
    pub fn expire(&mut self) -> i64 {
        let now = (self.clock)();
        let due = self.expiry.take_due(now);
        if !due.is_empty() {
            let reason = texts::expired(self.engine.config().event_alert_timeout_secs);
            for key in due {
                self.alerts.resolve(&key, &reason);
            }
        }
        now
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
