//! End to end with the embedded engine and the real default model (SmolLM2-135M-Instruct, fetched into the
//! model cache by `llmopsd model pull`, which scripts/test.sh runs first). Content checks use a system
//! message and questions this small model gets right.
use futures::StreamExt;
use llmops_e2e::daemon::{wait_until, Daemon, StartOptions};
use serde_json::{json, Value};
use std::time::Duration;

const MODEL: &str = "smollm2-135m-instruct";
const WAIT: Duration = Duration::from_secs(60);
const SYSTEM: &str = "You are a helpful assistant.";

async fn start(engine_extra: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!("[engines.local]\nkind = \"embedded\"\nmodel = \"{MODEL}\"\nthreads = 2\n{engine_extra}\n");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    wait_ready(&daemon).await;
    (dir, daemon)
}

/// The model loads in the background; until then requests get 503.
async fn wait_ready(daemon: &Daemon) {
    let http = reqwest::Client::new();
    let ready = wait_until(WAIT, || async {
        let probe = json!({"model": MODEL, "prompt": "a", "max_tokens": 1});
        let answer = http.post(daemon.url("/v1/completions")).json(&probe).send().await;
        answer.is_ok_and(|r| r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    assert!(ready, "the embedded engine did not become ready\n{}", daemon.log_tail(40));
}

fn ask(question: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn chat(daemon: &Daemon, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(body)
        .timeout(WAIT)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{answer}\n{}", daemon.log_tail(20));
    answer
}

fn content(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"].as_str().expect("content").to_string()
}

/// Streams a chat request; returns the content deltas and the usage chunk.
async fn chat_stream(daemon: &Daemon, body: &Value) -> (Vec<String>, Value, String) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response =
        reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(WAIT, response.text()).await.expect("stream ends").expect("body");
    let mut deltas = Vec::new();
    let mut usage = Value::Null;
    let mut finish = String::new();
    for data in text.split("\n\n").filter_map(|event| event.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("chunk is JSON");
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str().filter(|d| !d.is_empty()) {
            deltas.push(delta.to_string());
        }
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = reason.to_string();
        }
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "stream ends with [DONE]: {text}");
    (deltas, usage, finish)
}

#[tokio::test]
async fn greedy_answer_states_the_fact_with_exact_usage() {
    let (_dir, daemon) = start("").await;
    let answer =
        chat(&daemon, &ask("What is the capital of Germany?", json!({"temperature": 0, "max_tokens": 40}))).await;
    let text = content(&answer);
    assert!(text.contains("Berlin"), "{text}");
    assert_eq!(answer["model"], MODEL);
    let usage = &answer["usage"];
    let completion = usage["completion_tokens"].as_u64().expect("completion tokens");
    assert!(completion > 0 && completion <= 40, "{usage}");
    assert!(usage["prompt_tokens"].as_u64().expect("prompt tokens") > 10, "{usage}");
    let reason = answer["choices"][0]["finish_reason"].as_str().expect("finish reason");
    assert!(reason == "stop" || (reason == "length" && completion == 40), "{answer}");
}

#[tokio::test]
async fn seeded_sampling_repeats_and_streams_the_same_text_and_usage() {
    let (_dir, daemon) = start("").await;
    let body = ask("Write a short poem about the sea.", json!({"temperature": 0.9, "seed": 1234, "max_tokens": 40}));
    let first = chat(&daemon, &body).await;
    let second = chat(&daemon, &body).await;
    assert_eq!(content(&first), content(&second), "same seed, same answer");
    let (deltas, usage, finish) = chat_stream(&daemon, &body).await;
    assert_eq!(deltas.concat(), content(&first), "streamed chunks concatenate to the non-streamed answer");
    assert_eq!(usage, first["usage"], "streams report the same usage");
    assert_eq!(finish, first["choices"][0]["finish_reason"].as_str().expect("finish"));
    let completion = usage["completion_tokens"].as_u64().expect("completion tokens");
    assert!(deltas.len() as u64 <= completion, "at most one chunk per token: {} > {completion}", deltas.len());
}

#[tokio::test]
async fn max_tokens_and_prompt_token_ids_are_counted_exactly() {
    let (_dir, daemon) = start("").await;
    let body = json!({"model": MODEL, "prompt": [504, 2365, 282, 1229, 253, 314], "max_tokens": 7, "temperature": 0});
    let response =
        reqwest::Client::new().post(daemon.url("/v1/completions")).json(&body).send().await.expect("request");
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["usage"]["prompt_tokens"], 6, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 7, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "{answer}");
    assert_eq!(answer["object"], "text_completion");
}

#[tokio::test]
async fn a_stop_sequence_ends_the_answer_before_it() {
    let (_dir, daemon) = start("").await;
    let question = "Name the planets of the solar system.";
    let free = content(&chat(&daemon, &ask(question, json!({"temperature": 0, "max_tokens": 60}))).await);
    // A word from the middle of the greedy answer: with it as the stop sequence, the answer is what came before.
    let words: Vec<&str> = free.split_whitespace().collect();
    assert!(words.len() > 6, "need a longer answer to pick a stop word from: {free}");
    let stop = words[words.len() / 2];
    let expected = &free[..free.find(stop).expect("stop word is in the text")];
    let stopped = chat(&daemon, &ask(question, json!({"temperature": 0, "max_tokens": 60, "stop": [stop]}))).await;
    assert_eq!(content(&stopped), expected, "stop = {stop:?}");
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn a_prompt_over_the_context_window_gets_a_400_naming_both_sizes() {
    let (_dir, daemon) = start("context_size = 128").await;
    let long = "Tell me about the sea. ".repeat(60);
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&ask(&long, json!({})))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    let message = body["error"]["message"].as_str().expect("message");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    assert!(message.contains("maximum context length is 128 tokens"), "{message}");
    assert!(message.contains("your prompt is"), "{message}");
    let asked_too_much = ask("Hi", json!({"max_tokens": 500}));
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/chat/completions"))
        .json(&asked_too_much)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn eight_concurrent_greedy_answers_match_their_single_answers() {
    let (_dir, daemon) = start("parallel = 8").await;
    let questions = [
        "What is the capital of Germany?",
        "What is the capital of France?",
        "What color is the sky?",
        "How many legs does a dog have?",
        "What is 2 + 2?",
        "Name a fruit that is yellow.",
        "What do bees make?",
        "What is the largest ocean?",
    ];
    let body = |q: &str| ask(q, json!({"temperature": 0, "max_tokens": 24}));
    let mut single = Vec::new();
    for question in questions {
        single.push(content(&chat(&daemon, &body(question)).await));
    }
    let together = futures::future::join_all(questions.iter().map(|q| {
        let body = body(q);
        let daemon = &daemon;
        async move { content(&chat(daemon, &body).await) }
    }))
    .await;
    for ((question, alone), batched) in questions.iter().zip(&single).zip(&together) {
        assert_eq!(alone, batched, "{question}: batched decoding changed the answer");
    }
}

/// A streamed chat answer, read as it arrives.
struct Streamed {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    /// Bytes of an event not complete yet.
    partial: Vec<u8>,
    /// Chunks with text received so far (one per decoded token, less what the engine held back).
    tokens: usize,
    finish: Option<String>,
}

impl Streamed {
    async fn open(daemon: &Daemon, body: &Value) -> Streamed {
        let response =
            reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(body).send().await.expect("request");
        assert_eq!(response.status(), 200, "{}", daemon.log_tail(20));
        Streamed { body: response.bytes_stream().boxed(), partial: Vec::new(), tokens: 0, finish: None }
    }

    /// Reads until `more` further chunks of text have arrived; fails if the answer ends first.
    async fn read_tokens(&mut self, more: usize, what: &str) {
        let target = self.tokens + more;
        while self.tokens < target {
            assert_eq!(self.finish, None, "{what}: the answer ended after {} chunks", self.tokens);
            let read = tokio::time::timeout(WAIT, self.body.next()).await;
            let bytes = read.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"));
            let bytes = bytes.unwrap_or_else(|| panic!("{what}: the stream closed")).expect("stream bytes");
            self.partial.extend_from_slice(&bytes);
            while let Some(end) = self.partial.windows(2).position(|pair| pair == b"\n\n") {
                let event: Vec<u8> = self.partial.drain(..end + 2).collect();
                let event = String::from_utf8_lossy(&event);
                let Some(chunk) =
                    event.trim().strip_prefix("data: ").and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue; // [DONE]
                };
                let choice = &chunk["choices"][0];
                if choice["delta"]["content"].as_str().is_some_and(|text| !text.is_empty()) {
                    self.tokens += 1;
                }
                if let Some(reason) = choice["finish_reason"].as_str() {
                    self.finish = Some(reason.to_string());
                }
            }
        }
    }
}

/// Continuous batching, end to end. Four long greedy answers (a story this model tells for far longer than
/// the test reads) are streamed at once: once each has sent text, the engine reports all `parallel` = 4
/// sequences running, and still all 4 after every stream has received more text (run one after another, a
/// later stream would receive nothing until an earlier one had ended). Then one client leaves, and a short
/// request sent while the other three are mid-answer takes the freed sequence and is answered while all three
/// still run: it did not wait for them. Each claim is about order (whose tokens arrived while whose sequence
/// was held), not about speed.
#[tokio::test]
async fn long_answers_decode_together_and_a_short_one_joins_them_mid_answer() {
    let (_dir, daemon) = start("parallel = 4").await;
    let story = "Write a very long story about a dragon who learns to count.";
    let long = ask(story, json!({"temperature": 0, "max_tokens": 1500, "stream": true}));
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(Streamed::open(&daemon, &long).await);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.read_tokens(1, &format!("long answer {i}")).await;
    }
    assert_eq!(engine_load(&daemon).await, (4, 0), "all four answers hold a sequence at once");
    for round in 0..3 {
        for (i, stream) in streams.iter_mut().enumerate() {
            stream.read_tokens(2, &format!("long answer {i}, round {round}")).await;
        }
    }
    assert_eq!(engine_load(&daemon).await, (4, 0), "every answer got more text while all four were running");

    // One client leaves: its sequence is freed at once, the other three decode on.
    drop(streams.remove(0));
    let freed = wait_until(WAIT, || async { engine_load(&daemon).await == (3, 0) }).await;
    assert!(freed, "the sequence of the client that left is freed: {:?}", engine_load(&daemon).await);

    // A short question, sent while the three are mid-answer, is answered while all three still run.
    let short =
        chat(&daemon, &ask("What is the capital of Germany?", json!({"temperature": 0, "max_tokens": 8}))).await;
    let completion = short["usage"]["completion_tokens"].as_u64().expect("completion tokens");
    assert!((1..=8).contains(&completion), "{short}");
    // Its own sequence is freed as it ends; the three long answers still hold theirs (none has ended).
    let three = wait_until(WAIT, || async { engine_load(&daemon).await == (3, 0) }).await;
    assert!(three, "the long answers outlast the short one: {:?}", engine_load(&daemon).await);
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.read_tokens(2, &format!("long answer {} after the short one", i + 1)).await;
        assert_eq!(stream.finish, None, "long answer {} ended", i + 1);
    }
}

