use super::*;
use std::sync::atomic::{AtomicI64, Ordering};

struct Fixture {
    now: Arc<AtomicI64>,
    store: CacheStore,
}

fn fixture(limits: Limits) -> Fixture {
    let now = Arc::new(AtomicI64::new(1_000));
    let clock = now.clone();
    let store = CacheStore::new(Arc::new(move || clock.load(Ordering::SeqCst)));
    store.configure("chat", limits);
    Fixture { now, store }
}

impl Fixture {
    fn at(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }
    fn entries(&self) -> usize {
        self.store.stats()[0].entries
    }
}

pub(crate) fn limits(max_entries: usize, max_bytes: u64) -> Limits {
    Limits { ttl_ms: 1_000, max_entries, max_bytes, max_entry_bytes: max_bytes / 2, persist: false }
}

pub(crate) fn key(n: u64) -> Key {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&n.to_le_bytes());
    key
}

pub(crate) fn entry(created_ms: i64, body_len: usize) -> Entry {
    Entry {
        body: CachedBody::Whole(Bytes::from(vec![b'x'; body_len])),
        created_ms,
        expires_ms: created_ms + 1_000,
        model: "m".into(),
        input_tokens: 3,
        output_tokens: 5,
        cost_usd: 0.25,
        source_trace_id: "t".into(),
    }
}

fn size(body_len: usize) -> u64 {
    entry(0, body_len).size_bytes()
}

#[test]
fn expires_exactly_at_expires_ms() {
    let f = fixture(limits(10, 1 << 20));
    assert!(f.store.put("chat", key(1), entry(1_000, 10)));
    f.at(1_999);
    assert_eq!(f.store.get("chat", &key(1)).unwrap().created_ms, 1_000);
    f.at(2_000);
    assert!(f.store.get("chat", &key(1)).is_none());
    let stats = &f.store.stats()[0];
    assert_eq!((stats.entries, stats.bytes, stats.expirations), (0, 0, 1));
}

#[test]
fn expiry_is_capped_by_ttl_and_expired_entries_are_refused() {
    let f = fixture(limits(10, 1 << 20));
    let mut long = entry(1_000, 10);
    long.expires_ms = i64::MAX;
    assert!(f.store.put("chat", key(1), long));
    assert_eq!(f.store.get("chat", &key(1)).unwrap().expires_ms, 2_000);
    let mut stale = entry(0, 10);
    stale.expires_ms = 1_000;
    assert!(!f.store.put("chat", key(2), stale));
}

#[test]
fn evicts_least_recently_used_by_entries() {
    let f = fixture(limits(3, 1 << 20));
    for n in 1..=3 {
        assert!(f.store.put("chat", key(n), entry(1_000, 10)));
    }
    assert!(f.store.get("chat", &key(1)).is_some()); // 2 is now the least recently used
    assert!(f.store.put("chat", key(4), entry(1_000, 10)));
    assert!(f.store.get("chat", &key(2)).is_none());
    for n in [1, 3, 4] {
        assert!(f.store.get("chat", &key(n)).is_some(), "{n}");
    }
    assert_eq!((f.entries(), f.store.stats()[0].evictions, f.store.stats()[0].expirations), (3, 1, 0));
}

#[test]
fn evicts_least_recently_used_by_bytes() {
    let f = fixture(Limits { max_entry_bytes: 1 << 20, ..limits(100, 3 * size(100) + 10) });
    for n in 1..=3 {
        assert!(f.store.put("chat", key(n), entry(1_000, 100)));
    }
    assert!(f.store.get("chat", &key(1)).is_some());
    // Twice the size: two entries (2, then 3) make room for it.
    assert!(f.store.put("chat", key(4), entry(1_000, 100 + size(100) as usize)));
    assert!(f.store.get("chat", &key(2)).is_none() && f.store.get("chat", &key(3)).is_none());
    assert!(f.store.get("chat", &key(1)).is_some() && f.store.get("chat", &key(4)).is_some());
    let stats = &f.store.stats()[0];
    assert_eq!((stats.entries, stats.evictions), (2, 2));
    assert_eq!(stats.bytes, size(100) + size(100 + size(100) as usize));
    assert!(stats.bytes <= stats.max_bytes);
}

#[test]
fn oversize_entries_are_refused() {
    let f = fixture(limits(10, 10_000));
    assert!(!f.store.put("chat", key(1), entry(1_000, 6_000)));
    assert_eq!(f.entries(), 0);
    let stream = Entry {
        body: CachedBody::Stream { events: vec!["data: x".repeat(200); 20], offsets_ms: vec![1.0; 20] },
        ..entry(1_000, 0)
    };
    assert!(stream.size_bytes() > 20 * 1_400);
    assert!(!f.store.put("chat", key(2), stream));
}

#[test]
fn replacing_a_key_adjusts_bytes() {
    let f = fixture(limits(10, 1 << 20));
    assert!(f.store.put("chat", key(1), entry(1_000, 10)));
    assert!(f.store.put("chat", key(1), entry(1_001, 500)));
    let stats = &f.store.stats()[0];
    assert_eq!((stats.entries, stats.bytes, stats.evictions), (1, size(500), 0));
    assert_eq!(f.store.get("chat", &key(1)).unwrap().created_ms, 1_001);
}

