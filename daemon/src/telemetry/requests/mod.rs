//! Request metrics: rolling windows (1 min, 5 min, 1 h) per route and model for the live views, and
//! cumulative histograms since start, shaped after the OpenTelemetry GenAI conventions, for `/metrics`.
//!
//! Windows are made of time buckets, so a window's edge has bucket granularity:
//! - 1 min = the last six 10-s buckets including the current one (50 to 60 s of history),
//! - 5 min = the last thirty 10-s buckets including the current one,
//! - 1 h = the last sixty 1-min buckets including the current one.
//!
//! A bucket exists only once a request lands in it and is dropped when it leaves its tier, so an idle
//! (route, model) holds no window state at all. A bucket keeps its latency, TTFT and inter-token samples
//! quantised to HDR-histogram bins (2 significant figures, in µs) as sorted (bin, count) pairs, so it costs in
//! proportion to the distinct values it saw rather than a dense histogram's hundreds of counters; a query
//! merges the covered buckets into one `hdrhistogram::Histogram`.
//!
//! Rates divide by the time a window actually covers: from the start of its oldest bucket, or from when
//! these metrics were created if that is later (so a fresh daemon does not report a tiny rate), to now; at
//! least one second.
mod buckets;
mod cumulative;

use crate::sync::MutexExt;
use crate::trace::{Trace, TraceStatus};
use buckets::{percentiles, Bucket, Series, Tier, Window, COARSE_MS, FINE_MS};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use cumulative::{
    CumulativeStats, FixedHistogram, DURATION_BOUNDS_S, TIME_PER_OUTPUT_TOKEN_BOUNDS_S, TOKEN_USAGE_BOUNDS,
};

/// (route, model) pairs beyond this many are counted under [`OVERFLOW_LABEL`]: a rejected request's route is
/// whatever model name the client sent, and cumulative series are never dropped.
pub const MAX_KEYS: usize = 256;
/// Stands for routes and models past [`MAX_KEYS`], and for a failure without an error type (OTel's fallback).
pub const OVERFLOW_LABEL: &str = "_OTHER";

/// One finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestObservation<'a> {
    pub route: &'a str,
    pub model: &'a str,
    /// GenAI operation name: `chat`, `text_completion`, `embeddings` (see [`operation_name`]).
    pub operation: &'a str,
    pub ended_at_unix_ms: i64,
    /// `None` for a success, else the error type (`upstream_error`, `cancelled`, ...).
    pub error_type: Option<&'a str>,
    pub latency_ms: f64,
    /// Time to the first content chunk; `None` when not streamed.
    pub ttft_ms: Option<f64>,
    /// When each content chunk arrived, from the request's start. Their gaps are the inter-token latencies
    /// (the engines send one token per chunk).
    pub chunk_offsets_ms: &'a [f64],
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl<'a> RequestObservation<'a> {
    /// A finished trace as an observation (`None` while in flight). Anything but `ok` is a failure, with
    /// the trace's error type, or its status when it has none.
    pub fn from_trace(trace: &'a Trace) -> Option<Self> {
        let error_type = match trace.status {
            TraceStatus::InFlight => return None,
            TraceStatus::Ok => None,
            status if trace.error_type.is_empty() => Some(status.as_str()),
            _ => Some(trace.error_type.as_str()),
        };
        Some(Self {
            route: &trace.route,
            model: &trace.model_served,
            operation: operation_name(&trace.endpoint),
            ended_at_unix_ms: trace.ended_at_unix_ms,
            error_type,
            latency_ms: trace.latency_ms,
            ttft_ms: trace.ttft_ms,
            chunk_offsets_ms: &trace.chunk_offsets_ms,
            input_tokens: trace.input_tokens,
            output_tokens: trace.output_tokens,
        })
    }
}

/// The GenAI `gen_ai.operation.name` of a trace endpoint (`chat.completions` → `chat`).
pub fn operation_name(endpoint: &str) -> &str {
    match endpoint {
        "chat.completions" => "chat",
        "completions" => "text_completion",
        other => other,
    }
}

/// Nearest-rank percentiles in ms, each within half an HDR bin (< 0.4 %) of the exact sample; `None`
/// without samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// One (route, model) over one window. A route with requests in flight but none finished within the hour
/// has rows with an empty model, so its in-flight count still shows.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteWindowStats {
    pub route: String,
    pub model: String,
    /// 60, 300 or 3600.
    pub window_secs: u64,
    pub requests: u64,
    pub errors: u64,
    pub request_rate_per_s: f64,
    /// errors / requests; 0 without requests.
    pub error_rate: f64,
    pub latency: Percentiles,
    pub ttft: Percentiles,
    pub inter_token: Percentiles,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Output tokens over the covered time: the route's throughput.
    pub output_tokens_per_s: f64,
    /// Σ(output tokens − 1) / Σ(latency − TTFT) over streamed requests: the decode speed one stream sees.
    pub decode_tokens_per_s: Option<f64>,
    /// The route's requests in flight now (shared by its models' rows).
    pub in_flight: u64,
    /// Spend of the window's requests, and as a rate over the covered time.
    pub cost_usd: f64,
    pub cost_usd_per_hour: f64,
}

