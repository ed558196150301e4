//! `llmopsctl cache stats | clear [--route R]`.
use std::io::Write;

use llmops_proto::v1::{ClearCacheRequest, GetCacheStatsRequest, RouteCacheStats};
use llmops_tui::connect::Daemon;
use llmops_tui::report;
use serde_json::{json, Value};
use tonic::Code;

use super::cli::CacheCommand;
use super::output::show;
use super::Failure;

pub async fn cache(
    daemon: &Daemon,
    command: &CacheCommand,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    match command {
        CacheCommand::Stats => {
            let stats = daemon.cache().get_cache_stats(GetCacheStatsRequest {}).await;
            let stats = stats.map_err(rpc_failure)?.into_inner();
            let to_json = || json!({"routes": stats.routes.iter().map(route_json).collect::<Vec<_>>()});
            show(out, as_json, to_json, || report::render_cache_stats(&stats))?;
        }
        CacheCommand::Clear { route } => {
            let request = ClearCacheRequest { route: route.clone().unwrap_or_default() };
            let cleared = match daemon.cache().clear_cache(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                    return Err(Failure::Refused(format!("cannot clear the cache: {}", status.message())));
                }
                Err(status) => return Err(rpc_failure(status)),
            };
            let to_json =
                || json!({"entries_removed": cleared.entries_removed, "bytes_removed": cleared.bytes_removed});
            show(out, as_json, to_json, || report::render_cache_cleared(&cleared, route.as_deref()))?;
        }
    }
    Ok(())
}

fn route_json(route: &RouteCacheStats) -> Value {
    json!({
        "route": route.route,
        "entries": route.entries,
        "max_entries": route.max_entries,
        "bytes": route.bytes,
        "max_bytes": route.max_bytes,
        "ttl_s": route.ttl_s,
        "hits": route.hits,
        "misses": route.misses,
        "bypasses": route.bypasses,
        "stores": route.stores,
        "evictions": route.evictions,
        "expirations": route.expirations,
        "hit_ratio": route.hit_ratio,
        "saved_input_tokens": route.saved_input_tokens,
        "saved_output_tokens": route.saved_output_tokens,
        "saved_usd": route.saved_usd,
        "persisted": route.persisted,
    })
}
