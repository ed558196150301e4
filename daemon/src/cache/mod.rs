//! The gateway's exact-match response cache, per route (`[routes.NAME] cache = { ... }`): `key` says when two
//! requests ask the same thing, `store` keeps answers in memory within each route's entry and byte bounds
//! until their TTL, `persist` optionally keeps them in `state.db` across restarts. The gateway decides per
//! request (deterministic only by default; `x-llmops-cache` directives) and plays hits back.
pub mod config;
pub mod key;
pub mod persist;
pub mod store;

pub use config::{CacheConfig, StreamTiming};
pub use key::Key;
pub use store::{CachedBody, Entry, Outcome};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct ResponseCache {
    /// Entries in memory; for `persist` routes it also writes them through to state.db.
    store: store::CacheStore,
    /// Routes with a cache, and how.
    configs: HashMap<String, CacheConfig>,
}

impl ResponseCache {
    /// No route caches.
    pub fn disabled() -> Self {
        Self { store: store::CacheStore::new(system_clock()), configs: HashMap::new() }
    }

    /// Caches for `configs` (route → config). With `state` (the state database, opened), routes with
    /// `persist = true` are loaded from it and written through to it.
    pub fn new(
        configs: BTreeMap<String, CacheConfig>,
        state: Option<rusqlite::Connection>,
        clock: store::Clock,
    ) -> Result<Self, rusqlite::Error> {
        let store = store::CacheStore::new(clock.clone());
        for (route, config) in &configs {
            store.configure(route, config.limits());
        }
        let persisted: Vec<&str> = configs.iter().filter(|(_, c)| c.persist).map(|(r, _)| r.as_str()).collect();
        if let Some(conn) = state.filter(|_| !persisted.is_empty()) {
            // Loaded before the writer takes the connection; restored after it is attached, so entries that no
            // longer fit have their rows deleted.
            let rows = persist::load(&conn, clock(), &persisted)?;
            let _ = store.attach_persister(persist::Persister::start(conn)?);
            let restored = store.restore(rows);
            tracing::info!(entries = restored, "response cache loaded from state.db");
        }
        Ok(Self { store, configs: configs.into_iter().collect() })
    }

    pub fn config(&self, route: &str) -> Option<&CacheConfig> {
        self.configs.get(route)
    }

    pub fn now_ms(&self) -> i64 {
        self.store.now_ms()
    }

    pub fn get(&self, route: &str, key: &Key) -> Option<Arc<Entry>> {
        self.store.get(route, key)
    }

    /// Keeps an answer; false when it was not kept (too large for the route's bounds).
    pub fn put(&self, route: &str, key: Key, entry: Entry) -> bool {
        let stored = self.store.put(route, key, entry);
        self.store.note(route, if stored { Outcome::Stored } else { Outcome::NotStored });
        stored
    }

    /// The original request's final cost, known once its trace settles.
    pub fn set_cost(&self, route: &str, key: &Key, created_ms: i64, cost_usd: f64) {
        self.store.set_cost(route, key, created_ms, cost_usd);
    }

    pub fn note(&self, route: &str, outcome: Outcome) {
        self.store.note(route, outcome);
    }

    pub fn clear(&self, route: Option<&str>) -> store::Cleared {
        self.store.clear(route)
    }

    pub fn stats(&self) -> Vec<store::RouteStats> {
        self.store.stats()
    }

    pub fn is_persisted(&self, route: &str) -> bool {
        self.store.persister().is_some() && self.configs.get(route).is_some_and(|c| c.persist)
    }

    /// Waits until the writes queued for state.db are done (at shutdown).
    pub fn flush(&self) {
        if let Some(persister) = self.store.persister() {
            persister.flush();
        }
    }

    /// Drops expired entries (a periodic sweep: an entry nobody asks for again does not hold memory).
    pub fn purge_expired(&self) -> usize {
        self.store.purge_expired()
    }

    /// Prometheus text: per route entries, bytes, lookups by result and what hits saved.
    pub fn render(&self, text: &mut String) {
        use crate::export::prometheus::{MetricKind, MetricWriter};
        let stats = self.stats();
        if stats.is_empty() {
            return;
        }
        let mut w = MetricWriter::new();
        w.family("llmops_cache_entries", "Answers in the response cache.", MetricKind::Gauge);
        w.family("llmops_cache_bytes", "Bytes held by the response cache.", MetricKind::Gauge);
        w.family("llmops_cache_lookups_total", "Requests on cached routes by result.", MetricKind::Counter);
        w.family("llmops_cache_evictions_total", "Entries evicted to stay within bounds.", MetricKind::Counter);
        w.family("llmops_cache_saved_tokens_total", "Tokens hits did not need an engine for.", MetricKind::Counter);
        w.family("llmops_cache_saved_usd_total", "What cache hits would have cost.", MetricKind::Counter);
        for s in &stats {
            let route = ("route", s.route.as_str());
            w.sample("llmops_cache_entries", &[route], s.entries as f64);
            w.sample("llmops_cache_bytes", &[route], s.bytes as f64);
            for (result, count) in [("hit", s.hits), ("miss", s.misses), ("bypass", s.bypasses)] {
                w.sample("llmops_cache_lookups_total", &[route, ("result", result)], count as f64);
            }
            w.sample("llmops_cache_evictions_total", &[route], s.evictions as f64);
            for (kind, count) in [("input", s.saved_input_tokens), ("output", s.saved_output_tokens)] {
                w.sample("llmops_cache_saved_tokens_total", &[route, ("type", kind)], count as f64);
            }
            w.sample("llmops_cache_saved_usd_total", &[route], s.saved_usd);
        }
        if let Some(persister) = self.store.persister() {
            let name = "llmops_cache_persist_dropped_total";
            w.family(name, "Cache writes to state.db dropped because its queue was full.", MetricKind::Counter);
            w.sample(name, &[], persister.dropped() as f64);
        }
        text.push_str(&w.finish());
    }
}

/// Wall-clock unix milliseconds: what entries' TTLs are measured in.
pub fn system_clock() -> store::Clock {
    Arc::new(crate::clock::unix_ms)
}
