//! The response cache's memory: one table per configured route, each bounded by entries and bytes (the least
//! recently used goes first) and by time (an entry is never served at or after its `expires_ms`). The clock is
//! injected so expiry is exact and testable without sleeping.
//!
//! Recency is a `HashMap<Key, Slot>` plus a `BTreeMap<seq, Key>` (hand-written: two std maps are all an LRU
//! needs here, and every operation on the request path is O(log n)). Routes with `persist` are written through
//! to an attached [`Persister`], which never makes a request wait on disk.
pub use super::config::Limits;
use super::key::Key;
use super::persist::Persister;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

/// Unix milliseconds; injected so tests decide what "now" is.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// What an entry costs beyond its payload (the `Entry`, its `Arc`, its map slot and recency node). An estimate
/// that keeps a flood of tiny entries inside `max_bytes` too.
const ENTRY_OVERHEAD: u64 = std::mem::size_of::<Entry>() as u64 + 160;
/// Each stored stream event's `String` header (its offset is counted with the offsets).
const EVENT_OVERHEAD: u64 = std::mem::size_of::<String>() as u64;

#[derive(Debug, Clone, PartialEq)]
pub enum CachedBody {
    /// A non-streamed response body as the engine sent it.
    Whole(Bytes),
    /// Each SSE event's text (no trailing blank line) and when it arrived, in ms after the request started:
    /// replayed at once or with the original timing (`stream_timing`).
    Stream { events: Vec<String>, offsets_ms: Vec<f64> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub body: CachedBody,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The model that answered.
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the original request cost; a hit saves this.
    pub cost_usd: f64,
    /// The trace that filled the entry, so a hit can point at it.
    pub source_trace_id: String,
}

impl Entry {
    /// Body, strings and a fixed overhead: what `max_bytes` counts.
    pub fn size_bytes(&self) -> u64 {
        let body = match &self.body {
            CachedBody::Whole(bytes) => bytes.len() as u64,
            CachedBody::Stream { events, offsets_ms } => events
                .iter()
                .map(|event| event.len() as u64 + EVENT_OVERHEAD)
                .fold(offsets_ms.len() as u64 * 8, u64::saturating_add),
        };
        [body, self.model.len() as u64, self.source_trace_id.len() as u64]
            .into_iter()
            .fold(ENTRY_OVERHEAD, u64::saturating_add)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Hit {
        saved_input_tokens: u64,
        saved_output_tokens: u64,
        saved_usd: f64,
    },
    Miss,
    /// Not looked up (not deterministic, or the client asked not to).
    Bypass,
    Stored,
    NotStored,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleared {
    pub entries: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteStats {
    pub route: String,
    pub ttl_ms: i64,
    pub max_entries: usize,
    pub max_bytes: u64,
    pub max_entry_bytes: u64,
    pub entries: usize,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub stores: u64,
    pub not_stored: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub saved_input_tokens: u64,
    pub saved_output_tokens: u64,
    pub saved_usd: f64,
}

struct Slot {
    entry: Arc<Entry>,
    seq: u64,
    size: u64,
}

struct Shard {
    limits: Limits,
    map: HashMap<Key, Slot>,
    /// Least recently used first.
    recency: BTreeMap<u64, Key>,
    next_seq: u64,
    bytes: u64,
    stats: RouteStats,
}

impl Shard {
    fn new(route: &str, limits: Limits) -> Self {
        let stats = RouteStats { route: route.to_string(), ..RouteStats::default() };
        Shard { limits, map: HashMap::new(), recency: BTreeMap::new(), next_seq: 0, bytes: 0, stats }
    }

    fn remove(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.recency.remove(&slot.seq);
        self.bytes -= slot.size;
        Some(slot)
    }

    fn touch(&mut self, key: &Key) -> Option<Arc<Entry>> {
        let slot = self.map.get_mut(key)?;
        self.recency.remove(&slot.seq);
        slot.seq = self.next_seq;
        self.next_seq += 1;
        self.recency.insert(slot.seq, *key);
        Some(slot.entry.clone())
    }

    /// Inserts as most recently used and evicts to the limits; returns the evicted keys.
    fn insert(&mut self, key: Key, entry: Arc<Entry>, size: u64) -> Vec<Key> {
        self.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(key, Slot { entry, seq, size });
        self.recency.insert(seq, key);
        self.bytes += size;
        self.evict_to_limits()
    }

    fn evict_to_limits(&mut self) -> Vec<Key> {
        let mut evicted = Vec::new();
        while self.map.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            let Some((_, key)) = self.recency.pop_first() else { break };
            if let Some(slot) = self.map.remove(&key) {
                self.bytes -= slot.size;
            }
            self.stats.evictions += 1;
            evicted.push(key);
        }
        evicted
    }

    fn clear(&mut self) -> Cleared {
        let cleared = Cleared { entries: self.map.len(), bytes: self.bytes };
        // New maps, not `clear()`: the memory a full table held is given back.
        self.map = HashMap::new();
        self.recency = BTreeMap::new();
        self.bytes = 0;
        cleared
    }
}

pub struct CacheStore {
    clock: Clock,
    /// Only configured routes have a table: the set is bounded by the config, never by requests.
    routes: RwLock<HashMap<String, Mutex<Shard>>>,
    persister: OnceLock<Persister>,
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CacheStore {
    pub fn new(clock: Clock) -> Self {
        CacheStore { clock, routes: RwLock::new(HashMap::new()), persister: OnceLock::new() }
    }

    /// The store's clock, for the caller's `created_ms`/`expires_ms`.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Writes persisted routes' puts, evictions, cost updates and clears through `persister` from now on.
    /// Only one; a second is handed back.
    pub fn attach_persister(&self, persister: Persister) -> Result<(), Persister> {
        self.persister.set(persister)
    }

    /// For `dropped()` in status, and `shutdown()` at exit.
    pub fn persister(&self) -> Option<&Persister> {
        self.persister.get()
    }

    fn persister_for(&self, limits: &Limits) -> Option<&Persister> {
        self.persister.get().filter(|_| limits.persist)
    }

    /// Adds a route's table, or applies new limits to it (a config reload): evicts down to them and brings
    /// expiry times within a shorter TTL.
    pub fn configure(&self, route: &str, limits: Limits) {
        let now = self.now_ms();
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let Some(shard) = routes.get(route) else {
            routes.insert(route.to_string(), Mutex::new(Shard::new(route, limits)));
            return;
        };
        let mut shard = lock(shard);
        let ttl_shrank = limits.ttl_ms < shard.limits.ttl_ms;
        shard.limits = limits;
        if ttl_shrank {
            let latest = now.saturating_add(limits.ttl_ms);
            for slot in shard.map.values_mut().filter(|slot| slot.entry.expires_ms > latest) {
                Arc::make_mut(&mut slot.entry).expires_ms = latest;
            }
        }
        let evicted = shard.evict_to_limits();
        if let Some(persister) = self.persister_for(&limits) {
            evicted.iter().for_each(|key| persister.delete(route, key));
        }
    }

    /// Drops a route's table (the route lost its cache in a reload) and its persisted rows.
    pub fn unconfigure(&self, route: &str) -> Cleared {
        let removed = self.routes.write().unwrap_or_else(PoisonError::into_inner).remove(route);
        let Some(shard) = removed else { return Cleared::default() };
        let mut shard = shard.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some(persister) = self.persister_for(&shard.limits) {
            persister.clear(Some(route));
        }
        shard.clear()
    }

    /// The entry, made most recently used; `None` when absent or expired (an expired entry is removed and
    /// counted as an expiration). Hits and misses are counted by [`note`](Self::note).
    pub fn get(&self, route: &str, key: &Key) -> Option<Arc<Entry>> {
        let now = self.now_ms();
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut shard = lock(routes.get(route)?);
        if shard.map.get(key)?.entry.expires_ms <= now {
            shard.remove(key);
            shard.stats.expirations += 1;
            return None;
        }
        shard.touch(key)
    }

    /// Stores (or replaces) an entry as most recently used, evicting the least recently used to stay within the
    /// limits. `false` when the route has no cache, the entry is over `max_entry_bytes` or already expired.
    /// `expires_ms` is capped at now + the route's TTL.
    pub fn put(&self, route: &str, key: Key, mut entry: Entry) -> bool {
        let now = self.now_ms();
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let Some(shard) = routes.get(route) else { return false };
        let mut shard = lock(shard);
        let size = entry.size_bytes();
        entry.expires_ms = entry.expires_ms.min(now.saturating_add(shard.limits.ttl_ms));
        if size > shard.limits.max_entry_bytes || entry.expires_ms <= now {
            return false;
        }
        let entry = Arc::new(entry);
        let evicted = shard.insert(key, entry.clone(), size);
        // Sent under the shard's lock so the writer sees this route's changes in the order they were made.
        if let Some(persister) = self.persister_for(&shard.limits) {
            evicted.iter().for_each(|old| persister.delete(route, old));
            persister.put_shared(route, &key, entry);
        }
        true
    }

    /// Sets the cost of the entry stored at `created_ms` (the original request's cost is settled after its
    /// response was stored). An entry replaced since then is left alone.
    pub fn set_cost(&self, route: &str, key: &Key, created_ms: i64, cost_usd: f64) {
        if !cost_usd.is_finite() || cost_usd < 0.0 {
            return;
        }
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let Some(shard) = routes.get(route) else { return };
        let mut shard = lock(shard);
        let persister = self.persister_for(&shard.limits);
        let Some(slot) = shard.map.get_mut(key).filter(|slot| slot.entry.created_ms == created_ms) else { return };
        Arc::make_mut(&mut slot.entry).cost_usd = cost_usd;
        if let Some(persister) = persister {
            persister.set_cost(route, key, created_ms, cost_usd);
        }
    }

    /// Empties one route's table, or all of them, with their persisted rows.
    pub fn clear(&self, route: Option<&str>) -> Cleared {
        let mut total = Cleared::default();
        let mut persisted = false;
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            for (name, shard) in routes.iter().filter(|(name, _)| route.is_none_or(|r| r == name.as_str())) {
                let mut shard = lock(shard);
                persisted |= shard.limits.persist;
                let cleared = shard.clear();
                tracing::info!(route = %name, entries = cleared.entries, bytes = cleared.bytes, "response cache cleared");
                total.entries += cleared.entries;
                total.bytes += cleared.bytes;
            }
        }
        // After the locks: this may wait for room in the queue, and requests must not wait with it.
        if let Some(persister) = self.persister.get().filter(|_| persisted || route.is_none()) {
            persister.clear(route);
        }
        total
    }

    pub fn note(&self, route: &str, outcome: Outcome) {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let Some(shard) = routes.get(route) else { return };
        let stats = &mut lock(shard).stats;
        match outcome {
            Outcome::Hit { saved_input_tokens, saved_output_tokens, saved_usd } => {
                stats.hits += 1;
                stats.saved_input_tokens = stats.saved_input_tokens.saturating_add(saved_input_tokens);
                stats.saved_output_tokens = stats.saved_output_tokens.saturating_add(saved_output_tokens);
                if saved_usd.is_finite() && saved_usd > 0.0 {
                    stats.saved_usd += saved_usd;
                }
            }
            Outcome::Miss => stats.misses += 1,
            Outcome::Bypass => stats.bypasses += 1,
            Outcome::Stored => stats.stores += 1,
            Outcome::NotStored => stats.not_stored += 1,
        }
    }

    /// Every configured route, by name.
    pub fn stats(&self) -> Vec<RouteStats> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<RouteStats> = routes
            .values()
            .map(|shard| {
                let shard = lock(shard);
                let Limits { ttl_ms, max_entries, max_bytes, max_entry_bytes, .. } = shard.limits;
                let (entries, bytes) = (shard.map.len(), shard.bytes);
                RouteStats { ttl_ms, max_entries, max_bytes, max_entry_bytes, entries, bytes, ..shard.stats.clone() }
            })
            .collect();
        all.sort_by(|a, b| a.route.cmp(&b.route));
        all
    }

    /// Removes every expired entry (counted as expirations), so they stop holding memory before anyone asks
    /// for them; also deletes expired persisted rows. For a periodic sweep: it scans every table.
    pub fn purge_expired(&self) -> usize {
        let now = self.now_ms();
        let mut purged = 0;
        let mut persisted = false;
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        for shard in routes.values() {
            let mut shard = lock(shard);
            persisted |= shard.limits.persist;
            let expired: Vec<Key> =
                shard.map.iter().filter(|(_, slot)| slot.entry.expires_ms <= now).map(|(key, _)| *key).collect();
            for key in &expired {
                shard.remove(key);
            }
            shard.stats.expirations += expired.len() as u64;
            purged += expired.len();
        }
        if let Some(persister) = self.persister.get().filter(|_| persisted) {
            persister.purge_expired(now);
        }
        purged
    }

    /// Puts entries loaded by [`load`](super::persist::load) back, oldest first, without writing them again;
    /// rows evicted to fit today's limits are deleted. At startup, before serving. Returns how many were kept.
    pub fn restore(&self, entries: Vec<(String, Key, Entry)>) -> usize {
        let now = self.now_ms();
        let mut evicted: Vec<(String, Key)> = Vec::new();
        let (mut restored, mut displaced) = (0usize, 0usize);
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            for (route, key, mut entry) in entries {
                let Some(shard) = routes.get(&route) else { continue };
                let mut shard = lock(shard);
                let size = entry.size_bytes();
                entry.expires_ms = entry.expires_ms.min(now.saturating_add(shard.limits.ttl_ms));
                if size > shard.limits.max_entry_bytes || entry.expires_ms <= now {
                    evicted.push((route, key));
                    continue;
                }
                let displaced_now = shard.insert(key, Arc::new(entry), size);
                displaced += displaced_now.len();
                evicted.extend(displaced_now.into_iter().map(|key| (route.clone(), key)));
                restored += 1;
            }
        }
        if let Some(persister) = self.persister.get() {
            evicted.iter().for_each(|(route, key)| persister.delete_waiting(route, key));
        }
        restored.saturating_sub(displaced)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