/// Rolling and cumulative request metrics; share it in an `Arc`.
pub struct RequestMetrics {
    created_at_unix_ms: i64,
    /// Only its bin arithmetic is used: it quantises samples the way the query histograms bin them.
    /// Quantises durations; only None if HDR refused 2 significant figures (it accepts 0..=5).
    bins: Option<Histogram<u64>>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    windows: BTreeMap<String, BTreeMap<String, Series>>,
    totals: BTreeMap<String, BTreeMap<String, Vec<CumulativeStats>>>,
    keys: usize,
    in_flight: BTreeMap<String, u64>,
    pruned_at_ms: i64,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestMetrics {
    pub fn new() -> Self {
        Self::created_at(crate::clock::unix_ms())
    }

    /// With an explicit creation time, which bounds how far back rates reach.
    pub fn created_at(unix_ms: i64) -> Self {
        let bins = Histogram::new(2).ok();
        Self { created_at_unix_ms: unix_ms, bins, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent between statements, so a panic elsewhere does not spoil it.
        self.inner.locked()
    }

    pub fn observe(&self, obs: &RequestObservation<'_>) {
        let at = obs.ended_at_unix_ms;
        let mut inner = self.lock();
        let known = inner.totals.get(obs.route).is_some_and(|models| models.contains_key(obs.model));
        let (route, model) =
            if known || inner.keys < MAX_KEYS { (obs.route, obs.model) } else { (OVERFLOW_LABEL, OVERFLOW_LABEL) };
        inner.record_totals(route, model, obs);
        let series = inner
            .windows
            .entry(route.to_owned())
            .or_default()
            .entry(model.to_owned())
            .or_insert_with(|| Series { fine: Tier::new(FINE_MS, 30), coarse: Tier::new(COARSE_MS, 60) });
        for tier in [&mut series.fine, &mut series.coarse] {
            tier.prune(at);
            tier.bucket_mut(at).record(obs, self.bins.as_ref());
        }
        // Other keys' old buckets go at most one fine bucket late even when nobody takes snapshots.
        if at - inner.pruned_at_ms >= FINE_MS {
            inner.prune(at);
        }
    }

    /// Adds a finished request's cost, known only once its energy is attributed (after `observe`).
    pub fn observe_cost(&self, trace: &Trace) {
        let Some(usd) = trace.cost_usd.filter(|usd| *usd > 0.0) else { return };
        let mut inner = self.lock();
        let known = inner.totals.get(&trace.route).is_some_and(|models| models.contains_key(&trace.model_served));
        let (route, model) =
            if known { (trace.route.as_str(), trace.model_served.as_str()) } else { (OVERFLOW_LABEL, OVERFLOW_LABEL) };
        let Some(series) = inner.windows.get_mut(route).and_then(|models| models.get_mut(model)) else { return };
        for tier in [&mut series.fine, &mut series.coarse] {
            tier.bucket_mut(trace.ended_at_unix_ms).cost_usd += usd;
        }
    }

    /// [`observe`](Self::observe) for a finished trace; one still in flight is ignored.
    pub fn observe_trace(&self, trace: &Trace) {
        if let Some(obs) = RequestObservation::from_trace(trace) {
            self.observe(&obs);
        }
    }

    /// Every (route, model) with requests within the hour, for each window, sorted by route, model, window.
    pub fn snapshot(&self, now_unix_ms: i64) -> Vec<RouteWindowStats> {
        let mut inner = self.lock();
        inner.prune(now_unix_ms);
        let mut rows = Vec::new();
        for (route, models) in &inner.windows {
            let in_flight = inner.in_flight.get(route).copied().unwrap_or(0);
            for (model, series) in models {
                for window in Window::ALL {
                    let tier = if window.buckets().0 == FINE_MS { &series.fine } else { &series.coarse };
                    rows.push(self.window_stats(route, model, window, tier, now_unix_ms, in_flight));
                }
            }
        }
        let empty = Tier::new(FINE_MS, 0);
        for (route, &in_flight) in inner.in_flight.iter().filter(|(route, _)| !inner.windows.contains_key(*route)) {
            for window in Window::ALL {
                rows.push(self.window_stats(route, "", window, &empty, now_unix_ms, in_flight));
            }
        }
        rows.sort_by(|a, b| (&a.route, &a.model, a.window_secs).cmp(&(&b.route, &b.model, b.window_secs)));
        rows
    }

    fn window_stats(
        &self,
        route: &str,
        model: &str,
        window: Window,
        tier: &Tier,
        now: i64,
        in_flight: u64,
    ) -> RouteWindowStats {
        let (width, count) = window.buckets();
        let first = now.div_euclid(width) - count + 1;
        let covered = || tier.buckets.iter().filter(move |bucket| bucket.index >= first);
        let secs = ((now - (first * width).max(self.created_at_unix_ms)) as f64 / 1000.0).max(1.0);
        let sum = |field: fn(&Bucket) -> u64| covered().map(field).sum::<u64>();
        let (requests, errors, output_tokens) = (sum(|b| b.requests), sum(|b| b.errors), sum(|b| b.output_tokens));
        let decode_ms: f64 = covered().map(|b| b.decode_ms).sum();
        let cost_usd: f64 = covered().map(|b| b.cost_usd).sum();
        RouteWindowStats {
            route: route.to_owned(),
            model: model.to_owned(),
            window_secs: window.secs(),
            requests,
            errors,
            request_rate_per_s: requests as f64 / secs,
            error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            latency: percentiles(covered().map(|b| &b.latency)),
            ttft: percentiles(covered().map(|b| &b.ttft)),
            inter_token: percentiles(covered().map(|b| &b.inter_token)),
            input_tokens: sum(|b| b.input_tokens),
            output_tokens,
            output_tokens_per_s: output_tokens as f64 / secs,
            decode_tokens_per_s: (decode_ms > 0.0).then(|| sum(|b| b.decode_tokens) as f64 / (decode_ms / 1000.0)),
            in_flight,
            cost_usd,
            cost_usd_per_hour: cost_usd / secs * 3600.0,
        }
    }

    /// Every series since start, sorted by route and model.
    pub fn cumulative(&self) -> Vec<CumulativeStats> {
        self.lock().totals.values().flat_map(|models| models.values().flatten().cloned()).collect()
    }

    pub fn started(&self, route: &str) {
        *self.lock().in_flight.entry(route.to_owned()).or_default() += 1;
    }

    /// Pairs with [`started`](Self::started); a route's entry goes when its count reaches 0.
    pub fn finished(&self, route: &str) {
        let mut inner = self.lock();
        if let Some(count) = inner.in_flight.get_mut(route) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                inner.in_flight.remove(route);
            }
        }
    }

