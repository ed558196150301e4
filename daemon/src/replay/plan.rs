//! What to send again: the original request with a new route and parameter overrides, worked out from the
//! recorded trace before anything runs.
use crate::engine::Endpoint;
use crate::router::Router;
use crate::trace::Trace;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

/// The request to send again.
#[derive(Debug)]
pub struct ReplayPlan {
    pub endpoint: Endpoint,
    pub route: String,
    pub body: Value,
    pub headers: HeaderMap,
}

/// Why a trace cannot be replayed as asked.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("trace {0} kept no request body (recorded in privacy mode), so it cannot be replayed")]
    NoRequestBody(String),
    #[error("trace {id} has unknown endpoint {endpoint:?}")]
    UnknownEndpoint { id: String, endpoint: String },
    #[error(
        "trace {id}'s request body is not a JSON object (it was rejected: {error}), so there is nothing to re-run"
    )]
    NotAnObject { id: String, error: String },
    #[error("overrides_json must be a JSON object: {0}")]
    BadOverrides(serde_json::Error),
    #[error("no route named {route:?}; routes: {served}")]
    UnknownRoute { route: String, served: String },
}

impl PlanError {
    /// The asker's mistake (fix the request), rather than a trace that cannot be replayed at all.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, PlanError::BadOverrides(_) | PlanError::UnknownRoute { .. })
    }
}

/// The original request with the new route and overrides; streamed when the endpoint streams, so the
/// re-run's chunk timing is recorded and shown live. A `seed` in the original body is sent again as it was.
pub fn plan(original: &Trace, route: Option<&str>, overrides_json: &str) -> Result<ReplayPlan, PlanError> {
    if original.request_json.is_empty() {
        return Err(PlanError::NoRequestBody(original.id.clone()));
    }
    let endpoint = Endpoint::ALL
        .into_iter()
        .find(|e| e.name() == original.endpoint)
        .ok_or_else(|| PlanError::UnknownEndpoint { id: original.id.clone(), endpoint: original.endpoint.clone() })?;
    let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(&original.request_json) else {
        return Err(PlanError::NotAnObject { id: original.id.clone(), error: original.error_message.clone() });
    };
    if !overrides_json.trim().is_empty() {
        let overrides: Map<String, Value> = serde_json::from_str(overrides_json).map_err(PlanError::BadOverrides)?;
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

/// Refuses a plan for a route the router does not serve, naming the ones it does.
pub fn check_route(plan: &ReplayPlan, router: &Router) -> Result<(), PlanError> {
    if router.resolve(&plan.route).is_none_or(|targets| targets.is_empty()) {
        let served: Vec<&str> = router.names().collect();
        return Err(PlanError::UnknownRoute { route: plan.route.clone(), served: served.join(", ") });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::super::recorded_chat as original;
    use super::*;

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
    fn plan_says_why_a_trace_cannot_be_replayed() {
        let mut private = original();
        private.request_json.clear();
        assert!(matches!(plan(&private, None, ""), Err(PlanError::NoRequestBody(id)) if id == "t1"));
        let mut garbage = original();
        garbage.request_json = "{not json".into();
        assert!(matches!(plan(&garbage, None, ""), Err(PlanError::NotAnObject { .. })));
        let bad = plan(&original(), None, "[1]").expect_err("overrides not an object");
        assert!(bad.is_bad_request() && bad.to_string().contains("overrides_json"), "{bad}");
    }
}
