//! What the fake upstream answers: the deterministic reply for a request and the OpenAI-shaped JSON around it.
//! Pure functions, so the numbers tests assert on are easy to derive by hand.
use serde_json::{json, Value};

use super::Behavior;

/// Which OpenAI generation endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
}

/// Everything needed to answer one generation request, streamed or not.
#[derive(Debug, Clone)]
pub(crate) struct ReplyPlan {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The reply split into pieces that concatenate to the reply exactly: "w1", " w2", " w3"…
    pub tokens: Vec<String>,
    pub finish_reason: &'static str,
    pub prompt_tokens: u64,
    pub stream: bool,
    pub include_usage: bool,
}

impl ReplyPlan {
    /// Reads a chat or completions request; `Err` is the message of a 400 answer.
    pub fn from_request(
        endpoint: Endpoint,
        request: &Value,
        behavior: &Behavior,
        sequence: u64,
        created: u64,
    ) -> Result<ReplyPlan, String> {
        let (prompt_words, last_text) = match endpoint {
            Endpoint::Chat => chat_prompt(request)?,
            Endpoint::Completions => completions_prompt(request)?,
        };
        let reply = match behavior.reply_words {
            Some(count) => numbered_words(count),
            None => format!("echo: {last_text}"),
        };
        let mut tokens = match behavior.chunk_chars.filter(|n| *n > 0) {
            Some(size) => reply.chars().collect::<Vec<_>>().chunks(size).map(|piece| piece.iter().collect()).collect(),
            None => split_tokens(&reply),
        };
        let limit = request
            .get("max_tokens")
            .and_then(Value::as_u64)
            .or_else(|| request.get("max_completion_tokens").and_then(Value::as_u64));
        let mut finish_reason = "stop";
        if let Some(limit) = limit.and_then(|l| usize::try_from(l).ok()) {
            if limit < tokens.len() {
                tokens.truncate(limit);
                finish_reason = "length";
            }
        }
        let id_prefix = match endpoint {
            Endpoint::Chat => "chatcmpl-fake",
            Endpoint::Completions => "cmpl-fake",
        };
        Ok(ReplyPlan {
            endpoint,
            id: format!("{id_prefix}-{sequence}"),
            created,
            model: model_of(request),
            tokens,
            finish_reason,
            prompt_tokens: prompt_words,
            stream: request.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    pub fn text(&self) -> String {
        self.tokens.concat()
    }

    pub fn usage(&self) -> Value {
        let completion = self.tokens.len() as u64;
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    pub fn object(&self, streaming: bool) -> &'static str {
        match (self.endpoint, streaming) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    /// The whole answer of a non-streaming request.
    pub fn full_response(&self, with_usage: bool) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": self.text()},
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": self.text(),
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }),
        };
        let mut body = json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if with_usage {
            body["usage"] = self.usage();
        }
        body
    }

    /// A stream chunk with one choice; `delta` is the chat delta, or the text for completions.
    fn chunk(&self, choice: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The chat stream's opening chunk that announces the assistant role; completions have none.
    pub fn role_chunk(&self) -> Option<Value> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chunk(json!({
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": null,
                "finish_reason": null,
            }))),
            Endpoint::Completions => None,
        }
    }

    pub fn token_chunk(&self, token: &str) -> Value {
        match self.endpoint {
            Endpoint::Chat => self.chunk(json!({
                "index": 0,
                "delta": {"content": token},
                "logprobs": null,
                "finish_reason": null,
            })),
            Endpoint::Completions => self.chunk(json!({
                "index": 0,
                "text": token,
                "logprobs": null,
                "finish_reason": null,
            })),
        }
    }

    pub fn finish_chunk(&self) -> Value {
        match self.endpoint {
            Endpoint::Chat => self.chunk(json!({
                "index": 0,
                "delta": {},
                "logprobs": null,
                "finish_reason": self.finish_reason,
            })),
            Endpoint::Completions => self.chunk(json!({
                "index": 0,
                "text": "",
                "logprobs": null,
                "finish_reason": self.finish_reason,
            })),
        }
    }

    /// The trailing chunk OpenAI sends for `stream_options.include_usage`: no choices, only usage.
    pub fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
        })
    }
}

/// The response `model` is whatever the request asked for, so a gateway's routing shows in the answer.
pub(crate) fn model_of(request: &Value) -> String {
    request.get("model").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// "w1 w2 … wN".
fn numbered_words(count: usize) -> String {
    (1..=count).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}

/// Splits on single spaces and keeps each space with the word after it, so the pieces concatenate to `reply`.
pub(crate) fn split_tokens(reply: &str) -> Vec<String> {
    if reply.is_empty() {
        return Vec::new();
    }
    reply.split(' ').enumerate().map(|(i, word)| if i == 0 { word.to_owned() } else { format!(" {word}") }).collect()
}

pub(crate) fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// A message's text: string content as is, array content as its text parts joined by single spaces.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

/// (words over all messages, text of the last message).
fn chat_prompt(request: &Value) -> Result<(u64, String), String> {
    let messages = request.get("messages").and_then(Value::as_array).ok_or("'messages' must be an array")?;
    let texts: Vec<String> = messages.iter().map(message_text).collect();
    let words = texts.iter().map(|t| count_words(t)).sum();
    Ok((words, texts.last().cloned().unwrap_or_default()))
}

/// (words over all prompts, the last prompt); `prompt` is a string or an array of strings.
fn completions_prompt(request: &Value) -> Result<(u64, String), String> {
    let prompts = string_or_strings(request.get("prompt")).ok_or("'prompt' must be a string or an array of strings")?;
    let words = prompts.iter().map(|p| count_words(p)).sum();
    Ok((words, prompts.last().cloned().unwrap_or_default()))
}

/// A string, or an array of strings (other items, such as token ids, as their JSON text).
pub(crate) fn string_or_strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(text) => Some(vec![text.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// An 8-dimensional vector in [-1, 1) that depends only on the text: one FNV-1a hash per dimension.
pub(crate) fn embedding_of(text: &str) -> Vec<f64> {
    (0u64..8)
        .map(|dimension| {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ dimension;
            for byte in text.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            (hash % 2000) as f64 / 1000.0 - 1.0
        })
        .collect()
}

/// The embeddings answer for `request`, or the message of a 400 answer.
pub(crate) fn embeddings_response(request: &Value, behavior: &Behavior) -> Result<Value, String> {
    let inputs = string_or_strings(request.get("input")).ok_or("'input' must be a string or an array of strings")?;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embedding_of(text)}))
        .collect();
    let words: u64 = inputs.iter().map(|t| count_words(t)).sum();
    let mut body = json!({"object": "list", "data": data, "model": model_of(request)});
    if !behavior.omit_usage {
        body["usage"] = json!({"prompt_tokens": words, "total_tokens": words});
    }
    Ok(body)
}
