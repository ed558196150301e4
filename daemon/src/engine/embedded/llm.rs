//! A GGUF model loaded through llama.cpp: its tokenizer and chat template turn a request into prompt tokens.
use super::request::{Prompt, Refusal};
use super::template::JinjaTemplate;
use crate::config::EmbeddedEngineConfig;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

/// llama.cpp's process-wide state, started once, with its log lines sent to `tracing` (target
/// `llama-cpp-2`: its ~2,000 lines of load details show with `RUST_LOG=info,llama-cpp-2=info`) instead of stderr.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

pub struct LoadedModel {
    pub model: LlamaModel,
    template: Option<LlamaChatTemplate>,
    /// The config's template file, else the GGUF's template as Jinja for when llama.cpp's engine cannot apply it.
    jinja: Option<JinjaTemplate>,
    /// The config named a template file: it is always used.
    jinja_first: bool,
    /// Tokens one sequence may hold: prompt and answer.
    pub context_size: u32,
    n_vocab: i32,
    /// Set when the engine serves embeddings (the config's pooling, else the model's declared one).
    pub pooling: Option<LlamaPoolingType>,
}

impl LoadedModel {
    /// Loads the GGUF file, calling `on_progress` with the share loaded (0.0 to 1.0) as llama.cpp reads it.
    pub fn load(
        path: &Path,
        settings: &EmbeddedEngineConfig,
        mut on_progress: impl FnMut(f32) + 'static,
    ) -> Result<Self, String> {
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(settings.gpu_layers).with_progress_callback(
            move |fraction| {
                on_progress(fraction);
                // true: go on loading.
                true
            },
        );
        let model = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|e| format!("cannot load the GGUF file {}: {e}", path.display()))?;
        let trained = model.n_ctx_train();
        let context_size = match settings.context_size {
            0 => trained,
            // Past its training context a model's answers degrade; llama.cpp would only warn.
            wanted if trained > 0 && wanted > trained => {
                tracing::warn!(wanted, trained, "context_size is above the model's training context; using the latter");
                trained
            }
            wanted => wanted,
        };
        let template = model.chat_template(None).ok();
        let jinja_first = !settings.chat_template.is_empty();
        let jinja = if jinja_first {
            let path = &settings.chat_template;
            let source = read_bounded(path).map_err(|e| format!("cannot read chat_template {path}: {e}"))?;
            Some(JinjaTemplate::new(source).map_err(|e| format!("chat_template {path}: {e}"))?)
        } else {
            // A GGUF template minijinja cannot parse either leaves llama.cpp's engine as the only one.
            template.as_ref().and_then(|t| t.to_string().ok()).and_then(|source| JinjaTemplate::new(source).ok())
        };
        let n_vocab = model.n_vocab();
        let pooling = pooling(&model, &settings.pooling);
        Ok(Self { model, template, jinja, jinja_first, context_size, n_vocab, pooling })
    }

    /// A context with one KV-cache slot of `context_size` tokens per parallel sequence.
    pub fn new_context(&self, settings: &EmbeddedEngineConfig, threads: usize) -> Result<LlamaContext<'_>, String> {
        let backend = backend()?;
        let parallel = settings.parallel as u32;
        let batch = settings.batch_size.max(parallel);
        let threads = i32::try_from(threads).unwrap_or(i32::MAX);
        // An embedding model reads each input whole in one step (encoders attend both ways).
        let (batch, ubatch) = match self.pooling {
            Some(_) => (self.context_size.max(batch), self.context_size.max(batch)),
            None => (batch, batch.min(512)),
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.context_size * parallel))
            .with_n_seq_max(parallel)
            .with_kv_unified(false)
            .with_n_batch(batch)
            .with_n_ubatch(ubatch)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let params = match self.pooling {
            // One cache for all sequences: a batch of inputs is then masked per sequence (with a stream per
            // sequence, measured, every sequence after the first came out pooled wrong).
            Some(pooling) => params.with_embeddings(true).with_pooling_type(pooling).with_kv_unified(true),
            None => params,
        };
        self.model.new_context(backend, params).map_err(|e| format!("cannot create a llama.cpp context: {e}"))
    }

    /// The prompt as tokens: chat messages through the model's own template, text through its tokenizer.
    pub fn tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, Refusal> {
        let text = match prompt {
            Prompt::Tokens(ids) => {
                if let Some(bad) = ids.iter().find(|id| !(0..self.n_vocab).contains(*id)) {
                    return Err(Refusal::invalid(
                        "prompt",
                        format!("token id {bad} is not in the vocabulary (0 to {})", self.n_vocab - 1),
                    ));
                }
                return Ok(ids.iter().map(|&id| LlamaToken(id)).collect());
            }
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(turns) => self.render_chat(turns)?,
        };
        // Special tokens written in the text (e.g. `<|im_start|>`) are read as such, as llama.cpp's server does.
        Ok(self.model.vocab().tokenize(text.as_bytes(), true, true))
    }

    /// The conversation through the chat template: llama.cpp's built-in engine for the families it knows,
    /// Jinja (minijinja) for the rest or when the config names a template file.
    fn render_chat(&self, turns: &[(String, String)]) -> Result<String, Refusal> {
        if let (true, Some(jinja)) = (self.jinja_first, &self.jinja) {
            return self.render_jinja(jinja, turns);
        }
        let Some(template) = &self.template else {
            return Err(Refusal::invalid(
                "messages",
                "this model has no chat template; set `chat_template` in its engine's config, or send a prompt to \
                 /v1/completions instead",
            ));
        };
        let messages = turns
            .iter()
            .map(|(role, text)| LlamaChatMessage::new(role.clone(), text.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Refusal::invalid("messages", "a message contains a NUL character"))?;
        match (self.model.apply_chat_template(template, &messages, true), &self.jinja) {
            (Ok(prompt), _) => Ok(prompt),
            (Err(_), Some(jinja)) => self.render_jinja(jinja, turns),
            (Err(e), None) => Err(Refusal::invalid(
                "messages",
                format!(
                    "neither llama.cpp nor minijinja can apply this model's chat template ({e}); set `chat_template` \
                     in its engine's config, or send a formatted prompt to /v1/completions"
                ),
            )),
        }
    }

    fn render_jinja(&self, jinja: &JinjaTemplate, turns: &[(String, String)]) -> Result<String, Refusal> {
        let vocab = self.model.vocab();
        let text = |token| vocab.text(token).and_then(|t| t.to_str().ok()).unwrap_or_default().to_string();
        jinja.render(turns, &text(vocab.bos()), &text(vocab.eos())).map_err(|e| Refusal::invalid("messages", e))
    }

    pub fn is_end_of_generation(&self, token: LlamaToken) -> bool {
        self.model.vocab().is_eog(token)
    }

    /// The bytes a token stands for (control tokens: none).
    pub fn piece(&self, token: LlamaToken, into: &mut Vec<u8>) {
        into.clear();
        self.model.vocab().token_to_piece_into(token, into, false, None);
    }

    pub fn n_vocab(&self) -> i32 {
        self.n_vocab
    }

    /// The length of the embedding vectors.
    pub fn n_embd(&self) -> usize {
        usize::try_from(self.model.n_embd_out()).unwrap_or(0)
    }
}

/// A template file, read no further than the bound (a device or a huge file is refused, not read forever).
pub(super) fn read_bounded(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut source = String::new();
    let limit = super::template::MAX_TEMPLATE_BYTES as u64 + 1;
    std::fs::File::open(path)?.take(limit).read_to_string(&mut source)?;
    Ok(source)
}

/// The pooling to serve embeddings with: the config's, else the one the GGUF declares (embedding models do;
/// generation models do not).
fn pooling(model: &LlamaModel, configured: &str) -> Option<LlamaPoolingType> {
    match configured {
        "mean" => return Some(LlamaPoolingType::Mean),
        "cls" => return Some(LlamaPoolingType::Cls),
        "last" => return Some(LlamaPoolingType::Last),
        _ => {}
    }
    let arch = model.meta_val_str("general.architecture").ok()?;
    let declared = model.meta_val_str(&format!("{arch}.pooling_type")).ok()?;
    let declared = LlamaPoolingType::from(declared.trim().parse::<i32>().ok()?);
    matches!(declared, LlamaPoolingType::Mean | LlamaPoolingType::Cls | LlamaPoolingType::Last).then_some(declared)
}
