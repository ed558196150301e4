//! What a request asks of the embedded engine: the prompt, how to sample, when to stop. Read from the OpenAI
//! body the gateway forwards; anything the engine cannot honour is refused with a 400 naming the field,
//! never silently ignored.
use serde::Deserialize;
use serde_json::Value;

/// A refusal, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: &'static str,
}

impl Refusal {
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into(), param: Some(param), code: "invalid_request" }
    }

    pub fn body(&self) -> Value {
        let kind = if self.status == 429 { "rate_limit_error" } else { "invalid_request_error" };
        crate::engine::openai_error_body(&self.message, kind, self.param, Some(self.code))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat messages (role, text), rendered with the model's chat template.
    Chat(Vec<(String, String)>),
    Text(String),
    /// Token ids, as `/v1/completions` accepts them.
    Tokens(Vec<i32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means off.
    pub top_k: i32,
    pub min_p: f32,
    pub seed: u32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// 1.0 means off.
    pub repetition_penalty: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// None: until the context window is full (chat), as OpenAI does.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub model: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopWire {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct MessageWire {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

/// Fields the gateway has already type-checked are read leniently here; these are the ones that matter.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Wire {
    model: String,
    messages: Option<Vec<MessageWire>>,
    prompt: Option<Value>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<StopWire>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    repetition_penalty: Option<f32>,
    n: Option<u32>,
    stream: bool,
    tools: Option<Vec<Value>>,
    logprobs: Option<bool>,
    echo: Option<bool>,
    suffix: Option<String>,
}

const MAX_STOP_SEQUENCES: usize = 16;

/// Sampling for parameters a request leaves out: llama.cpp's own defaults, as `llama-server` uses them. OpenAI's
/// (temperature 1, no truncation) suit large hosted models; small local ones ramble under them.
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_P: f32 = 0.95;
const DEFAULT_TOP_K: i32 = 40;
const DEFAULT_MIN_P: f32 = 0.05;

/// Completions' documented default when `max_tokens` is absent.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

pub fn parse(chat: bool, body: &Value) -> Result<Generation, Refusal> {
    let wire: Wire = serde_path_to_error::deserialize(body)
        .map_err(|e| Refusal::invalid("body", format!("invalid value for `{}`: {}", e.path(), e.inner())))?;
    if wire.n.is_some_and(|n| n != 1) {
        return Err(Refusal::invalid("n", "`n` must be 1: the embedded engine returns one choice per request"));
    }
    if wire.tools.as_ref().is_some_and(|tools| !tools.is_empty()) {
        return Err(Refusal::invalid("tools", "the embedded engine does not support tool calls"));
    }
    if wire.logprobs == Some(true) {
        return Err(Refusal::invalid("logprobs", "the embedded engine does not return logprobs"));
    }
    if wire.echo == Some(true) || wire.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        let param = if wire.echo == Some(true) { "echo" } else { "suffix" };
        return Err(Refusal::invalid(param, format!("the embedded engine does not support `{param}`")));
    }
    let prompt = if chat { chat_prompt(wire.messages.unwrap_or_default())? } else { text_prompt(wire.prompt)? };
    let temperature = wire.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(Refusal::invalid("temperature", format!("`temperature` is {temperature}; it must be 0 to 2")));
    }
    let top_p = wire.top_p.unwrap_or(DEFAULT_TOP_P);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Refusal::invalid("top_p", format!("`top_p` is {top_p}; it must be above 0 and at most 1")));
    }
    for (param, value) in [("frequency_penalty", wire.frequency_penalty), ("presence_penalty", wire.presence_penalty)] {
        if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(Refusal::invalid(param, format!("`{param}` must be -2 to 2")));
        }
    }
    let repetition_penalty = wire.repetition_penalty.unwrap_or(1.0);
    if repetition_penalty <= 0.0 {
        return Err(Refusal::invalid("repetition_penalty", "`repetition_penalty` must be above 0 (1 is off)"));
    }
    let stop = match wire.stop {
        None => Vec::new(),
        Some(StopWire::One(one)) => vec![one],
        Some(StopWire::Many(many)) => many,
    };
    let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(Refusal::invalid("stop", format!("at most {MAX_STOP_SEQUENCES} stop sequences")));
    }
    let max_tokens = wire.max_completion_tokens.or(wire.max_tokens);
    if max_tokens == Some(0) {
        return Err(Refusal::invalid("max_tokens", "`max_tokens` must be at least 1"));
    }
    let max_tokens = if chat { max_tokens } else { max_tokens.or(Some(COMPLETIONS_DEFAULT_MAX_TOKENS)) };
    Ok(Generation {
        prompt,
        sampling: Sampling {
            temperature,
            top_p,
            top_k: wire.top_k.unwrap_or(DEFAULT_TOP_K).max(0),
            min_p: wire.min_p.unwrap_or(DEFAULT_MIN_P).clamp(0.0, 1.0),
            // OpenAI's seed is an int64; llama.cpp's is 32 bits. Without one, each request draws its own.
            seed: wire.seed.map_or_else(rand_seed, |seed| seed as u32),
            frequency_penalty: wire.frequency_penalty.unwrap_or(0.0),
            presence_penalty: wire.presence_penalty.unwrap_or(0.0),
            repetition_penalty,
        },
        max_tokens,
        stop,
        stream: wire.stream,
        model: wire.model,
    })
}

