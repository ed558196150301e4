//! `TraceService.Replay` on the wire: checks the request, starts the re-run (`crate::replay`) and maps its
//! events and errors to `ReplayEvent`s and statuses.
use super::convert::trace_to_proto;
use super::store_query::with_store;
use crate::gateway::Gateway;
use crate::replay::{check_route, plan, Comparison, PlanError, RunEvent};
use crate::trace::Store;
use futures::{Stream, StreamExt};
use llmops_proto::v1 as pb;
use llmops_proto::v1::replay_event::Event;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tonic::Status;

/// Events buffered between the re-run and a viewer that reads slower than the engine writes.
const EVENTS_BUFFERED: usize = 64;

pub type ReplayEvents = Pin<Box<dyn Stream<Item = Result<pb::ReplayEvent, Status>> + Send>>;

pub struct Replayer {
    gateway: Arc<Gateway>,
    store: Arc<Mutex<Store>>,
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
        let plan = plan(&original, route, &request.overrides_json).map_err(plan_status)?;
        check_route(&plan, &self.gateway.router).map_err(plan_status)?;
        let (sender, receiver) = mpsc::channel(EVENTS_BUFFERED);
        tokio::spawn(crate::replay::run(self.gateway.clone(), original, plan, sender));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver).map(event_to_proto)))
    }
}

/// A trace that cannot be replayed is FAILED_PRECONDITION; a bad route or overrides INVALID_ARGUMENT.
fn plan_status(error: PlanError) -> Status {
    if error.is_bad_request() {
        Status::invalid_argument(error.to_string())
    } else {
        Status::failed_precondition(error.to_string())
    }
}

fn event_to_proto(event: RunEvent) -> Result<pb::ReplayEvent, Status> {
    let event = match event {
        RunEvent::Started { trace_id, route, request_json } => {
            Event::Started(pb::ReplayStarted { trace_id, route, request_json })
        }
        RunEvent::Chunk { text, offset_ms } => Event::Chunk(pb::ReplayChunk { text, offset_ms }),
        RunEvent::Done { replay, comparison } => Event::Done(pb::ReplayDone {
            replay: Some(trace_to_proto(&replay, true)),
            comparison: Some(comparison_to_proto(comparison)),
        }),
        RunEvent::Failed(message) => return Err(Status::internal(message)),
    };
    Ok(pb::ReplayEvent { event: Some(event) })
}

fn comparison_to_proto(c: Comparison) -> pb::ReplayComparison {
    pb::ReplayComparison {
        original_id: c.original_id,
        replay_id: c.replay_id,
        text_identical: c.text_identical,
        text_similarity: c.text_similarity,
        output_tokens_delta: c.output_tokens_delta,
        input_tokens_delta: c.input_tokens_delta,
        latency_delta_ms: c.latency_delta_ms,
        ttft_delta_ms: c.ttft_delta_ms,
        cost_delta_usd: c.cost_delta_usd,
        same_route: c.same_route,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::recorded_chat as original;

    /// `plan` with its errors as the API answers them.
    fn plan(original: &crate::trace::Trace, route: Option<&str>, overrides: &str) -> Result<(), Status> {
        super::plan(original, route, overrides).map(drop).map_err(plan_status)
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
}
