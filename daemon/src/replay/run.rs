//! Running a plan: the request goes through the gateway as a client's would, and what happens is reported as
//! events (started, each chunk, done with the comparison) to whoever asked for the replay.
use super::compare::{compare, Comparison};
use super::plan::ReplayPlan;
use crate::auth::Principal;
use crate::gateway::{Caller, Gateway};
use crate::trace::Trace;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What a re-run reports, in this order: `Started`, any `Chunk`s, then `Done` or `Failed`.
#[derive(Debug)]
pub enum RunEvent {
    Started {
        trace_id: String,
        route: String,
        request_json: String,
    },
    Chunk {
        text: String,
        offset_ms: f64,
    },
    Done {
        replay: Box<Trace>,
        comparison: Comparison,
    },
    /// The daemon could not see the re-run through (not the engine failing: that is a recorded trace).
    Failed(String),
}

/// Re-runs `plan` and reports to `events` until done. Stops when `events` is closed: dropping the response
/// body then cancels the re-run like a client closing its connection.
pub async fn run(gateway: Arc<Gateway>, original: Trace, plan: ReplayPlan, events: mpsc::Sender<RunEvent>) {
    let send = |event: RunEvent| {
        let events = events.clone();
        async move { events.send(event).await.is_ok() }
    };
    let request_json = plan.body.to_string();
    let caller = Caller::Replay {
        principal: Principal { tenant: original.tenant.clone(), key_id: None },
        replay_of: original.id.clone(),
    };
    // A re-run asks the engine again: a cached answer would compare the original with itself.
    let mut headers = plan.headers;
    headers.insert("x-llmops-cache", axum::http::HeaderValue::from_static("no-cache"));
    let started = Instant::now();
    let (response, mut hand_back) =
        crate::gateway::serve(gateway, plan.endpoint, caller, headers, request_json.clone().into()).await;
    let Some(trace_id) =
        response.headers().get(crate::gateway::REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string)
    else {
        send(RunEvent::Failed("the gateway answered without a trace id".into())).await;
        return;
    };
    if !send(RunEvent::Started { trace_id: trace_id.clone(), route: plan.route, request_json }).await {
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
            if !send(RunEvent::Chunk { text, offset_ms }).await {
                return;
            }
        }
    }
    drop(body);
    // Handed back once recorded: right away, or after the next GPU sample for a metered engine (bounded by
    // the energy meter's watchdog).
    let last = match hand_back.trace.await {
        Ok(replay) => RunEvent::Done { comparison: compare(&original, &replay), replay: Box::new(replay) },
        Err(_) => RunEvent::Failed(format!("the re-run {trace_id} ended but its trace was not handed back")),
    };
    send(last).await;
}
