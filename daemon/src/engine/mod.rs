//! Engines that answer requests: OpenAI-compatible servers over HTTP (`openai`) and GGUF models run in the
//! daemon (`embedded`). Both answer in the OpenAI wire format (JSON, or SSE when streaming), so the gateway
//! relays, times and records every engine the same way.
pub mod embedded;
pub mod metrics;
pub mod openai;
mod status;
pub mod supervisor;

pub use embedded::EmbeddedEngine;
pub use openai::OpenAiEngine;
pub(crate) use status::error_chain;
pub use status::{openai_error_body, Health, HealthState, UpstreamError};
pub use supervisor::{ProcessState, Supervisor};

use crate::config::{Config, EngineConfig};
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PROBE_EVERY: Duration = Duration::from_secs(15);

/// The OpenAI operations an engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Self::ChatCompletions, Self::Completions, Self::Embeddings];

    /// Path below an OpenAI-compatible server's `/v1`.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }

    /// Name on the trace.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }
}

/// An engine's successful answer: the body as it arrives (one JSON document, or SSE events when streaming).
pub struct Answer {
    /// The HTTP status the engine answered with (2xx).
    pub status: u16,
    pub body: BoxStream<'static, Result<Bytes, String>>,
}

/// Load figures an engine reports about itself (the embedded engine knows them; scraped ones come with
/// telemetry).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineLoad {
    pub running: Option<u64>,
    pub waiting: Option<u64>,
    pub kv_cache_used_fraction: Option<f64>,
    /// Share of prompt tokens served from the engine's prefix cache since the previous scrape (or the engine's
    /// own hit-rate gauge where it has no counters).
    pub prefix_cache_hit_rate: Option<f64>,
    /// Prompt tokens looked up in the prefix cache and found there, cumulative as the engine counts them.
    pub prefix_cache_queried_tokens: Option<u64>,
    pub prefix_cache_hit_tokens: Option<u64>,
}

pub enum Engine {
    /// An OpenAI-compatible server; with a supervisor when the daemon launches it.
    OpenAi(Arc<OpenAiEngine>, Option<Arc<Supervisor>>),
    Embedded(EmbeddedEngine),
}

