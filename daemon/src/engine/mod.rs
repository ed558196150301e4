//! Engines that answer requests. Kind `openai` (any OpenAI-compatible server) for now; embedded models and
//! supervised processes join here.
pub mod openai;

pub use openai::{Health, OpenAiEngine, UpstreamError};

use crate::config::Config;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PROBE_EVERY: Duration = Duration::from_secs(15);

/// The configured engines, by name.
#[derive(Clone, Default)]
pub struct Engines {
    by_name: BTreeMap<String, Arc<OpenAiEngine>>,
}

impl Engines {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (name, engine) in &config.engines {
            by_name.insert(name.clone(), Arc::new(OpenAiEngine::new(name, engine)?));
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<OpenAiEngine>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<OpenAiEngine>> {
        self.by_name.values()
    }

    /// Keeps each engine's health current between requests, until shutdown.
    pub fn spawn_health_probes(&self, shutdown: crate::shutdown::Shutdown) {
        for engine in self.by_name.values() {
            let engine = engine.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    engine.probe().await;
                    tokio::select! {
                        _ = tokio::time::sleep(PROBE_EVERY) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            });
        }
    }
}
