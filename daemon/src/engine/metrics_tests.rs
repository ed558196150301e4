use super::*;

const VLLM: &str = include_str!("../../../tests/fixtures/metrics/vllm.txt");
const VLLM_06: &str = include_str!("../../../tests/fixtures/metrics/vllm-0.6.txt");
const LLAMACPP: &str = include_str!("../../../tests/fixtures/metrics/llamacpp.txt");
const SGLANG: &str = include_str!("../../../tests/fixtures/metrics/sglang.txt");

/// The load with the KV fraction rounded, to compare sums and means of decimals exactly.
fn load(text: &str) -> (EngineFlavor, Option<u64>, Option<u64>, Option<f64>) {
    let l = parse_load(text).expect("parses");
    (l.flavor, l.running, l.waiting, l.kv_cache_used_fraction.map(|kv| (kv * 1e6).round() / 1e6))
}

#[test]
fn fixtures() {
    use EngineFlavor::*;
    // vLLM V1: two DP engines summed, KV averaged. 0.6: the old KV name, NaN spec-decode gauges beside it.
    assert_eq!(load(VLLM), (Vllm, Some(5), Some(1), Some(0.2)));
    assert_eq!(load(VLLM_06), (Vllm, Some(4), Some(2), Some(0.4375)));
    // Current llama-server has no KV gauge: absent, not 0.
    assert_eq!(load(LLAMACPP), (LlamaCpp, Some(2), Some(3), None));
    assert_eq!(load(SGLANG), (Sglang, Some(7), Some(2), Some(0.29)));
}

#[test]
fn kv_names_new_and_old() {
    let both = "vllm:gpu_cache_usage_perc{engine=\"0\"} 0.9\nvllm:kv_cache_usage_perc{engine=\"0\"} 0.5\n";
    assert_eq!(load(both).3, Some(0.5));
    let old_llamacpp = "# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.125\n\
                        llamacpp:requests_processing 1\n";
    assert_eq!(load(old_llamacpp), (EngineFlavor::LlamaCpp, Some(1), None, Some(0.125)));
}

#[test]
fn replicas_of_one_scheduler_count_once() {
    // Every TP rank logging the same batch, and a multiprocess `pid` label: 4 running, not 8.
    let text = "sglang:num_running_reqs{tp_rank=\"0\",dp_rank=\"0\"} 4\n\
                sglang:num_running_reqs{tp_rank=\"1\",dp_rank=\"0\"} 4\n\
                sglang:token_usage{pid=\"11\",tp_rank=\"0\"} 0.5\nsglang:token_usage{pid=\"12\",tp_rank=\"0\"} 0\n";
    assert_eq!(load(text), (EngineFlavor::Sglang, Some(4), None, Some(0.5)));
}

/// The prefix-cache figures as parsed: queried and hit tokens, and the gauge rounded like `load`'s KV.
fn prefix(text: &str) -> (Option<u64>, Option<u64>, Option<f64>) {
    let l = parse_load(text).expect("parses");
    (l.prefix_cache_queries, l.prefix_cache_hits, l.prefix_cache_hit_rate_gauge.map(|r| (r * 1e6).round() / 1e6))
}

/// A vLLM V1 page with only the prefix-cache counters, at the values given as written on the page.
fn counters(queries: &str, hits: &str) -> ScrapedLoad {
    let text = format!("vllm:prefix_cache_queries_total {queries}\nvllm:prefix_cache_hits_total {hits}\n");
    parse_load(&text).expect("parses")
}

#[test]
fn prefix_cache_in_the_fixtures() {
    // vLLM V1: the two DP engines' token counters summed. 0.6: the V0 gauge at -1, prefix caching being off.
    assert_eq!(prefix(VLLM), (Some(2_478_754), Some(779_616), None));
    assert_eq!(prefix(VLLM_06), (None, None, None));
    // SGLang: its gauge averaged over the two DP ranks. llama-server exports nothing about it.
    assert_eq!(prefix(SGLANG), (None, None, Some(0.4095)));
    assert_eq!(prefix(LLAMACPP), (None, None, None));
}