fn rand_seed() -> u32 {
    // The low 62 bits of a v7 UUID are random, and uuid is already here for trace ids.
    uuid::Uuid::now_v7().as_u128() as u32
}

fn chat_prompt(messages: Vec<MessageWire>) -> Result<Prompt, Refusal> {
    if messages.is_empty() {
        return Err(Refusal::invalid("messages", "`messages` is empty"));
    }
    let mut turns = Vec::with_capacity(messages.len());
    for (i, message) in messages.into_iter().enumerate() {
        let text = match message.content {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text,
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") | None => {
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                        }
                        Some(other) => {
                            return Err(Refusal::invalid(
                                "messages",
                                format!(
                                    "messages[{i}].content has a part of type `{other}`; this model reads text only"
                                ),
                            ))
                        }
                    }
                }
                text
            }
            Some(_) => return Err(Refusal::invalid("messages", format!("messages[{i}].content must be text"))),
        };
        turns.push((message.role, text));
    }
    Ok(Prompt::Chat(turns))
}

fn text_prompt(prompt: Option<Value>) -> Result<Prompt, Refusal> {
    let several = || {
        Refusal::invalid(
            "prompt",
            "send one prompt per request (the embedded engine does not batch prompts in one request)",
        )
    };
    match prompt {
        Some(Value::String(text)) => Ok(Prompt::Text(text)),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(text)] => Ok(Prompt::Text(text.clone())),
            [Value::Array(tokens)] => token_ids(tokens),
            [] => Err(Refusal::invalid("prompt", "`prompt` is empty")),
            [Value::Number(_), ..] => token_ids(&items),
            _ => Err(several()),
        },
        _ => Err(Refusal::invalid("prompt", "`prompt` must be a string or an array of token ids")),
    }
}

fn token_ids(items: &[Value]) -> Result<Prompt, Refusal> {
    items
        .iter()
        .map(|item| item.as_i64().and_then(|id| i32::try_from(id).ok()))
        .collect::<Option<Vec<i32>>>()
        .map(Prompt::Tokens)
        .ok_or_else(|| Refusal::invalid("prompt", "`prompt` token ids must be integers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_request_is_read_with_openai_defaults() {
        let body = json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "seed": 7, "stop": "\n"});
        let generation = parse(true, &body).expect("valid");
        assert_eq!(
            generation.prompt,
            Prompt::Chat(vec![("system".into(), "Be brief.".into()), ("user".into(), "Hi".into())])
        );
        assert_eq!(generation.sampling.temperature, DEFAULT_TEMPERATURE);
        assert_eq!(generation.sampling.seed, 7);
        assert_eq!(generation.max_tokens, None);
        assert_eq!(generation.stop, ["\n"]);
    }

    #[test]
    fn completions_default_to_sixteen_tokens_and_take_token_ids() {
        let generation = parse(false, &json!({"model": "m", "prompt": [1, 2, 3]})).expect("valid");
        assert_eq!(generation.prompt, Prompt::Tokens(vec![1, 2, 3]));
        assert_eq!(generation.max_tokens, Some(16));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refuse = |chat, body: Value| parse(chat, &body).expect_err("refused").param;
        assert_eq!(refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "n": 2})), Some("n"));
        assert_eq!(
            refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3})),
            Some("temperature")
        );
        assert_eq!(refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})), Some("tools"));
        assert_eq!(refuse(true, json!({"messages": []})), Some("messages"));
        assert_eq!(refuse(false, json!({"prompt": ["a", "b"]})), Some("prompt"));
        assert_eq!(refuse(false, json!({"prompt": "a", "max_tokens": 0})), Some("max_tokens"));
        let image = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]});
        assert_eq!(refuse(true, image), Some("messages"));
    }
}