#[test]
fn clears_one_route_or_all() {
    let f = fixture(limits(10, 1 << 20));
    f.store.configure("embed", limits(10, 1 << 20));
    f.store.put("chat", key(1), entry(1_000, 10));
    f.store.put("chat", key(2), entry(1_000, 10));
    f.store.put("embed", key(1), entry(1_000, 20));
    assert_eq!(f.store.clear(Some("chat")), Cleared { entries: 2, bytes: 2 * size(10) });
    assert!(f.store.get("embed", &key(1)).is_some());
    assert_eq!(f.store.clear(Some("nope")), Cleared::default());
    f.store.put("chat", key(3), entry(1_000, 10));
    assert_eq!(f.store.clear(None), Cleared { entries: 2, bytes: size(10) + size(20) });
    assert!(f.store.stats().iter().all(|s| s.entries == 0 && s.bytes == 0));
    assert_eq!(f.store.unconfigure("embed"), Cleared::default());
    assert_eq!(f.store.stats().len(), 1);
}

#[test]
fn counts_outcomes() {
    let f = fixture(limits(10, 1 << 20));
    let hit = Outcome::Hit { saved_input_tokens: 3, saved_output_tokens: 5, saved_usd: 0.25 };
    for outcome in [hit, hit, Outcome::Miss, Outcome::Bypass, Outcome::Stored, Outcome::NotStored] {
        f.store.note("chat", outcome);
    }
    f.store.note("chat", Outcome::Hit { saved_input_tokens: 1, saved_output_tokens: 1, saved_usd: f64::NAN });
    let s = &f.store.stats()[0];
    assert_eq!((s.hits, s.misses, s.bypasses, s.stores, s.not_stored), (3, 1, 1, 1, 1));
    assert_eq!((s.saved_input_tokens, s.saved_output_tokens, s.saved_usd), (7, 11, 0.5));
    assert_eq!((s.route.as_str(), s.ttl_ms, s.max_entries, s.max_bytes), ("chat", 1_000, 10, 1 << 20));
}

#[test]
fn unconfigured_routes_are_a_no_op() {
    let f = fixture(limits(10, 1 << 20));
    assert!(!f.store.put("other", key(1), entry(1_000, 10)));
    assert!(f.store.get("other", &key(1)).is_none());
    f.store.note("other", Outcome::Miss);
    f.store.set_cost("other", &key(1), 1_000, 1.0);
    assert_eq!(f.store.stats().len(), 1);
    assert_eq!(f.store.stats()[0].misses, 0);
}

#[test]
fn set_cost_touches_only_the_same_entry() {
    let f = fixture(limits(10, 1 << 20));
    f.store.put("chat", key(1), entry(1_000, 10));
    let held = f.store.get("chat", &key(1)).unwrap();
    f.store.set_cost("chat", &key(1), 999, 9.0);
    assert_eq!(f.store.get("chat", &key(1)).unwrap().cost_usd, 0.25);
    f.store.set_cost("chat", &key(1), 1_000, 1.5);
    assert_eq!(f.store.get("chat", &key(1)).unwrap().cost_usd, 1.5);
    assert_eq!(held.cost_usd, 0.25); // a reader's copy is not changed under it
    f.store.set_cost("chat", &key(1), 1_000, -1.0);
    assert_eq!(f.store.get("chat", &key(1)).unwrap().cost_usd, 1.5);
}

#[test]
fn purges_expired_entries() {
    let f = fixture(limits(10, 1 << 20));
    f.store.put("chat", key(1), entry(1_000, 10));
    f.at(1_500);
    f.store.put("chat", key(2), entry(1_500, 10));
    f.at(2_000);
    assert_eq!(f.store.purge_expired(), 1);
    assert_eq!(f.store.purge_expired(), 0);
    let stats = &f.store.stats()[0];
    assert_eq!((stats.entries, stats.bytes, stats.expirations), (1, size(10), 1));
    assert!(f.store.get("chat", &key(2)).is_some());
}

#[test]
fn reconfiguring_shrinks_to_the_new_limits() {
    let f = fixture(limits(10, 1 << 20));
    for n in 1..=5 {
        f.store.put("chat", key(n), entry(1_000, 10));
    }
    f.store.configure("chat", Limits { ttl_ms: 100, ..limits(2, 1 << 20) });
    assert_eq!(f.entries(), 2);
    assert!(f.store.get("chat", &key(5)).is_some());
    f.at(1_100);
    assert!(f.store.get("chat", &key(5)).is_none());
}

#[test]
fn a_flood_of_distinct_keys_stays_bounded() {
    let f = fixture(Limits { ttl_ms: i64::MAX, ..limits(100, 1 << 20) });
    for n in 0..1_000_000u64 {
        f.store.put("chat", key(n), entry(1_000, 16));
    }
    let stats = &f.store.stats()[0];
    assert_eq!((stats.entries, stats.bytes, stats.evictions), (100, 100 * size(16), 999_900));
    assert!(f.store.get("chat", &key(999_999)).is_some() && f.store.get("chat", &key(0)).is_none());
}
