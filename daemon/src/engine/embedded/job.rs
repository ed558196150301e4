//! What passes between a request and the decode loop: the job in, text and the outcome out.
use super::sampler::RequestSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

pub struct Job {
    pub prompt: Vec<LlamaToken>,
    /// Its sampler chain, grammar included (built by `sampler::build`).
    pub sampler: RequestSampler,
    /// Tokens the answer may have: the request's limit, or what is left of the context window.
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// The request's receiving end; when it is dropped (client gone) the job's slot is freed at once.
    pub events: UnboundedSender<Event>,
}

#[derive(Debug)]
pub enum Event {
    /// Text produced by one decode step (one token, less what is held back).
    Text(String),
    Finished(Finish),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// An embedding request: each input's tokens; the vectors (or why not) come back on `reply`.
pub struct EmbedJob {
    pub inputs: Vec<Vec<LlamaToken>>,
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// Messages to the engine thread.
pub enum Command {
    Run(Job),
    Embed(EmbedJob),
    Stop,
}
