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
use crate::trace::{Trace, TraceStatus};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// (route, model) pairs beyond this many are counted under [`OVERFLOW_LABEL`]: a rejected request's route is
/// whatever model name the client sent, and cumulative series are never dropped.
pub const MAX_KEYS: usize = 256;
/// Stands for routes and models past [`MAX_KEYS`], and for a failure without an error type (OTel's fallback).
pub const OVERFLOW_LABEL: &str = "_OTHER";
/// `gen_ai.client.operation.duration` and `gen_ai.server.time_to_first_token` buckets, seconds.
pub const DURATION_BOUNDS_S: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/// `gen_ai.server.time_per_output_token` buckets, seconds.
pub const TIME_PER_OUTPUT_TOKEN_BOUNDS_S: [f64; 13] =
    [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
/// `gen_ai.client.token.usage` buckets, tokens.
pub const TOKEN_USAGE_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

const FINE_MS: i64 = 10_000;
const COARSE_MS: i64 = 60_000;

/// A rolling window; its edge has bucket granularity (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    OneMinute,
    FiveMinutes,
    OneHour,
}

impl Window {
    const ALL: [Window; 3] = [Self::OneMinute, Self::FiveMinutes, Self::OneHour];

    fn secs(self) -> u64 {
        [60, 300, 3600][self as usize]
    }

    /// Bucket width and how many buckets, the current one included, the window covers.
    fn buckets(self) -> (i64, i64) {
        [(FINE_MS, 6), (FINE_MS, 30), (COARSE_MS, 60)][self as usize]
    }
}

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
}

