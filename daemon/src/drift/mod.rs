//! Drift detection: notice when a model, prompt or host quietly changes behaviour.
//!
//! - [`stats`]: reference-vs-current window tests (Kolmogorov-Smirnov, Wasserstein, PSI, chi-square,
//!   two-proportion z-test), checked against scipy values in `tests/fixtures/drift/`.
//! - [`changepoint`]: online change-point detectors (Page-Hinkley, tabular CUSUM) that alert within tens of
//!   requests of a shift in latency or output length.
//! - [`monitor`]: per route, model and prompt version, the signals of each trace through those detectors.
//! - [`scores`]: a falling pass rate of a feedback score (e.g. thumbs up/down) per route, model, prompt
//!   version and score name.
//! - [`shift`]: CUSUM on one signal with the windows behind a detected shift, for the evidence.
//! - [`texts`]: alert titles and messages for people: directions, units, the numbers before and after.
//! - [`runner`]: the detector thread, fed from the request path without blocking it; it also ends one-off
//!   alerts (shifts, input anomalies) after `event_alert_timeout_secs` without a recurrence.
pub mod changepoint;
pub mod monitor;
pub mod runner;
pub mod scores;
pub mod shift;
pub mod stats;
pub mod texts;

pub use monitor::{DriftConfig, DriftEngine, Observation, Verdict};
pub use runner::DriftMonitor;
pub use scores::ScoreObservation;
