//! A route's response cache settings (`[routes.NAME] cache = { ... }`) and the bounds the store derives from
//! them: whatever is left out, entries, bytes and time stay bounded.
use serde::{Deserialize, Serialize};

/// 30 days: a cached answer older than that is more likely stale than useful.
pub const MAX_TTL_S: u64 = 2_592_000;
pub const MAX_ENTRIES: usize = 1_000_000;
pub const MIN_BYTES: u64 = 1 << 10;
pub const MAX_BYTES: u64 = 16 << 30;
/// The byte bound when only `max_entries` is set.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// No single entry over this (or a quarter of `max_bytes`, if smaller): one answer must not flush the cache.
pub const MAX_ENTRY_BYTES: u64 = 8 << 20;
/// The entry bound when only `max_bytes` is set: one entry per this many bytes.
const BYTES_PER_ENTRY: u64 = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Seconds an entry is served; 1..=2592000.
    pub ttl_s: u64,
    /// At least one of `max_entries` and `max_bytes`; 1..=1000000.
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// 1 KiB..=16 GiB; 256 MiB when only `max_entries` is set.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Only cache requests whose answer is reproducible (`temperature` 0 or a `seed`).
    #[serde(default = "yes")]
    pub deterministic_only: bool,
    #[serde(default)]
    pub stream_timing: StreamTiming,
    /// Keep entries in SQLite across restarts.
    #[serde(default)]
    pub persist: bool,
}

/// One route's bounds in the store, from [`CacheConfig::limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// No entry outlives this, whatever `expires_ms` it was put with.
    pub ttl_ms: i64,
    pub max_entries: usize,
    pub max_bytes: u64,
    /// A larger entry is not stored (it would evict too much for one request).
    pub max_entry_bytes: u64,
    /// Written through to the attached persister.
    pub persist: bool,
}

/// How a cached streamed answer is replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamTiming {
    /// All events at once: the point of a cache is to be fast.
    #[default]
    Instant,
    /// With the gaps the original had, for clients (or tests) that depend on pacing.
    Original,
}

fn yes() -> bool {
    true
}

impl CacheConfig {
    /// What serde cannot check; messages name the setting and the bad value.
    pub fn validate(&self, route: &str) -> Result<(), String> {
        let at = format!("routes.{route}.cache");
        if !(1..=MAX_TTL_S).contains(&self.ttl_s) {
            return Err(format!("{at}.ttl_s = {} is outside 1..={MAX_TTL_S} (30 days)", self.ttl_s));
        }
        if self.max_entries.is_none() && self.max_bytes.is_none() {
            return Err(format!("{at} needs max_entries or max_bytes (or both) to bound its memory"));
        }
        if let Some(entries) = self.max_entries.filter(|n| !(1..=MAX_ENTRIES).contains(n)) {
            return Err(format!("{at}.max_entries = {entries} is outside 1..={MAX_ENTRIES}"));
        }
        if let Some(bytes) = self.max_bytes.filter(|n| !(MIN_BYTES..=MAX_BYTES).contains(n)) {
            return Err(format!("{at}.max_bytes = {bytes} is outside {MIN_BYTES}..={MAX_BYTES} (1 KiB..=16 GiB)"));
        }
        Ok(())
    }