/// The engine's load as GetStatus reports it (running, waiting).
async fn engine_load(daemon: &Daemon) -> (u64, u64) {
    let output = daemon.llmopsctl_async(&["status", "--json"]).await.expect("llmopsctl status");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    let engine = &status["engines"][0];
    (engine["running"].as_u64().unwrap_or(0), engine["waiting"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_slot_and_a_full_queue_gets_429() {
    let (_dir, daemon) = start("parallel = 1\nqueue_limit = 0").await;
    let http = reqwest::Client::new();
    let long = ask("Tell me a very long story about a dragon.", json!({"stream": true, "max_tokens": 1500}));
    let response = http.post(daemon.url("/v1/chat/completions")).json(&long).send().await.expect("request");
    let mut chunks = response.bytes_stream();
    chunks.next().await.expect("first chunk").expect("bytes");
    chunks.next().await.expect("second chunk").expect("bytes");
    assert_eq!(engine_load(&daemon).await.0, 1, "the stream holds the only sequence");

    let refused =
        http.post(daemon.url("/v1/chat/completions")).json(&ask("Hi", json!({}))).send().await.expect("request");
    assert_eq!(refused.status(), 429, "no sequence free and no queue");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "queue_full", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    drop(chunks);
    let freed = wait_until(Duration::from_secs(10), || async { engine_load(&daemon).await == (0, 0) }).await;
    assert!(freed, "the sequence of a client that left is freed without finishing its answer");
    let next = chat(&daemon, &ask("What is the capital of Germany?", json!({"temperature": 0, "max_tokens": 8}))).await;
    assert_eq!(next["usage"]["completion_tokens"].as_u64().map(|n| n > 0), Some(true));
}

#[tokio::test]
async fn without_the_model_the_daemon_starts_and_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty_cache = dir.path().join("models");
    let options = StartOptions {
        env: vec![("LLMOPS_MODEL_DIR".into(), empty_cache.display().to_string())],
        ..StartOptions::default()
    };
    // No config at all: the default model is served in-process.
    let daemon = Daemon::start_with("", dir.path(), &options).await.expect("starts without the model");
    let http = reqwest::Client::new();
    let models: Value = http.get(daemon.url("/v1/models")).send().await.expect("models").json().await.expect("JSON");
    assert_eq!(models["data"][0]["id"], MODEL);
    let response =
        http.post(daemon.url("/v1/chat/completions")).json(&ask("Hi", json!({}))).send().await.expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("llmopsd model pull smollm2-135m-instruct"), "{message}");
    let output = daemon.llmopsctl_async(&["status", "--json"]).await.expect("llmopsctl status");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    assert_eq!(status["engines"][0]["kind"], "embedded", "{status}");
    assert_eq!(status["engines"][0]["health"], "unhealthy", "{status}");
    assert!(status["engines"][0]["last_error"].as_str().unwrap_or_default().contains("model pull"), "{status}");
}

#[tokio::test]
async fn a_streamed_answer_is_traced_with_exact_tokens_and_one_arrival_time_per_chunk() {
    let (_dir, daemon) = start("").await;
    let mut body = ask("What is the capital of Germany?", json!({"temperature": 0, "max_tokens": 16, "stream": true}));
    body["stream_options"] = json!({"include_usage": true});
    let response =
        reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("request");
    assert_eq!(response.headers()["x-llmops-served-by"], "local/smollm2-135m-instruct");
    let id = response.headers()["x-request-id"].to_str().expect("request id").to_string();
    let text = response.text().await.expect("body");
    let usage: Value = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|chunk| !chunk["usage"].is_null())
        .map(|chunk| chunk["usage"].clone())
        .expect("usage chunk");
    let trace = wait_for_trace(&daemon, &id).await;
    assert_eq!(trace["status"], "ok", "{trace}");
    assert_eq!(trace["engine"], "local");
    assert_eq!(trace["tokens_estimated"], false);
    assert_eq!(trace["output_tokens"], usage["completion_tokens"]);
    assert_eq!(trace["input_tokens"], usage["prompt_tokens"]);
    let offsets = trace["chunk_offsets_ms"].as_array().expect("offsets");
    assert!(!offsets.is_empty() && offsets.len() as u64 <= usage["completion_tokens"].as_u64().unwrap_or(0), "{trace}");
    assert!(trace["response_text"].as_str().unwrap_or_default().contains("Berlin"), "{trace}");
}

async fn wait_for_trace(daemon: &Daemon, id: &str) -> Value {
    let mut found = Value::Null;
    let written = wait_until(Duration::from_secs(15), || async {
        match daemon.llmopsctl_async(&["trace", id, "--json"]).await {
            Ok(output) if output.status.success() => serde_json::from_slice::<Value>(&output.stdout).is_ok(),
            _ => false,
        }
    })
    .await;
    assert!(written, "trace {id} was not written");
    if let Ok(output) = daemon.llmopsctl_async(&["trace", id, "--json"]).await {
        found = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    }
    found
}
