//! Engines' own Prometheus `/metrics`, normalised to one load figure: running and waiting requests, the
//! fraction of KV cache in use, and how much of the prompts the engine's prefix cache served. Each is `None` when
//! the engine does not export it, never a made-up 0.
//!
//! - vLLM (V0 0.6, V1 up to 0.11): `vllm:num_requests_running`, `vllm:num_requests_waiting`, KV from
//!   `vllm:kv_cache_usage_perc` (0.9+), else `vllm:gpu_cache_usage_perc` (older; hidden from 0.10). Both are
//!   fractions despite `_perc`. Prefix cache (V1): the token counters `vllm:prefix_cache_queries_total` and
//!   `vllm:prefix_cache_hits_total` (also read without `_total`, and as `vllm:gpu_prefix_cache_queries` /
//!   `vllm:gpu_prefix_cache_hits` from 0.7-0.8); V0 has only the gauge `vllm:gpu_prefix_cache_hit_rate`,
//!   -1 while prefix caching is off.
//! - llama.cpp `llama-server --metrics`: `llamacpp:requests_processing`, `llamacpp:requests_deferred`, KV from
//!   `llamacpp:kv_cache_usage_ratio`, which builds since May 2025 (ggml-org/llama.cpp#13660) no longer export.
//!   It exports nothing about prompt-cache reuse, so its prefix-cache figures are always `None`.
//! - SGLang (0.3.2+, `--enable-metrics`): `sglang:num_running_reqs`, `sglang:num_queue_reqs`, KV from
//!   `sglang:token_usage` (used share of the KV token pool), prefix cache from the gauge `sglang:cache_hit_rate`.
//!
//! Series are combined per metric: counts (and the prefix-cache token counters) are summed over label sets
//! (vLLM: one per `engine` under data parallelism; SGLang: one per `dp_rank`) and fractions averaged. Labels
//! that only name a replica of the same scheduler state (`tp_rank`, `pp_rank`, prometheus_client's multiprocess
//! `pid`) are collapsed first by taking the largest value, so SGLang's `--enable-metrics-for-all-schedulers`
//! does not count a batch twice.
//!
//! The counters are cumulative since the engine started; [`prefix_cache_hit_rate`] turns two scrapes of them
//! into the hit rate over the time between, which is what an operator wants to see now.
//!
//! Text without any of these metrics parses as [`EngineFlavor::Unknown`] with every figure `None`, not an error:
//! SGLang exports nothing under `sglang:` until its scheduler first logs stats, so an idle, freshly started
//! engine looks exactly like that.

use super::status::error_chain;
use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

/// The engine a metrics page came from, told by its metric prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineFlavor {
    Vllm,
    LlamaCpp,
    Sglang,
    Unknown,
}

impl EngineFlavor {
    pub fn name(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::LlamaCpp => "llama.cpp",
            Self::Sglang => "sglang",
            Self::Unknown => "unknown",
        }
    }
}

/// One engine's load as its metrics page states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrapedLoad {
    pub running: Option<u64>,
    pub waiting: Option<u64>,
    pub kv_cache_used_fraction: Option<f64>,
    /// Prompt tokens looked up in the prefix cache since the engine started, and those found there (vLLM V1),
    /// summed over its engines. Both or neither: they are only read as a pair.
    pub prefix_cache_queries: Option<u64>,
    pub prefix_cache_hits: Option<u64>,
    /// The engine's own hit-rate gauge (0..=1: vLLM V0, SGLang), for engines without the counters.
    pub prefix_cache_hit_rate_gauge: Option<f64>,
    pub flavor: EngineFlavor,
}

impl ScrapedLoad {
    /// A page with no known engine's metrics.
    pub const UNKNOWN: Self = Self {
        running: None,
        waiting: None,
        kv_cache_used_fraction: None,
        prefix_cache_queries: None,
        prefix_cache_hits: None,
        prefix_cache_hit_rate_gauge: None,
        flavor: EngineFlavor::Unknown,
    };
}

/// The prefix-cache hit rate to show for `now`: the share of prompt tokens queried since `previous` (the last
/// scrape read) that hit, where the engine counts them; else the engine's own gauge. With counters it is `None`
/// on the first scrape, when nothing was queried in between, and when a counter went backwards (the engine
/// restarted) or hits outran queries (a broken page): a rate from those would be made up.
pub fn prefix_cache_hit_rate(previous: Option<&ScrapedLoad>, now: &ScrapedLoad) -> Option<f64> {
    let (Some(queries), Some(hits)) = (now.prefix_cache_queries, now.prefix_cache_hits) else {
        return now.prefix_cache_hit_rate_gauge;
    };
    let previous = previous?;
    let queried = queries.checked_sub(previous.prefix_cache_queries?)?;
    let hit = hits.checked_sub(previous.prefix_cache_hits?)?;
    // `as f64` is monotonic, so hit <= queried keeps the rate within 0..=1 even where it rounds.
    (queried > 0 && hit <= queried).then(|| hit as f64 / queried as f64)
}

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("GET {url}: {detail}")]
    Request { url: String, detail: String },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("GET {url}: body larger than {MAX_BODY_BYTES} bytes; is this a metrics page?")]
    TooLarge { url: String },
    /// prometheus-parse fails only on errors reading its lines, which `parse_load` never feeds it.
    #[error("unreadable metrics text: {0}")]
    Parse(String),
}

