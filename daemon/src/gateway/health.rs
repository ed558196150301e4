//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: every route has a target that can answer
//! now), for load balancers, Kubernetes probes and the quick start.
use crate::router::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 `{"status": "ready"}` once every route has a ready target; else 503 with, per route that has none, each
/// target and why it is not ready (`"loading the model (40%)"`, `"launched process is starting"`, ...).
pub fn readyz(router: &Router) -> Response {
    let mut not_ready = Vec::new();
    for (route, targets) in router.iter() {
        let reasons: Vec<Value> = targets
            .iter()
            .filter_map(|target| {
                let reason = target.engine.ready().err()?;
                Some(json!({"target": format!("{}/{}", target.engine.name(), target.model), "reason": reason}))
            })
            .collect();
        // A route with no target at all cannot serve either.
        if reasons.len() == targets.len() {
            not_ready.push(json!({"route": route, "targets": reasons}));
        }
    }
    if not_ready.is_empty() {
        return Json(json!({"status": "ready"})).into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "routes": not_ready}))).into_response()
}
