//! The response cache on the request path: whether a request may be answered from the cache and stored in it
//! (route config, determinism, the client's `x-llmops-cache` directives), and a hit played back as a trace
//! of its own (an attempt on engine `cache`, no engine cost, the tokens and USD it saved).
use super::error::GatewayError;
use super::request::{ClientRequest, Endpoint};
use super::trace_guard::TraceGuard;
use crate::cache::{key, CacheConfig, Entry, Key, Outcome, ResponseCache};
use crate::router::Target;
use crate::trace::model::CacheOutcome;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use std::sync::Arc;

/// The request header with the client's directives, and the response header that says what happened.
pub const HEADER: &str = "x-llmops-cache";
/// The directives header is short: longer is refused.
const MAX_HEADER_BYTES: usize = 128;

/// The engine name a hit's attempt carries (reserved: no engine may be called that).
pub const CACHE_ENGINE: &str = "cache";

/// `x-llmops-cache: no-cache | no-store | ttl=S` (comma-separated).
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    /// Do not answer from the cache.
    pub no_cache: bool,
    /// Do not keep the answer.
    pub no_store: bool,
    /// Keep it at most this long (never longer than the route's `ttl_s`).
    pub ttl_s: Option<u64>,
}

impl Directives {
    pub fn parse(headers: &HeaderMap) -> Result<Self, GatewayError> {
        let mut directives = Self::default();
        let Some(value) = headers.get(HEADER) else { return Ok(directives) };
        let bad = |why: String| GatewayError::invalid_param(HEADER, format!("invalid {HEADER} header: {why}"));
        if value.len() > MAX_HEADER_BYTES {
            return Err(bad(format!("longer than {MAX_HEADER_BYTES} bytes")));
        }
        let text = value.to_str().map_err(|_| bad("not visible ASCII".into()))?;
        for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.to_ascii_lowercase().as_str() {
                "no-cache" => directives.no_cache = true,
                "no-store" => directives.no_store = true,
                other => match other.strip_prefix("ttl=").map(str::parse::<u64>) {
                    Some(Ok(seconds)) => directives.ttl_s = Some(seconds),
                    _ => {
                        let shown: String = directive.chars().take(40).collect();
                        return Err(bad(format!("{shown:?} is not no-cache, no-store or ttl=SECONDS")));
                    }
                },
            }
        }
        Ok(directives)
    }
}

/// What the cache does for one request.
pub enum Decision {
    /// The route has no cache.
    Off,
    /// Neither read nor written (the client said no-cache and no-store, or the request is not deterministic).
    Bypass,
    /// Looked up unless `read` is false; the answer kept for `ttl_ms` when `write`.
    Use { key: Key, ttl_ms: i64, read: bool, write: bool },
}

pub fn decide(
    cache: &ResponseCache,
    endpoint: Endpoint,
    request: &ClientRequest,
    tenant: &str,
    targets: &[Target],
    directives: &Directives,
) -> Decision {
    let Some(config) = cache.config(&request.model) else { return Decision::Off };
    // Embeddings are the same for the same input; generation only at temperature 0 or with a seed.
    let deterministic = endpoint == Endpoint::Embeddings || key::is_deterministic(&request.body);
    if config.deterministic_only && !deterministic {
        return Decision::Bypass;
    }
    let ttl_s = directives.ttl_s.map_or(config.ttl_s, |ttl| ttl.min(config.ttl_s));
    let (read, write) = (!directives.no_cache, !directives.no_store && ttl_s > 0);
    if !read && !write {
        return Decision::Bypass;
    }
    let pairs: Vec<(&str, &str)> = targets.iter().map(|t| (t.engine.name(), t.model.as_str())).collect();
    let prompt = (request.prompt_id.as_str(), request.prompt_version.as_str());
    let key = key::cache_key(endpoint.name(), tenant, &pairs, prompt, &request.body);
    Decision::Use { key, ttl_ms: i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX), read, write }
}

