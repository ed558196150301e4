//! Daemon configuration: TOML with unknown keys refused, defaults that run with no file, secrets from the
//! environment. Precedence: command-line flags > config file > built-in defaults.
mod engines;

pub use engines::{EmbeddedEngineConfig, EngineConfig, OpenAiEngineConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// toml's message names the key, the line and the column.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub privacy: PrivacyConfig,
    pub store: StoreConfig,
    pub telemetry: TelemetryConfig,
    pub auth: crate::auth::AuthConfig,
    pub resilience: ResilienceConfig,
    pub pricing: PricingConfig,
    pub rate_limits: RateLimitConfig,
    pub drift: crate::drift::DriftConfig,
    pub alerts: AlertsConfig,
    /// Spend limits (`[[budgets]]`), checked before each request and settled after it.
    pub budgets: Vec<crate::budget::BudgetConfig>,
    /// Engines by name. Kind `openai`: any OpenAI-compatible server (vLLM, llama.cpp, SGLang, Ollama, hosted);
    /// kind `embedded`: a GGUF model run in the daemon. With none, the default model is served embedded.
    pub engines: BTreeMap<String, EngineConfig>,
    /// Routes by public model name. With no routes, each model an engine serves is a route of its own.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Rules on what goes to the engines and what comes back (`[[guardrails]]`): block, mask or flag.
    pub guardrails: Vec<crate::guardrails::GuardrailConfig>,
    /// Sending traces to other systems (`[export.otlp]`: OpenTelemetry collectors, Phoenix, Langfuse).
    pub export: crate::export::otlp::ExportConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where state lives (trace database, default gRPC socket). Empty: the platform default.
    pub data_dir: String,
    /// OpenAI-compatible HTTP API.
    pub http_listen: String,
    /// gRPC API: `unix:PATH`, `unix:` (default socket), or `HOST:PORT` (then a bearer token is required).
    pub grpc_listen: String,
    /// Environment variable holding the gRPC admin token (required when gRPC listens on TCP).
    pub grpc_token_env: String,
    /// Environment variable holding the read-only gRPC token (traces, status, telemetry, watch); optional.
    pub grpc_read_token_env: String,
    /// PEM certificate chain the TCP gRPC listener serves TLS with (with `grpc_tls_key`).
    pub grpc_tls_cert: String,
    /// PEM private key of `grpc_tls_cert`.
    pub grpc_tls_key: String,
    /// PEM CA certificates: when set, clients must also present a certificate one of them signed (mTLS).
    pub grpc_tls_client_ca: String,
    /// Serve TCP gRPC without TLS (tokens and traces cross the network in clear). Refused unless set.
    pub grpc_insecure: bool,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests before closing them.
    pub shutdown_grace_secs: u64,
    /// Threads serving requests; 0: one per CPU core.
    pub worker_threads: usize,
    /// Log format: "text" or "json".
    pub log_format: LogFormat,
    /// Web origins (`https://app.example.com`) whose pages may call the API from a browser. Requests that carry
    /// any other `Origin` get a 403; with none listed, no browser page can.
    pub cors_origins: Vec<String>,
    /// Open client connections at most; past it new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A client must send a request's headers within this long, and an idle keep-alive connection is closed
    /// after it (HTTP/1).
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this long once its headers have.
    pub body_read_timeout_ms: u64,
}

impl ServerConfig {
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let zero = [
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("max_body_bytes", self.max_body_bytes as u64),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("server.{key} = 0: it must be at least 1")));
        }
        for origin in &self.cors_origins {
            let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
            let valid = authority.is_some_and(|a| !a.is_empty() && !a.contains(['/', '?', '#', ' ']));
            if !valid || origin.len() > 512 {
                return Err(ConfigError::Invalid(format!(
                    "server.cors_origins: {origin:?} is not an origin (scheme://host[:port], no path or trailing /)"
                )));
            }
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: String::new(),
            http_listen: "127.0.0.1:8080".into(),
            grpc_listen: "unix:".into(),
            grpc_token_env: "LLMOPS_TOKEN".into(),
            grpc_read_token_env: "LLMOPS_READ_TOKEN".into(),
            grpc_tls_cert: String::new(),
            grpc_tls_key: String::new(),
            grpc_tls_client_ca: String::new(),
            grpc_insecure: false,
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_secs: 10,
            worker_threads: 0,
            log_format: LogFormat::Text,
            cors_origins: Vec::new(),
            max_connections: 1024,
            header_read_timeout_ms: 15_000,
            body_read_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Store SHA-256 hashes and lengths instead of prompt and response text.
    pub hash_content: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite file. Empty: `traces.db` in the data dir.
    pub path: String,
    /// Traces older than this are deleted (0 keeps them forever).
    pub retention_days: u32,
    /// At most this many traces are kept, oldest deleted first (0: no limit).
    pub max_traces: u64,
    /// Traces waiting to be written; past it new traces are dropped and counted, never blocking requests.
    pub queue_capacity: usize,
    /// Most traces written in one transaction.
    pub batch_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: String::new(), retention_days: 30, max_traces: 1_000_000, queue_capacity: 10_000, batch_size: 512 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// How often GPUs, the host and engines are sampled, in milliseconds.
    pub interval_ms: u64,
    /// How much sample history is kept in memory for charts and time-series queries, in seconds.
    pub history_secs: u64,
    /// The NVML library to load. Empty: the system's `libnvidia-ml.so.1`.
    pub nvml_library: String,
    /// Electricity price, for the cost of requests served on local GPUs.
    pub usd_per_kwh: f64,
    /// What an hour of one GPU costs (amortised hardware, rent); shared among requests like energy.
    pub usd_per_gpu_hour: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            history_secs: 3600,
            nvml_library: String::new(),
            usd_per_kwh: 0.15,
            usd_per_gpu_hour: 0.0,
        }
    }
}

