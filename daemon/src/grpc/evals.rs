//! `llmops.v1.EvalService`: datasets (from traces or JSONL items) and evaluation runs. The checks and the
//! running live in `crate::evals`; this maps requests, events and errors to and from the wire.
use super::convert::query_from_proto;
use super::evals_convert::{
    comparison_to_proto, dataset_to_proto, item_to_proto, result_to_proto, run_to_proto, status,
};
use super::store_query::with_store;
use crate::evals::runner::{RunEvent, RunRequest, Runner};
use crate::evals::{limits, Dataset, EvalError, EvalStore, NewItem};
use crate::trace::Store;
use futures::{Stream, StreamExt};
use llmops_proto::v1 as pb;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// Item events a slow client may fall behind by before the run waits for it.
const EVENTS_BUFFERED: usize = 64;
/// Reasons for skipped traces returned at most.
const SKIPPED_REASONS: usize = 20;
const DEFAULT_ITEMS_PAGE: u32 = 100;
const MAX_ITEMS_PAGE: u32 = 1_000;
const DEFAULT_RUNS: u32 = 50;
const MAX_RUNS_LISTED: u32 = 1_000;
const MAX_TRACE_ID_BYTES: usize = 128;
/// Regressed and improved item ids a listed run carries (GetEvalRun has them all).
const LISTED_ITEM_IDS: usize = 20;

pub struct EvalApi {
    pub runner: Runner,
    /// The trace store's read connection (datasets from traces).
    pub traces: Arc<Mutex<Store>>,
    /// To wait for traces that finished a moment ago to be written before reading them.
    pub recorder: crate::trace::Recorder,
}

/// How long adding items waits for the trace writer to catch up before reading what is stored.
const WRITTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl EvalApi {
    async fn with_evals<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut EvalStore) -> Result<T, EvalError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.runner.store().clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().map_err(|_| Status::internal("evaluation store lock poisoned"))?;
            work(&mut guard).map_err(status)
        })
        .await
        .map_err(|e| Status::internal(format!("evaluation task failed: {e}")))?
    }

    /// The items `request` asks to add, and the reasons for the traces that cannot be items.
    async fn new_items(&self, request: &mut pb::AddDatasetItemsRequest) -> Result<(Vec<NewItem>, Vec<String>), Status> {
        let asked = request.trace_ids.len() + request.items_jsonl.len();
        if asked > limits::MAX_ITEMS_PER_ADD {
            return Err(Status::invalid_argument(format!(
                "{asked} items and trace ids: at most {} per call",
                limits::MAX_ITEMS_PER_ADD
            )));
        }
        let mut items = Vec::new();
        for (index, line) in request.items_jsonl.iter().enumerate() {
            let item =
                NewItem::from_json(line).map_err(|e| Status::invalid_argument(format!("items_jsonl[{index}]: {e}")))?;
            items.push(item);
        }
        if let Some(bad) = request.trace_ids.iter().find(|id| id.is_empty() || id.len() > MAX_TRACE_ID_BYTES) {
            let shown: String = bad.chars().take(64).collect();
            return Err(Status::invalid_argument(format!(
                "trace id {shown:?} must be 1 to {MAX_TRACE_ID_BYTES} bytes"
            )));
        }
        let ids = std::mem::take(&mut request.trace_ids);
        if !ids.is_empty() || request.query.is_some() {
            // A trace that finished a moment ago (its client just got the answer) may still be queued for the
            // store: wait until everything finished before this call is written (bounded; a full queue or a
            // slow disk leaves the newest out rather than hanging the call).
            if let Ok(written) = self.recorder.written() {
                let _ = tokio::time::timeout(WRITTEN_WAIT, written).await;
            }
        }
        let mut traces = Vec::new();
        let mut reasons = Vec::new();
        if !ids.is_empty() {
            let found = with_store(&self.traces, move |store| {
                ids.into_iter().map(|id| Ok((store.get(&id)?, id))).collect::<Result<Vec<_>, _>>()
            })
            .await?;
            for (trace, id) in found {
                match trace {
                    Some(trace) => traces.push(trace),
                    None => reasons.push(format!("no trace with id {id}")),
                }
            }
        }
        if let Some(query) = request.query.take() {
            let mut query = query_from_proto(query, 50)?;
            if query.limit > MAX_ITEMS_PAGE as usize {
                return Err(Status::invalid_argument(format!("query.limit: at most {MAX_ITEMS_PAGE}")));
            }
            query.page_token = None;
            let (found, _) = with_store(&self.traces, move |store| store.list(&query)).await?;
            traces.extend(found);
        }
        for trace in &traces {
            match NewItem::from_trace(trace) {
                Ok(item) => items.push(item),
                Err(reason) => reasons.push(reason),
            }
        }
        Ok((items, reasons))
    }
}