/// A histogram with fixed upper bounds (inclusive, like Prometheus `le`), counted since start.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedHistogram {
    pub bounds: &'static [f64],
    /// `counts[i]`: observations in (`bounds[i-1]`, `bounds[i]`]; the last, `counts[bounds.len()]`, those above.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl FixedHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    pub fn record(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        let index = self.bounds.partition_point(|bound| *bound < value);
        if let Some(slot) = self.counts.get_mut(index) {
            *slot += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Since start, per (route, model, operation, outcome). `duration_s.count` is the number of requests. Token
/// usage is recorded when the count is non-zero; TTFT and time per output token for successful streamed
/// requests (the latter when more than one token came: (latency − TTFT) / (output tokens − 1)).
#[derive(Debug, Clone, PartialEq)]
pub struct CumulativeStats {
    pub route: String,
    pub model: String,
    pub operation: String,
    /// `None` for successes.
    pub error_type: Option<String>,
    pub duration_s: FixedHistogram,
    pub ttft_s: FixedHistogram,
    pub time_per_output_token_s: FixedHistogram,
    pub input_tokens: FixedHistogram,
    pub output_tokens: FixedHistogram,
}

/// Rolling and cumulative request metrics; share it in an `Arc`.
pub struct RequestMetrics {
    created_at_unix_ms: i64,
    /// Only its bin arithmetic is used: it quantises samples the way the query histograms bin them.
    bins: Histogram<u64>,
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

struct Series {
    fine: Tier,
    coarse: Tier,
}

struct Tier {
    width_ms: i64,
    kept: i64,
    /// Sorted by index; only buckets that saw a request.
    buckets: VecDeque<Bucket>,
}

#[derive(Default)]
struct Bucket {
    index: i64,
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    decode_tokens: u64,
    decode_ms: f64,
    latency: Sparse,
    ttft: Sparse,
    inter_token: Sparse,
}

/// Samples as (HDR bin's lowest value in µs, count), sorted by bin.
#[derive(Default)]
struct Sparse(Vec<(u32, u32)>);

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
        let bins = Histogram::new(2).expect("2 significant figures are within HDR's 0..=5");
        Self { created_at_unix_ms: unix_ms, bins, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent between statements, so a panic elsewhere does not spoil it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
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
            tier.bucket_mut(at).record(obs, &self.bins);
        }
        // Other keys' old buckets go at most one fine bucket late even when nobody takes snapshots.
        if at - inner.pruned_at_ms >= FINE_MS {
            inner.prune(at);
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

impl Tier {
    fn new(width_ms: i64, kept: i64) -> Self {
        Self { width_ms, kept, buckets: VecDeque::new() }
    }

    fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms.div_euclid(self.width_ms) - self.kept + 1;
        while self.buckets.front().is_some_and(|bucket| bucket.index < oldest) {
            self.buckets.pop_front();
        }
        if self.buckets.capacity() > 4 * self.buckets.len().max(4) {
            self.buckets.shrink_to_fit();
        }
    }

    fn bucket_mut(&mut self, at_ms: i64) -> &mut Bucket {
        let index = at_ms.div_euclid(self.width_ms);
        let position = self.buckets.binary_search_by_key(&index, |bucket| bucket.index).unwrap_or_else(|position| {
            // The bucket before a new last one is done growing: give back the spare capacity.
            let appending = position == self.buckets.len();
            if let Some(done) = self.buckets.back_mut().filter(|_| appending) {
                for sparse in [&mut done.latency, &mut done.ttft, &mut done.inter_token] {
                    sparse.0.shrink_to_fit();
                }
            }
            self.buckets.insert(position, Bucket { index, ..Bucket::default() });
            position
        });
        &mut self.buckets[position]
    }
}

impl Bucket {
    fn record(&mut self, obs: &RequestObservation<'_>, bins: &Histogram<u64>) {
        self.requests += 1;
        self.errors += u64::from(obs.error_type.is_some());
        self.input_tokens += obs.input_tokens;
        self.output_tokens += obs.output_tokens;
        self.latency.record(bin(bins, obs.latency_ms));
        if let Some(ttft_ms) = obs.ttft_ms {
            self.ttft.record(bin(bins, ttft_ms));
            if obs.output_tokens > 1 {
                self.decode_tokens += obs.output_tokens - 1;
                self.decode_ms += (obs.latency_ms - ttft_ms).max(0.0);
            }
        }
        for pair in obs.chunk_offsets_ms.windows(2) {
            self.inter_token.record(bin(bins, pair[1] - pair[0]));
        }
    }
}

impl Sparse {
    fn record(&mut self, bin: u32) {
        match self.0.binary_search_by_key(&bin, |&(b, _)| b) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(1),
            Err(i) => self.0.insert(i, (bin, 1)),
        }
    }
}

/// A duration in ms as its HDR bin in µs (negative and NaN count as 0; beyond 71 minutes saturates).
fn bin(bins: &Histogram<u64>, ms: f64) -> u32 {
    let us = (ms * 1000.0).round();
    let us = if us > 0.0 { us.min(f64::from(u32::MAX)) as u64 } else { 0 };
    u32::try_from(bins.lowest_equivalent(us)).unwrap_or(u32::MAX)
}

fn percentiles<'s>(parts: impl Iterator<Item = &'s Sparse>) -> Percentiles {
    let Ok(mut merged) = Histogram::<u64>::new(2) else { return Percentiles::default() };
    for &(bin, count) in parts.flat_map(|sparse| &sparse.0) {
        // Auto-resizing reaches any u32, so this cannot fail; a lost sample would only skew, not break.
        let _ = merged.record_n(u64::from(bin), u64::from(count));
    }
    let at = |quantile| {
        (!merged.is_empty()).then(|| merged.median_equivalent(merged.value_at_quantile(quantile)) as f64 / 1000.0)
    };
    Percentiles { count: merged.len(), p50: at(0.5), p95: at(0.95), p99: at(0.99) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minute boundary; tests look at the metrics 30 s into the minute after it.
    const T0: i64 = 28_333_334 * COARSE_MS;
    const NOW: i64 = T0 + 30_000;

    fn metrics() -> RequestMetrics {
        RequestMetrics::created_at(T0 - 2 * 3_600_000)
    }

    fn request(route: &str, ended_at_unix_ms: i64, latency_ms: f64) -> RequestObservation<'_> {
        RequestObservation {
            route,
            model: "m",
            operation: "chat",
            ended_at_unix_ms,
            latency_ms,
            output_tokens: 10,
            ..RequestObservation::default()
        }
    }

    fn row(rows: &[RouteWindowStats], window: Window) -> &RouteWindowStats {
        rows.iter().find(|r| r.window_secs == window.secs()).expect("a row for the window")
    }

    #[test]
    fn rates_error_rate_and_percentiles() {
        let metrics = metrics();
        for k in 1..=100 {
            let error = if k % 10 == 0 { Some("upstream_error") } else { None };
            metrics.observe(&RequestObservation { error_type: error, ..request("r", NOW - 1_000, f64::from(k)) });
        }
        let rows = metrics.snapshot(NOW);
        assert_eq!(rows.len(), 3);
        let minute = row(&rows, Window::OneMinute);
        assert_eq!((minute.requests, minute.errors, minute.output_tokens), (100, 10, 1000));
        assert_eq!(minute.error_rate, 0.1);
        // 1 min covers the six 10-s buckets from NOW - 50 s: 50 s so far.
        assert_eq!(minute.request_rate_per_s, 2.0);
        assert_eq!(minute.output_tokens_per_s, 20.0);
        assert_eq!(row(&rows, Window::FiveMinutes).request_rate_per_s, 100.0 / 290.0);
        // 1 h covers the sixty minute buckets from T0 - 59 min: 59.5 min so far.
        assert_eq!(row(&rows, Window::OneHour).request_rate_per_s, 100.0 / 3570.0);
        // Nearest rank: p50 = 50 ms, p95 = 95 ms, p99 = 99 ms, reported as the middle of their HDR bins:
        // 50 000 µs is in [49 920, 50 176) (256 µs wide), 95 000 in [94 720, 95 232) and 99 000 in [98 816,
        // 99 328) (512 µs wide).
        let expected = Percentiles { count: 100, p50: Some(50.048), p95: Some(94.976), p99: Some(99.072) };
        assert_eq!(minute.latency, expected);
        assert_eq!(minute.ttft, Percentiles::default());
        assert_eq!(minute.decode_tokens_per_s, None);
    }

    #[test]
    fn streams_give_ttft_inter_token_and_decode_speed() {
        let metrics = metrics();
        let offsets = [100.0, 120.0, 140.0, 170.0];
        metrics.observe(&RequestObservation {
            ttft_ms: Some(100.0),
            chunk_offsets_ms: &offsets,
            output_tokens: 4,
            ..request("r", NOW, 200.0)
        });
        let rows = metrics.snapshot(NOW);
        let minute = row(&rows, Window::OneMinute);
        // 100 000 µs is in [99 840, 100 352); gaps 20, 20, 30 ms in 128-µs bins from 19 968 and 29 952 µs.
        assert_eq!(minute.ttft, Percentiles { count: 1, p50: Some(100.096), p95: Some(100.096), p99: Some(100.096) });
        assert_eq!(
            minute.inter_token,
            Percentiles { count: 3, p50: Some(20.032), p95: Some(30.016), p99: Some(30.016) }
        );
        // 3 tokens after the first in 100 ms.
        assert_eq!(minute.decode_tokens_per_s, Some(30.0));
    }

    #[test]
    fn windows_expire_and_idle_keys_cost_nothing() {
        let metrics = metrics();
        metrics.observe(&request("old", NOW - 61 * 60_000, 1.0));
        metrics.observe(&request("r", NOW - 120_000, 1.0));
        let rows = metrics.snapshot(NOW);
        let counts: Vec<_> = rows.iter().map(|r| (r.route.as_str(), r.window_secs, r.requests)).collect();
        let expected = [("r", 60, 0), ("r", 300, 1), ("r", 3600, 1)];
        assert_eq!(counts, expected);
        // An hour later nothing is left of either key's windows, but the totals stay for Prometheus.
        assert!(metrics.snapshot(NOW + 3_600_000).is_empty());
        assert!(metrics.lock().windows.is_empty());
        assert_eq!(metrics.cumulative().len(), 2);
    }

    #[test]
    fn traces_become_observations() {
        let trace = Trace {
            route: "r".into(),
            model_served: "m".into(),
            endpoint: "chat.completions".into(),
            status: TraceStatus::Cancelled,
            latency_ms: 5.0,
            ..Trace::default()
        };
        let obs = RequestObservation::from_trace(&trace).expect("a finished trace");
        assert_eq!((obs.route, obs.model, obs.operation, obs.error_type), ("r", "m", "chat", Some("cancelled")));
        let ok = Trace { status: TraceStatus::Ok, error_type: "ignored".into(), ..trace.clone() };
        assert_eq!(RequestObservation::from_trace(&ok).map(|obs| obs.error_type), Some(None));
        assert_eq!(RequestObservation::from_trace(&Trace::default()), None);
        assert_eq!(operation_name("completions"), "text_completion");
    }

    #[test]
    fn a_fresh_daemon_divides_by_its_age() {
        let metrics = RequestMetrics::created_at(NOW - 5_000);
        metrics.observe(&request("r", NOW, 1.0));
        let rows = metrics.snapshot(NOW);
        assert_eq!(row(&rows, Window::OneHour).request_rate_per_s, 0.2);
        assert_eq!(RequestMetrics::created_at(NOW).snapshot(NOW), []);
    }

    #[test]
    fn in_flight_counts_per_route() {
        let metrics = Arc::new(metrics());
        metrics.started("a");
        let guard = metrics.track("a");
        let other = metrics.track("b");
        metrics.finished("nothing");
        assert_eq!(metrics.in_flight(), [("a".to_string(), 2), ("b".to_string(), 1)]);
        metrics.observe(&request("a", NOW, 1.0));
        let rows = metrics.snapshot(NOW);
        let seen: Vec<_> = rows.iter().map(|r| (r.route.as_str(), r.model.as_str(), r.in_flight)).collect();
        assert_eq!(seen, [("a", "m", 2), ("a", "m", 2), ("a", "m", 2), ("b", "", 1), ("b", "", 1), ("b", "", 1)]);
        drop((guard, other));
        metrics.finished("a");
        metrics.finished("a");
        assert!(metrics.in_flight().is_empty());
    }

    #[test]
    fn cumulative_histograms_use_the_genai_buckets() {
        let metrics = metrics();
        let offsets = [400.0, 500.0];
        let stream = RequestObservation {
            ttft_ms: Some(400.0),
            chunk_offsets_ms: &offsets,
            input_tokens: 5,
            output_tokens: 3,
            ..request("r", NOW, 1_000.0)
        };
        metrics.observe(&stream);
        metrics.observe(&RequestObservation { input_tokens: 5, output_tokens: 1, ..request("r", NOW, 15.0) });
        let failed = RequestObservation { error_type: Some(""), output_tokens: 0, ..request("r", NOW, 100_000.0) };
        metrics.observe(&failed);
        let stats = metrics.cumulative();
        assert_eq!(stats.len(), 2);
        let ok = &stats[0];
        assert_eq!(
            (ok.route.as_str(), ok.model.as_str(), ok.operation.as_str(), &ok.error_type),
            ("r", "m", "chat", &None)
        );
        // 15 ms ≤ 0.02 s; 1 s ≤ 1.28 s.
        let mut duration = vec![0; 15];
        (duration[1], duration[7]) = (1, 1);
        assert_eq!((ok.duration_s.counts.clone(), ok.duration_s.sum, ok.duration_s.count), (duration, 1.015, 2));
        // 0.4 s ≤ 0.64 s; (1 s − 0.4 s) / 2 tokens = 0.3 s per token, which the 0.3 bound holds.
        assert_eq!((ok.ttft_s.counts[6], ok.ttft_s.count), (1, 1));
        assert_eq!((ok.time_per_output_token_s.counts[7], ok.time_per_output_token_s.count), (1, 1));
        assert_eq!((ok.input_tokens.counts[2], ok.input_tokens.count, ok.input_tokens.sum), (2, 2, 10.0));
        assert_eq!((ok.output_tokens.counts[0], ok.output_tokens.counts[1], ok.output_tokens.sum), (1, 1, 4.0));
        // 100 s is above the last bound; no tokens, so no token usage.
        let failed = &stats[1];
        assert_eq!(failed.error_type.as_deref(), Some(OVERFLOW_LABEL));
        assert_eq!((failed.duration_s.counts[14], failed.output_tokens.count), (1, 0));
    }

    #[test]
    fn keys_past_the_cap_share_one_series() {
        let metrics = metrics();
        let names: Vec<String> = (0..MAX_KEYS + 3).map(|i| format!("model-{i}")).collect();
        for name in &names {
            metrics.observe(&request(name, NOW, 1.0));
        }
        metrics.observe(&request(&names[0], NOW, 1.0));
        let stats = metrics.cumulative();
        assert_eq!(stats.len(), MAX_KEYS + 1);
        let other = stats.iter().find(|s| s.route == OVERFLOW_LABEL).expect("an overflow series");
        assert_eq!((other.model.as_str(), other.duration_s.count), (OVERFLOW_LABEL, 3));
    }

    #[test]
    fn an_hour_of_streams_stays_small() {
        let metrics = metrics();
        let mut seed = 1_u64;
        // One 200-token stream a second for an hour, gaps of 15–45 ms.
        for second in 0..3600 {
            let mut offsets = Vec::with_capacity(200);
            let mut at = 300.0;
            for _ in 0..200 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                at += 15.0 + (seed >> 33) as f64 % 30_000.0 / 1000.0;
                offsets.push(at);
            }
            let obs = RequestObservation {
                ttft_ms: Some(300.0),
                chunk_offsets_ms: &offsets,
                output_tokens: 200,
                ..request("r", NOW - 3_599_000 + second * 1000, at)
            };
            metrics.observe(&obs);
        }
        let inner = metrics.lock();
        let series = &inner.windows["r"]["m"];
        let bytes: usize = [&series.fine, &series.coarse]
            .iter()
            .flat_map(|tier| &tier.buckets)
            .map(|b| {
                std::mem::size_of::<Bucket>()
                    + 8 * (b.latency.0.capacity() + b.ttft.0.capacity() + b.inter_token.0.capacity())
            })
            .sum();
        eprintln!(
            "one busy key, an hour: {} buckets, {bytes} bytes",
            series.fine.buckets.len() + series.coarse.buckets.len()
        );
        assert!(bytes < 512 * 1024, "{bytes} bytes");
    }
}