    /// `started` now, `finished` when the guard drops (also when a request's future is cancelled).
    pub fn track(self: &Arc<Self>, route: &str) -> InFlight {
        self.started(route);
        InFlight { metrics: Arc::clone(self), route: route.to_owned() }
    }

    /// Routes with requests in flight, sorted.
    pub fn in_flight(&self) -> Vec<(String, u64)> {
        self.lock().in_flight.iter().map(|(route, count)| (route.clone(), *count)).collect()
    }
}

/// Counts a request in flight until dropped; see [`RequestMetrics::track`].
pub struct InFlight {
    metrics: Arc<RequestMetrics>,
    route: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.finished(&self.route);
    }
}

impl Inner {
    fn record_totals(&mut self, route: &str, model: &str, obs: &RequestObservation<'_>) {
        let keys = &mut self.keys;
        let outcomes = self.totals.entry(route.to_owned()).or_default().entry(model.to_owned()).or_insert_with(|| {
            *keys += 1;
            Vec::new()
        });
        let error_type = obs.error_type.map(|e| if e.is_empty() { OVERFLOW_LABEL } else { e });
        let found = outcomes.iter().position(|s| s.operation == obs.operation && s.error_type.as_deref() == error_type);
        let index = found.unwrap_or_else(|| {
            outcomes.push(CumulativeStats {
                route: route.to_owned(),
                model: model.to_owned(),
                operation: obs.operation.to_owned(),
                error_type: error_type.map(str::to_owned),
                duration_s: FixedHistogram::new(&DURATION_BOUNDS_S),
                ttft_s: FixedHistogram::new(&DURATION_BOUNDS_S),
                time_per_output_token_s: FixedHistogram::new(&TIME_PER_OUTPUT_TOKEN_BOUNDS_S),
                input_tokens: FixedHistogram::new(&TOKEN_USAGE_BOUNDS),
                output_tokens: FixedHistogram::new(&TOKEN_USAGE_BOUNDS),
            });
            outcomes.len() - 1
        });
        let Some(stats) = outcomes.get_mut(index) else { return };
        stats.duration_s.record(obs.latency_ms / 1000.0);
        // The GenAI conventions define both server-side timings over successful responses only.
        if let (Some(ttft_ms), None) = (obs.ttft_ms, error_type) {
            stats.ttft_s.record(ttft_ms / 1000.0);
            if obs.output_tokens > 1 {
                let decode_s = (obs.latency_ms - ttft_ms).max(0.0) / 1000.0;
                stats.time_per_output_token_s.record(decode_s / (obs.output_tokens - 1) as f64);
            }
        }
        for (tokens, histogram) in
            [(obs.input_tokens, &mut stats.input_tokens), (obs.output_tokens, &mut stats.output_tokens)]
        {
            if tokens > 0 {
                histogram.record(tokens as f64);
            }
        }
    }

    /// Drops buckets that left their tier and keys left with none.
    fn prune(&mut self, now_ms: i64) {
        self.pruned_at_ms = now_ms;
        for models in self.windows.values_mut() {
            models.retain(|_, series| {
                series.fine.prune(now_ms);
                series.coarse.prune(now_ms);
                !series.coarse.buckets.is_empty()
            });
        }
        self.windows.retain(|_, models| !models.is_empty());
    }
}

#[cfg(test)]
mod tests;
