//! Runs the real `llmopsctl keys ...` / `budgets` / `budgets --watch` against a fake KeyService and
//! BudgetService on a Unix socket: text, JSON, and the exits for unknown keys, refused arguments and a viewer
//! that fell behind.
// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use llmops_proto::v1::budget_service_server::{BudgetService, BudgetServiceServer};
use llmops_proto::v1::key_service_server::{KeyService, KeyServiceServer};
use llmops_proto::v1::{
    ApiKey, Budget, BudgetUpdate, CreateKeyRequest, CreatedKey, ListBudgetsRequest, ListBudgetsResponse,
    ListKeysRequest, ListKeysResponse, RevokeKeyRequest, WatchBudgetsRequest,
};
use serde_json::Value;
use support::{failure, llmopsctl, stdout_json, stdout_text};
use tonic::{Request, Response};

mod support;

const SECRET: &str = "sk-llmops-0123456789abcdef";

fn stored_key(id: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant: "acme".into(),
        name: "ci".into(),
        created_unix_ms: 1_717_000_000_000,
        revoked: false,
        source: "store".into(),
    }
}

fn spend_budget(used: f64) -> Budget {
    Budget {
        name: "daily-spend".into(),
        scope: "tenant:acme".into(),
        window: "day".into(),
        limit_kind: "usd".into(),
        limit: 5.0,
        action: "reject".into(),
        used,
        remaining: 5.0 - used,
        resets_at_unix_ms: 1_717_027_200_000,
        burn_rate_per_hour: 0.5,
        projected_exhaustion_unix_ms: None,
        ..Budget::default()
    }
}

fn token_budget() -> Budget {
    Budget {
        name: "hourly-tokens".into(),
        scope: "global".into(),
        window: "hour".into(),
        limit_kind: "tokens".into(),
        limit: 100_000.0,
        action: "alert".into(),
        used: 12_345.0,
        remaining: 87_655.0,
        used_tokens: 12_345,
        resets_at_unix_ms: 1_717_002_000_000,
        burn_rate_per_hour: 20_000.0,
        projected_exhaustion_unix_ms: Some(1_717_001_000_000),
        ..Budget::default()
    }
}

#[derive(Clone, Default)]
struct FakeDaemon {
    /// Answers ListBudgets with no budgets, like a daemon without `[[budgets]]`.
    no_budgets: bool,
    created: Arc<Mutex<Vec<CreateKeyRequest>>>,
}

#[tonic::async_trait]
impl KeyService for FakeDaemon {
    async fn create_key(&self, request: Request<CreateKeyRequest>) -> Result<Response<CreatedKey>, tonic::Status> {
        let request = request.into_inner();
        if request.tenant == "bad" {
            return Err(tonic::Status::invalid_argument("tenant is not allowed"));
        }
        let key = ApiKey { tenant: request.tenant.clone(), name: request.name.clone(), ..stored_key("key-new") };
        self.created.lock().expect("lock").push(request);
        Ok(Response::new(CreatedKey { key: Some(key), secret: SECRET.into() }))
    }

    async fn list_keys(&self, _request: Request<ListKeysRequest>) -> Result<Response<ListKeysResponse>, tonic::Status> {
        let config_key =
            ApiKey { id: "config-9f86d081884c".into(), name: String::new(), source: "config".into(), ..stored_key("") };
        let revoked = ApiKey { revoked: true, ..stored_key("key-old") };
        Ok(Response::new(ListKeysResponse { keys: vec![config_key, revoked], key_required: true }))
    }

    async fn revoke_key(&self, request: Request<RevokeKeyRequest>) -> Result<Response<ApiKey>, tonic::Status> {
        match request.into_inner().id.as_str() {
            "key-old" => Ok(Response::new(ApiKey { revoked: true, ..stored_key("key-old") })),
            id if id.starts_with("config-") => {
                Err(tonic::Status::invalid_argument(format!("{id} is set in the config file: remove it there")))
            }
            id => Err(tonic::Status::not_found(format!("no key with id {id}"))),
        }
    }
}