/// Where alerts go besides the log, the gRPC API and llmopsctl; and the thresholds of the host rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// POSTed JSON on every alert raised, escalated, acknowledged or resolved.
    pub webhooks: Vec<crate::alerts::WebhookConfig>,
    /// GPU temperature that raises an alert (critical 10 degrees above).
    pub gpu_temperature_celsius: u32,
    /// Share of a GPU's memory in use that raises an alert.
    pub gpu_memory_fraction: f64,
    /// Restarts of a launched engine within ten minutes that raise an alert.
    pub engine_restarts: u64,
    /// Seconds an engine may be unhealthy before an alert (0: off).
    pub engine_down_secs: u64,
    /// Latency SLO per route: p95 above this many milliseconds over `latency_slo_minutes` (0: off).
    pub latency_p95_ms: f64,
    /// 1, 5 or 60: the rolling window the SLO is judged on.
    pub latency_slo_minutes: u32,
    /// Share of failed requests per route over the last minute that raises an alert ...
    pub error_rate: f64,
    /// ... once that minute had at least this many requests.
    pub error_rate_min_requests: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            gpu_temperature_celsius: 85,
            gpu_memory_fraction: 0.95,
            engine_restarts: 3,
            engine_down_secs: 60,
            latency_p95_ms: 0.0,
            latency_slo_minutes: 5,
            error_rate: 0.2,
            error_rate_min_requests: 20,
        }
    }
}

/// Token buckets per API key (per tenant for requests without a key); 0 turns a limit off.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub requests_per_min: u32,
    /// Counted as the prompt estimate plus `max_tokens` (1024 when unset) at admission.
    pub tokens_per_min: u32,
}

/// Circuit breakers (one per route target) and retries before falling back to the next target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    pub breaker: crate::resilience::BreakerConfig,
    pub retry: crate::resilience::RetryPolicy,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// A prices file (the format of `config/prices.toml`) whose rows replace or add to the built-in ones.
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Targets in order; later ones are fallbacks.
    pub targets: Vec<TargetConfig>,
    /// An exact-match response cache for this route (off without it).
    #[serde(default)]
    pub cache: Option<crate::cache::CacheConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub engine: String,
    /// Model name at the engine; defaults to the route name.
    #[serde(default)]
    pub model: Option<String>,
}

