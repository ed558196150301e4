//! What a request asks of the embedded engine: the prompt, how to sample, when to stop, what shape the answer
//! must have (`response_format`, tools). Read from the OpenAI body the gateway forwards; anything the engine
//! cannot honour is refused with a 400 naming the field (see `params`), never silently ignored.
use super::constraint::{self, Constraint};
use super::tools::{self, Tools};
use serde::Deserialize;
use serde_json::Value;

/// A refusal, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
}

impl Refusal {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_named(param.to_string(), message)
    }

    pub fn invalid_named(param: String, message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into(), param: Some(param), code: "invalid_request" }
    }

    pub fn body(&self) -> Value {
        let kind = if self.status == 429 { "rate_limit_error" } else { "invalid_request_error" };
        crate::engine::openai_error_body(&self.message, kind, self.param.as_deref(), Some(self.code))
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
    /// (token id, bias added to its logit).
    pub logit_bias: Vec<(i32, f32)>,
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
    /// The grammar the answer is held to, if any.
    pub constraint: Option<Constraint>,
    /// Tools the model was told of; its answer is read for calls.
    pub tools: Option<Tools>,
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
    /// An assistant turn's calls, sent back on the next turn.
    #[serde(default)]
    tool_calls: Option<Value>,
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
    stream: bool,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<Value>,
    logit_bias: Option<std::collections::BTreeMap<String, f32>>,
}

const MAX_STOP_SEQUENCES: usize = 16;
/// OpenAI's limit on `logit_bias` entries.
const MAX_LOGIT_BIAS: usize = 300;

/// Sampling for parameters a request leaves out: llama.cpp's own defaults, as `llama-server` uses them. OpenAI's
/// (temperature 1, no truncation) suit large hosted models; small local ones ramble under them.
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_P: f32 = 0.95;
const DEFAULT_TOP_K: i32 = 40;
const DEFAULT_MIN_P: f32 = 0.05;

/// Completions' documented default when `max_tokens` is absent.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

pub fn parse(chat: bool, body: &Value) -> Result<Generation, Refusal> {
    super::params::check(chat, body)?;
    let wire: Wire = serde_path_to_error::deserialize(body)
        .map_err(|e| Refusal::invalid("body", format!("invalid value for `{}`: {}", e.path(), e.inner())))?;
    let tools =
        tools::parse(wire.tools.as_ref(), wire.tool_choice.as_ref(), wire.parallel_tool_calls)?.filter(Tools::active);
    let mut constraint = constraint::response_format(wire.response_format.as_ref())?;
    if let Some(tools) = &tools {
        if constraint.is_some() {
            return Err(Refusal::invalid(
                "response_format",
                "`response_format` and `tools` together: the answer is either tool calls or JSON; send \
                 `tool_choice: \"none\"` or leave out `response_format`",
            ));
        }
        constraint = Some(tools.constraint()?);
    }
    let logit_bias = logit_bias(wire.logit_bias)?;
    let prompt =
        if chat { chat_prompt(wire.messages.unwrap_or_default(), tools.as_ref())? } else { text_prompt(wire.prompt)? };
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
            logit_bias,
        },
        max_tokens,
        stop,
        stream: wire.stream,
        model: wire.model,
        constraint,
        tools,
    })
}

fn logit_bias(biases: Option<std::collections::BTreeMap<String, f32>>) -> Result<Vec<(i32, f32)>, Refusal> {
    let biases = biases.unwrap_or_default();
    if biases.len() > MAX_LOGIT_BIAS {
        return Err(Refusal::invalid("logit_bias", format!("at most {MAX_LOGIT_BIAS} entries in `logit_bias`")));
    }
    biases
        .into_iter()
        .map(|(token, bias)| {
            let shown: String = token.chars().take(32).collect();
            let id = token
                .parse::<i32>()
                .map_err(|_| Refusal::invalid("logit_bias", format!("`logit_bias` key {shown:?} is not a token id")))?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(Refusal::invalid("logit_bias", format!("the bias of token {id} must be -100 to 100")));
            }
            Ok((id, bias))
        })
        .collect()
}

