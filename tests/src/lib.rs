//! Support for llmops end-to-end tests and benchmarks: a controllable fake OpenAI-compatible upstream
//! ([`fake_upstream`]) and a harness that runs the real `llmopsd` binary ([`daemon`]).
pub mod daemon;
pub mod fake_upstream;
pub mod nvml;
