//! Runs the drift detectors off the request path: finished traces are queued (bounded; a full queue drops
//! and counts, never blocks a request) to one thread that feeds the detectors and raises or resolves alerts.
use super::monitor::{DriftConfig, DriftEngine, Observation, Verdict};
use crate::alerts::AlertManager;
use crate::trace::Trace;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

/// Observations waiting for the detector thread.
const QUEUE: usize = 4096;

pub struct DriftMonitor {
    config: DriftConfig,
    queue: Option<SyncSender<Observation>>,
    /// Observations dropped because the detector thread fell behind.
    pub dropped: AtomicU64,
}

impl DriftMonitor {
    pub fn start(config: DriftConfig, alerts: AlertManager) -> Arc<Self> {
        let config = config.normalized();
        if !config.enabled {
            return Arc::new(Self { config, queue: None, dropped: AtomicU64::new(0) });
        }
        let (sender, receiver) = sync_channel::<Observation>(QUEUE);
        let mut engine = DriftEngine::new(config.clone());
        let spawned = std::thread::Builder::new().name("llmops-drift".into()).spawn(move || {
            // Ends when every sender is gone (the daemon is stopping).
            while let Ok(observation) = receiver.recv() {
                for verdict in engine.observe(&observation) {
                    match verdict {
                        Verdict::Raise(raised) => {
                            alerts.raise(*raised);
                        }
                        Verdict::Resolve { key, reason } => {
                            alerts.resolve(&key, &reason);
                        }
                    }
                }
            }
        });
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
        if let Err(TrySendError::Full(_)) = queue.try_send(observation) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