#[tonic::async_trait]
impl BudgetService for FakeDaemon {
    async fn list_budgets(
        &self,
        _request: Request<ListBudgetsRequest>,
    ) -> Result<Response<ListBudgetsResponse>, tonic::Status> {
        let budgets = if self.no_budgets { Vec::new() } else { vec![spend_budget(1.25), token_budget()] };
        Ok(Response::new(ListBudgetsResponse { at_unix_ms: 1_717_000_000_000, budgets }))
    }

    type WatchBudgetsStream = tokio_stream::Iter<std::vec::IntoIter<Result<BudgetUpdate, tonic::Status>>>;

    async fn watch_budgets(
        &self,
        _request: Request<WatchBudgetsRequest>,
    ) -> Result<Response<Self::WatchBudgetsStream>, tonic::Status> {
        let updates = vec![
            Ok(BudgetUpdate {
                at_unix_ms: 1_717_000_000_000,
                budgets: vec![spend_budget(1.25), token_budget()],
                missed: 0,
            }),
            Ok(BudgetUpdate { at_unix_ms: 1_717_000_001_000, budgets: vec![spend_budget(1.5)], missed: 0 }),
            Ok(BudgetUpdate { at_unix_ms: 1_717_000_002_000, budgets: Vec::new(), missed: 4 }),
        ];
        Ok(Response::new(tokio_stream::iter(updates)))
    }
}

