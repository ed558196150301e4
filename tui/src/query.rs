//! Calls that take more than one RPC.
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use llmops_proto::v1::{ListTracesRequest, Trace};

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
}
