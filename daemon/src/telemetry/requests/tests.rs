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
    assert_eq!(minute.inter_token, Percentiles { count: 3, p50: Some(20.032), p95: Some(30.016), p99: Some(30.016) });
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

#[test]
fn cost_joins_its_request_and_becomes_a_rate() {
    let metrics = metrics();
    let trace = Trace {
        route: "r".into(),
        model_served: "m".into(),
        endpoint: "chat.completions".into(),
        status: TraceStatus::Ok,
        ended_at_unix_ms: NOW - 1_000,
        cost_usd: Some(0.25),
        ..Trace::default()
    };
    metrics.observe_trace(&trace);
    metrics.observe_cost(&trace);
    metrics.observe_cost(&Trace { cost_usd: Some(0.15), ..trace.clone() });
    // A request the metrics never saw adds nothing (its series does not exist).
    metrics.observe_cost(&Trace { route: "unseen".into(), ..trace.clone() });
    let rows = metrics.snapshot(NOW);
    let minute = row(&rows, Window::OneMinute);
    assert!((minute.cost_usd - 0.4).abs() < 1e-12, "{}", minute.cost_usd);
    // 50 s covered: 0.4 USD per 50 s is 28.8 USD per hour.
    assert!((minute.cost_usd_per_hour - 28.8).abs() < 1e-9, "{}", minute.cost_usd_per_hour);
    assert_eq!(rows.len(), 3, "no row for the unseen route");
}
