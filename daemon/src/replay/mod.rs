//! Replay: re-running a recorded request through the gateway (routing, budgets, fallbacks and trace as for any
//! client) and comparing the new answer with the original. The gRPC layer (`grpc::replay`) only maps requests,
//! events and errors to and from the wire.
mod compare;
mod plan;
mod run;

pub use compare::{compare, Comparison};
pub use plan::{check_route, plan, PlanError, ReplayPlan};
pub use run::{run, RunEvent};

/// A recorded chat request with a seed, a user, a session and a tag: what the tests here and in `grpc` replay.
#[cfg(test)]
pub(crate) fn recorded_chat() -> crate::trace::Trace {
    crate::trace::Trace {
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
        ..crate::trace::Trace::default()
    }
}
