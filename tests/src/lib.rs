//! Support for llmops end-to-end tests and benchmarks: a controllable fake OpenAI-compatible upstream
//! ([`fake_upstream`]), a harness that runs the real `llmopsd` binary ([`daemon`]) and a private tmux for the
//! console ([`tmux`]).
pub mod daemon;
pub mod fake_upstream;
pub mod nvml;
pub mod otlp_receiver;
pub mod tmux;
pub mod upstream_process;