/// Where the gRPC API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcListen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Config {
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, path)
    }

    /// Checks what serde cannot: references between sections and address syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http_listen_addr()?;
        self.validate_grpc_tls()?;
        self.server.validate_limits()?;
        let telemetry = &self.telemetry;
        if !(100..=3_600_000).contains(&telemetry.interval_ms) {
            return Err(ConfigError::Invalid(format!(
                "telemetry.interval_ms = {} is outside 100..=3600000",
                telemetry.interval_ms
            )));
        }
        for (key, price) in [("usd_per_kwh", telemetry.usd_per_kwh), ("usd_per_gpu_hour", telemetry.usd_per_gpu_hour)] {
            if !price.is_finite() || price < 0.0 {
                return Err(ConfigError::Invalid(format!("telemetry.{key} = {price} must be a price of 0 or more")));
            }
        }
        self.resilience.breaker.validate().map_err(|e| ConfigError::Invalid(format!("resilience.breaker: {e}")))?;
        if self.resilience.retry.max_attempts_per_target == 0 {
            return Err(ConfigError::Invalid(
                "resilience.retry.max_attempts_per_target = 0: at least 1 (the first attempt)".into(),
            ));
        }
        crate::budget::specs_from_config(&self.budgets).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.drift.validate().map_err(ConfigError::Invalid)?;
        if ![1, 5, 60].contains(&self.alerts.latency_slo_minutes) {
            return Err(ConfigError::Invalid(format!(
                "alerts.latency_slo_minutes = {} must be 1, 5 or 60 (the rolling windows kept)",
                self.alerts.latency_slo_minutes
            )));
        }
        for (name, engine) in &self.engines {
            if name == crate::gateway::CACHE_ENGINE {
                return Err(ConfigError::Invalid(format!(
                    "engines.{name}: the name is reserved (cache hits are traced as served by engine `{name}`)"
                )));
            }
            engine.validate(name)?;
        }
        self.export.otlp.validate().map_err(ConfigError::Invalid)?;
        let rules = crate::guardrails::RuleSet::compile(&self.guardrails).map_err(ConfigError::Invalid)?;
        for (index, rule) in rules.rules().iter().enumerate() {
            let Some(classifier) = &rule.classifier else { continue };
            if rule.apply_to != crate::guardrails::rules::ApplyTo::Input {
                return Err(ConfigError::Invalid(format!(
                    "guardrails[{index}] ({}): a classifier runs on the input only: set apply_to = \"input\"",
                    rule.name
                )));
            }
            if !self.routes.is_empty() && !self.routes.contains_key(&classifier.route) {
                return Err(ConfigError::Invalid(format!(
                    "guardrails[{index}].route = {:?} ({}) is not a configured route",
                    classifier.route, rule.name
                )));
            }
        }
        for (route, config) in &self.routes {
            if config.targets.is_empty() {
                return Err(ConfigError::Invalid(format!("routes.{route}.targets is empty")));
            }
            if let Some(cache) = &config.cache {
                cache.validate(route).map_err(ConfigError::Invalid)?;
            }
            for (i, target) in config.targets.iter().enumerate() {
                if !self.engines.contains_key(&target.engine) {
                    let known: Vec<&str> = self.engines.keys().map(String::as_str).collect();
                    return Err(ConfigError::Invalid(format!(
                        "routes.{route}.targets[{i}].engine = {:?} is not a configured engine (engines: {})",
                        target.engine,
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    )));
                }
            }
        }
        Ok(())
    }

    /// The engines to run: the configured ones, or with none, the default model served in-process under its
    /// catalog name (the zero-configuration quick start).
    pub fn effective_engines(&self) -> BTreeMap<String, EngineConfig> {
        if self.engines.is_empty() {
            let default = EmbeddedEngineConfig::default();
            BTreeMap::from([(default.model.clone(), EngineConfig::Embedded(default))])
        } else {
            self.engines.clone()
        }
    }

    pub fn http_listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.http_listen.parse().map_err(|e| {
            ConfigError::Invalid(format!("server.http_listen = {:?} is not HOST:PORT ({e})", self.server.http_listen))
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        if self.server.data_dir.is_empty() {
            llmops_proto::paths::default_data_dir()
        } else {
            PathBuf::from(&self.server.data_dir)
        }
    }

    /// TCP gRPC serves TLS unless plain text was asked for by name; the TLS files come as a set.
    fn validate_grpc_tls(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        let (cert, key, ca) = (&server.grpc_tls_cert, &server.grpc_tls_key, &server.grpc_tls_client_ca);
        if cert.is_empty() != key.is_empty() {
            return Err(ConfigError::Invalid(
                "server.grpc_tls_cert and server.grpc_tls_key go together: set both".into(),
            ));
        }
        if !ca.is_empty() && cert.is_empty() {
            return Err(ConfigError::Invalid(
                "server.grpc_tls_client_ca (mTLS) needs server.grpc_tls_cert and grpc_tls_key".into(),
            ));
        }
        if !cert.is_empty() && server.grpc_insecure {
            return Err(ConfigError::Invalid(
                "server.grpc_insecure = true and server.grpc_tls_cert are contradictory: choose one".into(),
            ));
        }
        if let GrpcListen::Tcp(addr) = self.grpc_listen()? {
            if cert.is_empty() && !server.grpc_insecure {
                return Err(ConfigError::Invalid(format!(
                    "server.grpc_listen = \"{addr}\" is TCP: set server.grpc_tls_cert and server.grpc_tls_key (PEM \
                     files), or server.grpc_insecure = true to serve it unencrypted"
                )));
            }
        }
        Ok(())
    }

    pub fn grpc_listen(&self) -> Result<GrpcListen, ConfigError> {
        let raw = self.server.grpc_listen.trim();
        if let Some(path) = raw.strip_prefix("unix:") {
            return Ok(GrpcListen::Unix(if path.is_empty() {
                llmops_proto::paths::default_socket_path(&self.data_dir())
            } else {
                PathBuf::from(path)
            }));
        }
        raw.parse().map(GrpcListen::Tcp).map_err(|e| {
            ConfigError::Invalid(format!("server.grpc_listen = {raw:?} is neither unix:PATH nor HOST:PORT ({e})"))
        })
    }

    /// The daemon's own state (API keys, budget counters), beside the traces.
    pub fn state_path(&self) -> PathBuf {
        self.data_dir().join("state.db")
    }

    /// The price table: built in, with `pricing.file`'s rows over it.
    pub fn prices(&self) -> Result<crate::pricing::PriceTable, ConfigError> {
        let mut prices = crate::pricing::PriceTable::builtin();
        let file = self.pricing.file.trim();
        if !file.is_empty() {
            let path = PathBuf::from(file);
            let text =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let extra = crate::pricing::PriceTable::from_toml(&text)
                .map_err(|e| ConfigError::Parse { path, message: e.to_string() })?;
            prices.merge(extra);
        }
        Ok(prices)
    }

    pub fn store_path(&self) -> PathBuf {
        if self.store.path.is_empty() {
            self.data_dir().join("traces.db")
        } else {
            PathBuf::from(&self.store.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").expect("empty config parses"), Config::default());
    }

    #[test]
    fn example_config_parses_and_matches_defaults_where_it_says_so() {
        let text = include_str!("../../../config/llmopsd.example.toml");
        let config = parse(text).expect("the example config parses");
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.store, StoreConfig::default());
        assert_eq!(config.privacy, PrivacyConfig::default());
        assert_eq!(config.telemetry, TelemetryConfig::default());
        assert_eq!(config.auth, crate::auth::AuthConfig::default());
        assert_eq!(config.resilience, ResilienceConfig::default());
        assert_eq!(config.pricing, PricingConfig::default());
        assert_eq!(config.rate_limits, RateLimitConfig::default());
        assert_eq!(config.drift, crate::drift::DriftConfig::default());
        assert_eq!(config.alerts, AlertsConfig::default());
        assert_eq!(config.export, crate::export::otlp::ExportConfig::default());
        let Some(EngineConfig::Openai(engine)) = config.engines.get("vllm") else {
            panic!("the example has an openai engine named vllm")
        };
        assert_eq!(engine.connect_timeout_ms, engines::default_connect_timeout_ms());
        assert_eq!(engine.first_token_timeout_ms, engines::default_first_token_timeout_ms());
        assert_eq!(engine.request_timeout_ms, engines::default_request_timeout_ms());
        let Some(EngineConfig::Embedded(local)) = config.engines.get("local") else {
            panic!("the example has an embedded engine named local")
        };
        assert_eq!(local, &EmbeddedEngineConfig::default());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[server]\nhttp_listen = \"127.0.0.1:1\"\nhttp_lisen = \"x\"\n")
            .expect_err("unknown key refused")
            .to_string();
        assert!(err.contains("http_lisen"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let err = parse("[store]\nretention_days = \"ten\"\n").expect_err("wrong type refused").to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("retention_days"), "{err}");
    }

    #[test]
    fn route_to_unknown_engine_is_refused() {
        let err = parse("[routes.chat]\ntargets = [{ engine = \"nope\" }]\n")
            .expect_err("unknown engine refused")
            .to_string();
        assert!(err.contains("routes.chat.targets[0].engine = \"nope\""), "{err}");
    }

    #[test]
    fn bad_listen_addresses_are_refused() {
        let err = parse("[server]\nhttp_listen = \"localhost\"\n").expect_err("bad addr").to_string();
        assert!(err.contains("server.http_listen"), "{err}");
        let err = parse("[server]\ngrpc_listen = \"tcp://x\"\n").expect_err("bad addr").to_string();
        assert!(err.contains("server.grpc_listen"), "{err}");
    }

    #[test]
    fn grpc_listen_forms() {
        let mut config = Config::default();
        config.server.data_dir = "/data".into();
        config.server.grpc_listen = "unix:/run/x.sock".into();
        assert_eq!(config.grpc_listen().ok(), Some(GrpcListen::Unix("/run/x.sock".into())));
        config.server.grpc_listen = "127.0.0.1:50051".into();
        assert!(matches!(config.grpc_listen(), Ok(GrpcListen::Tcp(_))));
    }
}