/// Far above any engine's page (vLLM's, with every histogram, is ~100 KiB); guards against a wrong URL.
const MAX_BODY_BYTES: usize = 8 << 20;

/// prometheus-parse 0.2.5 matches metric names with `\w+`, which excludes `:`, so it silently drops every
/// `vllm:…` / `sglang:…` / `llamacpp:…` line. Names are spelled with this in place of `:` while parsing.
const COLON: &str = "__colon__";

/// Labels that tell apart replicas reporting the same state, collapsed by `max` before combining series.
const REPLICA_LABELS: [&str; 3] = ["tp_rank", "pp_rank", "pid"];

struct Names {
    flavor: EngineFlavor,
    prefix: &'static str,
    running: &'static str,
    waiting: &'static str,
    /// In order of preference: the first one present wins.
    kv: &'static [&'static str],
    /// Cumulative (queried, hit) prefix-cache token counters, in order of preference: the first pair with both
    /// present wins, so queries and hits always come from the same release's names.
    prefix_counters: &'static [(&'static str, &'static str)],
    /// Prefix-cache hit-rate gauges (0..=1), read when no counter pair is present.
    prefix_rate: &'static [&'static str],
}

/// Checked in this order, should a page ever carry more than one engine's metrics.
const ENGINES: [Names; 3] = [
    Names {
        flavor: EngineFlavor::Vllm,
        prefix: "vllm:",
        running: "vllm:num_requests_running",
        waiting: "vllm:num_requests_waiting",
        kv: &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
        // prometheus_client adds `_total` to a counter's samples; the bare names are for pages that do not.
        // The `gpu_` names are 0.7-0.8's, kept as hidden metrics for a while after the rename.
        prefix_counters: &[
            ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"),
            ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits"),
            ("vllm:gpu_prefix_cache_queries_total", "vllm:gpu_prefix_cache_hits_total"),
            ("vllm:gpu_prefix_cache_queries", "vllm:gpu_prefix_cache_hits"),
        ],
        // V0: its block hit rate, as the engine computes it.
        prefix_rate: &["vllm:gpu_prefix_cache_hit_rate"],
    },
    Names {
        flavor: EngineFlavor::Sglang,
        prefix: "sglang:",
        running: "sglang:num_running_reqs",
        waiting: "sglang:num_queue_reqs",
        // Used share of the KV token pool (for hybrid SWA models, the larger of the full and SWA pools).
        kv: &["sglang:token_usage"],
        prefix_counters: &[],
        prefix_rate: &["sglang:cache_hit_rate"],
    },
    Names {
        flavor: EngineFlavor::LlamaCpp,
        prefix: "llamacpp:",
        running: "llamacpp:requests_processing",
        // Tasks that found no free slot.
        waiting: "llamacpp:requests_deferred",
        kv: &["llamacpp:kv_cache_usage_ratio"],
        // llama-server reuses cached prompt prefixes per slot but exports no metric for it.
        prefix_counters: &[],
        prefix_rate: &[],
    },
];

/// Parses a Prometheus text exposition page into the engine's load.
pub fn parse_load(text: &str) -> Result<ScrapedLoad, ScrapeError> {
    let scrape =
        Scrape::parse(text.lines().map(|line| Ok(escape_line(line)))).map_err(|e| ScrapeError::Parse(e.to_string()))?;
    let samples = &scrape.samples;
    let Some(names) = ENGINES.iter().find(|names| {
        let prefix = escape_name(names.prefix);
        samples.iter().any(|sample| sample.metric.starts_with(&prefix))
    }) else {
        return Ok(ScrapedLoad::UNKNOWN);
    };
    // Counts are whole; a negative one is nonsense, read as 0 rather than dragging a sum down. A sum past
    // u64::MAX saturates (`as` does), so a huge value cannot panic.
    let sum = |values: &[f64]| values.iter().map(|v| v.max(0.0)).sum::<f64>().round() as u64;
    let count = |name: &str| {
        let values = per_series(samples, name);
        (!values.is_empty()).then(|| sum(&values))
    };
    let kv = names.kv.iter().map(|name| per_series(samples, name)).find(|values| !values.is_empty());
    let prefix_counters = names.prefix_counters.iter().find_map(|&(queries, hits)| count(queries).zip(count(hits)));
    // A rate outside 0..=1 is not one (vLLM V0 reports -1 while prefix caching is off).
    let prefix_rate = names
        .prefix_rate
        .iter()
        .map(|name| {
            let mut values = per_series(samples, name);
            values.retain(|value| (0.0..=1.0).contains(value));
            values
        })
        .find(|values| !values.is_empty());
    Ok(ScrapedLoad {
        running: count(names.running),
        waiting: count(names.waiting),
        kv_cache_used_fraction: kv.map(|values| mean(&values)),
        prefix_cache_queries: prefix_counters.map(|(queries, _)| queries),
        prefix_cache_hits: prefix_counters.map(|(_, hits)| hits),
        prefix_cache_hit_rate_gauge: prefix_rate.map(|values| mean(&values)),
        flavor: names.flavor,
    })
}

