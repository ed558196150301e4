//! An OpenAI-compatible upstream (vLLM, llama.cpp server, SGLang, TGI, Ollama `/v1`, hosted APIs).
use super::metrics::ScrapedLoad;
use super::status::error_chain;
use super::{Answer, Endpoint, EngineLoad, Health, HealthState, UpstreamError};
use crate::config::OpenAiEngineConfig;
use crate::sync::MutexExt;
use futures::StreamExt;
use std::sync::Mutex;
use std::time::Duration;

pub struct OpenAiEngine {
    pub name: String,
    pub base_url: String,
    pub models: Vec<String>,
    pub first_token_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub request_timeout: Duration,
    api_key: Option<String>,
    client: reqwest::Client,
    /// Endpoint URLs parsed once (URL parsing showed up in request-path profiles).
    urls: Vec<(Endpoint, reqwest::Url)>,
    health: Mutex<HealthState>,
    /// Its Prometheus metrics, if scraped; and what the last scrape found.
    metrics_url: Option<String>,
    scraped: Mutex<Option<Result<EngineLoad, String>>>,
    /// The last page read, whose prefix-cache counters the next scrape's hit rate is measured from.
    last_page: Mutex<Option<ScrapedLoad>>,
}

/// A scrape slower than this is abandoned; the next interval tries again.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

impl OpenAiEngine {
    pub fn new(name: &str, config: &OpenAiEngineConfig) -> Result<Self, String> {
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                format!("engines.{name}.api_key_env names {var}, but that environment variable is not set")
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("engines.{name}: cannot build HTTP client: {e}"))?;
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let urls = Endpoint::ALL
            .iter()
            .map(|endpoint| {
                let url = format!("{base_url}/{}", endpoint.upstream_path());
                reqwest::Url::parse(&url)
                    .map(|parsed| (*endpoint, parsed))
                    .map_err(|e| format!("engines.{name}: {url}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: name.to_string(),
            base_url,
            urls,
            models: config.models.clone(),
            first_token_timeout: Duration::from_millis(config.first_token_timeout_ms),
            stream_idle_timeout: Duration::from_millis(config.stream_idle_timeout_ms.max(1)),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            api_key,
            client,
            health: Mutex::new(HealthState {
                health: Health::Unknown,
                last_error: String::new(),
                last_checked_unix_ms: 0,
            }),
            metrics_url: super::metrics::scrape_url(config),
            scraped: Mutex::new(None),
            last_page: Mutex::new(None),
        })
    }

    /// Reads the engine's metrics now; `None` when it has none to scrape.
    pub async fn scrape_load(&self) -> Option<Result<EngineLoad, String>> {
        let url = self.metrics_url.as_deref()?;
        let result = super::metrics::scrape(&self.client, url, SCRAPE_TIMEOUT)
            .await
            .map(|load| {
                // A failed scrape leaves the last page in place: the window only grows longer.
                let previous = self.last_page.locked().replace(load);
                EngineLoad {
                    running: load.running,
                    waiting: load.waiting,
                    kv_cache_used_fraction: load.kv_cache_used_fraction,
                    prefix_cache_hit_rate: super::metrics::prefix_cache_hit_rate(previous.as_ref(), &load),
                    prefix_cache_queried_tokens: load.prefix_cache_queries,
                    prefix_cache_hit_tokens: load.prefix_cache_hits,
                }
            })
            .map_err(|error| error.to_string());
        *self.scraped.locked() = Some(result.clone());
        Some(result)
    }

    /// What the last scrape found, if it found anything.
    pub fn scraped_load(&self) -> Option<EngineLoad> {
        self.scraped.locked().as_ref()?.as_ref().ok().copied()
    }

    /// POSTs `body` to the endpoint's URL and waits for the answer's headers (first-token timeout).
    pub async fn post(&self, endpoint: Endpoint, body_json: &serde_json::Value) -> Result<Answer, UpstreamError> {
        // Every endpoint's URL was parsed in `new`, so the lookup cannot miss.
        let Some((_, url)) = self.urls.iter().find(|(known, _)| *known == endpoint) else {
            return Err(UpstreamError::Connect {
                engine: self.name.clone(),
                url: format!("{}/{}", self.base_url, endpoint.upstream_path()),
                message: "no URL for this endpoint".into(),
            });
        };
        let mut request = self.client.post(url.clone()).json(body_json);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let sent_at = tokio::time::Instant::now();
        let response = match tokio::time::timeout(self.first_token_timeout, request.send()).await {
            Err(_) => {
                let error = UpstreamError::Timeout {
                    engine: self.name.clone(),
                    timeout_ms: self.first_token_timeout.as_millis() as u64,
                };
                self.mark(Health::Unhealthy, error.to_string());
                return Err(error);
            }
            Ok(Err(e)) => {
                let error = UpstreamError::Connect {
                    engine: self.name.clone(),
                    url: url.to_string(),
                    message: error_chain(&e),
                };
                self.mark(Health::Unhealthy, error.to_string());
                return Err(error);
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| crate::resilience::retry::parse_retry_after(value, std::time::SystemTime::now()));
        if status.is_success() {
            let status = status.as_u16();
            let mut body = response.bytes_stream().map(|read| read.map_err(|e| error_chain(&e))).boxed();
            // A streaming server answers with headers at once and generates later: the first-token timeout
            // also bounds the first bytes of the stream, while falling back is still possible.
            if body_streams(body_json) {
                let first = tokio::time::timeout_at(sent_at + self.first_token_timeout, body.next()).await;
                let Ok(first) = first else {
                    let error = UpstreamError::Timeout {
                        engine: self.name.clone(),
                        timeout_ms: self.first_token_timeout.as_millis() as u64,
                    };
                    self.mark(Health::Unhealthy, error.to_string());
                    return Err(error);
                };
                body = idle_bounded(futures::stream::iter(first).chain(body).boxed(), self.stream_idle_timeout);
            }
            self.mark(Health::Healthy, String::new());
            return Ok(Answer { status, body });
        }
        let text = tokio::time::timeout(Duration::from_secs(5), read_prefix(response, MAX_ERROR_BODY_BYTES))
            .await
            .ok()
            .and_then(Result::ok);
        let body = text
            .as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .unwrap_or_else(|| serde_json::Value::String(text.unwrap_or_default()));
        if status.is_server_error() {
            self.mark(Health::Unhealthy, format!("HTTP {status}"));
        }
        Err(UpstreamError::Status { engine: self.name.clone(), status: status.as_u16(), body, retry_after })
    }

    /// Probes `GET {base_url}/models` and records the result; true when the engine answered.
    pub async fn probe(&self) -> bool {
        let url = format!("{}/models", self.base_url);
        let mut request = self.client.get(&url).timeout(Duration::from_secs(5));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                self.mark(Health::Healthy, String::new());
                return true;
            }
            Ok(r) => self.mark(Health::Unhealthy, format!("GET {url}: HTTP {}", r.status())),
            Err(e) => self.mark(Health::Unhealthy, format!("GET {url}: {}", error_chain(&e))),
        }
        false
    }

