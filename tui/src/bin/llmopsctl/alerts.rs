//! `llmopsctl alerts [--state S] [--limit N]`, `alerts --watch`, `alerts ack ID` and `alert ID`.
use std::io::Write;

use chrono::Local;
use llmops_proto::v1::{AckAlertRequest, Alert, WatchAlertsRequest};
use llmops_tui::connect::Daemon;
use llmops_tui::query::{self, AlertLookup};
use llmops_tui::{json, report};
use tonic::Code;

use super::cli::{AlertStateFilter, AlertsArgs, AlertsCommand};
use super::output;
use super::Failure;

/// How many alerts `alert ID` and `alerts ack ID` look through for an id given in part: active ones come
/// first, so this only limits how far back resolved ones are found.
const LOOKUP_LIMIT: u32 = 1000;

/// Who acknowledges when `--by` is not given.
const DEFAULT_BY: &str = "llmopsctl";

pub async fn alerts(
    daemon: &Daemon,
    args: &AlertsArgs,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    if let Some(AlertsCommand::Ack { id, by }) = &args.command {
        return ack(daemon, id, by.as_deref(), as_json, out, rpc_failure).await;
    }
    if args.watch {
        return watch(daemon, as_json, out, rpc_failure).await;
    }
    let states = AlertStateFilter::states(args.state);
    let alerts = query::list_alerts(&mut daemon.alerts(), states, args.limit).await.map_err(rpc_failure)?;
    Ok(output::show(out, as_json, || json::alerts_to_json(&alerts), || report::render_alerts(&alerts, &Local::now()))?)
}

/// `llmopsctl alert ID`: there is no GetAlert, so the alert is found in a list.
pub async fn show(
    daemon: &Daemon,
    id: &str,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let alert = find(daemon, id, &rpc_failure).await?;
    Ok(output::show(out, as_json, || json::alert_to_json(&alert), || report::render_alert(&alert, &Local))?)
}

async fn ack(
    daemon: &Daemon,
    id: &str,
    by: Option<&str>,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let by = by.map_or_else(default_by, str::to_owned);
    // AckAlert wants the whole id; the tables show only its end.
    let full_id = match find(daemon, id, &rpc_failure).await {
        Ok(alert) => alert.id,
        // Older than the alerts looked through: llmopsd may still know it (and say whether it is resolved).
        Err(Failure::NoSuchAlert(_)) => id.trim().to_owned(),
        Err(failure) => return Err(failure),
    };
    let request = AckAlertRequest { id: full_id.clone(), by: by.clone() };
    let alert = match daemon.alerts().ack_alert(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::NotFound => return Err(Failure::NoSuchAlert(id.to_owned())),
        Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::InvalidArgument) => {
            return Err(Failure::Refused(format!("cannot acknowledge alert {full_id}: {}", status.message())));
        }
        Err(status) => return Err(rpc_failure(status)),
    };
    Ok(output::show(out, as_json, || json::alert_to_json(&alert), || report::render_acknowledged(&alert, &by, &Local))?)
}

async fn watch(
    daemon: &Daemon,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let response = daemon.alerts().watch_alerts(WatchAlertsRequest {}).await;
    let mut events = response.map_err(rpc_failure)?.into_inner();
    let to_lines = |event: &_| report::alert_watch_line(event, &Local::now()).into_iter().collect();
    output::watch(out, as_json, &mut events, &report::alert_watch_header(), to_lines).await
}

/// The one alert among the newest `LOOKUP_LIMIT` (any state) whose id is, starts with or ends with `id`.
async fn find(daemon: &Daemon, id: &str, rpc_failure: impl Fn(tonic::Status) -> Failure) -> Result<Alert, Failure> {
    let alerts = query::list_alerts(&mut daemon.alerts(), &[""], LOOKUP_LIMIT).await.map_err(rpc_failure)?;
    query::find_alert(alerts, id).map_err(|lookup| match lookup {
        AlertLookup::NotFound => Failure::NoSuchAlert(id.to_owned()),
        AlertLookup::Ambiguous(ids) => Failure::AmbiguousAlert { id: id.to_owned(), matches: ids },
    })
}

/// `$USER`, else "llmopsctl".
fn default_by() -> String {
    std::env::var("USER").ok().filter(|user| !user.trim().is_empty()).unwrap_or_else(|| DEFAULT_BY.to_owned())
}
