//! `--json` for `keys` and `budgets`, in the same shapes as the rest of `json`: proto field names, absent
//! optional fields as `null`.
use llmops_proto::v1::{ApiKey, Budget, BudgetUpdate, CreatedKey, ListBudgetsResponse, ListKeysResponse};
use serde_json::{json, Value};

pub fn api_key_to_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "created_unix_ms": key.created_unix_ms,
        "revoked": key.revoked,
        "source": key.source,
    })
}

/// `keys create --json`: `{"key": {...}, "secret": "..."}`, the only time the secret is available.
pub fn created_key_to_json(created: &CreatedKey) -> Value {
    json!({
        "key": created.key.as_ref().map(api_key_to_json),
        "secret": created.secret,
    })
}

/// `keys list --json`: `{"keys": [...], "key_required": bool}`.
pub fn keys_to_json(response: &ListKeysResponse) -> Value {
    json!({
        "keys": response.keys.iter().map(api_key_to_json).collect::<Vec<_>>(),
        "key_required": response.key_required,
    })
}

pub fn budget_to_json(budget: &Budget) -> Value {
    json!({
        "name": budget.name,
        "scope": budget.scope,
        "window": budget.window,
        "limit_kind": budget.limit_kind,
        "limit": budget.limit,
        "action": budget.action,
        "used": budget.used,
        "reserved": budget.reserved,
        "remaining": budget.remaining,
        "in_flight": budget.in_flight,
        "window_start_unix_ms": budget.window_start_unix_ms,
        "resets_at_unix_ms": budget.resets_at_unix_ms,
        "burn_rate_per_hour": budget.burn_rate_per_hour,
        "projected_exhaustion_unix_ms": budget.projected_exhaustion_unix_ms,
        "used_usd": budget.used_usd,
        "used_tokens": budget.used_tokens,
        "requests": budget.requests,
    })
}

/// `budgets --json`: `{"at_unix_ms": ..., "budgets": [...]}`.
pub fn budgets_to_json(response: &ListBudgetsResponse) -> Value {
    json!({
        "at_unix_ms": response.at_unix_ms,
        "budgets": response.budgets.iter().map(budget_to_json).collect::<Vec<_>>(),
    })
}

/// One `budgets --watch --json` line: the budgets that changed and how many updates this viewer missed.
pub fn budget_update_to_json(update: &BudgetUpdate) -> Value {
    json!({
        "at_unix_ms": update.at_unix_ms,
        "budgets": update.budgets.iter().map(budget_to_json).collect::<Vec<_>>(),
        "missed": update.missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey {
            id: "key-7f3a9c01d2e4".into(),
            tenant: "acme".into(),
            name: "notebooks".into(),
            created_unix_ms: 1_717_000_000_000,
            revoked: false,
            source: "store".into(),
        }
    }

    #[test]
    fn created_key_has_the_key_and_its_secret() {
        let created = CreatedKey { key: Some(key()), secret: "sk-llmops-abc".into() };
        assert_eq!(
            created_key_to_json(&created),
            json!({
                "key": {
                    "id": "key-7f3a9c01d2e4", "tenant": "acme", "name": "notebooks",
                    "created_unix_ms": 1_717_000_000_000_i64, "revoked": false, "source": "store",
                },
                "secret": "sk-llmops-abc",
            })
        );
        assert_eq!(created_key_to_json(&CreatedKey::default())["key"], Value::Null);
    }

    #[test]
    fn key_list_has_keys_and_whether_one_is_required() {
        let response = ListKeysResponse { keys: vec![key()], key_required: true };
        let value = keys_to_json(&response);
        assert_eq!(value["key_required"], true);
        assert_eq!(value["keys"][0]["id"], "key-7f3a9c01d2e4");
        assert_eq!(keys_to_json(&ListKeysResponse::default()), json!({"keys": [], "key_required": false}));
    }

    #[test]
    fn budget_has_every_proto_field_and_null_for_no_exhaustion() {
        let budget = Budget {
            name: "daily".into(),
            limit_kind: "usd".into(),
            limit: 5.0,
            used: 1.25,
            used_tokens: 12_345,
            projected_exhaustion_unix_ms: Some(1_717_000_360_000),
            ..Budget::default()
        };
        let value = budget_to_json(&budget);
        let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "name",
            "scope",
            "window",
            "limit_kind",
            "limit",
            "action",
            "used",
            "reserved",
            "remaining",
            "in_flight",
            "window_start_unix_ms",
            "resets_at_unix_ms",
            "burn_rate_per_hour",
            "projected_exhaustion_unix_ms",
            "used_usd",
            "used_tokens",
            "requests",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(value["used"], 1.25);
        assert!(value["used_tokens"].is_u64(), "token counts are integers");
        assert_eq!(value["projected_exhaustion_unix_ms"], 1_717_000_360_000_i64);
        assert_eq!(budget_to_json(&Budget::default())["projected_exhaustion_unix_ms"], Value::Null);
    }

    #[test]
    fn budget_list_and_updates_wrap_the_budgets() {
        let list = ListBudgetsResponse { at_unix_ms: 5, budgets: vec![Budget::default()] };
        assert_eq!(budgets_to_json(&list)["budgets"].as_array().map(Vec::len), Some(1));
        assert_eq!(budgets_to_json(&list)["at_unix_ms"], 5);
        let update = BudgetUpdate { at_unix_ms: 6, budgets: Vec::new(), missed: 3 };
        assert_eq!(budget_update_to_json(&update), json!({"at_unix_ms": 6, "budgets": [], "missed": 3}));
    }
}
