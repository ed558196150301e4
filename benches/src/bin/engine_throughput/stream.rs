//! One streaming chat completion, timed per token on the client's side: when the first and the last
//! content chunk arrived, and the token counts from the final usage chunk.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::{json, Value};

/// Makes every request's prompt differ from its first tokens on, so no server answers from a prompt
/// (prefix) cache: llama-server caches prompts per slot by default.
static NONCE: AtomicU64 = AtomicU64::new(0);

pub struct Prompt {
    pub system: String,
    pub user: String,
}

#[derive(Debug, Default)]
pub struct StreamStats {
    /// Since the request was sent.
    pub first_token: Option<Duration>,
    pub last_token: Option<Duration>,
    /// Chunks with non-empty `delta.content` (about one per token).
    pub content_chunks: u64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The answer: every `delta.content` in order (constrained-decoding parses it).
    pub content: String,
    /// The last non-null `finish_reason` ("stop", "length", ...).
    pub finish_reason: Option<String>,
    /// `data: [DONE]` was seen (false when the deadline cut the stream).
    pub finished: bool,
}

impl StreamStats {
    /// Decode rate in tokens/s: the tokens after the first over the time from the first to the last.
    pub fn decode_rate(&self) -> Option<f64> {
        let tokens = self.completion_tokens?;
        let span = self.last_token?.checked_sub(self.first_token?)?.as_secs_f64();
        (tokens >= 2 && span > 0.0).then(|| (tokens - 1) as f64 / span)
    }

    /// Tokens this request produced: the usage count, else the content chunks.
    pub fn tokens(&self) -> u64 {
        self.completion_tokens.unwrap_or(self.content_chunks)
    }
}

/// The HTTP client for every request here. It opens a connection per request: llama-server closes the
/// connection after each streamed answer without saying so (no `Connection: close`), and a client that
/// reuses it fails with "connection closed before message completed". Loopback connects cost microseconds,
/// the same for both servers.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(0).build().context("cannot build HTTP client")
}

/// A streaming, greedy chat request for `model` that reports usage.
pub fn request_body(model: &str, prompt: &Prompt, max_tokens: u32) -> Value {
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": format!("Session {nonce}. {}", prompt.system)},
            {"role": "user", "content": prompt.user},
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// Sends `body` to `url` and reads the event stream to its end. With a `deadline`, stops there and returns
/// what arrived so far (`finished` false); the client's own timeout bounds the rest.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    deadline: Option<Instant>,
) -> anyhow::Result<StreamStats> {
    let started = Instant::now();
    let mut stats = StreamStats::default();
    let Some(response) = until(deadline, client.post(url).json(body).send()).await else {
        return Ok(stats);
    };
    let response = response.context("request failed")?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
    }
    let mut chunks = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(next) = until(deadline, chunks.next()).await {
        let Some(chunk) = next else { break };
        let chunk = chunk.context("the stream broke")?;
        let at = started.elapsed();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            handle_line(&line, at, &mut stats)?;
        }
    }
    let cut_by_deadline = deadline.is_some_and(|d| Instant::now() >= d);
    if !stats.finished && !cut_by_deadline {
        bail!("the stream ended without `data: [DONE]`");
    }
    Ok(stats)
}

/// `future`'s output, or None when `deadline` passes first.
async fn until<F: std::future::Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), future).await.ok(),
        None => Some(future.await),
    }
}

/// One server-sent-events line; `at` is when the bytes holding it arrived.
fn handle_line(line: &[u8], at: Duration, stats: &mut StreamStats) -> anyhow::Result<()> {
    let line = String::from_utf8_lossy(line);
    let Some(data) = line.trim().strip_prefix("data:") else {
        return Ok(());
    };
    let data = data.trim();
    if data == "[DONE]" {
        stats.finished = true;
        return Ok(());
    }
    let event: Value = serde_json::from_str(data).with_context(|| format!("event is not JSON: {data:.200}"))?;
    if let Some(error) = event.get("error") {
        bail!("error event: {error}");
    }
    let content = event.pointer("/choices/0/delta/content").and_then(Value::as_str).unwrap_or("");
    if !content.is_empty() {
        stats.first_token.get_or_insert(at);
        stats.last_token = Some(at);
        stats.content_chunks += 1;
        stats.content.push_str(content);
    }
    if let Some(reason) = event.pointer("/choices/0/finish_reason").and_then(Value::as_str) {
        stats.finish_reason = Some(reason.to_owned());
    }
    if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
        stats.prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64);
        stats.completion_tokens = usage.get("completion_tokens").and_then(Value::as_u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_give_times_and_usage() {
        let mut stats = StreamStats::default();
        let ms = Duration::from_millis;
        for (line, at) in [
            (r#"data: {"choices":[{"delta":{"role":"assistant","content":null}}]}"#, ms(5)),
            (r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#, ms(10)),
            (": keep-alive", ms(15)),
            (r#"data: {"choices":[{"delta":{"content":" there"},"finish_reason":null}]}"#, ms(30)),
            (r#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#, ms(30)),
            (r#"data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#, ms(31)),
            ("data: [DONE]", ms(32)),
        ] {
            handle_line(line.as_bytes(), at, &mut stats).expect("valid line");
        }
        assert_eq!((stats.first_token, stats.last_token), (Some(ms(10)), Some(ms(30))));
        assert_eq!((stats.content_chunks, stats.prompt_tokens, stats.completion_tokens), (2, Some(7), Some(3)));
        assert!(stats.finished);
        assert_eq!((stats.content.as_str(), stats.finish_reason.as_deref()), ("Hi there", Some("stop")));
        assert_eq!(stats.decode_rate(), Some(100.0));
    }

    #[test]
    fn error_events_fail() {
        let mut stats = StreamStats::default();
        assert!(handle_line(br#"data: {"error":{"message":"boom"}}"#, Duration::ZERO, &mut stats).is_err());
    }
}
