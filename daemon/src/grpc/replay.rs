//! `TraceService.Replay`: re-runs a recorded request through the gateway (routing, budgets, fallbacks and
//! trace as for any client) and compares the new answer with the original.
use super::convert::trace_to_proto;
use super::store_query::with_store;
use crate::auth::Principal;
use crate::engine::Endpoint;
use crate::gateway::{Caller, Gateway};
use crate::trace::{Store, Trace};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures::StreamExt;
use llmops_proto::v1 as pb;
use llmops_proto::v1::replay_event::Event;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::Status;

/// Diffing long answers character by character is quadratic at worst; past this the ratio is approximate.
const DIFF_DEADLINE: Duration = Duration::from_millis(200);

pub type ReplayEvents = tokio_stream::wrappers::ReceiverStream<Result<pb::ReplayEvent, Status>>;

pub struct Replayer {
    gateway: Arc<Gateway>,
    store: Arc<Mutex<Store>>,
}

/// The request to send again, worked out from the original trace before anything runs.
#[derive(Debug)]
pub struct ReplayPlan {
    pub endpoint: Endpoint,
    pub route: String,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Replayer {
    pub fn new(gateway: Arc<Gateway>, store: Arc<Mutex<Store>>) -> Self {
        Self { gateway, store }
    }

    /// Checks the request, then streams the re-run from a task of its own (a viewer that goes away
    /// cancels the re-run like a client closing its connection).
    pub async fn start(&self, request: pb::ReplayRequest) -> Result<ReplayEvents, Status> {
        if request.trace_id.is_empty() {
            return Err(Status::invalid_argument("trace_id is empty"));
        }
        let id = request.trace_id.clone();
        let original = with_store(&self.store, move |store| store.get(&id))
            .await?
            .ok_or_else(|| Status::not_found(format!("no trace with id {}", request.trace_id)))?;
        let route = Some(request.route.as_str()).filter(|r| !r.is_empty());
        let plan = plan(&original, route, &request.overrides_json)?;
        if self.gateway.router.resolve(&plan.route).is_none_or(|targets| targets.is_empty()) {
            let served: Vec<&str> = self.gateway.router.names().collect();
            return Err(Status::invalid_argument(format!(
                "no route named {:?}; routes: {}",
                plan.route,
                served.join(", ")
            )));
        }
        let (sender, receiver) = mpsc::channel(64);
        let run = Run { gateway: self.gateway.clone() };
        tokio::spawn(run.execute(original, plan, sender));
        Ok(ReplayEvents::new(receiver))
    }
}

/// The original request with the new route and overrides; streamed when the endpoint streams, so the
/// re-run's chunk timing is recorded and shown live. A `seed` in the original body is sent again as it was.
pub fn plan(original: &Trace, route: Option<&str>, overrides_json: &str) -> Result<ReplayPlan, Status> {
    if original.request_json.is_empty() {
        return Err(Status::failed_precondition(format!(
            "trace {} kept no request body (recorded in privacy mode), so it cannot be replayed",
            original.id
        )));
    }
    let endpoint = Endpoint::ALL.into_iter().find(|e| e.name() == original.endpoint).ok_or_else(|| {
        Status::failed_precondition(format!("trace {} has unknown endpoint {:?}", original.id, original.endpoint))
    })?;
    let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(&original.request_json) else {
        return Err(Status::failed_precondition(format!(
            "trace {}'s request body is not a JSON object (it was rejected: {}), so there is nothing to re-run",
            original.id, original.error_message
        )));
    };
    if !overrides_json.trim().is_empty() {
        let overrides: Map<String, Value> = serde_json::from_str(overrides_json)
            .map_err(|e| Status::invalid_argument(format!("overrides_json must be a JSON object: {e}")))?;
        for (key, value) in overrides {
            // null removes a parameter, as in a JSON merge patch.
            if value.is_null() {
                body.remove(&key);
            } else {
                body.insert(key, value);
            }
        }
    }
    let route = route.map(str::to_string).unwrap_or_else(|| original.route.clone());
    body.insert("model".into(), Value::String(route.clone()));
    if endpoint != Endpoint::Embeddings {
        body.insert("stream".into(), Value::Bool(true));
    }
    Ok(ReplayPlan { endpoint, route, body: Value::Object(body), headers: attribution_headers(original) })
}

/// The original's user, session, prompt and tags, as the gateway reads them from headers.
fn attribution_headers(original: &Trace) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let fields = [
        ("user", &original.user),
        ("session-id", &original.session_id),
        ("prompt-id", &original.prompt_id),
        ("prompt-version", &original.prompt_version),
    ];
    let tags = original.tags.iter().map(|(k, v)| (format!("tag-{k}"), v));
    for (name, value) in fields.into_iter().map(|(k, v)| (k.to_string(), v)).chain(tags) {
        let name = HeaderName::try_from(format!("x-llmops-{name}"));
        if let (Ok(name), Ok(value), false) = (name, HeaderValue::from_str(value), value.is_empty()) {
            headers.insert(name, value);
        }
    }
    headers
}

struct Run {
    gateway: Arc<Gateway>,
}

