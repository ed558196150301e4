//! Telemetry: GPUs through NVML, the host through sysinfo, engines through their own metrics, and the
//! requests themselves; sampled on one interval into a ring of recent samples, with energy per request.
pub mod energy;
pub mod gpu;
pub mod host;
pub mod hub;
pub mod model;
pub mod requests;
pub mod rules;
pub mod sampler;
pub mod scores;

pub use energy::{EnergyTicket, LocalPrices};
pub use hub::Telemetry;
