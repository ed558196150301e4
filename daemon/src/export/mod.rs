//! Exporting what the daemon measures to other systems.
pub mod gauges;
pub mod otlp;
pub mod prometheus;
