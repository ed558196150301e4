//! Evaluation runs for the evals view: `ListEvalRuns` when the view opens and every `POLL_EVERY` while it stays
//! open (nothing while it is closed), and `GetEvalRun` for the run opened in it.
use std::time::Duration;

use llmops_proto::v1 as pb;
use tonic::Code;

use super::{classify, Ending, HostFeed};
use crate::connect::Daemon;
use crate::top::app::evals::{MAX_ITEMS, MAX_RUNS};
use crate::top::host::HostUpdate;

/// Runs change while one is running (items done, then the verdict): as often as the status poll.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// One listing while the evals view is open, then a wait for the next poll (or for the view to close, so the next
/// opening lists at once).
pub(super) async fn poll_runs(feed: &HostFeed, daemon: &Daemon) -> Ending {
    let mut wanted = feed.evals_wanted.clone();
    if wanted.wait_for(|on| *on).await.is_err() {
        // The main loop is gone.
        return std::future::pending().await;
    }
    let limit = u32::try_from(MAX_RUNS).unwrap_or(u32::MAX);
    let request = pb::ListEvalRunsRequest { dataset: String::new(), limit };
    let result = match daemon.evals().list_eval_runs(request).await {
        Ok(list) => Ok(list.into_inner().runs),
        // An older daemon or a refused token: the view says so, and this connection stops asking.
        Err(status) => match classify(&status, "evals") {
            refused @ Ending::Refused(_) => return refused,
            // Anything else is shown in the view and asked again at the next poll; a lost link is noticed by the
            // other panels, which reconnect.
            _ => Err(explain(&status)),
        },
    };
    feed.send(HostUpdate::EvalRuns(result)).await;
    tokio::select! {
        () = tokio::time::sleep(POLL_EVERY) => {}
        _ = wanted.wait_for(|on| !*on) => {}
    }
    Ending::Again
}

/// A run and the first page of its item results.
pub(super) async fn fetch_run(daemon: &Daemon, id: &str) -> Result<pb::EvalRunDetail, String> {
    let request = pb::GetEvalRunRequest { id: id.to_owned(), item_offset: 0, item_limit: MAX_ITEMS };
    match daemon.evals().get_eval_run(request).await {
        Ok(detail) => Ok(detail.into_inner()),
        Err(status) if status.code() == Code::NotFound => Err(format!("no eval run {id}")),
        Err(status) => Err(explain(&status)),
    }
}

/// Adds one recorded trace to `dataset`, making the dataset when it does not exist. A trace that cannot be an
/// item (already in the dataset, not a chat completion, no request body kept) is answered as skipped, with why.
pub(super) async fn add_trace(
    daemon: &Daemon,
    dataset: &str,
    trace_id: &str,
) -> Result<pb::AddDatasetItemsResponse, String> {
    let request = pb::AddDatasetItemsRequest {
        dataset: dataset.to_owned(),
        trace_ids: vec![trace_id.to_owned()],
        create: true,
        ..pb::AddDatasetItemsRequest::default()
    };
    match daemon.evals().add_dataset_items(request).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(explain(&status)),
    }
}

fn explain(status: &tonic::Status) -> String {
    match status.code() {
        Code::Unimplemented => "this llmopsd does not serve evaluations (older than llmops-top?)".to_owned(),
        _ if status.message().is_empty() => format!("{:?}", status.code()),
        _ => status.message().to_owned(),
    }
}
