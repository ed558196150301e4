//! Each panel's data: list, then watch for changes, until the watch ends (re-list) or the link breaks.
use std::time::Duration;

use llmops_proto::v1 as pb;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use tonic::Code;

use super::{classify, Ending, HostFeed};
use crate::connect::{AuthChannel, Daemon};
use crate::query;
use crate::top::host::HostUpdate;

/// Traces listed at connect; older ones are left to `llmopsctl traces`.
const INITIAL_TRACES: usize = 1000;
/// Traces per ListTraces page: bodies make pages large.
const TRACES_PAGE: u32 = 100;
/// Alerts listed at connect, across states.
const INITIAL_ALERTS: u32 = 500;
/// Prompt and response characters kept per tail trace (the detail view fetches the whole trace).
const TAIL_BODY_CHARS: usize = 256;
const POLL_EVERY: Duration = Duration::from_secs(2);

pub(super) async fn traces(feed: &HostFeed, daemon: &Daemon) -> Ending {
    let mut wanted = feed.tail_wanted.clone();
    if wanted.wait_for(|on| *on).await.is_err() {
        // The main loop is gone.
        return std::future::pending().await;
    }
    let mut client = daemon.traces();
    // Watch first, then list: a trace finishing in between is not lost (the host drops the repeats).
    let mut events =
        match client.watch_traces(pb::WatchTracesRequest { include_bodies: true, include_recent: true }).await {
            Ok(response) => response.into_inner(),
            Err(status) => return classify(&status, "traces"),
        };
    match list_slim_traces(&mut client).await {
        Ok(listed) => feed.send(HostUpdate::Traces(listed)).await,
        Err(status) => return classify(&status, "traces"),
    };
    loop {
        let message = tokio::select! {
            message = events.message() => message,
            changed = wanted.changed() => {
                if changed.is_err() || !*wanted.borrow() {
                    return Ending::Again;
                }
                continue;
            }
        };
        match message {
            // The daemon drops a viewer that fell behind after this event: list and watch again.
            Ok(Some(event)) if event.missed > 0 => {
                feed.send(HostUpdate::TracesMissed(event.missed)).await;
                return Ending::Again;
            }
            Ok(Some(mut event)) => {
                if let Some(trace) = &mut event.trace {
                    slim_trace(trace);
                }
                feed.send(HostUpdate::TraceEvent(event)).await;
            }
            Ok(None) => return Ending::Again,
            // How a daemon from before `TraceEvent.missed` says the same.
            Err(status) if status.code() == Code::ResourceExhausted => {
                feed.send(HostUpdate::TracesMissed(missed_count(status.message()))).await;
                return Ending::Again;
            }
            Err(status) => return classify(&status, "traces"),
        }
    }
}

