//! Running a dataset: every item goes through the gateway on the run's route (and the against route), is
//! scored by the evaluators (deterministic checks here, judges through the gateway too), stored, and
//! reported as it finishes; the run ends with summaries, a comparison and a verdict. Checked before anything
//! runs ([`Runner::start`]): a refusal then is the asker's to fix, and the run is not stored.
use super::evaluate::spec::{Evaluator, EvaluatorKind};
use super::item::DatasetItem;
use super::item_run::ItemContext;
use super::request::Shape;
use super::store::{EvalStore, RunRecord, RunStatus, StoredResult};
use super::{limits, EvalError};
use crate::gateway::Gateway;
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Items read from the store at a time.
const PAGE: u32 = 64;

/// What to run, as asked (checked by [`Runner::start`]).
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub dataset: String,
    pub route: String,
    pub prompt: String,
    pub baseline_run: String,
    pub against_route: String,
    pub concurrency: u32,
    pub evaluators_json: String,
    pub parameters_json: String,
    pub limit: u32,
    pub by: String,
    pub judge_route: String,
}

/// What a run reports, in this order: `Started`, one `Item` per item, then `Finished`.
#[derive(Debug)]
pub enum RunEvent {
    Started(RunRecord),
    Item(StoredResult),
    Finished(RunRecord),
}

/// Starts runs and keeps count of those going on.
#[derive(Clone)]
pub struct Runner {
    store: Arc<Mutex<EvalStore>>,
    gateway: Arc<Gateway>,
    active: Arc<Semaphore>,
}

/// A run checked and stored, ready to go.
struct Plan {
    seq: i64,
    run: RunRecord,
    evaluators: Vec<Evaluator>,
    shape: Shape,
    judge_route: String,
    baseline: HashMap<u32, StoredResult>,
    concurrency: usize,
    _permit: OwnedSemaphorePermit,
}

impl Runner {
    pub fn new(store: Arc<Mutex<EvalStore>>, gateway: Arc<Gateway>) -> Self {
        Self { store, gateway, active: Arc::new(Semaphore::new(limits::MAX_ACTIVE_RUNS)) }
    }

    pub fn store(&self) -> &Arc<Mutex<EvalStore>> {
        &self.store
    }