#[test]
fn prefix_cache_counter_names_old_and_new() {
    // Without `_total`; summed over DP engines, each engine's TP ranks (same counts) taken once.
    let bare = "vllm:prefix_cache_queries{engine=\"0\",tp_rank=\"0\"} 100\n\
                vllm:prefix_cache_queries{engine=\"0\",tp_rank=\"1\"} 100\n\
                vllm:prefix_cache_queries{engine=\"1\"} 300\n\
                vllm:prefix_cache_hits{engine=\"0\",tp_rank=\"0\"} 25\n\
                vllm:prefix_cache_hits{engine=\"0\",tp_rank=\"1\"} 25\n\
                vllm:prefix_cache_hits{engine=\"1\"} 75\n";
    assert_eq!(prefix(bare), (Some(400), Some(100), None));
    // 0.7-0.8's names; beside the current ones (kept as hidden metrics after the rename) the current win.
    let gpu = "# TYPE vllm:gpu_prefix_cache_queries counter\n\
               vllm:gpu_prefix_cache_queries_total{engine=\"0\"} 64\n\
               # TYPE vllm:gpu_prefix_cache_hits counter\n\
               vllm:gpu_prefix_cache_hits_total{engine=\"0\"} 16\n";
    assert_eq!(prefix(gpu), (Some(64), Some(16), None));
    let both = format!(
        "{gpu}vllm:prefix_cache_queries_total{{engine=\"0\"}} 65\nvllm:prefix_cache_hits_total{{engine=\"0\"}} 17\n"
    );
    assert_eq!(prefix(&both), (Some(65), Some(17), None));
    // Half a pair is no pair: queries without hits leave the gauge to answer.
    let half =
        "vllm:prefix_cache_queries_total 10\nvllm:gpu_prefix_cache_queries 5\nvllm:gpu_prefix_cache_hit_rate 0.5\n";
    assert_eq!(prefix(half), (None, None, Some(0.5)));
}

#[test]
fn prefix_cache_gauges_stand_in_for_counters() {
    let v0 = "vllm:num_requests_running{model_name=\"m\"} 1\nvllm:gpu_prefix_cache_hit_rate{model_name=\"m\"} 0.375\n";
    assert_eq!(prefix(v0), (None, None, Some(0.375)));
    // A gauge is the rate as it stands: no earlier scrape needed, none consulted.
    let load = parse_load(v0).expect("parses");
    assert_eq!(prefix_cache_hit_rate(None, &load), Some(0.375));
    assert_eq!(prefix_cache_hit_rate(Some(&counters("10", "5")), &load), Some(0.375));
    // SGLang: averaged over DP ranks, each rank's TP replicas once.
    let sglang = "sglang:cache_hit_rate{dp_rank=\"0\",tp_rank=\"0\"} 0.5\n\
                  sglang:cache_hit_rate{dp_rank=\"0\",tp_rank=\"1\"} 0.5\n\
                  sglang:cache_hit_rate{dp_rank=\"1\",tp_rank=\"0\"} 0.25\n";
    assert_eq!(prefix(sglang), (None, None, Some(0.375)));
}

#[test]
fn prefix_cache_hit_rate_is_over_the_time_between_scrapes() {
    // 90% since the engine started; none of that says how it does now.
    let first = counters("1000", "900");
    assert_eq!(prefix_cache_hit_rate(None, &first), None, "no window before the second scrape");
    let second = counters("1400", "1200");
    assert_eq!(prefix_cache_hit_rate(Some(&first), &second), Some(0.75));
    // Nothing queried in between: no rate, not 0.
    assert_eq!(prefix_cache_hit_rate(Some(&second), &second), None);
    // The engine restarted and its counters started over.
    assert_eq!(prefix_cache_hit_rate(Some(&second), &counters("50", "10")), None);
    // Hits outrunning queries, or going backwards alone: a broken page.
    assert_eq!(prefix_cache_hit_rate(Some(&first), &counters("1010", "920")), None);
    assert_eq!(prefix_cache_hit_rate(Some(&first), &counters("1010", "800")), None);
    // An earlier page without counters (SGLang before its first stats, or another engine) is no baseline.
    assert_eq!(prefix_cache_hit_rate(Some(&ScrapedLoad::UNKNOWN), &second), None);
    assert_eq!(prefix_cache_hit_rate(Some(&first), &ScrapedLoad::UNKNOWN), None);
}

#[test]
fn hostile_prefix_cache_values_give_no_rate_outside_0_to_1() {
    let values = [
        "NaN",
        "-5",
        "-1e308",
        "0",
        "0.5",
        "1",
        "7",
        "1e300",
        "1.7976931348623157e308",
        "18446744073709551615",
        "1e999",
        "+Inf",
        "-Inf",
    ];
    let mut pages = Vec::new();
    for queries in values {
        for hits in values {
            pages.push(counters(queries, hits));
        }
        pages.push(parse_load(&format!("sglang:cache_hit_rate {queries}\n")).expect("parses"));
        pages.push(parse_load(&format!("vllm:gpu_prefix_cache_hit_rate {queries}\n")).expect("parses"));
    }
    // Two series at f64::MAX sum past it (to infinity): the count saturates too.
    let max = "1.7976931348623157e308";
    let text = format!(
        "vllm:prefix_cache_queries_total{{engine=\"0\"}} {max}\n\
         vllm:prefix_cache_queries_total{{engine=\"1\"}} {max}\nvllm:prefix_cache_hits_total 1\n"
    );
    let huge = parse_load(&text).expect("parses");
    assert_eq!(huge.prefix_cache_queries, Some(u64::MAX));
    pages.push(huge);
    for now in &pages {
        for previous in pages.iter().map(Some).chain([None]) {
            if let Some(rate) = prefix_cache_hit_rate(previous, now) {
                assert!((0.0..=1.0).contains(&rate), "{rate} from {previous:?} to {now:?}");
            }
        }
    }
    // NaN is no reading at all; a negative count reads 0, a huge one saturates; a gauge off 0..=1 is dropped.
    assert_eq!(prefix("vllm:prefix_cache_queries_total NaN\nvllm:prefix_cache_hits_total 1\n"), (None, None, None));
    let skewed = "vllm:prefix_cache_queries_total -5\nvllm:prefix_cache_hits_total 1e300\n";
    assert_eq!(prefix(skewed), (Some(0), Some(u64::MAX), None));
    assert_eq!(prefix("sglang:cache_hit_rate 1.5\nsglang:cache_hit_rate{dp_rank=\"1\"} -1\n"), (None, None, None));
}

