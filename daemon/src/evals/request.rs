//! The requests a run sends: an item as a chat completion on a route (with the run's prompt and parameters),
//! and the tags that mark every trace a run makes. One call: in through the gateway (as a client would) and
//! back with the finished trace.
use super::item::NewItem;
use crate::engine::Endpoint;
use crate::gateway::{Caller, Gateway};
use crate::trace::{Trace, TraceStatus};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a run asks of every item, besides its messages.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// A registry prompt for every item (`NAME@REF`); `None`: each item's own.
    pub prompt: Option<String>,
    /// Set on every item, over the item's own.
    pub parameters: Map<String, Value>,
}

/// The chat-completions body for `item` on `route`: the item's parameters, then the run's, non-streamed.
pub fn item_body(item: &NewItem, route: &str, shape: &Shape) -> Value {
    let mut body = item.parameters.clone();
    for (key, value) in &shape.parameters {
        body.insert(key.clone(), value.clone());
    }
    body.insert("model".into(), Value::String(route.to_string()));
    body.insert("messages".into(), Value::Array(item.messages.clone()));
    body.insert("stream".into(), Value::Bool(false));
    let prompt = shape.prompt.as_deref().unwrap_or(&item.prompt);
    if !prompt.is_empty() {
        let mut metadata = Map::new();
        metadata.insert("prompt".into(), Value::String(prompt.to_string()));
        if !item.variables.is_empty() {
            metadata.insert("variables".into(), Value::Object(item.variables.clone()));
        }
        body.insert("metadata".into(), Value::Object(metadata));
    }
    Value::Object(body)
}

/// Which of a run's requests a trace is.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Candidate,
    Against,
    Judge,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::Against => "against",
            Self::Judge => "judge",
        }
    }
}

/// The tags on every trace of a run (`eval_run`, `eval_item` and `eval_role`), and no answer from the cache.
pub fn tags(run_id: &str, item_id: u32, role: Role) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let item = item_id.to_string();
    for (name, value) in [("eval_run", run_id), ("eval_item", item.as_str()), ("eval_role", role.name())] {
        if let (Ok(name), Ok(value)) =
            (HeaderName::try_from(format!("x-llmops-tag-{name}")), HeaderValue::from_str(value))
        {
            headers.insert(name, value);
        }
    }
    // A run measures the route, not the response cache (answers still fill it).
    headers.insert("x-llmops-cache", HeaderValue::from_static("no-cache"));
    headers
}

/// The request's outcome as a run sees it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub trace: Trace,
}

impl Answer {
    /// Why the request failed (status, error type and message); `None` when it was answered.
    pub fn failure(&self) -> Option<String> {
        let trace = &self.trace;
        (trace.status != TraceStatus::Ok).then(|| {
            let message = super::truncate(&trace.error_message, 512);
            format!("HTTP {} {}: {message}", trace.http_status, trace.error_type)
        })
    }
}

/// Sends one chat completion through the gateway and waits for its trace (handed back once recorded).
pub async fn send(gateway: &Arc<Gateway>, headers: HeaderMap, body: &Value) -> Result<Answer, String> {
    let caller = Caller::Client(crate::auth::default_principal());
    let (response, hand_back) =
        crate::gateway::serve(gateway.clone(), Endpoint::ChatCompletions, caller, headers, body.to_string().into())
            .await;
    // Reading the body to its end is what drives the request (as a client's connection would).
    let mut body = response.into_body().into_data_stream();
    while let Some(Ok(_)) = body.next().await {}
    drop(body);
    hand_back
        .trace
        .await
        .map(|trace| Answer { trace })
        .map_err(|_| "the request ended but its trace was not handed back".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_decides_route_stream_and_prompt_and_its_parameters_win() {
        let item = NewItem {
            messages: vec![serde_json::json!({"role": "user", "content": "hi"})],
            parameters: serde_json::from_str(r#"{"temperature":0.9,"max_tokens":5}"#).expect("json"),
            prompt: "support@production".into(),
            variables: serde_json::from_str(r#"{"who":"ana"}"#).expect("json"),
            ..NewItem::default()
        };
        let shape = Shape {
            prompt: Some("support@3".into()),
            parameters: serde_json::from_str(r#"{"temperature":0}"#).expect("json"),
        };
        let body = item_body(&item, "chat", &shape);
        assert_eq!(body["model"], "chat");
        assert_eq!(body["stream"], false);
        assert_eq!(body["temperature"], 0, "the run's parameters win");
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["metadata"]["prompt"], "support@3");
        assert_eq!(body["metadata"]["variables"]["who"], "ana");
        let own = item_body(&item, "chat", &Shape::default());
        assert_eq!(own["metadata"]["prompt"], "support@production", "without a run prompt, the item's own");
        let headers = tags("run-3", 7, Role::Judge);
        assert_eq!(headers["x-llmops-tag-eval_run"], "run-3");
        assert_eq!(headers["x-llmops-tag-eval_item"], "7");
        assert_eq!(headers["x-llmops-tag-eval_role"], "judge");
    }
}
