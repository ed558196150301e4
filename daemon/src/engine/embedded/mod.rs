//! Kind `embedded`: a GGUF model run inside the daemon by llama.cpp (the `llama-cpp-2` bindings), answering
//! in the OpenAI wire format. Requests are checked and tokenized on the caller's task; a dedicated thread
//! runs the decode loop (see `batcher`). The model loads in the background: until it has, or when it cannot
//! be loaded, requests get a 503 that says why and what fixes it.
mod batcher;
mod constraint;
pub mod cpu;
mod embed;
mod embedder;
mod format;
mod job;
mod llm;
mod params;
mod request;
mod sampler;
pub(crate) mod schema;
mod template;
mod text;
pub mod threads;
mod tool_output;
mod tools;

use super::{Answer, Endpoint, EngineLoad, Health, HealthState, UpstreamError};
use crate::config::EmbeddedEngineConfig;
use crate::sync::RwLockExt;
use futures::StreamExt;
use job::{Command, Job};
use llm::LoadedModel;
use request::Refusal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

enum State {
    Loading,
    Ready(Arc<LoadedModel>),
    Failed(String),
    Stopped,
}

/// Load figures the decode loop publishes for status and metrics.
#[derive(Default)]
pub struct Load {
    running: AtomicU64,
    waiting: AtomicU64,
    /// f64 bits of the share of KV-cache cells in use.
    kv_used: AtomicU64,
    /// How much of the model file llama.cpp has loaded, in percent (while loading).
    loaded_percent: AtomicU64,
}

impl Load {
    fn publish(&self, running: u64, kv_used: f64) {
        self.running.store(running, Ordering::Relaxed);
        self.kv_used.store(kv_used.to_bits(), Ordering::Relaxed);
    }

    fn left_queue(&self, count: usize) {
        self.waiting.fetch_sub(count as u64, Ordering::Relaxed);
    }

    fn waiting_reset(&self) {
        self.waiting.store(0, Ordering::Relaxed);
    }
}

pub struct EmbeddedEngine {
    name: String,
    served_name: String,
    model_path: PathBuf,
    request_timeout: Duration,
    parallel: u64,
    queue_limit: u64,
    state: Arc<RwLock<State>>,
    load: Arc<Load>,
    commands: Sender<Command>,
}

impl EmbeddedEngine {
    /// Starts loading the model on the engine's own thread, which then runs the decode loop.
    pub fn start(name: &str, settings: &EmbeddedEngineConfig) -> Self {
        let (model_path, catalog_name) = resolve_model(&settings.model);
        let served_name = if !settings.served_name.is_empty() {
            settings.served_name.clone()
        } else if let Some(catalog_name) = catalog_name {
            catalog_name.to_string()
        } else {
            model_path.file_stem().map_or_else(|| name.to_string(), |stem| stem.to_string_lossy().into_owned())
        };
        let (commands, receiver) = std::sync::mpsc::channel();
        let engine = Self {
            name: name.to_string(),
            served_name,
            model_path: model_path.clone(),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            parallel: settings.parallel as u64,
            queue_limit: settings.queue_limit as u64,
            state: Arc::new(RwLock::new(State::Loading)),
            load: Arc::new(Load::default()),
            commands,
        };
        // A missing file is known at once: requests get "fetch it with ..." from the first, not "still loading".
        if let Err(reason) = present(&model_path, catalog_name) {
            tracing::error!(engine = name, %reason, "embedded engine unavailable");
            set_state(&engine.state, State::Failed(reason));
            return engine;
        }
        let state = engine.state.clone();
        let load = engine.load.clone();
        let settings = settings.clone();
        let engine_name = name.to_string();
        let spawned = std::thread::Builder::new().name(format!("engine-{name}")).spawn(move || {
            let progress = load.clone();
            let log_name = engine_name.clone();
            let on_progress = move |fraction: f32| {
                // A large GGUF takes minutes: say how far it is every 10% (and on /readyz, every percent).
                let percent = (fraction.clamp(0.0, 1.0) * 100.0) as u64;
                let before = progress.loaded_percent.swap(percent, Ordering::Relaxed);
                if percent / 10 > before / 10 {
                    tracing::info!(engine = log_name, percent, "loading the model");
                }
            };
            let model = match open(&model_path, catalog_name, &settings, on_progress) {
                Ok(model) => Arc::new(model),
                Err(reason) => {
                    tracing::error!(engine = engine_name, %reason, "embedded engine unavailable");
                    return set_state(&state, State::Failed(reason));
                }
            };
            let threads = threads::resolve(settings.threads);
            let ctx = match model.new_context(&settings, threads) {
                Ok(ctx) => ctx,
                Err(reason) => return set_state(&state, State::Failed(reason)),
            };
            tracing::info!(
                engine = engine_name,
                model = %model_path.display(),
                threads,
                parallel = settings.parallel,
                context_size = model.context_size,
                "embedded engine ready"
            );
            set_state(&state, State::Ready(model.clone()));
            if model.pooling.is_some() {
                embedder::run(&model, ctx, settings.parallel, receiver, load);
            } else {
                batcher::Batcher::new(&model, ctx, settings.parallel, receiver, load).run();
            }
            set_state(&state, State::Stopped);
        });
        if let Err(error) = spawned {
            set_state(&engine.state, State::Failed(format!("cannot start the engine thread: {error}")));
        }
        engine
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn served_name(&self) -> &str {
        &self.served_name
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub fn health(&self) -> HealthState {
        let (health, last_error) = match &*read_state(&self.state) {
            State::Loading => {
                (Health::Unknown, format!("loading the model ({}%)", self.load.loaded_percent.load(Ordering::Relaxed)))
            }
            State::Ready(_) => (Health::Healthy, String::new()),
            State::Failed(reason) => (Health::Unhealthy, reason.clone()),
            State::Stopped => (Health::Unhealthy, "stopped".to_string()),
        };
        HealthState { health, last_error, last_checked_unix_ms: crate::clock::unix_ms() }
    }

    /// Whether requests can be answered now, else why not (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        match self.health() {
            HealthState { health: Health::Healthy, .. } => Ok(()),
            HealthState { last_error, .. } => Err(last_error),
        }
    }

