//! A cached answer played back as if an engine sent it: a stored stream event by event (at once, or at the
//! pace it first came), a stored whole answer as one body; and each turned into the other when a streaming
//! request meets a whole entry or the reverse. The relay then treats it as any engine's answer (guardrails,
//! usage for the client, the trace).
use super::request::Endpoint;
use crate::cache::store::{CachedBody, Entry};
use crate::engine::Answer;
use axum::body::Bytes;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The entry as an engine's answer: SSE when `stream`, JSON otherwise. `original_timing` replays a stored
/// stream at the offsets its events first left at.
pub fn answer(endpoint: Endpoint, entry: &Entry, stream: bool, original_timing: bool) -> Answer {
    let body = match (&entry.body, stream) {
        (CachedBody::Stream { events, offsets_ms }, true) => {
            let offsets = if original_timing { offsets_ms.clone() } else { Vec::new() };
            return events_answer(events.clone(), offsets);
        }
        (CachedBody::Whole(bytes), false) => bytes.clone(),
        (CachedBody::Whole(bytes), true) => return events_answer(events_from_whole(endpoint, bytes), Vec::new()),
        (CachedBody::Stream { events, .. }, false) => Bytes::from(whole_from_events(endpoint, events).to_string()),
    };
    Answer { status: 200, body: futures::stream::once(async move { Ok(body) }).boxed() }
}

/// How long a replay may take: its stored pace plus a margin.
pub fn replay_time(entry: &Entry) -> Duration {
    let last = match &entry.body {
        CachedBody::Stream { offsets_ms, .. } => offsets_ms.last().copied().unwrap_or(0.0),
        CachedBody::Whole(_) => 0.0,
    };
    Duration::from_millis(last.clamp(0.0, 3_600_000.0) as u64) + Duration::from_secs(30)
}

fn events_answer(events: Vec<String>, offsets_ms: Vec<f64>) -> Answer {
    let start = Instant::now();
    let paced = !offsets_ms.is_empty();
    let frames = events.into_iter().enumerate().map(move |(i, event)| {
        let at = offsets_ms.get(i).copied().unwrap_or(0.0).clamp(0.0, 3_600_000.0);
        (Bytes::from(format!("{event}\n\n")), start + Duration::from_micros((at * 1000.0) as u64))
    });
    let body = futures::stream::iter(frames)
        .then(move |(bytes, at)| async move {
            if paced {
                tokio::time::sleep_until(at.into()).await;
            }
            Ok(bytes)
        })
        .boxed();
    Answer { status: 200, body }
}

/// The JSON data of an SSE event, `None` for `[DONE]`, comments and anything that is not JSON.
fn event_data(event: &str) -> Option<Value> {
    serde_json::from_str(&super::sse::event_data(event)).ok().filter(Value::is_object)
}

/// One choice put together from its deltas.
#[derive(Default)]
struct Choice {
    content: String,
    reasoning: String,
    saw_content: bool,
    finish_reason: Value,
    /// By their `index`: id, type, name and the concatenated arguments.
    tool_calls: BTreeMap<u64, (Value, Value, String, String)>,
}

/// A whole answer (`chat.completion` / `text_completion`) from a stream's chunks.
pub fn whole_from_events(endpoint: Endpoint, events: &[String]) -> Value {
    let (mut id, mut created, mut model, mut usage) = (Value::Null, Value::Null, Value::Null, Value::Null);
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    for chunk in events.iter().filter_map(|e| event_data(e)) {
        for (field, slot) in [("id", &mut id), ("created", &mut created), ("model", &mut model)] {
            if slot.is_null() {
                *slot = chunk.get(field).cloned().unwrap_or(Value::Null);
            }
        }
        if let Some(found) = chunk.get("usage").filter(|u| u.is_object()) {
            usage = found.clone();
        }
        for item in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let choice = choices.entry(item.get("index").and_then(Value::as_u64).unwrap_or(0)).or_default();
            if let Some(reason) = item.get("finish_reason").filter(|r| !r.is_null()) {
                choice.finish_reason = reason.clone();
            }
            let text = item.pointer("/delta/content").or_else(|| item.get("text")).and_then(Value::as_str);
            if let Some(text) = text {
                choice.saw_content = true;
                choice.content.push_str(text);
            }
            if let Some(reasoning) = item.pointer("/delta/reasoning_content").and_then(Value::as_str) {
                choice.reasoning.push_str(reasoning);
            }
            for call in item.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let slot = choice.tool_calls.entry(call.get("index").and_then(Value::as_u64).unwrap_or(0)).or_default();
                for (field, target) in [("id", &mut slot.0), ("type", &mut slot.1)] {
                    if let Some(value) = call.get(field).filter(|v| !v.is_null()) {
                        *target = value.clone();
                    }
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    slot.2.push_str(name);
                }
                if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    slot.3.push_str(arguments);
                }
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, choice)| match endpoint {
            Endpoint::Completions => {
                json!({"index": index, "text": choice.content, "finish_reason": choice.finish_reason})
            }
            _ => {
                let mut message = Map::new();
                message.insert("role".into(), "assistant".into());
                let content = if choice.saw_content || choice.tool_calls.is_empty() {
                    Value::String(choice.content)
                } else {
                    Value::Null
                };
                message.insert("content".into(), content);
                if !choice.reasoning.is_empty() {
                    message.insert("reasoning_content".into(), choice.reasoning.into());
                }
                if !choice.tool_calls.is_empty() {
                    let calls = choice.tool_calls.into_values().map(|(id, kind, name, arguments)| {
                        let kind = if kind.is_null() { Value::from("function") } else { kind };
                        json!({"id": id, "type": kind, "function": {"name": name, "arguments": arguments}})
                    });
                    message.insert("tool_calls".into(), Value::Array(calls.collect()));
                }
                json!({"index": index, "message": message, "finish_reason": choice.finish_reason})
            }
        })
        .collect();
    let object = if endpoint == Endpoint::Completions { "text_completion" } else { "chat.completion" };
    let mut whole = json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
    if !usage.is_null() {
        whole["usage"] = usage;
    }
    whole
}

