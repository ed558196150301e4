//! End to end: the response cache of a route in front of the fake upstream, through the real llmopsd. A
//! streamed hit is byte-identical to the stream that filled it, served without the engine (the fake counts its
//! requests), traced as an attempt on `cache` with zero cost and the tokens and USD it saved; a whole request
//! hits a streamed entry; a changed temperature or prompt version misses; `no-store`, `no-cache` and TTL expiry
//! work; `llmopsctl cache stats | clear` and /metrics tell the numbers; persisted entries survive a restart.
use std::time::{Duration, Instant};

use llmops_e2e::daemon::Daemon;
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use serde_json::{json, Value};

fn config(upstream: &FakeUpstream, prices: &std::path::Path) -> String {
    format!(
        r#"
[pricing]
file = "{prices}"

[engines.fake]
kind = "openai"
base_url = "{url}"
models = ["fake-model"]

[routes.cached]
targets = [{{ engine = "fake", model = "fake-model" }}]
cache = {{ ttl_s = 300, max_entries = 100, persist = true }}

[routes.plain]
targets = [{{ engine = "fake", model = "fake-model" }}]
"#,
        prices = prices.display(),
        url = upstream.base_url()
    )
}

async fn start() -> (tempfile::TempDir, FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start(Behavior { token_delay_ms: 1, ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, "[models.\"fake-model\"]\ninput = 1000.0\noutput = 2000.0\n").expect("prices");
    let daemon = Daemon::start(&config(&upstream, &prices), &dir.path().join("data")).await.expect("llmopsd starts");
    (dir, upstream, daemon)
}

fn chat(text: &str, stream: bool, extra: Value) -> Value {
    let mut body = json!({"model": "cached", "messages": [{"role": "user", "content": text}], "stream": stream,
        "temperature": 0});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

struct Answer {
    status: u16,
    id: String,
    cache: String,
    body: Vec<u8>,
}

async fn post(daemon: &Daemon, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /v1/chat/completions");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (status, id, cache) = (response.status().as_u16(), header("x-request-id"), header("x-llmops-cache"));
    Answer { status, id, cache, body: response.bytes().await.expect("body").to_vec() }
}

async fn trace(daemon: &Daemon, id: &str) -> pb::Trace {
    daemon.wait_for_trace(id).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The fill's trace is written after its answer: a hit needs the entry, which is stored as the trace ends.
async fn filled(daemon: &Daemon, answer: &Answer) -> pb::Trace {
    let recorded = trace(daemon, &answer.id).await;
    assert!(recorded.cache.as_ref().is_some_and(|c| c.stored), "stored: {:?}", recorded.cache);
    recorded
}

async fn ctl(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.llmopsctl_async(args).await.expect("llmopsctl runs");
    assert!(output.status.success(), "llmopsctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_streamed_hit_replays_the_same_bytes_costs_nothing_and_shows_the_saving() {
    let (_dir, upstream, daemon) = start().await;
    let first = post(&daemon, &chat("tell me a story", true, json!({})), &[]).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"));
    let original = filled(&daemon, &first).await;
    let original_cost = original.cost_usd.expect("priced");
    assert!(original_cost > 0.0, "{original:?}");
    assert_eq!(upstream.stats().requests, 1);

    let second = post(&daemon, &chat("tell me a story", true, json!({})), &[]).await;
    assert_eq!((second.status, second.cache.as_str()), (200, "hit"));
    assert_eq!(String::from_utf8_lossy(&second.body), String::from_utf8_lossy(&first.body), "byte-identical");
    assert_eq!(upstream.stats().requests, 1, "the engine was not asked again");
    let hit = trace(&daemon, &second.id).await;
    assert_eq!(hit.attempts.len(), 1);
    assert_eq!(hit.attempts[0].engine, "cache");
    assert_eq!(hit.cost_usd, Some(0.0));
    let outcome = hit.cache.clone().expect("cache outcome");
    assert_eq!(outcome.result, "hit");
    assert_eq!(outcome.source_trace_id, first.id);
    assert_eq!(
        (outcome.saved_input_tokens, outcome.saved_output_tokens),
        (original.input_tokens, original.output_tokens)
    );
    assert!((outcome.saved_usd - original_cost).abs() < 1e-12, "{outcome:?} vs {original_cost}");
    assert_eq!(hit.response_text, original.response_text);

    // A whole request meets the streamed entry: the same text, as one JSON answer.
    let whole = post(&daemon, &chat("tell me a story", false, json!({})), &[]).await;
    assert_eq!(whole.cache, "hit");
    let whole: Value = serde_json::from_slice(&whole.body).expect("JSON");
    assert_eq!(whole["choices"][0]["message"]["content"], original.response_text.as_str());
    assert_eq!(whole["usage"]["completion_tokens"], original.output_tokens);

    let stats: Value = serde_json::from_str(&ctl(&daemon, &["cache", "stats", "--json"]).await).expect("JSON");
    let route = &stats["routes"][0];
    assert_eq!(
        (route["route"].as_str(), route["hits"].as_u64(), route["misses"].as_u64()),
        (Some("cached"), Some(2), Some(1))
    );
    assert!((route["saved_usd"].as_f64().unwrap_or(0.0) - 2.0 * original_cost).abs() < 1e-9, "{route}");
    let table = ctl(&daemon, &["cache", "stats"]).await;
    assert!(table.lines().nth(1).is_some_and(|row| row.starts_with("cached") && row.contains("66.7")), "{table}");
    let metrics = reqwest::get(daemon.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("llmops_cache_lookups_total{route=\"cached\",result=\"hit\"} 2"), "{metrics}");
    assert!(metrics.contains("llmops_cache_persist_dropped_total 0"), "{metrics}");
}

#[tokio::test]
async fn original_timing_replays_a_stream_at_its_first_pace() {
    let upstream = FakeUpstream::start(Behavior { token_delay_ms: 40, ..Behavior::default() }).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\
         [routes.cached]\ntargets = [{{ engine = \"fake\", model = \"fake-model\" }}]\n\
         cache = {{ ttl_s = 60, max_entries = 10, stream_timing = \"original\" }}\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let body = chat("one two three four five six", true, json!({}));
    let first = post(&daemon, &body, &[]).await;
    let original = filled(&daemon, &first).await;
    let last_chunk_ms = original.chunk_offsets_ms.last().copied().expect("chunk offsets");
    assert!(last_chunk_ms >= 200.0, "the fake paced its 7 words at 40 ms: {last_chunk_ms}");
    let started = Instant::now();
    let replayed = post(&daemon, &body, &[]).await;
    let took = started.elapsed();
    assert_eq!(replayed.cache, "hit");
    assert_eq!(replayed.body, first.body);
    // Only a lower bound: the replay waits for each event's recorded offset, however fast the machine.
    assert!(took.as_secs_f64() * 1000.0 >= last_chunk_ms * 0.9, "replayed in {took:?}, first took {last_chunk_ms} ms");
    let hit = trace(&daemon, &replayed.id).await;
    assert!(hit.chunk_offsets_ms.last().is_some_and(|&ms| ms >= last_chunk_ms * 0.9), "{:?}", hit.chunk_offsets_ms);
}

#[tokio::test]
async fn changed_temperature_or_prompt_version_misses_and_random_requests_bypass() {
    let (dir, upstream, daemon) = start().await;
    let first = post(&daemon, &chat("hello", false, json!({})), &[]).await;
    filled(&daemon, &first).await;
    let again = post(&daemon, &chat("hello", false, json!({})), &[]).await;
    assert_eq!(again.cache, "hit");
    let seeded = post(&daemon, &chat("hello", false, json!({"temperature": 0.7, "seed": 7})), &[]).await;
    assert_eq!(seeded.cache, "miss", "another temperature is another answer");
    let random = post(&daemon, &chat("hello", false, json!({"temperature": 0.7})), &[]).await;
    assert_eq!(random.cache, "bypass", "not deterministic: neither read nor stored");
    let plain =
        post(&daemon, &json!({"model": "plain", "messages": [{"role": "user", "content": "hello"}]}), &[]).await;
    assert_eq!(plain.cache, "", "a route without a cache says nothing");
    assert_eq!(upstream.stats().requests, 4);

    // The same request through prompt versions 1 and 2: the second misses.
    let prompt = dir.path().join("p.toml");
    let push = |content: &'static str| {
        let prompt = prompt.clone();
        async move {
            std::fs::write(&prompt, format!("[[messages]]\nrole = \"system\"\ncontent = \"{content}\"\n"))
                .expect("write");
            prompt
        }
    };
    let path = push("Be brief.").await;
    ctl(&daemon, &["prompts", "push", "greeter", "--file", path.to_str().expect("path")]).await;
    let with_prompt = chat("hello", false, json!({"metadata": {"prompt": "greeter@latest"}}));
    let v1 = post(&daemon, &with_prompt, &[]).await;
    assert_eq!(v1.cache, "miss");
    filled(&daemon, &v1).await;
    assert_eq!(post(&daemon, &with_prompt, &[]).await.cache, "hit");
    let path = push("Be very brief.").await;
    ctl(&daemon, &["prompts", "push", "greeter", "--file", path.to_str().expect("path")]).await;
    let v2 = post(&daemon, &with_prompt, &[]).await;
    assert_eq!(v2.cache, "miss", "a new prompt version is another answer");
    assert_eq!(trace(&daemon, &v2.id).await.prompt_version, "2");
}

#[tokio::test]
async fn no_store_no_cache_and_ttl_expiry() {
    let (_dir, upstream, daemon) = start().await;
    let body = chat("weather?", false, json!({}));
    let first = post(&daemon, &body, &[("x-llmops-cache", "no-store")]).await;
    assert_eq!(first.cache, "miss");
    assert!(!trace(&daemon, &first.id).await.cache.expect("outcome").stored);
    let second = post(&daemon, &body, &[]).await;
    assert_eq!(second.cache, "miss", "no-store kept nothing");
    filled(&daemon, &second).await;
    assert_eq!(post(&daemon, &body, &[]).await.cache, "hit");
    let skipped = post(&daemon, &body, &[("x-llmops-cache", "no-cache")]).await;
    assert_eq!(skipped.cache, "bypass", "no-cache does not read");
    assert_eq!(upstream.stats().requests, 3);

    // ttl=1: the entry answers until it is a second old, never after.
    let short = chat("short-lived", false, json!({}));
    let stored = post(&daemon, &short, &[("x-llmops-cache", "ttl=1")]).await;
    let stored_at = Instant::now();
    filled(&daemon, &stored).await;
    let expired_after = loop {
        let answer = post(&daemon, &short, &[("x-llmops-cache", "no-store")]).await;
        if answer.cache == "miss" {
            break stored_at.elapsed();
        }
        assert_eq!(answer.cache, "hit");
        assert!(stored_at.elapsed() < Duration::from_secs(10), "the entry outlived its TTL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(expired_after >= Duration::from_millis(900), "expired early: {expired_after:?}");

    // Hostile directives are refused by name.
    let bad = post(&daemon, &body, &[("x-llmops-cache", "max-age=5")]).await;
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("x-llmops-cache"));

    let cleared = ctl(&daemon, &["cache", "clear", "--route", "cached"]).await;
    assert!(cleared.starts_with("cleared "), "{cleared}");
    assert_eq!(post(&daemon, &body, &[]).await.cache, "miss");
    let output = daemon.llmopsctl_async(&["cache", "clear", "--route", "nope"]).await.expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no response cache"));
    let long = "r".repeat(300);
    let output = daemon.llmopsctl_async(&["cache", "clear", "--route", &long]).await.expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("longer than 256 bytes") && !stderr.contains(&long), "{stderr}");
}

#[tokio::test]
async fn persisted_entries_survive_a_restart() {
    let (dir, upstream, mut daemon) = start().await;
    let body = chat("remember me", true, json!({}));
    let first = post(&daemon, &body, &[]).await;
    filled(&daemon, &first).await;
    daemon.terminate();
    daemon.wait_exit(Duration::from_secs(20)).await.expect("llmopsd stops");
    let prices = dir.path().join("prices.toml");
    let daemon = Daemon::start(&config(&upstream, &prices), &dir.path().join("data")).await.expect("restarts");
    let again = post(&daemon, &body, &[]).await;
    assert_eq!(again.cache, "hit");
    assert_eq!(again.body, first.body);
    assert_eq!(upstream.stats().requests, 1);
}