/// What the trace and the response header say.
pub fn outcome(result: &str, key: Option<&Key>) -> CacheOutcome {
    CacheOutcome { result: result.into(), key: key.map(key::hex).unwrap_or_default(), ..CacheOutcome::default() }
}

/// Marks a response with what the cache did.
pub fn mark(response: &mut Response, result: &str) {
    if let Ok(value) = HeaderValue::from_str(result) {
        response.headers_mut().insert(HEADER, value);
    }
}

/// A request that missed and may be stored: what the trace guard needs to keep its answer.
pub struct Fill {
    pub cache: Arc<ResponseCache>,
    pub route: String,
    pub key: Key,
    pub ttl_ms: i64,
}

impl Fill {
    /// Keeps the answer of a request that ended well; returns when it was created (to settle its cost later).
    pub fn store(self, body: crate::cache::CachedBody, trace: &crate::trace::Trace) -> Option<Stored> {
        let now = self.cache.now_ms();
        let entry = Entry {
            body,
            created_ms: now,
            expires_ms: now.saturating_add(self.ttl_ms),
            model: trace.model_served.clone(),
            input_tokens: trace.input_tokens,
            output_tokens: trace.output_tokens,
            cost_usd: trace.cost_usd.unwrap_or(0.0),
            source_trace_id: trace.id.clone(),
        };
        self.cache.put(&self.route, self.key, entry).then_some(Stored {
            cache: self.cache,
            route: self.route,
            key: self.key,
            created_ms: now,
        })
    }
}

/// An entry just stored, whose cost may still change (energy is attributed after the next sample).
pub struct Stored {
    cache: Arc<ResponseCache>,
    route: String,
    key: Key,
    created_ms: i64,
}

impl Stored {
    pub fn settle(self, cost_usd: f64) {
        self.cache.set_cost(&self.route, &self.key, self.created_ms, cost_usd);
    }
}

/// Fills a hit's trace: the attempt on `cache`, and what it saved.
pub fn begin_hit(guard: &mut TraceGuard, cache: &ResponseCache, route: &str, key: &Key, entry: &Entry) {
    guard.start_attempt(CACHE_ENGINE, &entry.model);
    guard.attempt_status(200);
    let mut outcome = outcome("hit", Some(key));
    outcome.source_trace_id = entry.source_trace_id.clone();
    outcome.saved_input_tokens = entry.input_tokens;
    outcome.saved_output_tokens = entry.output_tokens;
    outcome.saved_usd = entry.cost_usd;
    guard.trace_mut().cache = Some(outcome);
    cache.note(
        route,
        Outcome::Hit {
            saved_input_tokens: entry.input_tokens,
            saved_output_tokens: entry.output_tokens,
            saved_usd: entry.cost_usd,
        },
    );
}

/// Whether a route's stored streams replay at their first pace.
pub fn original_timing(config: Option<&CacheConfig>) -> bool {
    config.is_some_and(|c| c.stream_timing == crate::cache::StreamTiming::Original)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_str(value).expect("header value"));
        headers
    }

    #[test]
    fn directives_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(Directives::parse(&HeaderMap::new()).ok(), Some(Directives::default()));
        let parsed = Directives::parse(&headers("no-store, TTL=30")).expect("valid");
        assert_eq!(parsed, Directives { no_cache: false, no_store: true, ttl_s: Some(30) });
        assert!(Directives::parse(&headers("no-cache")).expect("valid").no_cache);
        for bad in ["max-age=3", "ttl=-1", "ttl=abc", "ttl=99999999999999999999999"] {
            let error = Directives::parse(&headers(bad)).expect_err(bad).to_string();
            assert!(error.contains("x-llmops-cache"), "{error}");
        }
        let long = "no-cache,".repeat(20);
        let error = Directives::parse(&headers(&long)).expect_err("too long").to_string();
        assert!(error.contains("longer than 128 bytes"), "{error}");
    }
}