/// A stream's events from a whole answer: per choice one chunk with all its text (and tool calls), one with
/// its finish reason; then usage and `[DONE]`.
pub fn events_from_whole(endpoint: Endpoint, bytes: &[u8]) -> Vec<String> {
    let Ok(whole) = serde_json::from_slice::<Value>(bytes) else { return vec!["data: [DONE]".into()] };
    let object = if endpoint == Endpoint::Completions { "text_completion" } else { "chat.completion.chunk" };
    let chunk = |choices: Value| {
        let value = json!({
            "id": whole.get("id"), "object": object, "created": whole.get("created"), "model": whole.get("model"),
            "choices": choices,
        });
        format!("data: {value}")
    };
    let mut events = Vec::new();
    for (position, choice) in whole.get("choices").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let index = choice.get("index").cloned().unwrap_or_else(|| Value::from(position));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        if endpoint == Endpoint::Completions {
            let text = choice.get("text").cloned().unwrap_or_else(|| Value::from(""));
            events.push(chunk(json!([{"index": index, "text": text, "finish_reason": Value::Null}])));
            events.push(chunk(json!([{"index": index, "text": "", "finish_reason": finish}])));
            continue;
        }
        let message = choice.get("message").cloned().unwrap_or_else(|| json!({}));
        let mut delta = Map::new();
        delta.insert("role".into(), "assistant".into());
        for field in ["content", "reasoning_content"] {
            if let Some(value) = message.get(field).filter(|v| !v.is_null()) {
                delta.insert(field.into(), value.clone());
            }
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut call = call.clone();
                    call["index"] = Value::from(i);
                    call
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        events.push(chunk(json!([{"index": index, "delta": delta, "finish_reason": Value::Null}])));
        events.push(chunk(json!([{"index": index, "delta": {}, "finish_reason": finish}])));
    }
    if let Some(usage) = whole.get("usage").filter(|u| u.is_object()) {
        let value = json!({
            "id": whole.get("id"), "object": object, "created": whole.get("created"), "model": whole.get("model"),
            "choices": [], "usage": usage,
        });
        events.push(format!("data: {value}"));
    }
    events.push("data: [DONE]".into());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_becomes_the_whole_answer_it_spelled() {
        let events: Vec<String> = [
            r#"data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"data: {"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "data: [DONE]",
        ]
        .map(String::from)
        .to_vec();
        let whole = whole_from_events(Endpoint::ChatCompletions, &events);
        assert_eq!(whole["choices"][0]["message"]["content"], "Hello");
        assert_eq!(whole["choices"][0]["finish_reason"], "stop");
        assert_eq!(whole["usage"]["completion_tokens"], 2);
        assert_eq!(whole["model"], "m");
        assert_eq!(whole["object"], "chat.completion");
    }

    #[test]
    fn tool_calls_are_gathered_from_their_pieces_and_come_back_as_deltas() {
        let events: Vec<String> = [
            r#"data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
            r#"data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#,
            "data: [DONE]",
        ]
        .map(String::from)
        .to_vec();
        let whole = whole_from_events(Endpoint::ChatCompletions, &events);
        let call = &whole["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        assert!(whole["choices"][0]["message"]["content"].is_null());
        let again = events_from_whole(Endpoint::ChatCompletions, whole.to_string().as_bytes());
        let round_trip = whole_from_events(Endpoint::ChatCompletions, &again);
        assert_eq!(round_trip["choices"], whole["choices"]);
    }

    #[test]
    fn a_whole_answer_becomes_a_stream_with_usage_and_done() {
        let whole = json!({"id":"x","object":"text_completion","created":1,"model":"m",
            "choices":[{"index":0,"text":"abc","finish_reason":"length"}],
            "usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}});
        let events = events_from_whole(Endpoint::Completions, whole.to_string().as_bytes());
        assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
        let back = whole_from_events(Endpoint::Completions, &events);
        assert_eq!(back["choices"][0]["text"], "abc");
        assert_eq!(back["choices"][0]["finish_reason"], "length");
        assert_eq!(back["usage"]["total_tokens"], 4);
        assert_eq!(events_from_whole(Endpoint::Completions, b"not json"), ["data: [DONE]"]);
    }
}
