//! `llmops.v1.TraceService`: queries over the store and the live trace stream.
use super::convert::{event_kind_to_proto, query_from_proto, trace_to_proto};
use super::replay::{ReplayEvents, Replayer};
use super::store_query::with_store;
use super::watch::{self, WatchStream};
use crate::shutdown::Shutdown;
use crate::trace::{EventKind, Recorder, Store, TraceEvent};
use llmops_proto::v1 as pb;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

const DEFAULT_PAGE: usize = 50;
/// Live trace events go out in bursts at most this far apart: at hundreds of requests per second a viewer
/// then wakes a few times a second instead of once per event (its CPU), for at most this much delay.
const WATCH_BURST: std::time::Duration = std::time::Duration::from_millis(100);
/// Events per burst at most (a burst is sent as soon as it is full).
const WATCH_BURST_EVENTS: usize = 256;

pub struct TraceApi {
    /// A read connection of its own, so queries never wait behind the writer's transactions (WAL).
    store: Arc<Mutex<Store>>,
    recorder: Recorder,
    shutdown: Shutdown,
    replayer: Replayer,
}

impl TraceApi {
    pub fn new(store: Arc<Mutex<Store>>, recorder: Recorder, shutdown: Shutdown, replayer: Replayer) -> Self {
        Self { store, recorder, shutdown, replayer }
    }
}

#[tonic::async_trait]
impl pb::trace_service_server::TraceService for TraceApi {
    async fn list_traces(
        &self,
        request: Request<pb::ListTracesRequest>,
    ) -> Result<Response<pb::ListTracesResponse>, Status> {
        let r = request.into_inner();
        let include_bodies = r.include_bodies;
        let query = query_from_proto(r, DEFAULT_PAGE)?;
        let (traces, next) = with_store(&self.store, move |store| store.list(&query)).await?;
        Ok(Response::new(pb::ListTracesResponse {
            traces: traces.iter().map(|t| trace_to_proto(t, include_bodies)).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn get_trace(&self, request: Request<pb::GetTraceRequest>) -> Result<Response<pb::Trace>, Status> {
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(Status::invalid_argument("id is empty"));
        }
        let lookup = id.clone();
        let found = with_store(&self.store, move |store| {
            let Some(trace) = store.get(&lookup)? else { return Ok(None) };
            Ok(Some((trace, store.scores(&lookup)?)))
        })
        .await?;
        match found {
            Some((trace, scores)) => {
                let mut trace = trace_to_proto(&trace, true);
                trace.scores = scores.iter().map(super::feedback::score_to_proto).collect();
                Ok(Response::new(trace))
            }
            None => Err(Status::not_found(format!("no trace with id {id}"))),
        }
    }

    type WatchTracesStream = WatchStream<pb::TraceEvent>;

    async fn watch_traces(
        &self,
        request: Request<pb::WatchTracesRequest>,
    ) -> Result<Response<Self::WatchTracesStream>, Status> {
        let request = request.into_inner();
        let include_bodies = request.include_bodies;
        let (receiver, recent) = if request.include_recent {
            self.recorder.subscribe_with_recent()
        } else {
            (self.recorder.subscribe(), Vec::new())
        };
        let recent = futures::stream::iter(recent.into_iter().map(move |trace| {
            let kind = event_kind_to_proto(EventKind::Finished) as i32;
            Ok(pb::TraceEvent { kind, trace: Some(trace_to_proto(&trace, include_bodies)), missed: 0 })
        }));
        // A viewer that falls more than the recorder's buffer behind is told what it missed and dropped.
        let live = watch::follow(receiver, self.shutdown.clone(), move |event: TraceEvent| pb::TraceEvent {
            kind: event_kind_to_proto(event.kind) as i32,
            trace: Some(trace_to_proto(&event.trace, include_bodies)),
            missed: 0,
        });
        let bursts = tokio_stream::StreamExt::chunks_timeout(live, WATCH_BURST_EVENTS, WATCH_BURST);
        let live = futures::StreamExt::flat_map(bursts, futures::stream::iter);
        Ok(Response::new(Box::pin(futures::StreamExt::chain(recent, live))))
    }

    type ReplayStream = ReplayEvents;

    async fn replay(&self, request: Request<pb::ReplayRequest>) -> Result<Response<Self::ReplayStream>, Status> {
        self.replayer.start(request.into_inner()).await.map(Response::new)
    }
}
