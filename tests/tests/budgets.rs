//! Budgets end to end: concurrency cannot overspend by more than one reservation, rejected requests get the
//! documented 429, spend survives a restart, free requests pass a USD budget, and `downgrade` serves from
//! the route's next target. Each test runs inside one budget window (`window_support`): a minute or UTC day
//! that ends while it runs would reset what it counts.
mod window_support;

use futures::future::join_all;
use llmops_e2e::daemon::{wait_until, Daemon};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_proto::v1 as pb;
use llmops_proto::v1::budget_service_client::BudgetServiceClient;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use std::time::Duration;
use window_support::{Window, DAY, MINUTE};

/// $0.10 a token, so a handful of requests spend dollars.
const PRICE: &str = "price = { input = 100000.0, output = 100000.0 }";
/// "user: hi" is about 2 tokens by the gateway's estimate, plus max_tokens: 12 tokens, $1.20 reserved; the
/// fake answers 1 prompt token and 10 words: $1.10 spent.
const RESERVATION_USD: f64 = 1.2;
const RESERVATION_TOKENS: f64 = 12.0;

fn config(upstream: &FakeUpstream, extra: &str) -> String {
    format!(
        "[engines.paid]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n{PRICE}\n\
         [routes.usd]\ntargets = [{{ engine = \"paid\", model = \"fake-model\" }}]\n\
         [routes.tokens]\ntargets = [{{ engine = \"paid\", model = \"fake-model\" }}]\n{extra}",
        upstream.base_url()
    )
}

const TIGHT_BUDGETS: &str =
    "[[budgets]]\nname = \"usd-day\"\nscope = \"route:usd\"\nwindow = \"day\"\nlimit_usd = 2.0\n\
    [[budgets]]\nname = \"tokens-day\"\nscope = \"route:tokens\"\nwindow = \"day\"\nlimit_tokens = 150\n";

async fn chat(http: &reqwest::Client, daemon: &Daemon, route: &str) -> (u16, Option<String>, Value) {
    let body = json!({"model": route, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

async fn ok_traces(daemon: &Daemon, route: &str, expected: usize) -> Vec<pb::Trace> {
    let client = TraceServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    let list = || {
        let mut client = client.clone();
        let request = pb::ListTracesRequest { route: route.into(), limit: 500, ..Default::default() };
        async move { client.list_traces(request).await.expect("ListTraces").into_inner().traces }
    };
    wait_until(Duration::from_secs(10), || async { list().await.len() >= expected }).await;
    let last = list().await;
    assert_eq!(last.len(), expected, "every request of route {route} has a trace");
    last.into_iter().filter(|t| t.status == pb::TraceStatus::Ok as i32).collect()
}

async fn budgets(daemon: &Daemon) -> Vec<pb::Budget> {
    let mut client = BudgetServiceClient::new(daemon.grpc_channel().await.expect("channel"));
    client.list_budgets(pb::ListBudgetsRequest {}).await.expect("ListBudgets").into_inner().budgets
}

fn budget<'a>(budgets: &'a [pb::Budget], name: &str) -> &'a pb::Budget {
    budgets.iter().find(|b| b.name == name).expect("budget listed")
}

#[tokio::test]
async fn two_hundred_concurrent_requests_overspend_by_at_most_one_reservation_and_spend_survives_a_restart() {
    let upstream = FakeUpstream::start(Behavior { token_delay_ms: 5, reply_words: Some(10), ..Behavior::default() })
        .await
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&upstream, TIGHT_BUDGETS);
    // 400 requests, a restart and one more request, all against day budgets.
    let day = Window::enter(DAY, Duration::from_secs(300)).await;
    let mut daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();

    for route in ["usd", "tokens"] {
        let answers = join_all((0..200).map(|_| chat(&http, &daemon, route))).await;
        let served = answers.iter().filter(|(status, ..)| *status == 200).count();
        assert!(served >= 1, "some requests fit in the budget");
        for (status, retry_after, body) in answers.iter().filter(|(status, ..)| *status != 200) {
            assert_eq!(*status, 429, "{body}");
            assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains(&format!("{route}-day")) && message.contains("resets at"), "{message}");
            let seconds: u64 = retry_after.as_deref().and_then(|v| v.parse().ok()).expect("Retry-After seconds");
            assert!((1..=86_400).contains(&seconds), "{seconds}");
        }
        let traces = ok_traces(&daemon, route, 200).await;
        assert_eq!(traces.len(), served);
        let spent_usd: f64 = traces.iter().filter_map(|t| t.cost_usd).sum();
        let spent_tokens: u64 = traces.iter().map(|t| t.input_tokens + t.output_tokens).sum();
        if route == "usd" {
            assert!(spent_usd <= 2.0 + RESERVATION_USD, "spent ${spent_usd} against $2.00 (+${RESERVATION_USD})");
        } else {
            assert!(spent_tokens as f64 <= 150.0 + RESERVATION_TOKENS, "spent {spent_tokens} tokens against 150");
        }
        let listed = budgets(&daemon).await;
        let recorded = budget(&listed, &format!("{route}-day"));
        let used = if route == "usd" { spent_usd } else { spent_tokens as f64 };
        assert!((recorded.used - used).abs() < 1e-6, "ledger {} vs traces {used}", recorded.used);
        assert_eq!((recorded.reserved, recorded.in_flight), (0.0, 0), "nothing left reserved");
    }

    let before = budgets(&daemon).await;
    daemon.terminate();
    daemon.wait_exit(Duration::from_secs(20)).await.expect("clean exit");
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd restarts");
    let after = budgets(&daemon).await;
    for name in ["usd-day", "tokens-day"] {
        assert_eq!(budget(&after, name).used, budget(&before, name).used, "{name} kept across the restart");
    }
    assert_eq!(chat(&http, &daemon, "usd").await.0, 429, "still spent after the restart");
    day.assert_still_inside();
}

