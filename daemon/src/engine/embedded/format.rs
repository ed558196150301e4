//! The embedded engine's answers in the OpenAI wire format: a JSON document, or SSE chunks ending with a
//! usage chunk and `[DONE]` (the gateway always asks for usage and hides it from clients that did not).
use super::job::{Event, Finish};
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
}

impl Formatter {
    pub fn new(chat: bool, model: String) -> Self {
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            id: format!("{prefix}-{}", uuid::Uuid::now_v7().simple()),
            created: crate::clock::unix_ms() / 1000,
            model,
            chat,
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

    fn text_chunk(&self, text: &str) -> Bytes {
        if self.chat {
            self.chunk(json!({"index": 0, "delta": {"content": text}, "finish_reason": null}))
        } else {
            self.chunk(json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}))
        }
    }

    fn finish_chunk(&self, finish: &Finish) -> Bytes {
        let reason = finish.reason.as_str();
        let mut chunk = if self.chat {
            self.chunk(json!({"index": 0, "delta": {}, "finish_reason": reason})).to_vec()
        } else {
            self.chunk(json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason})).to_vec()
        };
        let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
        let usage = json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [],
            "usage": usage(finish)
        });
        chunk.extend_from_slice(format!("data: {usage}\n\ndata: [DONE]\n\n").as_bytes());
        Bytes::from(chunk)
    }

    fn whole(&self, text: &str, finish: &Finish) -> Bytes {
        let reason = finish.reason.as_str();
        let body = if self.chat {
            json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": null, "finish_reason": reason}],
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
    let body = futures::stream::unfold((formatter, events, false), |(formatter, mut events, ended)| async move {
        if ended {
            return None;
        }
        let item = match events.recv().await {
            Some(Event::Text(text)) => Ok(formatter.text_chunk(&text)),
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
    futures::stream::iter(head).chain(body).boxed()
}

/// One JSON document once generation is over.
pub fn whole(formatter: Formatter, mut events: UnboundedReceiver<Event>) -> BoxStream<'static, Result<Bytes, String>> {
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
