//! Drift detection statistics: pure functions with no I/O.
//!
//! - [`stats`]: reference-vs-current window tests (Kolmogorov-Smirnov, Wasserstein, PSI, chi-square,
//!   two-proportion z-test), checked against scipy values in `tests/fixtures/drift/`.
//! - [`changepoint`]: online change-point detectors (Page-Hinkley, tabular CUSUM) that alert within tens of
//!   requests of a shift in latency or output length.
pub mod changepoint;
pub mod stats;