    pub fn load(&self) -> EngineLoad {
        let ready = matches!(&*read_state(&self.state), State::Ready(_));
        EngineLoad {
            running: Some(self.load.running.load(Ordering::Relaxed)),
            waiting: Some(self.load.waiting.load(Ordering::Relaxed)),
            kv_cache_used_fraction: ready.then(|| f64::from_bits(self.load.kv_used.load(Ordering::Relaxed))),
            // A slot's KV cache is cleared when its request ends: no prompt is served from an earlier one.
            prefix_cache_hit_rate: None,
            prefix_cache_queried_tokens: None,
            prefix_cache_hit_tokens: None,
        }
    }

    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    pub async fn post(&self, endpoint: Endpoint, body: &serde_json::Value) -> Result<Answer, UpstreamError> {
        let model = match &*read_state(&self.state) {
            State::Ready(model) => model.clone(),
            State::Loading => return Err(self.unavailable("the model is still loading; retry in a moment".into())),
            State::Failed(reason) => return Err(self.unavailable(reason.clone())),
            State::Stopped => return Err(self.unavailable("the engine has stopped".into())),
        };
        let chat = match (endpoint, model.pooling.is_some()) {
            (Endpoint::Embeddings, true) => return self.embed(&model, body).await,
            (Endpoint::Embeddings, false) => {
                return Err(self.refused(Refusal::invalid(
                    "model",
                    format!(
                        "`{}` is a generation model; it does not serve embeddings (configure an embedding GGUF, \
                         or `pooling` to embed with this one)",
                        self.served_name
                    ),
                )))
            }
            (_, true) => {
                return Err(self.refused(Refusal::invalid(
                    "model",
                    format!("`{}` serves embeddings only; send its requests to /v1/embeddings", self.served_name),
                )))
            }
            (Endpoint::ChatCompletions, false) => true,
            (Endpoint::Completions, false) => false,
        };
        let generation = request::parse(chat, body).map_err(|r| self.refused(r))?;
        let prompt = model.tokens(&generation.prompt).map_err(|r| self.refused(r))?;
        let max_tokens =
            fit_window(prompt.len(), generation.max_tokens, model.context_size).map_err(|r| self.refused(r))?;
        let sampler = sampler::build(&model, &generation.sampling, generation.constraint.as_ref())
            .map_err(|r| self.refused(r))?;
        self.enter_queue()?;
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let job = Job { prompt, sampler, max_tokens, stop: generation.stop, events };
        if self.commands.send(Command::Run(job)).is_err() {
            self.load.left_queue(1);
            return Err(self.unavailable("the engine has stopped".into()));
        }
        let formatter = format::Formatter::new(chat, generation.model, generation.tools.is_some());
        let body =
            if generation.stream { format::sse(formatter, receiver) } else { format::whole(formatter, receiver) };
        Ok(Answer { status: 200, body })
    }

