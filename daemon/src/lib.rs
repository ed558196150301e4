//! llmopsd: serves a GPU host's models behind one OpenAI-compatible endpoint, records every request as a
//! trace, and serves the traces over gRPC.
pub mod alerts;
pub mod app;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod clock;
pub mod config;
pub mod drift;
pub mod engine;
pub mod evals;
pub mod export;
pub mod feedback;
pub mod gateway;
pub mod grpc;
pub mod guardrails;
pub mod model_cache;
pub mod pricing;
pub mod prompts;
pub mod replay;
pub mod resilience;
pub mod router;
pub mod shutdown;
pub mod state_db;
pub mod sync;
pub mod telemetry;
pub mod trace;
