//! Closed-loop HTTP load: N workers, each with its own keep-alive client, send one request after another
//! until a deadline and record per-request latency in microseconds.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use hdrhistogram::Histogram;

/// No single request may hang the benchmark.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Histogram range: 1 µs to 2 min, 3 significant digits.
const MAX_RECORDED_MICROS: u64 = 120_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Non-streaming; latency is the whole response, body included.
    Full,
    /// Streaming; latency is the time to the first body chunk (the rest is still read).
    FirstChunk,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Full => "non-stream full",
            Mode::FirstChunk => "stream 1st chunk",
        }
    }

    fn request_body(self) -> Vec<u8> {
        let mut body = serde_json::json!({
            "model": "fake-model",
            "messages": [{"role": "user", "content": "Say something short."}],
            "max_tokens": 64,
        });
        if self == Mode::FirstChunk {
            body["stream"] = serde_json::json!(true);
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        body.to_string().into_bytes()
    }
}

/// What one cell (target × mode × concurrency) measured.
pub struct CellResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency_micros: Histogram<u64>,
    pub elapsed: Duration,
}

impl CellResult {
    pub fn sent(&self) -> u64 {
        self.ok + self.errors
    }

    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// A latency quantile in milliseconds (0 when nothing succeeded).
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.latency_micros.value_at_quantile(quantile) as f64 / 1000.0
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_RECORDED_MICROS, 3).context("cannot create histogram")
}

/// Sends requests from `concurrency` workers to `url` until `duration` has passed; each worker finishes
/// the request it is in, so every request sent is also answered or failed. With `api_key`, every request
/// carries `Authorization: Bearer API_KEY`.
pub async fn run_cell(
    url: &str,
    api_key: Option<&str>,
    mode: Mode,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<CellResult> {
    let body = Arc::new(mode.request_body());
    let authorization: Option<Arc<str>> = api_key.map(|key| format!("Bearer {key}").into());
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(url.to_owned(), authorization.clone(), body.clone(), mode, deadline)))
        .collect();
    let mut total =
        CellResult { ok: 0, errors: 0, first_error: None, latency_micros: new_histogram()?, elapsed: Duration::ZERO };
    for worker in workers {
        let part = worker.await.context("load worker panicked")??;
        total.ok += part.ok;
        total.errors += part.errors;
        total.first_error = total.first_error.or(part.first_error);
        total.latency_micros.add(&part.latency_micros).context("cannot merge histograms")?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn worker(
    url: String,
    authorization: Option<Arc<str>>,
    body: Arc<Vec<u8>>,
    mode: Mode,
    deadline: Instant,
) -> anyhow::Result<CellResult> {
    // One client per worker: its own keep-alive connection, like an independent caller.
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(1)
        .build()
        .context("cannot build HTTP client")?;
    let mut result =
        CellResult { ok: 0, errors: 0, first_error: None, latency_micros: new_histogram()?, elapsed: Duration::ZERO };
    while Instant::now() < deadline {
        match one_request(&client, &url, authorization.as_deref(), &body, mode).await {
            Ok(latency) => {
                result.ok += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                result.latency_micros.saturating_record(micros.max(1));
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Ok(result)
}

/// One request; its latency as `mode` defines it. The whole answer is always read, so the connection is
/// reused and an answer broken after its first chunk still counts as an error.
async fn one_request(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    body: &[u8],
    mode: Mode,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut request = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let response = request.body(body.to_vec()).send().await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
    }
    match mode {
        Mode::Full => {
            response.bytes().await?;
            Ok(started.elapsed())
        }
        Mode::FirstChunk => {
            let mut chunks = response.bytes_stream();
            let mut first_chunk_at = None;
            // Enough of the end of the stream to see its `data: [DONE]`.
            let mut tail: Vec<u8> = Vec::new();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                first_chunk_at.get_or_insert_with(|| started.elapsed());
                tail.extend_from_slice(&chunk);
                let excess = tail.len().saturating_sub(64);
                tail.drain(..excess);
            }
            let Some(latency) = first_chunk_at else {
                bail!("empty stream");
            };
            if !String::from_utf8_lossy(&tail).contains("[DONE]") {
                bail!("stream ended without [DONE]");
            }
            Ok(latency)
        }
    }
}