    /// The store's bounds. Clamped into the valid ranges, so even an unvalidated config stays bounded.
    pub fn limits(&self) -> Limits {
        let max_bytes = self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).clamp(MIN_BYTES, MAX_BYTES);
        let derived_entries = usize::try_from(max_bytes / BYTES_PER_ENTRY).unwrap_or(MAX_ENTRIES);
        Limits {
            ttl_ms: i64::try_from(self.ttl_s.clamp(1, MAX_TTL_S) * 1000).unwrap_or(i64::MAX),
            max_entries: self.max_entries.unwrap_or(derived_entries).clamp(1, MAX_ENTRIES),
            max_bytes,
            max_entry_bytes: (max_bytes / 4).min(MAX_ENTRY_BYTES),
            persist: self.persist,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    struct Route {
        cache: CacheConfig,
    }

    #[derive(Deserialize)]
    struct File {
        routes: BTreeMap<String, Route>,
    }

    fn parse(text: &str) -> Result<CacheConfig, toml::de::Error> {
        let mut file: File = toml::from_str(text)?;
        Ok(file.routes.remove("chat").unwrap().cache)
    }

    #[test]
    fn defaults_and_full_form() {
        let config = parse("[routes.chat]\ncache = { ttl_s = 60, max_entries = 10 }").unwrap();
        assert_eq!(config.max_bytes, None);
        assert!(config.deterministic_only);
        assert_eq!(config.stream_timing, StreamTiming::Instant);
        assert!(!config.persist);
        config.validate("chat").unwrap();
        let full = parse(
            "[routes.chat.cache]\nttl_s = 5\nmax_bytes = 2048\ndeterministic_only = false\n\
             stream_timing = \"original\"\npersist = true",
        )
        .unwrap();
        assert_eq!(full.stream_timing, StreamTiming::Original);
        assert!(full.persist && !full.deterministic_only);
        let text = toml::to_string(&full).unwrap();
        assert_eq!(toml::from_str::<CacheConfig>(&text).unwrap(), full);
    }

    #[test]
    fn unknown_fields_and_values_are_rejected() {
        assert!(parse("[routes.chat]\ncache = { ttl_s = 60, max_entries = 1, ttl = 5 }").is_err());
        assert!(parse("[routes.chat]\ncache = { ttl_s = 60, max_entries = 1, stream_timing = \"slow\" }").is_err());
        assert!(parse("[routes.chat]\ncache = { max_entries = 1 }").is_err());
    }

    #[test]
    fn validation_names_the_setting_and_value() {
        let ok = CacheConfig {
            ttl_s: 60,
            max_entries: Some(10),
            max_bytes: None,
            deterministic_only: true,
            stream_timing: StreamTiming::Instant,
            persist: false,
        };
        let error = |config: CacheConfig| config.validate("chat").unwrap_err();
        assert_eq!(
            error(CacheConfig { ttl_s: 0, ..ok.clone() }),
            "routes.chat.cache.ttl_s = 0 is outside 1..=2592000 (30 days)"
        );
        assert!(error(CacheConfig { ttl_s: MAX_TTL_S + 1, ..ok.clone() }).contains("2592001"));
        assert!(error(CacheConfig { max_entries: None, ..ok.clone() }).contains("routes.chat.cache needs max_entries"));
        assert!(error(CacheConfig { max_entries: Some(0), ..ok.clone() }).contains("max_entries = 0"));
        assert!(error(CacheConfig { max_entries: Some(MAX_ENTRIES + 1), ..ok.clone() }).contains("1000001"));
        assert!(error(CacheConfig { max_bytes: Some(1023), ..ok.clone() }).contains("max_bytes = 1023"));
        assert!(error(CacheConfig { max_bytes: Some(MAX_BYTES + 1), ..ok.clone() }).contains("max_bytes = 17179869185"));
        CacheConfig { ttl_s: MAX_TTL_S, max_bytes: Some(MAX_BYTES), ..ok }.validate("chat").unwrap();
    }

    #[test]
    fn limits_bound_everything() {
        let base = parse("[routes.chat]\ncache = { ttl_s = 60, max_entries = 10 }").unwrap();
        let limits = base.limits();
        assert_eq!(limits.ttl_ms, 60_000);
        assert_eq!((limits.max_entries, limits.max_bytes), (10, DEFAULT_MAX_BYTES));
        assert_eq!(limits.max_entry_bytes, MAX_ENTRY_BYTES);
        let by_bytes = CacheConfig { max_entries: None, max_bytes: Some(64 << 10), ..base.clone() }.limits();
        assert_eq!((by_bytes.max_entries, by_bytes.max_bytes, by_bytes.max_entry_bytes), (1024, 64 << 10, 16 << 10));
        let huge = CacheConfig { max_entries: None, max_bytes: Some(MAX_BYTES), ..base.clone() }.limits();
        assert_eq!(huge.max_entries, MAX_ENTRIES);
        // Unvalidated nonsense is still bounded.
        let wild = CacheConfig { ttl_s: u64::MAX, max_entries: Some(usize::MAX), max_bytes: Some(0), ..base }.limits();
        assert_eq!((wild.ttl_ms, wild.max_entries, wild.max_bytes), (MAX_TTL_S as i64 * 1000, MAX_ENTRIES, MIN_BYTES));
    }
}