    pub fn health(&self) -> HealthState {
        self.health.locked().clone()
    }

    fn mark(&self, health: Health, last_error: String) {
        *self.health.locked() = HealthState { health, last_error, last_checked_unix_ms: crate::clock::unix_ms() };
    }
}

/// `body`, ended with an error when the engine sends nothing for `idle`.
fn idle_bounded(
    body: futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>,
    idle: Duration,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, String>> {
    let timer = Box::pin(tokio::time::sleep(idle));
    IdleBounded { body: Some(body), idle, timer, last_data: tokio::time::Instant::now() }.boxed()
}

/// The stream of [`idle_bounded`]. Chunks only note when they came; the one timer is re-armed only when it
/// fires early, not per chunk (a stream is dozens of chunks, and re-arming a timer each time showed in profiles).
struct IdleBounded {
    /// None once ended.
    body: Option<futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>>,
    idle: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    last_data: tokio::time::Instant,
}

impl futures::Stream for IdleBounded {
    type Item = Result<bytes::Bytes, String>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else { return Poll::Ready(None) };
        match body.poll_next_unpin(cx) {
            Poll::Ready(Some(read)) => {
                this.last_data = tokio::time::Instant::now();
                return Poll::Ready(Some(read));
            }
            Poll::Ready(None) => {
                this.body = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = this.last_data + this.idle;
            if tokio::time::Instant::now() >= deadline {
                this.body = None;
                let message = format!("no data for {} ms (stream_idle_timeout_ms)", this.idle.as_millis());
                return Poll::Ready(Some(Err(message)));
            }
            this.timer.as_mut().reset(deadline);
        }
    }
}

/// How much of an engine's error answer is kept (it is quoted to the client and on the trace).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// At most `limit` bytes of the body, as text; the rest is not read.
async fn read_prefix(response: reqwest::Response, limit: usize) -> Result<String, reqwest::Error> {
    let mut body = response.bytes_stream();
    let mut kept = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        kept.extend_from_slice(&chunk[..chunk.len().min(limit - kept.len())]);
        if kept.len() >= limit {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// A prompt too long for this engine's context (OpenAI's and llmopsd's `context_length_exceeded`, vLLM's and
/// llama.cpp's wording): a target with a larger context may still answer it.
fn body_streams(body: &serde_json::Value) -> bool {
    body.get("stream").and_then(serde_json::Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(status: u16, body: serde_json::Value) -> UpstreamError {
        UpstreamError::Status { engine: "e".into(), status, body, retry_after: None }
    }

    #[test]
    fn falls_back_on_overload_and_too_long_prompts_but_not_on_other_refusals() {
        assert!(status(503, json!({})).should_fall_back());
        assert!(status(429, json!({})).should_fall_back());
        let vllm = json!({"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens", "code": 400}});
        assert!(status(400, vllm).should_fall_back());
        assert!(status(400, json!({"error": {"code": "context_length_exceeded", "message": "x"}})).should_fall_back());
        assert!(!status(400, json!({"error": {"message": "temperature must be at most 2"}})).should_fall_back());
        assert!(!status(401, json!({})).should_fall_back());
    }
}