    /// Checks `asked`, stores the run and starts it; its events go to `events` until the run ends or
    /// `events` closes (which cancels it).
    pub async fn start(&self, asked: RunRequest, events: mpsc::Sender<RunEvent>) -> Result<(), EvalError> {
        let permit = self.active.clone().try_acquire_owned().map_err(|_| {
            EvalError::Precondition(format!(
                "{} evaluation runs are going on; wait for one to end",
                limits::MAX_ACTIVE_RUNS
            ))
        })?;
        let runner = self.clone();
        let plan = tokio::task::spawn_blocking(move || runner.plan(asked, permit))
            .await
            .map_err(|e| EvalError::Store(format!("planning task failed: {e}")))??;
        let runner = self.clone();
        tokio::spawn(async move { runner.run(plan, events).await });
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, EvalStore>, EvalError> {
        self.store.lock().map_err(|_| EvalError::Store("evaluation store lock poisoned".into()))
    }

    fn plan(&self, asked: RunRequest, permit: OwnedSemaphorePermit) -> Result<Plan, EvalError> {
        let invalid = |message: String| EvalError::Invalid(message);
        let store = self.lock()?;
        let dataset = store.dataset(&asked.dataset)?.ok_or_else(|| EvalError::NoSuchDataset(asked.dataset.clone()))?;
        let route = if asked.route.is_empty() { dataset.route.clone() } else { asked.route.clone() };
        if route.is_empty() {
            return Err(invalid(format!("dataset `{}` has no route: name one (--route)", dataset.name)));
        }
        self.check_route(&route)?;
        if !asked.against_route.is_empty() {
            self.check_route(&asked.against_route)?;
        }
        let evaluators_json =
            if asked.evaluators_json.trim().is_empty() { &dataset.evaluators_json } else { &asked.evaluators_json };
        let evaluators = super::evaluate::spec::parse(evaluators_json).map_err(|e| invalid(e.to_string()))?;
        if evaluators.is_empty() {
            return Err(invalid(format!(
                "no evaluators: give some (--evaluators) or set the dataset's (`llmopsctl dataset create {} --evaluators FILE --update`)",
                dataset.name
            )));
        }
        let pairwise = evaluators.iter().any(|e| matches!(e.kind, EvaluatorKind::Pairwise { .. }));
        if pairwise && asked.against_route.is_empty() && asked.baseline_run.is_empty() {
            return Err(invalid(
                "a pairwise evaluator compares two answers: give --against ROUTE or --baseline RUN".into(),
            ));
        }
        if !asked.against_route.is_empty() && !asked.baseline_run.is_empty() {
            return Err(invalid("give --against or --baseline, not both".into()));
        }
        let judge_route = self.judge_route(&asked.judge_route, &evaluators)?;
        let prompt = Some(asked.prompt.clone()).filter(|p| !p.is_empty());
        if let Some(prompt) = &prompt {
            let reference = crate::prompts::PromptRef::parse(prompt).map_err(|e| invalid(format!("prompt: {e}")))?;
            self.gateway
                .prompts
                .resolve(&reference, crate::prompts::RefKind::Label(crate::prompts::refs::PRODUCTION.into()))
                .map_err(|e| invalid(format!("prompt: {e}")))?;
        }
        let parameters = parse_parameters(&asked.parameters_json)?;
        let mut baseline = HashMap::new();
        if !asked.baseline_run.is_empty() {
            let base = store.run(&asked.baseline_run)?;
            if base.dataset != dataset.name {
                return Err(EvalError::Precondition(format!(
                    "baseline {} ran dataset `{}`, not `{}`",
                    base.id, base.dataset, dataset.name
                )));
            }
            if base.status == RunStatus::Running {
                return Err(EvalError::Precondition(format!("baseline {} has not finished", base.id)));
            }
            baseline = store.results(&base.id)?.into_iter().map(|r| (r.item_id, r)).collect();
        }
        let items_total = if asked.limit == 0 { dataset.items } else { asked.limit.min(dataset.items) };
        if items_total == 0 {
            return Err(EvalError::Precondition(format!("dataset `{}` has no items", dataset.name)));
        }
        let concurrency = match asked.concurrency {
            0 => limits::DEFAULT_CONCURRENCY,
            n if n > limits::MAX_CONCURRENCY => {
                return Err(invalid(format!("concurrency {n}: at most {} are allowed", limits::MAX_CONCURRENCY)))
            }
            n => n,
        };
        let by = crate::prompts::Author::new(&asked.by, None).map_err(|e| invalid(e.to_string()))?;
        let mut run = RunRecord {
            dataset: dataset.name.clone(),
            route,
            prompt: asked.prompt.clone(),
            baseline_run: asked.baseline_run.clone(),
            against_route: asked.against_route.clone(),
            items_total,
            started_at_unix_ms: crate::clock::unix_ms(),
            evaluators_json: evaluators_json.clone(),
            parameters_json: asked.parameters_json.clone(),
            by: by.as_str().to_string(),
            ..RunRecord::default()
        };
        drop(store);
        self.lock()?.insert_run(&mut run)?;
        let seq = super::store::run_seq(&run.id).unwrap_or_default();
        Ok(Plan {
            seq,
            run,
            evaluators,
            shape: Shape { prompt, parameters },
            judge_route,
            baseline,
            concurrency: concurrency as usize,
            _permit: permit,
        })
    }

    fn check_route(&self, route: &str) -> Result<(), EvalError> {
        if self.gateway.router.resolve(route).is_none_or(<[_]>::is_empty) {
            let served: Vec<&str> = self.gateway.router.names().collect();
            return Err(EvalError::Invalid(format!("no route named {route:?}; routes: {}", served.join(", "))));
        }
        Ok(())
    }

    /// The route judges without a route of their own use: the asked one, else the first route served by the
    /// embedded engine.
    fn judge_route(&self, asked: &str, evaluators: &[Evaluator]) -> Result<String, EvalError> {
        for evaluator in evaluators {
            if let EvaluatorKind::Judge { route, .. } | EvaluatorKind::Pairwise { route, .. } = &evaluator.kind {
                if !route.is_empty() {
                    self.check_route(route)?;
                }
            }
        }
        if !asked.is_empty() {
            self.check_route(asked)?;
            return Ok(asked.to_string());
        }
        let embedded = self
            .gateway
            .router
            .iter()
            .find(|(_, targets)| targets.first().is_some_and(|target| target.engine.kind() == "embedded"));
        Ok(embedded.map(|(name, _)| name.to_string()).unwrap_or_default())
    }

    async fn run(self, mut plan: Plan, events: mpsc::Sender<RunEvent>) {
        let _ = events.send(RunEvent::Started(plan.run.clone())).await;
        let context = Arc::new(ItemContext {
            gateway: self.gateway.clone(),
            run_id: plan.run.id.clone(),
            route: plan.run.route.clone(),
            against_route: plan.run.against_route.clone(),
            evaluators: std::mem::take(&mut plan.evaluators),
            shape: std::mem::take(&mut plan.shape),
            judge_route: plan.judge_route.clone(),
            baseline: std::mem::take(&mut plan.baseline),
        });
        let items = Box::pin(self.item_pages(plan.run.dataset.clone(), plan.run.items_total));
        let mut results = items
            .map(|item| {
                let context = context.clone();
                async move { context.evaluate(item).await }
            })
            .buffer_unordered(plan.concurrency);
        let mut finished: Vec<StoredResult> = Vec::new();
        let mut cancelled = events.is_closed();
        while !cancelled {
            // A client that goes away cancels the run at once: the requests in flight are dropped, as when an
            // HTTP client closes its connection.
            let next = tokio::select! {
                next = results.next() => next,
                () = events.closed() => {
                    cancelled = true;
                    continue;
                }
            };
            let Some((result, judge_tokens)) = next else { break };
            let run = &mut plan.run;
            run.items_done += 1;
            run.items_passed += u32::from(result.passed && result.error.is_empty());
            run.items_errored += u32::from(!result.error.is_empty());
            run.cost_usd += result.cost_usd.unwrap_or(0.0);
            run.judge_input_tokens += judge_tokens.0;
            run.judge_output_tokens += judge_tokens.1;
            self.save(plan.seq, run, &result).await;
            finished.push(result.clone());
            if events.send(RunEvent::Item(result)).await.is_err() {
                cancelled = true;
            }
        }
        drop(results);
        super::verdict::finish(&mut plan.run, &context.evaluators, &context.baseline, &finished, cancelled);
        let store = self.store.clone();
        let (seq, run) = (plan.seq, plan.run.clone());
        let saved = tokio::task::spawn_blocking(move || match store.lock() {
            Ok(store) => store.update_run(seq, &run),
            Err(_) => Err(EvalError::Store("lock poisoned".into())),
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(run = plan.run.id, "could not store an evaluation run's end: {saved:?}");
        }
        let _ = events.send(RunEvent::Finished(plan.run)).await;
    }

    async fn save(&self, seq: i64, run: &RunRecord, result: &StoredResult) {
        let store = self.store.clone();
        let (id, run, result) = (run.id.clone(), run.clone(), result.clone());
        let saved = tokio::task::spawn_blocking(move || {
            let store = store.lock().map_err(|_| EvalError::Store("lock poisoned".into()))?;
            store.save_result(seq, &result)?;
            store.update_run(seq, &run)
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(run = id, "could not store an evaluation result: {saved:?}");
        }
    }

    /// The dataset's first `total` items, read a page at a time.
    fn item_pages(&self, dataset: String, total: u32) -> impl futures::Stream<Item = DatasetItem> {
        let store = self.store.clone();
        futures::stream::unfold(0u32, move |offset| {
            let (store, dataset) = (store.clone(), dataset.clone());
            async move {
                if offset >= total {
                    return None;
                }
                let limit = PAGE.min(total - offset);
                let page = tokio::task::spawn_blocking(move || {
                    store.lock().map_err(|_| EvalError::Store("lock poisoned".into()))?.items(&dataset, offset, limit)
                })
                .await;
                match page {
                    Ok(Ok(items)) if !items.is_empty() => Some((futures::stream::iter(items), offset + limit)),
                    _ => None,
                }
            }
        })
        .flatten()
    }
}

fn parse_parameters(json: &str) -> Result<Map<String, Value>, EvalError> {
    if json.trim().is_empty() {
        return Ok(Map::new());
    }
    if json.len() > limits::MAX_PARAMETERS_BYTES {
        return Err(EvalError::Invalid(format!("parameters: at most {} bytes", limits::MAX_PARAMETERS_BYTES)));
    }
    let parameters: Map<String, Value> =
        serde_json::from_str(json).map_err(|e| EvalError::Invalid(format!("parameters must be a JSON object: {e}")))?;
    if let Some(key) =
        ["model", "messages", "stream", "stream_options", "metadata"].iter().find(|k| parameters.contains_key(**k))
    {
        return Err(EvalError::Invalid(format!("parameters.{key} is set by the run")));
    }
    Ok(parameters)
}