#[tokio::test]
async fn free_requests_pass_a_usd_budget_but_not_a_request_budget() {
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    // No price and a model the price table does not know: these requests cost nothing.
    let config = format!(
        "[engines.local]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\
         [[budgets]]\nname = \"usd\"\nwindow = \"day\"\nlimit_usd = 0.0001\n\
         [[budgets]]\nname = \"three-a-minute\"\nwindow = \"minute\"\nlimit_requests = 3\nscope = \"tenant:default\"\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    // Four requests against three a minute: all in one minute, or the fourth would start a new one.
    let minute = Window::enter(MINUTE, Duration::from_secs(15)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(chat(&http, &daemon, "fake-model").await);
    }
    minute.assert_still_inside();
    assert_eq!(statuses.iter().map(|s| s.0).collect::<Vec<_>>(), [200, 200, 200, 429]);
    let message = statuses[3].2["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("three-a-minute"), "{message}");
}

#[tokio::test]
async fn a_downgrade_budget_serves_from_the_next_target() {
    // Ten words: the first answer costs $1.10, past the $1 budget.
    let paid = FakeUpstream::start(Behavior { reply_words: Some(10), ..Behavior::default() }).await.expect("paid");
    let local = FakeUpstream::start(Behavior::default()).await.expect("local upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[engines.paid]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n{PRICE}\n\
         [engines.local]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\
         [routes.chat]\ntargets = [{{ engine = \"paid\", model = \"fake-model\" }}, {{ engine = \"local\", model = \"fake-model\" }}]\n\
         [[budgets]]\nname = \"paid-day\"\nscope = \"model:fake-model\"\nwindow = \"day\"\nlimit_usd = 1.0\naction = \"downgrade\"\n",
        paid.base_url(),
        local.base_url()
    );
    let daemon = Daemon::start(&config, dir.path()).await.expect("llmopsd starts");
    let http = reqwest::Client::new();
    let body = json!({"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let day = Window::enter(DAY, Duration::from_secs(120)).await;
    let mut served_by = Vec::new();
    for _ in 0..3 {
        let response = http.post(daemon.url("/v1/chat/completions")).json(&body).send().await.expect("POST");
        assert_eq!(response.status(), 200);
        served_by.push(response.headers()["x-llmops-served-by"].to_str().expect("header").to_string());
    }
    day.assert_still_inside();
    assert_eq!(served_by, ["paid/fake-model", "local/fake-model", "local/fake-model"]);
}
