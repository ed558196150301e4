//! `[engines.NAME]`: what answers requests. `kind` picks the variant; each refuses keys it does not know.
use super::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EngineConfig {
    /// Any OpenAI-compatible server: vLLM, llama.cpp's server, SGLang, Ollama's `/v1`, hosted APIs.
    Openai(OpenAiEngineConfig),
    /// A GGUF model run inside the daemon by llama.cpp, with continuous batching.
    Embedded(EmbeddedEngineConfig),
}

impl EngineConfig {
    /// (max_waiting, max_gpu_memory_fraction): when routes skip this engine for their next target.
    pub fn overload_limits(&self) -> (Option<u64>, Option<f64>) {
        match self {
            Self::Openai(c) => (c.max_waiting, c.max_gpu_memory_fraction),
            Self::Embedded(c) => (c.max_waiting, c.max_gpu_memory_fraction),
        }
    }

    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        match self {
            Self::Openai(config) => config.validate(name),
            Self::Embedded(config) => config.validate(name),
        }
    }

    pub fn request_timeout_ms(&self) -> u64 {
        match self {
            Self::Openai(config) => config.request_timeout_ms,
            Self::Embedded(config) => config.request_timeout_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenAiEngineConfig {
    /// Base URL including the `/v1` prefix, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Environment variable holding the upstream API key (never put the key in this file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Model names this engine serves.
    pub models: Vec<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the answer to begin (its headers, and for a stream its first event), then the next
    /// target is tried, or 504.
    #[serde(default = "default_first_token_timeout_ms")]
    pub first_token_timeout_ms: u64,
    /// Longest a whole request may take, then 504 (or, mid-stream, an error event).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Longest silence between two reads of a streamed answer once it has begun, then the client gets an error
    /// event (a stream that stalls mid-way does not hold the request until `request_timeout_ms`).
    #[serde(default = "default_stream_idle_timeout_ms")]
    pub stream_idle_timeout_ms: u64,
    /// A command that runs this engine (program and arguments, no shell). The daemon starts it, waits for it
    /// to answer `GET {base_url}/models`, restarts it with backoff when it exits, and stops it on shutdown.
    #[serde(default)]
    pub launch: Vec<String>,
    /// Environment of the launched command, over the few variables it takes from the daemon's own
    /// environment (`OpenAiEngineConfig::LAUNCH_INHERITED_ENV`); nothing else is passed on.
    #[serde(default)]
    pub launch_env: std::collections::BTreeMap<String, String>,
    /// Names of further variables passed from the daemon's environment to the launched command, for secrets
    /// it needs that must not be written in this file (e.g. `VLLM_API_KEY`, `HF_TOKEN`).
    #[serde(default)]
    pub launch_inherit_env: Vec<String>,
    /// Working directory of the launched command (default: the daemon's).
    #[serde(default)]
    pub launch_dir: Option<String>,
    /// The engine's Prometheus metrics (vLLM, SGLang, llama.cpp with `--metrics`), scraped every telemetry
    /// interval for running and waiting requests and KV-cache use. Absent: `/metrics` beside `base_url` when
    /// the engine is on this host (loopback), else not scraped; `"off"`: never.
    #[serde(default)]
    pub metrics_url: Option<String>,
    /// GPU indices (NVML) this engine runs on, for energy per request. Launched engines are also found by
    /// their PID in each GPU's process list.
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// USD per 1M tokens for every model of this engine, instead of the price table's row for the model.
    #[serde(default)]
    pub price: Option<PriceConfig>,
    /// Routes skip this engine for their next target while more requests than this wait in its queue (its
    /// own metrics), or while one of its GPUs has more than this share of memory in use (NVML). Never for a
    /// route's last target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpu_memory_fraction: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    pub output: f64,
    /// Default: `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
}

impl PriceConfig {
    pub fn price(&self) -> crate::pricing::Price {
        crate::pricing::Price {
            input_per_m: self.input,
            output_per_m: self.output,
            cached_input_per_m: self.cached_input.unwrap_or(self.input),
        }
    }
}

impl OpenAiEngineConfig {
    /// What a launched engine takes from the daemon's environment: where to find programs and libraries, who and
    /// where it is, locale and time zone, temporary and cache directories, and which GPUs it may use. Not the
    /// daemon's tokens or upstream keys: those reach it only through `launch_env` or `launch_inherit_env`.
    pub const LAUNCH_INHERITED_ENV: &'static [&'static str] = &[
        "PATH",
        "LD_LIBRARY_PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "LC_*",
        "TZ",
        "TMPDIR",
        "XDG_RUNTIME_DIR",
        "XDG_CACHE_HOME",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "NVIDIA_VISIBLE_DEVICES",
        "NVIDIA_DRIVER_CAPABILITIES",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
    ];

    /// Whether the launched command gets the daemon's variable `name`: it is on the list above (`LC_*`: any
    /// name starting with `LC_`) or in `launch_inherit_env`. (`launch_env` is set over these.)
    pub fn launch_inherits(&self, name: &str) -> bool {
        let listed = |pattern: &str| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        Self::LAUNCH_INHERITED_ENV.iter().any(|p| listed(p)) || self.launch_inherit_env.iter().any(|n| n == name)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if self.launch.first().is_some_and(|program| program.trim().is_empty()) {
            return Err(ConfigError::Invalid(format!("engines.{name}.launch[0] (the program) is empty")));
        }
        let names = self
            .launch_env
            .keys()
            .map(|n| ("launch_env", n))
            .chain(self.launch_inherit_env.iter().map(|n| ("launch_inherit_env", n)));
        if let Some((key, bad)) = names.into_iter().find(|(_, n)| n.is_empty() || n.contains(['=', '\0'])) {
            return Err(ConfigError::Invalid(format!(
                "engines.{name}.{key}: {bad:?} is not an environment variable name"
            )));
        }
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| {
            ConfigError::Invalid(format!("engines.{name}.base_url = {:?} is not a URL: {e}", self.base_url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid(format!(
                "engines.{name}.base_url = {:?} must be http:// or https://",
                self.base_url
            )));
        }
        if let Some(price) = &self.price {
            let values =
                [("input", price.input), ("output", price.output), ("cached_input", price.cached_input.unwrap_or(0.0))];
            if let Some((key, value)) = values.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
                return Err(ConfigError::Invalid(format!(
                    "engines.{name}.price.{key} = {value} must be a price of 0 or more (USD per 1M tokens)"
                )));
            }
        }
        if self.models.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "engines.{name}.models is empty: list the model names this engine serves"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedEngineConfig {
    /// A model from the catalog (`llmopsd model list`), fetched with `llmopsd model pull`, or a path to a
    /// GGUF file.
    pub model: String,
    /// The name clients ask for. Empty: the catalog name, or the file name without `.gguf`.
    pub served_name: String,
    /// CPU threads for decoding. 0: one per physical core, minus one, at least one (an oversubscribed
    /// llama.cpp thread pool slows down several times; see `engine/embedded/threads.rs`).
    pub threads: usize,
    /// Sequences decoded together (continuous batching); each has its own KV-cache slot.
    pub parallel: usize,
    /// Context window of each sequence, in tokens (prompt + answer). 0: what the model was trained with.
    pub context_size: u32,
    /// Requests waiting for a free sequence; past it a request gets 429.
    pub queue_limit: usize,
    /// Most prompt tokens fed to one decode step; long prompts are fed in steps so running answers keep
    /// flowing.
    pub batch_size: u32,
    /// Layers offloaded to the GPU (builds with the `cuda` feature); 0 runs on the CPU.
    pub gpu_layers: u32,
    /// Longest a whole request may take, queueing included, then 504 (or, mid-stream, an error event).
    pub request_timeout_ms: u64,
    /// GPU indices (NVML) the offloaded layers run on, for energy per request. Also found by the daemon's
    /// PID in each GPU's process list.
    pub gpus: Vec<u32>,
    /// Routes skip this engine for their next target while more requests than this wait in its queue (its
    /// own metrics), or while one of its GPUs has more than this share of memory in use (NVML). Never for a
    /// route's last target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_gpu_memory_fraction: Option<f64>,
    /// Serve `/v1/embeddings` (and only that) with this pooling: `mean`, `cls` or `last`. Empty: an embedding
    /// model (a GGUF that declares its pooling, e.g. BERT, nomic, Qwen3-Embedding) serves embeddings with its
    /// own pooling; any other model generates text.
    pub pooling: String,
    /// A Jinja chat template file used instead of the GGUF's own (empty: the GGUF's, through llama.cpp's
    /// built-in engine, else rendered as Jinja).
    pub chat_template: String,
}

impl Default for EmbeddedEngineConfig {
    fn default() -> Self {
        Self {
            model: crate::model_cache::DEFAULT_MODEL.name.into(),
            served_name: String::new(),
            threads: 0,
            parallel: 4,
            context_size: 2048,
            queue_limit: 64,
            batch_size: 512,
            gpu_layers: 0,
            request_timeout_ms: default_request_timeout_ms(),
            gpus: Vec::new(),
            max_waiting: None,
            max_gpu_memory_fraction: None,
            pooling: String::new(),
            chat_template: String::new(),
        }
    }
}

impl EmbeddedEngineConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("engines.{name}.{message}")));
        if self.model.trim().is_empty() {
            return invalid("model is empty: name a catalog model (`llmopsd model list`) or a GGUF path".into());
        }
        if !(1..=256).contains(&self.parallel) {
            return invalid(format!("parallel = {} must be between 1 and 256", self.parallel));
        }
        if self.batch_size < 16 {
            return invalid(format!("batch_size = {} must be at least 16", self.batch_size));
        }
        if !matches!(self.pooling.as_str(), "" | "mean" | "cls" | "last") {
            let shown: String = self.pooling.chars().take(32).collect();
            return invalid(format!(
                "pooling = {shown:?} must be \"mean\", \"cls\", \"last\" or empty (the model's own)"
            ));
        }
        if self.context_size != 0 && self.context_size < 64 {
            return invalid(format!("context_size = {} must be 0 (the model's own) or at least 64", self.context_size));
        }
        Ok(())
    }
}