#[test]
fn odd_but_valid_exposition() {
    // Timestamps, empty label sets, exponents, a plain comment, blank lines, NaN where the only value is.
    let text = "# a plain comment\n\n\
                vllm:num_requests_running{} 2 1712345678000\n\
                vllm:num_requests_running{engine=\"1\"} 1e0\n\
                vllm:num_requests_waiting{engine=\"0\"} NaN\n\
                vllm:kv_cache_usage_perc{engine=\"0\"} 2.5e-01 1712345678000\n";
    assert_eq!(load(text), (EngineFlavor::Vllm, Some(3), None, Some(0.25)));
    // Why lines are escaped: prometheus-parse on its own drops every name with a colon.
    let raw = Scrape::parse(["vllm:num_requests_running 2".to_string()].into_iter().map(Ok)).expect("parses");
    assert!(raw.samples.is_empty(), "prometheus-parse now reads colons; escape_line can go");
}

#[test]
fn no_engine_metrics_is_unknown_not_zero() {
    for text in ["", "# HELP up x\n# TYPE up gauge\nup 1\n", "<html>not metrics</html>"] {
        assert_eq!(parse_load(text).expect("parses"), ScrapedLoad::UNKNOWN);
    }
    assert_eq!(EngineFlavor::Unknown.name(), "unknown");
}

#[test]
fn metrics_url_beside_the_base_url() {
    for (base, expected) in [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/metrics"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/metrics"),
        ("http://localhost:8080", "http://localhost:8080/metrics"),
        ("http://localhost:8080/", "http://localhost:8080/metrics"),
        ("https://gpu-1.lan/proxy/vllm/v1", "https://gpu-1.lan/proxy/vllm/metrics"),
        ("http://[::1]:30000/v1?x=1", "http://[::1]:30000/metrics"),
        ("http://v1", "http://v1/metrics"),
        ("http://h:1/v1/v1", "http://h:1/v1/metrics"),
        ("http://h:1/api/v10", "http://h:1/api/v10/metrics"),
    ] {
        assert_eq!(metrics_url(base), expected, "{base}");
    }
}

/// Serves the vLLM fixture at `/metrics` (anything else is axum's 404) and a page that never answers.
async fn serve() -> String {
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { VLLM })).route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test]
async fn scrape_over_http() {
    let base = serve().await;
    let client = reqwest::Client::new();
    let timeout = Duration::from_secs(5);

    let l = scrape(&client, &metrics_url(&format!("{base}/v1")), timeout).await.expect("scrapes");
    assert_eq!((l.flavor, l.running, l.waiting), (EngineFlavor::Vllm, Some(5), Some(1)));

    let url = format!("{base}/nope");
    let error = scrape(&client, &url, timeout).await.expect_err("404").to_string();
    assert_eq!(error, format!("GET {url}: HTTP 404 Not Found"));

    let url = format!("{base}/slow");
    let error = scrape(&client, &url, Duration::from_millis(200)).await.expect_err("timeout").to_string();
    assert!(error.starts_with(&format!("GET {url}: ")) && error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn scrape_names_a_refused_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("local address"));
    drop(listener);
    let error = scrape(&reqwest::Client::new(), &url, Duration::from_secs(5)).await.expect_err("refused");
    let error = error.to_string();
    assert!(error.starts_with(&format!("GET {url}: ")) && error.contains("refused"), "{error}");
}

/// Pages captured from a real `llama-server --metrics` (tests/fixtures/metrics/README.md says how): after one
/// request, and with two slots busy and a third request deferred.
#[test]
fn captured_llama_server_pages() {
    const IDLE: &str = include_str!("../../../tests/fixtures/metrics/llamacpp-0c1e570-idle.txt");
    const BUSY: &str = include_str!("../../../tests/fixtures/metrics/llamacpp-0c1e570-busy.txt");
    assert_eq!(load(IDLE), (EngineFlavor::LlamaCpp, Some(0), Some(0), None));
    assert_eq!(load(BUSY), (EngineFlavor::LlamaCpp, Some(2), Some(1), None));
}