/// The mean of values already known to be non-empty and finite.
fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The finite values of `name`, one per label set once replica labels are collapsed (largest wins).
fn per_series(samples: &[Sample], name: &str) -> Vec<f64> {
    let name = escape_name(name);
    let mut series: BTreeMap<Vec<(&str, &str)>, f64> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.metric == name) {
        let (Value::Gauge(value) | Value::Counter(value) | Value::Untyped(value)) = sample.value else { continue };
        // NaN (e.g. 0/0 before the first step) and ±Inf say nothing about load.
        if !value.is_finite() {
            continue;
        }
        let mut key: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .filter(|(label, _)| !REPLICA_LABELS.contains(&label.as_str()))
            .map(|(label, value)| (label.as_str(), value.as_str()))
            .collect();
        key.sort_unstable();
        series.entry(key).and_modify(|max| *max = max.max(value)).or_insert(value);
    }
    series.into_values().collect()
}

fn escape_name(name: &str) -> String {
    name.replace(':', COLON)
}

/// Rewrites the metric name of a sample, `# HELP` or `# TYPE` line so prometheus-parse accepts it; also drops
/// an empty label set (`name{} 1`, valid but rejected by its regex).
fn escape_line(line: &str) -> String {
    let line = line.trim();
    if let Some(comment) = line.strip_prefix('#') {
        let comment = comment.trim_start();
        for kind in ["HELP", "TYPE"] {
            if let Some(rest) = comment.strip_prefix(kind).filter(|rest| rest.starts_with(char::is_whitespace)) {
                let rest = rest.trim_start();
                let (name, tail) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
                return format!("# {kind} {}{tail}", escape_name(name));
            }
        }
        return line.to_string();
    }
    let end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    format!("{}{}", escape_name(name), rest.strip_prefix("{}").unwrap_or(rest))
}

/// GETs an engine's metrics page and parses it; errors name the URL and the HTTP status or connection failure.
pub async fn scrape(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<ScrapedLoad, ScrapeError> {
    // The message names the URL once, in front; reqwest's own would repeat it.
    let request_error =
        |e: reqwest::Error| ScrapeError::Request { url: url.to_string(), detail: error_chain(&e.without_url()) };
    let mut response = client.get(url).timeout(timeout).send().await.map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ScrapeError::Status { url: url.to_string(), status });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ScrapeError::TooLarge { url: url.to_string() });
        }
        body.extend_from_slice(&chunk);
    }
    parse_load(&String::from_utf8_lossy(&body))
}

/// Where an engine's Prometheus metrics are scraped, if anywhere: `metrics_url` as configured ("off": never),
/// else `/metrics` beside `base_url` when the engine is on this host.
pub fn scrape_url(config: &crate::config::OpenAiEngineConfig) -> Option<String> {
    match config.metrics_url.as_deref().map(str::trim) {
        Some("off") | Some("") => None,
        Some(url) => Some(url.to_string()),
        None => {
            let url = reqwest::Url::parse(&config.base_url).ok()?;
            let host = url.host_str()?;
            let local = host == "localhost"
                || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            local.then(|| metrics_url(&config.base_url))
        }
    }
}

/// `/metrics` beside an OpenAI-compatible base URL: `http://127.0.0.1:8000/v1` → `http://127.0.0.1:8000/metrics`.
/// A trailing `/v1` is dropped; scheme, host, port and any other path prefix are kept (query and fragment not).
pub fn metrics_url(base_url: &str) -> String {
    let base = base_url.trim().split(['?', '#']).next().unwrap_or_default();
    // Only the path may lose `/v1`: in `http://v1` it is the host.
    let path_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[path_start..].find('/').map_or(base.len(), |i| path_start + i);
    let (authority, path) = base.split_at(path_start);
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path);
    format!("{authority}{path}/metrics")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
