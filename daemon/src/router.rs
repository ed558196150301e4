//! Routes: the public model name a client asks for, mapped to an ordered chain of engine/model targets.
//! The first target serves; the rest are the fallback chain.
use crate::config::{Config, EngineConfig};
use crate::engine::{Engine, Engines};
use crate::pricing::{Price, PriceTable};
use crate::resilience::CircuitBreaker;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct Target {
    pub engine: Arc<Engine>,
    /// The model name at the engine.
    pub model: String,
    /// Shared by every route that names the same engine and model.
    pub breaker: CircuitBreaker,
    /// USD per 1M tokens, for engines that charge per token (hosted APIs); `None` for local engines, whose
    /// cost comes from energy and GPU time.
    pub price: Option<Price>,
    /// Skip to the next target while the engine has more waiting requests than this ...
    pub max_waiting: Option<u64>,
    /// ... or one of its GPUs has more than this share of its memory in use.
    pub max_gpu_memory_fraction: Option<f64>,
}

#[derive(Clone, Default)]
pub struct Router {
    routes: BTreeMap<String, Vec<Target>>,
}

impl Router {
    /// Configured routes; with none, every model of every engine is offered under its own name (engines that
    /// serve the same model form a chain in name order).
    pub fn new(config: &Config, engines: &Engines) -> Self {
        Self::with_prices(config, engines, &PriceTable::builtin())
    }

    pub fn with_prices(config: &Config, engines: &Engines, prices: &PriceTable) -> Self {
        let engine_configs = config.effective_engines();
        let mut breakers: BTreeMap<(String, String), CircuitBreaker> = BTreeMap::new();
        let mut target = |engine: &Arc<Engine>, model: String| {
            let breaker = breakers
                .entry((engine.name().to_string(), model.clone()))
                .or_insert_with(|| CircuitBreaker::new(config.resilience.breaker.clone()))
                .clone();
            let settings = engine_configs.get(engine.name());
            let price = match settings {
                Some(EngineConfig::Openai(settings)) => {
                    settings.price.map(|p| p.price()).or_else(|| prices.lookup(&model).copied())
                }
                _ => None,
            };
            let (max_waiting, max_gpu_memory_fraction) =
                settings.map(EngineConfig::overload_limits).unwrap_or_default();
            Target { engine: engine.clone(), model, breaker, price, max_waiting, max_gpu_memory_fraction }
        };
        let mut routes: BTreeMap<String, Vec<Target>> = BTreeMap::new();
        if config.routes.is_empty() {
            for engine in engines.iter() {
                for model in engine.models() {
                    routes.entry(model.clone()).or_default().push(target(engine, model));
                }
            }
        } else {
            for (name, route) in &config.routes {
                let targets = route
                    .targets
                    .iter()
                    .filter_map(|t| {
                        let engine = engines.get(&t.engine)?;
                        Some(target(engine, t.model.clone().unwrap_or_else(|| name.clone())))
                    })
                    .collect();
                routes.insert(name.clone(), targets);
            }
        }
        Self { routes }
    }

    pub fn resolve(&self, model: &str) -> Option<&[Target]> {
        self.routes.get(model).map(Vec::as_slice)
    }

    /// Public model names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Target])> {
        self.routes.iter().map(|(name, targets)| (name.as_str(), targets.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn router(toml: &str) -> Router {
        let config = Config::from_toml(toml, Path::new("t.toml")).expect("config");
        let engines = Engines::from_config(&config).expect("engines");
        Router::new(&config, &engines)
    }

    const ENGINES: &str = r#"
[engines.a]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
models = ["m1", "shared"]
[engines.b]
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
models = ["shared"]
"#;

    #[test]
    fn without_routes_each_engine_model_is_a_route() {
        let router = router(ENGINES);
        assert_eq!(router.names().collect::<Vec<_>>(), ["m1", "shared"]);
        let chain: Vec<&str> = router.resolve("shared").expect("route").iter().map(|t| t.engine.name()).collect();
        assert_eq!(chain, ["a", "b"]);
        assert!(router.resolve("nope").is_none());
    }

    #[test]
    fn configured_routes_replace_the_defaults() {
        let toml = format!(
            "{ENGINES}\n[routes.chat]\ntargets = [{{ engine = \"b\", model = \"shared\" }}, {{ engine = \"a\" }}]\n"
        );
        let router = router(&toml);
        assert_eq!(router.names().collect::<Vec<_>>(), ["chat"]);
        let chain: Vec<(String, String)> = router
            .resolve("chat")
            .expect("route")
            .iter()
            .map(|t| (t.engine.name().to_string(), t.model.clone()))
            .collect();
        assert_eq!(chain, [("b".into(), "shared".into()), ("a".into(), "chat".into())]);
    }
}