fn rand_seed() -> u32 {
    // The low 62 bits of a v7 UUID are random, and uuid is already here for trace ids.
    uuid::Uuid::now_v7().as_u128() as u32
}

fn chat_prompt(messages: Vec<MessageWire>, tools: Option<&Tools>) -> Result<Prompt, Refusal> {
    if messages.is_empty() {
        return Err(Refusal::invalid("messages", "`messages` is empty"));
    }
    let mut turns = Vec::with_capacity(messages.len() + 1);
    for (i, message) in messages.into_iter().enumerate() {
        let mut text = message_text(i, message.content)?;
        let role = match message.role.as_str() {
            // Tool results and earlier calls in the Hermes format the tools are described in.
            "tool" => {
                text = tools::render_result(&text);
                "user".to_string()
            }
            "assistant" if message.tool_calls.as_ref().is_some_and(|c| !c.is_null()) => {
                let calls = message.tool_calls.as_ref().map(tools::render_calls).transpose();
                let calls = calls.map_err(|e| Refusal::invalid("messages", format!("messages[{i}]: {e}")))?;
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&calls.unwrap_or_default());
                message.role
            }
            // OpenAI's newer name for the system turn.
            "developer" => "system".to_string(),
            _ => message.role,
        };
        turns.push((role, text));
    }
    if let Some(tools) = tools {
        let described = tools.system_text();
        match turns.first_mut() {
            Some((role, text)) if role == "system" => *text = format!("{text}\n\n{described}"),
            _ => turns.insert(0, ("system".to_string(), described)),
        }
    }
    Ok(Prompt::Chat(turns))
}

fn message_text(i: usize, content: Option<Value>) -> Result<String, Refusal> {
    Ok(match content {
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
                        let other: String = other.chars().take(64).collect();
                        return Err(Refusal::invalid(
                            "messages",
                            format!("messages[{i}].content has a part of type `{other}`; this model reads text only"),
                        ));
                    }
                }
            }
            text
        }
        Some(_) => return Err(Refusal::invalid("messages", format!("messages[{i}].content must be text"))),
    })
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
        let refuse = |chat, body: Value| parse(chat, &body).expect_err("refused").param.unwrap_or_default();
        assert_eq!(refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "n": 2})), "n");
        assert_eq!(
            refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3})),
            "temperature"
        );
        assert_eq!(refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})), "tools");
        assert_eq!(refuse(true, json!({"messages": [{"role": "user", "content": "x"}], "seed": "x"})), "body");
        assert_eq!(refuse(true, json!({"messages": []})), "messages");
        assert_eq!(refuse(false, json!({"prompt": ["a", "b"]})), "prompt");
        assert_eq!(refuse(false, json!({"prompt": "a", "max_tokens": 0})), "max_tokens");
        let image = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]});
        assert_eq!(refuse(true, image), "messages");
    }

    #[test]
    fn logit_bias_is_read_and_bounded() {
        let ask =
            |bias: Value| parse(true, &json!({"messages": [{"role": "user", "content": "x"}], "logit_bias": bias}));
        assert_eq!(ask(json!({"42": -100, "7": 2.5})).expect("valid").sampling.logit_bias, [(42, -100.0), (7, 2.5)]);
        let refused = |bias: Value| ask(bias).expect_err("refused");
        assert!(refused(json!({"42": 101})).message.contains("-100 to 100"));
        assert!(refused(json!({"the": 1})).message.contains("not a token id"));
        let many: serde_json::Map<String, Value> = (0..301).map(|i| (i.to_string(), json!(1))).collect();
        let error = refused(Value::Object(many));
        assert_eq!((error.param.as_deref(), error.message.contains("at most 300")), (Some("logit_bias"), true));
    }
}
