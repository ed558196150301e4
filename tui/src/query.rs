//! Calls that take more than one RPC, and finding one alert among many.
use llmops_proto::v1::alert_service_client::AlertServiceClient;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use llmops_proto::v1::{Alert, ListTracesRequest, Trace};

use crate::connect::AuthChannel;

/// Largest page asked for; the API caps pages at 1000.
const PAGE_MAX: usize = 1000;
/// Pages with bodies are kept smaller so one response stays a reasonable size.
const PAGE_MAX_WITH_BODIES: usize = 100;

/// Up to `limit` traces matching `filter`, newest first, following `next_page_token` across pages.
pub async fn list_traces(
    client: &mut TraceServiceClient<AuthChannel>,
    filter: &ListTracesRequest,
    limit: usize,
) -> Result<Vec<Trace>, tonic::Status> {
    let page_max = if filter.include_bodies { PAGE_MAX_WITH_BODIES } else { PAGE_MAX };
    let mut traces: Vec<Trace> = Vec::new();
    let mut page_token = String::new();
    while traces.len() < limit {
        let page_size = page_size(limit - traces.len(), page_max);
        let request =
            ListTracesRequest { limit: page_size, page_token: std::mem::take(&mut page_token), ..filter.clone() };
        let page = client.list_traces(request).await?.into_inner();
        // An empty page that still has a token would otherwise loop forever.
        if page.traces.is_empty() {
            break;
        }
        traces.extend(page.traces);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    traces.truncate(limit);
    Ok(traces)
}

/// Up to `limit` alerts in any of `states` ("" for all), in the order asked: each state is one ListAlerts call
/// (llmopsd filters and limits; newest first within it), so a crowd of alerts in a later state cannot push out
/// an earlier one. An alert that changed state between the calls is listed once.
pub async fn list_alerts(
    client: &mut AlertServiceClient<AuthChannel>,
    states: &[&str],
    limit: u32,
) -> Result<Vec<Alert>, tonic::Status> {
    let mut alerts: Vec<Alert> = Vec::new();
    for state in states {
        let remaining = limit.saturating_sub(u32::try_from(alerts.len()).unwrap_or(u32::MAX));
        if remaining == 0 {
            break;
        }
        let request = crate::alert_enums::list_request(state, remaining);
        let listed = client.list_alerts(request).await?.into_inner().alerts;
        for alert in listed {
            if !alerts.iter().any(|seen| seen.id == alert.id) {
                alerts.push(alert);
            }
        }
    }
    alerts.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(alerts)
}

/// Why [`find_alert`] found no single alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertLookup {
    NotFound,
    /// The ids of every alert the text matches.
    Ambiguous(Vec<String>),
}

/// The alert whose id is `text`, else the one alert whose id starts or ends with it (the tables show the end:
/// a UUIDv7 starts with a timestamp that alerts raised together share).
pub fn find_alert(alerts: Vec<Alert>, text: &str) -> Result<Alert, AlertLookup> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AlertLookup::NotFound);
    }
    let mut matches: Vec<Alert> = Vec::new();
    for alert in alerts {
        if alert.id == text {
            return Ok(alert);
        }
        if alert.id.starts_with(text) || alert.id.ends_with(text) {
            matches.push(alert);
        }
    }
    match matches.len() {
        0 => Err(AlertLookup::NotFound),
        1 => matches.pop().ok_or(AlertLookup::NotFound),
        _ => Err(AlertLookup::Ambiguous(matches.into_iter().map(|alert| alert.id).collect())),
    }
}

fn page_size(remaining: usize, page_max: usize) -> u32 {
    // page_max fits in u32, so the fallback is never used.
    u32::try_from(remaining.min(page_max)).unwrap_or(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_ask_only_for_what_is_still_missing() {
        assert_eq!(page_size(20, PAGE_MAX), 20);
        assert_eq!(page_size(5000, PAGE_MAX), 1000);
        assert_eq!(page_size(5000, PAGE_MAX_WITH_BODIES), 100);
    }

    #[test]
    fn alerts_are_found_by_id_or_a_unique_start_or_end() {
        let alert = |id: &str| Alert { id: id.to_owned(), ..Alert::default() };
        let alerts = || {
            vec![
                alert("0190b5a8-7c1e-7d3a-9f00-0000deadbeef"),
                alert("0190b5a8-7c1e-7d3a-9f00-0000c0ffee00"),
                alert("0190b5a8"),
            ]
        };
        let found = |text: &str| find_alert(alerts(), text).map(|alert| alert.id);
        assert_eq!(found("0190b5a8"), Ok("0190b5a8".to_owned()), "an exact id wins over prefixes");
        assert_eq!(found("deadbeef"), Ok("0190b5a8-7c1e-7d3a-9f00-0000deadbeef".to_owned()));
        assert_eq!(found(" c0ffee00 "), Ok("0190b5a8-7c1e-7d3a-9f00-0000c0ffee00".to_owned()));
        assert_eq!(
            found("0190b5a8-7c1e"),
            Err(AlertLookup::Ambiguous(vec![
                "0190b5a8-7c1e-7d3a-9f00-0000deadbeef".to_owned(),
                "0190b5a8-7c1e-7d3a-9f00-0000c0ffee00".to_owned(),
            ]))
        );
        assert_eq!(found("nope"), Err(AlertLookup::NotFound));
        assert_eq!(found(""), Err(AlertLookup::NotFound));
    }
}