/// The newest traces, page by page, each page slimmed as it arrives so large prompts never pile up.
async fn list_slim_traces(client: &mut TraceServiceClient<AuthChannel>) -> Result<Vec<pb::Trace>, tonic::Status> {
    let mut traces = Vec::new();
    let mut page_token = String::new();
    while traces.len() < INITIAL_TRACES {
        let request = pb::ListTracesRequest {
            include_bodies: true,
            limit: TRACES_PAGE,
            page_token: std::mem::take(&mut page_token),
            ..pb::ListTracesRequest::default()
        };
        let page = client.list_traces(request).await?.into_inner();
        if page.traces.is_empty() {
            break;
        }
        traces.extend(page.traces.into_iter().map(|mut trace| {
            slim_trace(&mut trace);
            trace
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    traces.truncate(INITIAL_TRACES);
    Ok(traces)
}

pub(super) async fn telemetry(feed: &HostFeed, daemon: &Daemon) -> Ending {
    let mut client = daemon.telemetry();
    match client.get_telemetry(pb::GetTelemetryRequest {}).await {
        Ok(sample) => feed.send(HostUpdate::Telemetry(sample.into_inner())).await,
        Err(status) => return classify(&status, "telemetry"),
    };
    let updates = match client.watch_telemetry(pb::WatchTelemetryRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return classify(&status, "telemetry"),
    };
    follow(feed, "telemetry", updates, |u| u.missed, HostUpdate::TelemetryDelta).await
}

pub(super) async fn budgets(feed: &HostFeed, daemon: &Daemon) -> Ending {
    let mut client = daemon.budgets();
    match client.list_budgets(pb::ListBudgetsRequest {}).await {
        Ok(list) => feed.send(HostUpdate::Budgets(list.into_inner().budgets)).await,
        Err(status) => return classify(&status, "budgets"),
    };
    let updates = match client.watch_budgets(pb::WatchBudgetsRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return classify(&status, "budgets"),
    };
    follow(feed, "budgets", updates, |u| u.missed, |u| HostUpdate::BudgetsChanged(u.budgets)).await
}

pub(super) async fn alerts(feed: &HostFeed, daemon: &Daemon) -> Ending {
    let mut client = daemon.alerts();
    let states = ["firing", "acknowledged", "resolved"];
    match query::list_alerts(&mut client, &states, INITIAL_ALERTS).await {
        Ok(list) => feed.send(HostUpdate::Alerts(list)).await,
        Err(status) => return classify(&status, "alerts"),
    };
    let events = match client.watch_alerts(pb::WatchAlertsRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return classify(&status, "alerts"),
    };
    follow(feed, "alerts", events, |e| e.missed, HostUpdate::AlertEvent).await
}

/// Passes a watch's messages on until it ends; a message saying this viewer missed some (the daemon ends
/// the watch after it) or the end of the stream means list and watch again.
async fn follow<T>(
    feed: &HostFeed,
    panel: &'static str,
    mut stream: tonic::Streaming<T>,
    missed: fn(&T) -> u64,
    update: impl Fn(T) -> HostUpdate,
) -> Ending {
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let fell_behind = missed(&message) > 0;
                feed.send(update(message)).await;
                if fell_behind {
                    return Ending::Again;
                }
            }
            Ok(None) => return Ending::Again,
            Err(status) => return classify(&status, panel),
        }
    }
}

pub(super) async fn poll_status(feed: &HostFeed, daemon: &Daemon) -> Ending {
    match daemon.status().get_status(pb::GetStatusRequest {}).await {
        Ok(status) => feed.send(HostUpdate::Status(status.into_inner())).await,
        Err(status) => return classify(&status, "status"),
    };
    tokio::time::sleep(POLL_EVERY).await;
    Ending::Again
}

pub(super) async fn poll_metrics(feed: &HostFeed, daemon: &Daemon) -> Ending {
    match daemon.telemetry().get_request_metrics(pb::GetRequestMetricsRequest {}).await {
        Ok(metrics) => feed.send(HostUpdate::Metrics(metrics.into_inner())).await,
        Err(status) => return classify(&status, "request metrics"),
    };
    tokio::time::sleep(POLL_EVERY).await;
    Ending::Again
}

/// Keeps a tail trace small: the start of its prompt and response, no request or chunk timing.
pub fn slim_trace(trace: &mut pb::Trace) {
    for text in [&mut trace.prompt_text, &mut trace.response_text] {
        if let Some((cut, _)) = text.char_indices().nth(TAIL_BODY_CHARS) {
            text.truncate(cut);
            text.shrink_to_fit();
        }
    }
    trace.request_json = String::new();
    trace.chunk_offsets_ms = Vec::new();
    trace.chunk_chars = Vec::new();
}

/// The first number in an older daemon's "missed N events" status message (1 when it gives none).
fn missed_count(message: &str) -> u64 {
    message
        .split(|c: char| !c.is_ascii_digit())
        .find(|word| !word.is_empty())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_traces_keep_only_the_start_of_their_bodies() {
        let mut trace = pb::Trace {
            prompt_text: "é".repeat(300),
            response_text: "short".into(),
            request_json: "{}".into(),
            chunk_offsets_ms: vec![1.0],
            chunk_chars: vec![5],
            ..pb::Trace::default()
        };
        slim_trace(&mut trace);
        assert_eq!(trace.prompt_text.chars().count(), TAIL_BODY_CHARS);
        assert_eq!(trace.response_text, "short");
        assert!(trace.request_json.is_empty() && trace.chunk_offsets_ms.is_empty() && trace.chunk_chars.is_empty());
    }

    #[test]
    fn missed_count_reads_the_first_number() {
        assert_eq!(missed_count("viewer too slow: missed 42 events"), 42);
        assert_eq!(missed_count("too slow"), 1);
    }
}
