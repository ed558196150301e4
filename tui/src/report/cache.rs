//! `llmopsctl cache stats`: one row per cached route.
use llmops_proto::v1::{ClearCacheResponse, GetCacheStatsResponse};

use super::format_bytes;
use crate::table::{Column, Table};
use crate::text::UNSET;

/// Said instead of an empty table.
pub const NO_CACHED_ROUTES: &str =
    "no route has a response cache (add `cache = { ttl_s = 300, max_entries = 10000 }` to a [routes.NAME])\n";

pub fn render_cache_stats(stats: &GetCacheStatsResponse) -> String {
    if stats.routes.is_empty() {
        return NO_CACHED_ROUTES.to_owned();
    }
    let mut table = Table::new(&[
        Column::left("ROUTE"),
        Column::right("ENTRIES"),
        Column::right("BYTES"),
        Column::right("TTL s"),
        Column::right("HITS"),
        Column::right("MISSES"),
        Column::right("BYPASS"),
        Column::right("HIT%"),
        Column::right("EVICTED"),
        Column::right("SAVED TOK"),
        Column::right("SAVED $"),
        Column::left("PERSIST"),
    ]);
    for route in &stats.routes {
        let bound = |value: u64, max: u64| if max > 0 { format!("{value}/{max}") } else { value.to_string() };
        table.push(vec![
            route.route.clone(),
            bound(route.entries, route.max_entries),
            format!("{}/{}", format_bytes(route.bytes), format_bytes(route.max_bytes)),
            route.ttl_s.to_string(),
            route.hits.to_string(),
            route.misses.to_string(),
            route.bypasses.to_string(),
            route.hit_ratio.map_or_else(|| UNSET.to_owned(), |ratio| format!("{:.1}", ratio * 100.0)),
            route.evictions.to_string(),
            (route.saved_input_tokens + route.saved_output_tokens).to_string(),
            format!("{:.4}", route.saved_usd),
            if route.persisted { "state.db" } else { "memory" }.to_owned(),
        ]);
    }
    table.render()
}

pub fn render_cache_cleared(cleared: &ClearCacheResponse, route: Option<&str>) -> String {
    let scope = route.map_or_else(|| "every route".to_owned(), |route| format!("route {route}"));
    format!("cleared {} entries ({}) from {scope}\n", cleared.entries_removed, format_bytes(cleared.bytes_removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmops_proto::v1::RouteCacheStats;

    #[test]
    fn one_row_per_route_with_ratio_and_savings() {
        let stats = GetCacheStatsResponse {
            routes: vec![RouteCacheStats {
                route: "chat".into(),
                entries: 3,
                max_entries: 100,
                bytes: 2048,
                max_bytes: 1 << 20,
                ttl_s: 300,
                hits: 3,
                misses: 1,
                bypasses: 2,
                hit_ratio: Some(0.75),
                saved_input_tokens: 30,
                saved_output_tokens: 12,
                saved_usd: 0.0125,
                ..RouteCacheStats::default()
            }],
        };
        let text = render_cache_stats(&stats);
        assert!(text.starts_with("ROUTE"), "{text}");
        let row = text.lines().nth(1).expect("a row");
        for cell in ["chat", "3/100", "300", "75.0", "42", "0.0125", "memory"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        let empty = render_cache_stats(&GetCacheStatsResponse::default());
        assert_eq!(empty, NO_CACHED_ROUTES);
        let no_lookups = GetCacheStatsResponse { routes: vec![RouteCacheStats::default()] };
        assert!(render_cache_stats(&no_lookups).lines().nth(1).is_some_and(|row| row.contains(UNSET)));
    }
}