async fn start_fake(name: &str, fake: FakeDaemon) -> PathBuf {
    support::serve(&format!("admin-{name}"), |server| {
        server.add_service(KeyServiceServer::new(fake.clone())).add_service(BudgetServiceServer::new(fake))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_list_and_revoke() {
    let fake = FakeDaemon::default();
    let socket = start_fake("keys", fake.clone()).await;

    let text = stdout_text(&llmopsctl(&socket, &["keys", "create", "--tenant", "acme", "--name", "ci"]).await);
    assert!(text.starts_with("Created API key key-new for tenant acme (name: ci):\n\n    sk-llmops-0123"), "{text}");
    assert!(text.contains("cannot show it again"), "{text}");
    assert!(text.contains(&format!("Authorization: Bearer {SECRET}\n")), "{text}");
    assert!(text.contains(&format!("export OPENAI_API_KEY={SECRET}\n")), "{text}");
    let created = fake.created.lock().expect("lock").clone();
    assert_eq!(created, [CreateKeyRequest { tenant: "acme".into(), name: "ci".into() }]);

    let json = stdout_json(&llmopsctl(&socket, &["keys", "create", "--tenant", "acme", "--json"]).await);
    assert_eq!(json["secret"], SECRET);
    assert_eq!(json["key"]["id"], "key-new");
    assert_eq!(json["key"]["name"], "");

    let text = stdout_text(&llmopsctl(&socket, &["keys", "list"]).await);
    assert_eq!(
        text,
        "ID                   TENANT  NAME  CREATED              SOURCE  REVOKED\n\
         config-9f86d081884c  acme    -     2024-05-29 16:26:40  config  no\n\
         key-old              acme    ci    2024-05-29 16:26:40  store   yes\n\
         \n\
         Keys are required now: HTTP requests without a valid key get 401.\n"
    );
    let json = stdout_json(&llmopsctl(&socket, &["keys", "list", "--json"]).await);
    assert_eq!(json["key_required"], true);
    assert_eq!(json["keys"][1]["revoked"], true);
    assert_eq!(json["keys"][0]["source"], "config");

    let text = stdout_text(&llmopsctl(&socket, &["keys", "revoke", "key-old"]).await);
    assert_eq!(text, "Revoked API key key-old (tenant acme, name ci): requests sending it now get 401.\n");
    let json = stdout_json(&llmopsctl(&socket, &["keys", "revoke", "key-old", "--json"]).await);
    assert_eq!(json["revoked"], true);

    let missing = failure(&llmopsctl(&socket, &["keys", "revoke", "key-nope"]).await);
    assert_eq!(missing, (Some(1), "llmopsctl: no API key with id key-nope (see `llmopsctl keys list`)\n".into()));
    let config = failure(&llmopsctl(&socket, &["keys", "revoke", "config-9f86d081884c"]).await);
    assert_eq!(
        config,
        (
            Some(1),
            "llmopsctl: cannot revoke key config-9f86d081884c: config-9f86d081884c is set in the config file: \
             remove it there\n"
                .into()
        )
    );
    let refused = failure(&llmopsctl(&socket, &["keys", "create", "--tenant", "bad"]).await);
    assert_eq!(refused, (Some(1), "llmopsctl: cannot create a key: tenant is not allowed\n".into()));

    // A blank tenant is a usage error, refused before any call.
    let blank = llmopsctl(&socket, &["keys", "create", "--tenant", ""]).await;
    assert_eq!(blank.status.code(), Some(2));
    assert_eq!(fake.created.lock().expect("lock").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_as_text_and_json() {
    let socket = start_fake("budgets", FakeDaemon::default()).await;

    // The times are of another day, so they show their date; TZ=UTC makes them predictable.
    let text = stdout_text(&llmopsctl(&socket, &["budgets"]).await);
    assert_eq!(
        text,
        "NAME           SCOPE        WINDOW  ACTION         USED / LIMIT  USED %  REMAINING  BURN/h  EXHAUSTS             \
         RESETS\n\
         daily-spend    tenant:acme  day     reject        $1.25 / $5.00   25.0%      $3.75   $0.50  -                    \
         2024-05-30 00:00:00\n\
         hourly-tokens  global       hour    alert   12.3k / 100k tokens   12.3%      87.7k     20k  2024-05-29 16:43:20  \
         2024-05-29 17:00:00\n"
    );

    let json = stdout_json(&llmopsctl(&socket, &["budgets", "--json"]).await);
    assert_eq!(json["at_unix_ms"], 1_717_000_000_000_i64);
    assert_eq!(json["budgets"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["budgets"][0]["limit_kind"], "usd");
    assert_eq!(json["budgets"][0]["projected_exhaustion_unix_ms"], Value::Null);
    assert_eq!(json["budgets"][1]["used_tokens"], 12_345);

    let empty = start_fake("no-budgets", FakeDaemon { no_budgets: true, ..FakeDaemon::default() }).await;
    let text = stdout_text(&llmopsctl(&empty, &["budgets"]).await);
    assert_eq!(text, "(no budgets configured: add [[budgets]] to the config)\n");
    let json = stdout_json(&llmopsctl(&empty, &["budgets", "--json"]).await);
    assert_eq!(json["budgets"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_watch_prints_changes_then_exits_1_when_too_slow() {
    let socket = start_fake("budgets-watch", FakeDaemon::default()).await;

    let watch = llmopsctl(&socket, &["budgets", "--watch"]).await;
    assert_eq!(watch.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&watch.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "header, both budgets, then the one that changed: {stdout}");
    assert!(lines[0].starts_with("TIME      NAME"), "{stdout}");
    assert!(lines[1].starts_with("2024-05-29 16:26:40  daily-spend"), "{stdout}");
    assert!(lines[3].starts_with("2024-05-29 16:26:41  daily-spend"), "{stdout}");
    assert!(lines[3].ends_with("$1.50 / $5.00    30.0%      $0.50"), "{stdout}");
    assert_eq!(
        String::from_utf8_lossy(&watch.stderr),
        "llmopsctl: watch stream ended by llmopsd: this viewer read too slowly and missed 4 updates\n"
    );

    let watch = llmopsctl(&socket, &["budgets", "--watch", "--json"]).await;
    assert_eq!(watch.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["budgets"].as_array().map(Vec::len), Some(2));
    assert_eq!(lines[1]["budgets"][0]["used"], 1.5);
    assert_eq!(lines[2]["missed"], 4);
}
