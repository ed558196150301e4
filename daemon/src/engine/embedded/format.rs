//! The embedded engine's answers in the OpenAI wire format: a JSON document, or SSE chunks ending with a
//! usage chunk and `[DONE]` (the gateway always asks for usage and hides it from clients that did not). When
//! the model was offered tools, its text is read for calls (`tool_output`) and they are sent as `tool_calls`.
use super::job::{Event, Finish, FinishReason};
use super::tool_output::{Delta, ToolOutput};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

pub struct Formatter {
    id: String,
    created: i64,
    model: String,
    chat: bool,
    /// Read the text for tool calls (None: plain text).
    tools: Option<ToolOutput>,
}

impl Formatter {
    pub fn new(chat: bool, model: String, tools: bool) -> Self {
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            id: format!("{prefix}-{}", uuid::Uuid::now_v7().simple()),
            created: crate::clock::unix_ms() / 1000,
            model,
            chat,
            tools: (chat && tools).then(ToolOutput::default),
        }
    }

    fn chunk(&self, choice: Value) -> Bytes {
        let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
        let chunk = json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [choice]
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    fn role_chunk(&self) -> Bytes {
        self.chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}))
    }

    /// The chunks for newly generated text: one content chunk, or what the tool-call reader made of it.
    fn text_chunks(&mut self, text: &str) -> Bytes {
        match self.tools.as_mut().map(|tools| tools.push(text)) {
            None => self.text_chunk(text),
            Some(deltas) => self.delta_chunks(deltas),
        }
    }

    fn delta_chunks(&self, deltas: Vec<Delta>) -> Bytes {
        let mut chunks = Vec::new();
        for delta in deltas {
            let delta = match delta {
                Delta::Content(text) => json!({"content": text}),
                Delta::Call { index, id, name } => json!({"tool_calls": [{"index": index, "id": id,
                    "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Delta::Arguments { index, text } => {
                    json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]})
                }
            };
            chunks.extend_from_slice(&self.chunk(json!({"index": 0, "delta": delta, "finish_reason": null})));
        }
        Bytes::from(chunks)
    }

    /// `tool_calls` when the answer ended with calls, as OpenAI says.
    fn finish_reason(&self, finish: &Finish) -> &'static str {
        let called = self.tools.as_ref().is_some_and(|tools| tools.calls() > 0);
        if called && finish.reason == FinishReason::Stop {
            "tool_calls"
        } else {
            finish.reason.as_str()
        }
    }

    fn text_chunk(&self, text: &str) -> Bytes {
        if self.chat {
            self.chunk(json!({"index": 0, "delta": {"content": text}, "finish_reason": null}))
        } else {
            self.chunk(json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}))
        }
    }

    fn finish_chunk(&mut self, finish: &Finish) -> Bytes {
        let rest = self.tools.as_mut().map(ToolOutput::finish).unwrap_or_default();
        let mut chunk = self.delta_chunks(rest).to_vec();
        let reason = self.finish_reason(finish);
        chunk.extend_from_slice(&if self.chat {
            self.chunk(json!({"index": 0, "delta": {}, "finish_reason": reason}))
        } else {
            self.chunk(json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason}))
        });
        let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
        let usage = json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [],
            "usage": usage(finish)
        });
        chunk.extend_from_slice(format!("data: {usage}\n\ndata: [DONE]\n\n").as_bytes());
        Bytes::from(chunk)
    }

    fn whole(&mut self, text: &str, finish: &Finish) -> Bytes {
        let message = self.message(text);
        let reason = self.finish_reason(finish);
        let body = if self.chat {
            json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason}],
                "usage": usage(finish)
            })
        } else {
            json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": reason}],
                "usage": usage(finish)
            })
        };
        Bytes::from(body.to_string())
    }
}

impl Formatter {
    /// The assistant's message: its text, or the text before its calls and the calls.
    fn message(&mut self, text: &str) -> Value {
        let Some(tools) = self.tools.as_mut() else { return json!({"role": "assistant", "content": text}) };
        let mut deltas = tools.push(text);
        deltas.extend(tools.finish());
        let mut content = String::new();
        let mut calls: Vec<Value> = Vec::new();
        for delta in deltas {
            match delta {
                Delta::Content(text) => content.push_str(&text),
                Delta::Call { id, name, .. } => {
                    calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": ""}}))
                }
                Delta::Arguments { index, text } => {
                    if let Some(Value::String(arguments)) =
                        calls.get_mut(index).and_then(|call| call.pointer_mut("/function/arguments"))
                    {
                        arguments.push_str(&text);
                    }
                }
            }
        }
        if calls.is_empty() {
            return json!({"role": "assistant", "content": content});
        }
        let content = if content.is_empty() { Value::Null } else { Value::String(content) };
        json!({"role": "assistant", "content": content, "tool_calls": calls})
    }
}

fn usage(finish: &Finish) -> Value {
    json!({
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens
    })
}

/// SSE chunks as the decode loop produces text: one chunk per piece of text, sent when it is produced.
pub fn sse(formatter: Formatter, events: UnboundedReceiver<Event>) -> BoxStream<'static, Result<Bytes, String>> {
    // Chat streams open with the assistant's role, as OpenAI's do; completions start with text.
    let head = formatter.chat.then(|| Ok(formatter.role_chunk()));
    let body = futures::stream::unfold((formatter, events, false), |(mut formatter, mut events, ended)| async move {
        if ended {
            return None;
        }
        let item = match events.recv().await {
            Some(Event::Text(text)) => Ok(formatter.text_chunks(&text)),
            Some(Event::Finished(finish)) => {
                let last = formatter.finish_chunk(&finish);
                return Some((Ok(last), (formatter, events, true)));
            }
            Some(Event::Failed(message)) => Err(message),
            None => Err("the embedded engine stopped".to_string()),
        };
        let ended = item.is_err();
        Some((item, (formatter, events, ended)))
    });
    // Text the tool-call reader holds back makes no chunk.
    let nonempty = |item: &Result<Bytes, String>| futures::future::ready(item.as_ref().map_or(true, |b| !b.is_empty()));
    futures::stream::iter(head).chain(body).filter(nonempty).boxed()
}

/// One JSON document once generation is over.
pub fn whole(
    mut formatter: Formatter,
    mut events: UnboundedReceiver<Event>,
) -> BoxStream<'static, Result<Bytes, String>> {
    futures::stream::once(async move {
        let mut text = String::new();
        loop {
            match events.recv().await {
                Some(Event::Text(piece)) => text.push_str(&piece),
                Some(Event::Finished(finish)) => return Ok(formatter.whole(&text, &finish)),
                Some(Event::Failed(message)) => return Err(message),
                None => return Err("the embedded engine stopped".to_string()),
            }
        }
    })
    .boxed()
}
