//! The embedded engine configured beyond the default chat model, against the real daemon: `/v1/embeddings`
//! with the default model run as an embedding model (`pooling = "mean"`: one unit vector per input, batched,
//! the same vector for the same text in float and base64, refusals by name, and a generation model that says
//! it does not embed), and a Jinja `chat_template` file used instead of the GGUF's template.
use base64::Engine as _;
use llmops_e2e::daemon::{wait_until, Daemon};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn start(engine: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        format!("[engines.local]\nkind = \"embedded\"\nmodel = \"smollm2-135m-instruct\"\nthreads = 1\n{engine}\n");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    let ready = wait_until(WAIT, || async {
        let answer = http.get(daemon.url("/readyz")).send().await;
        answer.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "the embedded engine did not become ready\n{}", daemon.log_tail(40));
    (dir, daemon)
}

async fn embed(daemon: &Daemon, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(daemon.url("/v1/embeddings"))
        .json(&body)
        .timeout(WAIT)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

fn floats(item: &Value) -> Vec<f32> {
    match &item["embedding"] {
        Value::Array(values) => values.iter().map(|v| v.as_f64().expect("number") as f32).collect(),
        Value::String(base64) => base64::engine::general_purpose::STANDARD
            .decode(base64)
            .expect("base64")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        other => panic!("not an embedding: {other}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn inputs_are_embedded_together_as_unit_vectors_in_float_and_base64() {
    let (_dir, daemon) = start("pooling = \"mean\"\nserved_name = \"smol-embed\"").await;
    let texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue rose by 4%."];
    let (status, answer) = embed(&daemon, json!({"model": "smol-embed", "input": texts})).await;
    assert_eq!(status, 200, "{answer}");
    let data = answer["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    let vectors: Vec<Vec<f32>> = data.iter().map(floats).collect();
    for (i, vector) in vectors.iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        assert_eq!(vector.len(), 576, "SmolLM2-135M's hidden size");
        let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "unit length, got {norm}");
    }
    assert!(
        cosine(&vectors[0], &vectors[1]) > cosine(&vectors[0], &vectors[2]),
        "two sentences about a cat are closer to each other than to one about revenue"
    );
    assert!(answer["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 10), "{answer}");

    // One input alone, in base64 (the OpenAI SDKs' default), is the same vector as in the batch.
    let (status, alone) =
        embed(&daemon, json!({"model": "smol-embed", "input": texts[2], "encoding_format": "base64"})).await;
    assert_eq!(status, 200, "{alone}");
    let single = floats(&alone["data"][0]);
    assert!(cosine(&single, &vectors[2]) > 0.999, "batching does not change a vector");
    let (status, same_size) = embed(&daemon, json!({"model": "smol-embed", "input": "x", "dimensions": 576})).await;
    assert_eq!(status, 200, "{same_size}");
}

#[tokio::test]
async fn what_an_embedding_engine_cannot_do_is_refused_by_name() {
    let (_dir, daemon) = start("pooling = \"mean\"\ncontext_size = 64").await;
    let model = "smollm2-135m-instruct";
    let cases = [
        (json!({"model": model, "input": "x", "dimensions": 64}), "dimensions"),
        (json!({"model": model, "input": "x", "encoding_format": "int8"}), "encoding_format"),
        (json!({"model": model, "input": "x", "truncate": "END"}), "truncate"),
        (json!({"model": model, "input": []}), "input"),
        (json!({"model": model, "input": "word ".repeat(200)}), "input"),
        (json!({"model": model, "input": vec!["x"; 2049]}), "input"),
    ];
    for (body, param) in cases {
        let (status, answer) = embed(&daemon, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["param"], param, "{answer}");
    }
    let chat = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let response =
        reqwest::Client::new().post(daemon.url("/v1/chat/completions")).json(&chat).send().await.expect("request");
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("JSON");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("embeddings only"), "{answer}");
    let (status, _) = embed(&daemon, json!({"model": model, "input": "still answering"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_generation_model_says_it_does_not_embed() {
    let (_dir, daemon) = start("").await;
    let (status, answer) = embed(&daemon, json!({"model": "smollm2-135m-instruct", "input": "x"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("`pooling`"), "{answer}");
}

#[tokio::test]
async fn a_jinja_chat_template_file_replaces_the_ggufs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("chat.jinja");
    // Hugging Face style: Python string methods and raise_exception, which llama.cpp's built-in engine cannot run.
    std::fs::write(
        &template,
        "{% for m in messages %}{% if m.content.startswith('forbidden') %}{{ raise_exception('the template \
         refuses: ' + m.content.upper()) }}{% endif %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n\
         {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .expect("template written");
    let (_daemon_dir, daemon) = start(&format!("chat_template = {:?}", template.display().to_string())).await;
    let http = reqwest::Client::new();
    let ask = |content: &str| {
        json!({"model": "smollm2-135m-instruct", "max_tokens": 5, "temperature": 0,
                                     "messages": [{"role": "user", "content": content}]})
    };
    let refused =
        http.post(daemon.url("/v1/chat/completions")).json(&ask("forbidden words")).send().await.expect("request");
    assert_eq!(refused.status(), 400);
    let answer: Value = refused.json().await.expect("JSON");
    assert_eq!(answer["error"]["message"], "the template refuses: FORBIDDEN WORDS", "{answer}");
    // The template's ChatML, as the GGUF's own would render it: the same prompt tokens.
    let ours: Value = http
        .post(daemon.url("/v1/chat/completions"))
        .json(&ask("  Hi  "))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    let (_plain_dir, plain) = start("").await;
    let theirs: Value = http
        .post(plain.url("/v1/chat/completions"))
        .json(&ask("Hi"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ours["usage"]["prompt_tokens"], theirs["usage"]["prompt_tokens"], "{ours}\n{theirs}");
}