    /// `/v1/embeddings`: inputs tokenized here, each within the window, pooled on the engine thread.
    async fn embed(&self, model: &LoadedModel, body: &serde_json::Value) -> Result<Answer, UpstreamError> {
        let request = embed::parse(body, model.n_embd()).map_err(|r| self.refused(r))?;
        let mut inputs = Vec::with_capacity(request.inputs.len());
        let mut total = 0;
        for (i, input) in request.inputs.iter().enumerate() {
            let prompt = match input {
                embed::Input::Text(text) => request::Prompt::Text(text.clone()),
                embed::Input::Tokens(ids) => request::Prompt::Tokens(ids.clone()),
            };
            let tokens = model.tokens(&prompt).map_err(|r| self.refused(r))?;
            if tokens.len() > model.context_size as usize {
                return Err(self.refused(Refusal::invalid(
                    "input",
                    format!("input[{i}] is {} tokens; this model embeds at most {}", tokens.len(), model.context_size),
                )));
            }
            total += tokens.len();
            if total > embed::MAX_TOTAL_TOKENS {
                return Err(self.refused(Refusal::invalid(
                    "input",
                    format!("the inputs are over {} tokens together; send fewer per request", embed::MAX_TOTAL_TOKENS),
                )));
            }
            inputs.push(tokens);
        }
        self.enter_queue()?;
        let (reply, vectors) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Embed(job::EmbedJob { inputs, reply })).is_err() {
            self.load.left_queue(1);
            return Err(self.unavailable("the engine has stopped".into()));
        }
        let vectors = match vectors.await {
            Ok(Ok(vectors)) => vectors,
            Ok(Err(reason)) => return Err(self.unavailable(reason)),
            Err(_) => return Err(self.unavailable("the engine stopped".into())),
        };
        let body = embed::answer(&request, &vectors, total).to_string();
        Ok(Answer { status: 200, body: futures::stream::once(async move { Ok(bytes::Bytes::from(body)) }).boxed() })
    }

    /// Counts the request as waiting, or refuses it when the queue beyond the free sequences is full.
    fn enter_queue(&self) -> Result<(), UpstreamError> {
        let waiting = self.load.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        let free = self.parallel.saturating_sub(self.load.running.load(Ordering::Relaxed));
        if waiting > self.queue_limit + free {
            self.load.left_queue(1);
            return Err(self.refused(Refusal {
                status: 429,
                message: format!(
                    "engine {} is at capacity: {} requests running and {} waiting (queue_limit {}); retry shortly",
                    self.name,
                    self.parallel - free,
                    waiting - 1,
                    self.queue_limit
                ),
                param: None,
                code: "queue_full",
            }));
        }
        Ok(())
    }

    fn refused(&self, refusal: Refusal) -> UpstreamError {
        UpstreamError::Status {
            engine: self.name.clone(),
            status: refusal.status,
            body: refusal.body(),
            retry_after: None,
        }
    }

    fn unavailable(&self, reason: String) -> UpstreamError {
        UpstreamError::Unavailable { engine: self.name.clone(), reason }
    }
}

impl Drop for EmbeddedEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The answer's token budget: the request's `max_tokens` if prompt and answer fit the window (else a 400
/// in OpenAI's words), or, without one, whatever the window has left.
fn fit_window(prompt: usize, max_tokens: Option<u32>, window: u32) -> Result<u32, Refusal> {
    let window_size = window as usize;
    let overflow = |message: String| Refusal {
        status: 400,
        message,
        param: Some("messages".into()),
        code: "context_length_exceeded",
    };
    if prompt >= window_size {
        return Err(overflow(format!(
            "This model's maximum context length is {window} tokens. However, your prompt is {prompt} tokens \
             (leaving no room for an answer). Please reduce the length of the prompt."
        )));
    }
    let room = (window_size - prompt) as u32;
    match max_tokens {
        Some(max) if max > room => Err(overflow(format!(
            "This model's maximum context length is {window} tokens. However, you requested {} tokens ({prompt} \
             in the prompt, {max} in the completion). Please reduce the length of the prompt or of max_tokens.",
            prompt + max as usize
        ))),
        Some(max) => Ok(max),
        None => Ok(room),
    }
}

/// A catalog name maps to its file in the model cache; anything else is a path.
fn resolve_model(model: &str) -> (PathBuf, Option<&'static str>) {
    match crate::model_cache::find(model) {
        Ok(spec) => (crate::model_cache::cached_path(spec, &crate::model_cache::cache_dir()), Some(spec.name)),
        Err(_) => (PathBuf::from(model), None),
    }
}

fn open(
    path: &Path,
    catalog_name: Option<&str>,
    settings: &EmbeddedEngineConfig,
    on_progress: impl FnMut(f32) + 'static,
) -> Result<LoadedModel, String> {
    present(path, catalog_name)?;
    LoadedModel::load(path, settings, on_progress)
}

/// Whether the model file is there, else what to do about it.
fn present(path: &Path, catalog_name: Option<&str>) -> Result<(), String> {
    if path.is_file() {
        return Ok(());
    }
    Err(match catalog_name {
        Some(name) => format!(
            "model {name} is not in the model cache ({} is missing); fetch it with `llmopsd model pull {name}`",
            path.display()
        ),
        None => format!("the GGUF file {} does not exist", path.display()),
    })
}

fn read_state(state: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    state.read_locked()
}

fn set_state(state: &RwLock<State>, new: State) {
    *state.write_locked() = new;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_bounds_prompt_and_answer() {
        assert_eq!(fit_window(10, Some(5), 100), Ok(5));
        assert_eq!(fit_window(10, None, 100), Ok(90));
        let full = fit_window(100, None, 100).expect_err("no room");
        assert!(full.message.contains("maximum context length is 100 tokens") && full.message.contains("100 tokens"));
        let over = fit_window(60, Some(50), 100).expect_err("too long");
        assert!(
            over.message.contains("requested 110 tokens (60 in the prompt, 50 in the completion)"),
            "{}",
            over.message
        );
        assert_eq!(over.code, "context_length_exceeded");
    }
}