impl Run {
    async fn execute(self, original: Trace, plan: ReplayPlan, sender: mpsc::Sender<Result<pb::ReplayEvent, Status>>) {
        let send = |event: Event| {
            let sender = sender.clone();
            async move { sender.send(Ok(pb::ReplayEvent { event: Some(event) })).await.is_ok() }
        };
        let request_json = plan.body.to_string();
        let caller = Caller::Replay {
            principal: Principal { tenant: original.tenant.clone(), key_id: None },
            replay_of: original.id.clone(),
        };
        let started = Instant::now();
        let (response, mut hand_back) = crate::gateway::serve(
            self.gateway.clone(),
            plan.endpoint,
            caller,
            plan.headers,
            request_json.clone().into(),
        )
        .await;
        let Some(trace_id) =
            response.headers().get(crate::gateway::REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string)
        else {
            let _ = sender.send(Err(Status::internal("the gateway answered without a trace id"))).await;
            return;
        };
        let started_event = pb::ReplayStarted { trace_id: trace_id.clone(), route: plan.route.clone(), request_json };
        if !send(Event::Started(started_event)).await {
            return;
        }
        // Reading the body drives the stream (as a client's connection would); the gateway hands back each
        // chunk's text as it relays it.
        let mut body = response.into_body().into_data_stream();
        let mut reading = true;
        while reading {
            reading = matches!(body.next().await, Some(Ok(_)));
            while let Ok(text) = hand_back.chunks.try_recv() {
                let offset_ms = started.elapsed().as_secs_f64() * 1000.0;
                if !send(Event::Chunk(pb::ReplayChunk { text, offset_ms })).await {
                    return;
                }
            }
        }
        drop(body);
        // Handed back once recorded: right away, or after the next GPU sample for a metered engine (bounded by
        // the energy meter's watchdog).
        match hand_back.trace.await {
            Ok(replay) => {
                let comparison = compare(&original, &replay);
                let done = pb::ReplayDone { replay: Some(trace_to_proto(&replay, true)), comparison: Some(comparison) };
                send(Event::Done(done)).await;
            }
            Err(_) => {
                let message = format!("the re-run {trace_id} ended but its trace was not handed back");
                let _ = sender.send(Err(Status::internal(message))).await;
            }
        }
    }
}

/// Re-run minus original.
pub fn compare(original: &Trace, replay: &Trace) -> pb::ReplayComparison {
    let diff = similar::TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_chars(original.response_text.as_str(), replay.response_text.as_str());
    let signed =
        |a: u64, b: u64| i64::try_from(b).unwrap_or(i64::MAX).saturating_sub(i64::try_from(a).unwrap_or(i64::MAX));
    pb::ReplayComparison {
        original_id: original.id.clone(),
        replay_id: replay.id.clone(),
        text_identical: original.response_text == replay.response_text,
        text_similarity: f64::from(diff.ratio()),
        output_tokens_delta: signed(original.output_tokens, replay.output_tokens),
        input_tokens_delta: signed(original.input_tokens, replay.input_tokens),
        latency_delta_ms: replay.latency_ms - original.latency_ms,
        ttft_delta_ms: original.ttft_ms.zip(replay.ttft_ms).map(|(a, b)| b - a),
        cost_delta_usd: original.cost_usd.zip(replay.cost_usd).map(|(a, b)| b - a),
        same_route: original.route == replay.route,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original() -> Trace {
        Trace {
            id: "t1".into(),
            endpoint: "chat.completions".into(),
            route: "chat".into(),
            user: "ana".into(),
            session_id: "s1".into(),
            tags: [("env".to_string(), "prod".to_string())].into(),
            request_json: r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"seed":7,"temperature":0.8}"#
                .into(),
            response_text: "Hello there".into(),
            output_tokens: 3,
            latency_ms: 100.0,
            ttft_ms: Some(20.0),
            cost_usd: Some(0.002),
            ..Trace::default()
        }
    }

    #[test]
    fn plan_keeps_seed_streams_and_applies_route_and_overrides() {
        let plan = plan(&original(), Some("code"), r#"{"temperature":0,"max_tokens":5,"seed":null}"#).expect("plan");
        assert_eq!(plan.endpoint, Endpoint::ChatCompletions);
        assert_eq!(plan.route, "code");
        assert_eq!(plan.body["model"], "code");
        assert_eq!(plan.body["stream"], true);
        assert_eq!(plan.body["temperature"], 0);
        assert_eq!(plan.body["max_tokens"], 5);
        assert!(plan.body.get("seed").is_none(), "null removes a parameter");
        let same = super::plan(&original(), None, "").expect("plan");
        assert_eq!(same.body["model"], "chat");
        assert_eq!(same.body["seed"], 7, "the original seed is sent again");
        assert_eq!(same.headers["x-llmops-user"], "ana");
        assert_eq!(same.headers["x-llmops-session-id"], "s1");
        assert_eq!(same.headers["x-llmops-tag-env"], "prod");
    }

    #[test]
    fn plan_refuses_what_cannot_be_replayed() {
        let mut private = original();
        private.request_json.clear();
        assert_eq!(plan(&private, None, "").expect_err("privacy").code(), tonic::Code::FailedPrecondition);
        let mut garbage = original();
        garbage.request_json = "{not json".into();
        assert_eq!(plan(&garbage, None, "").expect_err("garbage").code(), tonic::Code::FailedPrecondition);
        let bad = plan(&original(), None, "[1]").expect_err("overrides not an object");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().contains("overrides_json"), "{}", bad.message());
    }

    #[test]
    fn comparison_is_replay_minus_original() {
        let replay = Trace {
            id: "t2".into(),
            route: "code".into(),
            response_text: "Hello there!".into(),
            output_tokens: 5,
            latency_ms: 70.0,
            ttft_ms: Some(25.0),
            cost_usd: None,
            ..Trace::default()
        };
        let c = compare(&original(), &replay);
        assert!(!c.text_identical);
        assert!(c.text_similarity > 0.9 && c.text_similarity < 1.0, "{}", c.text_similarity);
        assert_eq!(c.output_tokens_delta, 2);
        assert_eq!(c.latency_delta_ms, -30.0);
        assert_eq!(c.ttft_delta_ms, Some(5.0));
        assert_eq!(c.cost_delta_usd, None, "no cost on one side: no delta");
        assert!(!c.same_route);
        assert!(compare(&original(), &original()).text_identical);
    }
}