fn check_dataset(request: &pb::CreateDatasetRequest) -> Result<(), Status> {
    crate::prompts::check_name("dataset name", &request.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if request.description.len() > limits::MAX_DESCRIPTION_BYTES {
        return Err(Status::invalid_argument(format!("description: at most {} bytes", limits::MAX_DESCRIPTION_BYTES)));
    }
    if request.route.len() > 256 || request.route.chars().any(char::is_control) {
        return Err(Status::invalid_argument("route: at most 256 bytes without control characters"));
    }
    crate::evals::evaluate::spec::parse(&request.evaluators_json)
        .map_err(|e| Status::invalid_argument(format!("evaluators: {e}")))?;
    Ok(())
}

/// The messages of one page, in order, until the next would take the page past [`limits::MAX_PAGE_BYTES`]
/// (always at least one, so a page makes progress).
fn bounded_page<T: prost::Message>(messages: impl Iterator<Item = T>) -> Vec<T> {
    let mut page = Vec::new();
    let mut bytes = 0;
    for message in messages {
        bytes += message.encoded_len();
        if bytes > limits::MAX_PAGE_BYTES && !page.is_empty() {
            break;
        }
        page.push(message);
    }
    page
}

/// Where the page after one of `shown` messages from `offset` starts; 0 when it was the last of `total`.
fn next_offset(offset: u32, shown: usize, total: usize) -> u32 {
    let end = offset.saturating_add(u32::try_from(shown).unwrap_or(u32::MAX));
    if (end as usize) < total {
        end
    } else {
        0
    }
}

pub type EvalEvents = Pin<Box<dyn Stream<Item = Result<pb::EvalEvent, Status>> + Send>>;

fn event_to_proto(event: RunEvent) -> Result<pb::EvalEvent, Status> {
    use pb::eval_event::Event;
    let event = match event {
        RunEvent::Started(run) => Event::Started(run_to_proto(&run)),
        RunEvent::Item(result) => Event::Item(result_to_proto(&result)),
        RunEvent::Finished(run) => Event::Finished(run_to_proto(&run)),
    };
    Ok(pb::EvalEvent { event: Some(event) })
}

#[tonic::async_trait]
impl pb::eval_service_server::EvalService for EvalApi {
    async fn create_dataset(
        &self,
        request: Request<pb::CreateDatasetRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let request = request.into_inner();
        check_dataset(&request)?;
        let dataset = Dataset {
            name: request.name,
            description: request.description,
            route: request.route,
            evaluators_json: request.evaluators_json,
            ..Dataset::default()
        };
        let update = request.update_existing;
        let created = self.with_evals(move |store| store.create_dataset(&dataset, update)).await?;
        Ok(Response::new(dataset_to_proto(&created)))
    }

    async fn list_datasets(
        &self,
        _request: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let datasets = self.with_evals(|store| store.datasets()).await?;
        Ok(Response::new(pb::ListDatasetsResponse { datasets: datasets.iter().map(dataset_to_proto).collect() }))
    }

    async fn get_dataset(
        &self,
        request: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<pb::GetDatasetResponse>, Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_ITEMS_PAGE,
            n => n.min(MAX_ITEMS_PAGE),
        };
        let (name, offset) = (request.name, request.offset);
        let (dataset, items) = self
            .with_evals(move |store| {
                let dataset = store.dataset(&name)?.ok_or_else(|| EvalError::NoSuchDataset(name.clone()))?;
                Ok((dataset, store.items(&name, offset, limit)?))
            })
            .await?;
        let page = bounded_page(items.iter().map(item_to_proto));
        let next_offset = next_offset(offset, page.len(), dataset.items as usize);
        Ok(Response::new(pb::GetDatasetResponse {
            dataset: Some(dataset_to_proto(&dataset)),
            items: page,
            next_offset,
        }))
    }

    async fn add_dataset_items(
        &self,
        request: Request<pb::AddDatasetItemsRequest>,
    ) -> Result<Response<pb::AddDatasetItemsResponse>, Status> {
        let mut request = request.into_inner();
        crate::prompts::check_name("dataset name", &request.dataset)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (items, mut reasons) = self.new_items(&mut request).await?;
        let (name, create) = (request.dataset, request.create);
        let (dataset, added, duplicates) = self
            .with_evals(move |store| {
                if create && store.dataset(&name)?.is_none() {
                    store.create_dataset(&Dataset { name: name.clone(), ..Dataset::default() }, false)?;
                }
                let (added, duplicates) = store.add_items(&name, &items)?;
                let dataset = store.dataset(&name)?.ok_or_else(|| EvalError::NoSuchDataset(name.clone()))?;
                Ok((dataset, added, duplicates))
            })
            .await?;
        reasons.extend(duplicates.iter().map(|id| format!("trace {id} is already in the dataset")));
        let skipped = u32::try_from(reasons.len()).unwrap_or(u32::MAX);
        reasons.truncate(SKIPPED_REASONS);
        Ok(Response::new(pb::AddDatasetItemsResponse {
            dataset: Some(dataset_to_proto(&dataset)),
            added,
            skipped,
            skipped_reasons: reasons,
        }))
    }

    async fn delete_dataset(
        &self,
        request: Request<pb::DeleteDatasetRequest>,
    ) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
        let name = request.into_inner().name;
        let items_deleted = self.with_evals(move |store| store.delete_dataset(&name)).await?;
        Ok(Response::new(pb::DeleteDatasetResponse { items_deleted }))
    }

    type RunEvalStream = EvalEvents;

    async fn run_eval(&self, request: Request<pb::RunEvalRequest>) -> Result<Response<Self::RunEvalStream>, Status> {
        let r = request.into_inner();
        let asked = RunRequest {
            dataset: r.dataset,
            route: r.route,
            prompt: r.prompt,
            baseline_run: r.baseline_run,
            against_route: r.against_route,
            concurrency: r.concurrency,
            evaluators_json: r.evaluators_json,
            parameters_json: r.parameters_json,
            limit: r.limit,
            by: r.by,
            judge_route: r.judge_route,
        };
        let (sender, receiver) = mpsc::channel(EVENTS_BUFFERED);
        self.runner.start(asked, sender).await.map_err(status)?;
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver).map(event_to_proto))))
    }

    async fn list_eval_runs(
        &self,
        request: Request<pb::ListEvalRunsRequest>,
    ) -> Result<Response<pb::ListEvalRunsResponse>, Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_RUNS,
            n => n.min(MAX_RUNS_LISTED),
        };
        let runs = self.with_evals(move |store| store.runs(&request.dataset, limit)).await?;
        // A listing is polled (the console, every 2 s): the bulky fields stay with GetEvalRun.
        let listed = runs.iter().map(|run| {
            let mut run = run_to_proto(run);
            run.evaluators_json.clear();
            run.parameters_json.clear();
            if let Some(c) = &mut run.comparison {
                c.regressed_items.truncate(LISTED_ITEM_IDS);
                c.improved_items.truncate(LISTED_ITEM_IDS);
            }
            run
        });
        Ok(Response::new(pb::ListEvalRunsResponse { runs: listed.collect() }))
    }

    async fn get_eval_run(
        &self,
        request: Request<pb::GetEvalRunRequest>,
    ) -> Result<Response<pb::EvalRunDetail>, Status> {
        let request = request.into_inner();
        let (id, offset) = (request.id, request.item_offset);
        let limit = match request.item_limit {
            0 => MAX_ITEMS_PAGE,
            n => n.min(MAX_ITEMS_PAGE),
        };
        let (run, results) = self.with_evals(move |store| Ok((store.run(&id)?, store.results(&id)?))).await?;
        let items = bounded_page(results.iter().skip(offset as usize).take(limit as usize).map(result_to_proto));
        let next_item_offset = next_offset(offset, items.len(), results.len());
        Ok(Response::new(pb::EvalRunDetail { run: Some(run_to_proto(&run)), items, next_item_offset }))
    }

    async fn compare_eval_runs(
        &self,
        request: Request<pb::CompareEvalRunsRequest>,
    ) -> Result<Response<pb::EvalComparison>, Status> {
        let request = request.into_inner();
        let comparison = self
            .with_evals(move |store| crate::evals::verdict::compare_runs(store, &request.baseline, &request.candidate))
            .await?;
        Ok(Response::new(comparison_to_proto(&comparison)))
    }
}
