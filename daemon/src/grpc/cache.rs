//! `CacheService`: the response cache's numbers per route, and clearing it.
use crate::cache::ResponseCache;
use llmops_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Route names are config keys; a longer one cannot name a route.
const MAX_ROUTE_BYTES: usize = 256;

pub struct CacheApi {
    pub cache: Arc<ResponseCache>,
}

#[tonic::async_trait]
impl pb::cache_service_server::CacheService for CacheApi {
    async fn get_cache_stats(
        &self,
        _request: Request<pb::GetCacheStatsRequest>,
    ) -> Result<Response<pb::GetCacheStatsResponse>, Status> {
        let routes = self
            .cache
            .stats()
            .into_iter()
            .map(|s| {
                let lookups = s.hits + s.misses;
                pb::RouteCacheStats {
                    persisted: self.cache.is_persisted(&s.route),
                    ttl_s: self.cache.config(&s.route).map_or(0, |c| c.ttl_s),
                    hit_ratio: (lookups > 0).then(|| s.hits as f64 / lookups as f64),
                    route: s.route,
                    entries: s.entries as u64,
                    bytes: s.bytes,
                    max_entries: s.max_entries as u64,
                    max_bytes: s.max_bytes,
                    hits: s.hits,
                    misses: s.misses,
                    bypasses: s.bypasses,
                    stores: s.stores,
                    evictions: s.evictions,
                    expirations: s.expirations,
                    saved_input_tokens: s.saved_input_tokens,
                    saved_output_tokens: s.saved_output_tokens,
                    saved_usd: s.saved_usd,
                }
            })
            .collect();
        Ok(Response::new(pb::GetCacheStatsResponse { routes }))
    }

    async fn clear_cache(
        &self,
        request: Request<pb::ClearCacheRequest>,
    ) -> Result<Response<pb::ClearCacheResponse>, Status> {
        let route = request.into_inner().route;
        if route.len() > MAX_ROUTE_BYTES {
            return Err(Status::invalid_argument(format!("route is longer than {MAX_ROUTE_BYTES} bytes")));
        }
        if !route.is_empty() && self.cache.config(&route).is_none() {
            let cached: Vec<String> = self.cache.stats().into_iter().map(|s| s.route).collect();
            let shown: String = route.chars().take(64).collect();
            return Err(Status::not_found(format!(
                "route {shown:?} has no response cache (cached routes: {})",
                if cached.is_empty() { "none".to_string() } else { cached.join(", ") }
            )));
        }
        let cleared = self.cache.clear(Some(route.as_str()).filter(|r| !r.is_empty()));
        Ok(Response::new(pb::ClearCacheResponse {
            entries_removed: cleared.entries as u64,
            bytes_removed: cleared.bytes,
        }))
    }
}