impl Engine {
    pub fn name(&self) -> &str {
        match self {
            Self::OpenAi(engine, _) => &engine.name,
            Self::Embedded(engine) => engine.name(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::OpenAi(..) => "openai",
            Self::Embedded(_) => "embedded",
        }
    }

    /// Where it is: the base URL, or the GGUF file.
    pub fn location(&self) -> String {
        match self {
            Self::OpenAi(engine, _) => engine.base_url.clone(),
            Self::Embedded(engine) => engine.model_path().display().to_string(),
        }
    }

    /// Model names it serves.
    pub fn models(&self) -> Vec<String> {
        match self {
            Self::OpenAi(engine, _) => engine.models.clone(),
            Self::Embedded(engine) => vec![engine.served_name().to_string()],
        }
    }

    pub fn request_timeout(&self) -> Duration {
        match self {
            Self::OpenAi(engine, _) => engine.request_timeout,
            Self::Embedded(engine) => engine.request_timeout(),
        }
    }

    pub fn health(&self) -> HealthState {
        match self {
            Self::OpenAi(engine, _) => engine.health(),
            Self::Embedded(engine) => engine.health(),
        }
    }

    /// Whether the engine can answer now, else why not (`/readyz`). A launched engine is ready once its process
    /// answers; the embedded one once its model has loaded; any other upstream unless its last check or request
    /// failed (one never checked yet, such as a hosted API, counts as ready: there is nothing to wait for).
    pub fn ready(&self) -> Result<(), String> {
        match self {
            Self::OpenAi(_, Some(supervisor)) => match supervisor.state() {
                ProcessState { phase: supervisor::Phase::Healthy, .. } => Ok(()),
                state => Err(format!("launched process is {}", state.phase.as_str())),
            },
            Self::OpenAi(engine, None) => match engine.health() {
                HealthState { health: Health::Unhealthy, last_error, .. } => Err(last_error),
                _ => Ok(()),
            },
            Self::Embedded(engine) => engine.ready(),
        }
    }

    /// Running and waiting requests, KV-cache use and prefix-cache hits, where known: the embedded engine's own
    /// counts, or what an upstream's metrics said at the last telemetry scrape.
    pub fn load(&self) -> Option<EngineLoad> {
        match self {
            Self::OpenAi(engine, _) => engine.scraped_load(),
            Self::Embedded(engine) => Some(engine.load()),
        }
    }

    /// Refreshes what `load` reports from the engine's metrics, where it has them to scrape: `None` when
    /// there is nothing to scrape, else the load or why it could not be read.
    pub async fn refresh_load(&self) -> Option<Result<EngineLoad, String>> {
        match self {
            Self::OpenAi(engine, _) => engine.scrape_load().await,
            Self::Embedded(engine) => Some(Ok(engine.load())),
        }
    }

    /// The PID of the engine's process, for engines the daemon launched and that are running.
    pub fn pid(&self) -> Option<u32> {
        self.process().and_then(|process| process.pid)
    }

    /// What a launched engine last wrote, oldest line first (empty for others).
    pub fn log_tail(&self) -> Vec<String> {
        match self {
            Self::OpenAi(_, Some(supervisor)) => supervisor.log_tail(),
            _ => Vec::new(),
        }
    }

    /// The launched process, for engines the daemon runs itself.
    pub fn process(&self) -> Option<ProcessState> {
        match self {
            Self::OpenAi(_, Some(supervisor)) => Some(supervisor.state()),
            _ => None,
        }
    }

    /// Sends one request; returns once the engine has accepted it and is answering (for a stream: once the
    /// answer has begun), or with the reason it will not.
    pub async fn post(&self, endpoint: Endpoint, body: &serde_json::Value) -> Result<Answer, UpstreamError> {
        match self {
            Self::OpenAi(engine, _) => engine.post(endpoint, body).await,
            Self::Embedded(engine) => engine.post(endpoint, body).await,
        }
    }
}

/// The configured engines, by name.
#[derive(Clone, Default)]
pub struct Engines {
    by_name: BTreeMap<String, Arc<Engine>>,
}

impl Engines {
    /// Builds every engine. Embedded models load in the background: an engine whose file is missing or
    /// broken still exists and says why in its health, so the daemon starts either way.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (name, engine) in config.effective_engines() {
            let engine = match &engine {
                EngineConfig::Openai(settings) => {
                    Engine::OpenAi(Arc::new(OpenAiEngine::new(&name, settings)?), Supervisor::new(&name, settings))
                }
                EngineConfig::Embedded(settings) => Engine::Embedded(EmbeddedEngine::start(&name, settings)),
            };
            by_name.insert(name, Arc::new(engine));
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Engine>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Engine>> {
        self.by_name.values()
    }

    /// Keeps each remote engine's health current between requests, until shutdown; launches the engines
    /// the daemon runs itself (their supervisor probes them), which run until `stop_launched` fires.
    pub fn spawn_background(
        &self,
        shutdown: crate::shutdown::Shutdown,
        stop_launched: crate::shutdown::Shutdown,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut supervisors = Vec::new();
        for engine in self.by_name.values() {
            let Engine::OpenAi(remote, supervisor) = &**engine else { continue };
            if let Some(supervisor) = supervisor {
                supervisors.push(tokio::spawn(supervisor.clone().run(remote.clone(), stop_launched.clone())));
                continue;
            }
            let remote = remote.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    remote.probe().await;
                    tokio::select! {
                        _ = tokio::time::sleep(PROBE_EVERY) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            });
        }
        supervisors
    }

    /// Stops the embedded engines' decode loops (their requests end with an error).
    pub fn stop(&self) {
        for engine in self.by_name.values() {
            if let Engine::Embedded(embedded) = &**engine {
                embedded.stop();
            }
        }
    }
}