pub fn default_connect_timeout_ms() -> u64 {
    2_000
}
pub fn default_first_token_timeout_ms() -> u64 {
    60_000
}
pub fn default_stream_idle_timeout_ms() -> u64 {
    120_000
}
pub fn default_request_timeout_ms() -> u64 {
    600_000
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, EngineConfig};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_engine_takes_defaults() {
        let config = parse("[engines.local]\nkind = \"embedded\"\n").expect("parses");
        let Some(EngineConfig::Embedded(engine)) = config.engines.get("local") else { panic!("embedded engine") };
        assert_eq!(engine.model, "smollm2-135m-instruct");
        assert_eq!(engine.parallel, 4);
    }

    #[test]
    fn keys_of_another_kind_are_refused() {
        let err = parse("[engines.local]\nkind = \"embedded\"\nbase_url = \"http://x/v1\"\n").expect_err("refused");
        assert!(err.contains("base_url"), "{err}");
        let err = parse("[engines.x]\nkind = \"vllm\"\n").expect_err("refused");
        assert!(err.contains("openai") && err.contains("embedded"), "{err}");
    }

    #[test]
    fn launch_environment_names_are_checked() {
        let engine = "[engines.e]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"m\"]\n";
        let config = parse(&format!("{engine}launch_inherit_env = [\"HF_TOKEN\"]\n")).expect("parses");
        let Some(EngineConfig::Openai(e)) = config.engines.get("e") else { panic!("openai engine") };
        assert_eq!(e.launch_inherit_env, ["HF_TOKEN"]);
        assert!(e.launch_inherits("PATH") && e.launch_inherits("LC_ALL") && e.launch_inherits("HF_TOKEN"));
        assert!(
            !e.launch_inherits("LLMOPS_TOKEN") && !e.launch_inherits("OPENAI_API_KEY") && !e.launch_inherits("PATHX")
        );
        let err = parse(&format!("{engine}launch_inherit_env = [\"A=B\"]\n")).expect_err("refused");
        assert!(err.contains("engines.e.launch_inherit_env") && err.contains("A=B"), "{err}");
        let err = parse(&format!("{engine}launch_env = {{ \"\" = \"x\" }}\n")).expect_err("refused");
        assert!(err.contains("engines.e.launch_env"), "{err}");
    }

    #[test]
    fn bad_embedded_values_are_named() {
        let err = parse("[engines.local]\nkind = \"embedded\"\nparallel = 0\n").expect_err("refused");
        assert!(err.contains("engines.local.parallel = 0"), "{err}");
        let err = parse("[engines.local]\nkind = \"embedded\"\npooling = \"max\"\n").expect_err("refused");
        assert!(err.contains("engines.local.pooling = \"max\""), "{err}");
    }
}
