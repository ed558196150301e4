use super::super::store::{CacheStore, Limits};
use super::*;
use std::path::Path;
use std::sync::atomic::AtomicI64;

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn
}

fn limits(persist: bool) -> Limits {
    Limits { ttl_ms: 10_000, max_entries: 3, max_bytes: 1 << 20, max_entry_bytes: 1 << 18, persist }
}

fn key(n: u8) -> Key {
    [n; 32]
}

fn whole(created_ms: i64, text: &str) -> Entry {
    Entry {
        body: CachedBody::Whole(text.as_bytes().to_vec().into()),
        created_ms,
        expires_ms: created_ms + 5_000,
        model: "llama".into(),
        input_tokens: 7,
        output_tokens: 11,
        cost_usd: 0.5,
        source_trace_id: "trace-1".into(),
    }
}

fn stream(created_ms: i64) -> Entry {
    let events = vec!["data: {\"a\":1}".to_string(), "data: [DONE]".to_string()];
    Entry { body: CachedBody::Stream { events, offsets_ms: vec![12.5, 40.0] }, ..whole(created_ms, "") }
}

fn store_at(now: &Arc<AtomicI64>) -> CacheStore {
    let now = now.clone();
    let store = CacheStore::new(Arc::new(move || now.load(Ordering::SeqCst)));
    store.configure("chat", limits(true));
    store.configure("memory", limits(false));
    store
}

fn rows(path: &Path) -> i64 {
    open(path).query_row("SELECT count(*) FROM cache_entries", [], |row| row.get(0)).unwrap()
}

#[test]
fn round_trips_through_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let now = Arc::new(AtomicI64::new(1_000));
    let store = store_at(&now);
    store.attach_persister(Persister::start(open(&path)).unwrap()).ok().unwrap();
    assert!(store.put("chat", key(1), whole(1_000, "{\"id\":1}")));
    assert!(store.put("chat", key(2), stream(1_001)));
    assert!(store.put("chat", key(3), whole(1_002, "old")));
    assert!(store.put("chat", key(3), whole(1_003, "new")));
    assert!(store.put("memory", key(9), whole(1_000, "not persisted")));
    store.set_cost("chat", &key(1), 1_000, 2.25);
    store.set_cost("chat", &key(2), 5, 9.0); // another entry's cost: ignored
    assert!(store.persister().unwrap().flush());
    assert_eq!(rows(&path), 3);
    store.persister().unwrap().shutdown();
    drop(store);

    let conn = open(&path);
    let loaded = load(&conn, 1_500, &["chat"]).unwrap();
    let keys: Vec<Key> = loaded.iter().map(|(_, key, _)| *key).collect();
    assert_eq!(keys, [key(1), key(2), key(3)]); // oldest first
    assert!(loaded.iter().all(|(route, _, _)| route == "chat"));
    assert_eq!(loaded[0].2, Entry { cost_usd: 2.25, ..whole(1_000, "{\"id\":1}") });
    assert_eq!(loaded[1].2, stream(1_001));
    assert_eq!(loaded[2].2, whole(1_003, "new"));

    let restored = store_at(&now);
    restored.configure("chat", Limits { max_entries: 2, ..limits(true) });
    restored.attach_persister(Persister::start(conn).unwrap()).ok().unwrap();
    assert_eq!(restored.restore(loaded), 2); // the oldest no longer fits: its row goes
    assert!(restored.get("chat", &key(1)).is_none());
    assert_eq!(restored.get("chat", &key(2)).unwrap().body, stream(0).body);
    assert!(restored.persister().unwrap().flush());
    assert_eq!(rows(&path), 2);
}

#[test]
fn load_skips_and_deletes_expired_foreign_and_broken_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let persister = Persister::start(open(&path)).unwrap();
    persister.put("chat", &key(1), &whole(1_000, "a")); // expires at 6000
    persister.put("chat", &key(2), &whole(3_000, "b")); // expires at 8000
    persister.put("gone", &key(3), &whole(3_000, "c"));
    assert!(persister.flush());
    let conn = open(&path);
    conn.execute(
        "INSERT INTO cache_entries VALUES ('chat', x'00', 3000, 9000, 'm', 1, 1, 0.0, 't', 'whole', x'00', NULL)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO cache_entries VALUES ('chat', ?1, 3000, 9000, 'm', 1, 1, 0.0, 't', 'stream', x'5b5d', '[1]')",
        [&key(4)[..]],
    )
    .unwrap();
    assert_eq!(rows(&path), 5);
    let loaded = load(&conn, 6_000, &["chat"]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].1, key(2));
    assert_eq!(rows(&path), 1);
}

#[test]
fn evictions_and_clears_delete_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let now = Arc::new(AtomicI64::new(1_000));
    let store = store_at(&now);
    store.attach_persister(Persister::start(open(&path)).unwrap()).ok().unwrap();
    for n in 1..=5 {
        store.put("chat", key(n), whole(1_000, "x"));
    }
    assert!(store.persister().unwrap().flush());
    assert_eq!(rows(&path), 3); // max_entries 3: the two evicted rows went too
    now.store(7_000, Ordering::SeqCst);
    store.put("chat", key(6), whole(7_000, "y"));
    assert_eq!(store.purge_expired(), 2); // key 6 displaced key 3; 4 and 5 expired
    assert!(store.persister().unwrap().flush());
    assert_eq!(rows(&path), 1);
    store.clear(Some("chat"));
    assert!(store.persister().unwrap().flush());
    assert_eq!(rows(&path), 0);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (go, gate) = sync_channel(1);
    let persister = Persister::spawn(open(&path), 2, Some(gate)).unwrap();
    for n in 1..=5 {
        persister.put("chat", &key(n), &whole(1_000, "x"));
    }
    assert_eq!(persister.dropped(), 3);
    go.send(()).unwrap();
    assert!(persister.flush());
    assert_eq!(rows(&path), 2);
    persister.shutdown();
    persister.put("chat", &key(9), &whole(1_000, "x"));
    assert_eq!(persister.dropped(), 4);
    assert!(!persister.flush());
}
