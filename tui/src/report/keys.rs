//! `llmopsctl keys create / list / revoke`: API keys, each selecting a tenant.
use std::fmt::Display;

use chrono::{DateTime, TimeZone};
use llmops_proto::v1::{ApiKey, CreatedKey, ListKeysResponse};

use crate::table::{Column, Table};
use crate::text::dash_if_empty;
use crate::when::short_time;

const COLUMNS: [Column; 6] = [
    Column::left("ID"),
    Column::left("TENANT"),
    Column::left("NAME"),
    Column::left("CREATED"),
    Column::left("SOURCE"),
    Column::left("REVOKED"),
];

/// The new key, shown this once, and how to use it.
pub fn render_created_key(created: &CreatedKey) -> String {
    let key = created.key.clone().unwrap_or_default();
    let secret = &created.secret;
    let mut text = format!("Created API key {} for tenant {}", dash_if_empty(&key.id), dash_if_empty(&key.tenant));
    if !key.name.is_empty() {
        text.push_str(&format!(" (name: {})", key.name));
    }
    text.push_str(&format!(":\n\n    {secret}\n\n"));
    text.push_str(&format!(
        "Save it now: it is shown only this once. llmopsd keeps only its SHA-256 hash and cannot show it again\n\
         (if it is lost: `llmopsctl keys revoke {}`, then create another).\n\n",
        dash_if_empty(&key.id)
    ));
    text.push_str(&format!(
        "Send it with each request to llmopsd's HTTP API as the header\n\
         \n    Authorization: Bearer {secret}\n\n\
         or, for OpenAI SDKs and tools (with OPENAI_BASE_URL set to llmopsd's http://HOST:PORT/v1):\n\
         \n    export OPENAI_API_KEY={secret}\n"
    ));
    text
}

/// Every key, oldest first as llmopsd lists them, then whether requests need one now.
pub fn render_keys<Tz: TimeZone>(response: &ListKeysResponse, now: &DateTime<Tz>) -> String
where
    Tz::Offset: Display,
{
    let mut text = if response.keys.is_empty() {
        "(no API keys: make one with `llmopsctl keys create --tenant NAME`)\n".to_owned()
    } else {
        let mut table = Table::new(&COLUMNS);
        for key in &response.keys {
            table.push(vec![
                dash_if_empty(&key.id),
                dash_if_empty(&key.tenant),
                dash_if_empty(&key.name),
                short_time(key.created_unix_ms, now),
                dash_if_empty(&key.source),
                if key.revoked { "yes" } else { "no" }.to_owned(),
            ]);
        }
        table.render()
    };
    text.push('\n');
    text.push_str(if response.key_required {
        "Keys are required now: HTTP requests without a valid key get 401.\n"
    } else {
        "Keys are not required now: HTTP requests without a key run as tenant \"default\".\n"
    });
    text
}

/// What `keys revoke` did.
pub fn render_revoked_key(key: &ApiKey) -> String {
    let name = if key.name.is_empty() { String::new() } else { format!(", name {}", key.name) };
    format!(
        "Revoked API key {} (tenant {}{name}): requests sending it now get 401.\n",
        dash_if_empty(&key.id),
        dash_if_empty(&key.tenant)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn key(id: &str, source: &str, revoked: bool) -> ApiKey {
        ApiKey {
            id: id.into(),
            tenant: "acme".into(),
            name: "notebooks".into(),
            created_unix_ms: 1_717_000_000_000,
            revoked,
            source: source.into(),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 30, 9, 0, 0).single().expect("valid date")
    }

    #[test]
    fn created_key_is_shown_once_with_how_to_use_it() {
        let created =
            CreatedKey { key: Some(key("key-7f3a9c01d2e4", "store", false)), secret: "sk-llmops-s3cr3t".into() };
        let text = render_created_key(&created);
        assert_eq!(
            text,
            "Created API key key-7f3a9c01d2e4 for tenant acme (name: notebooks):\n\
             \n    sk-llmops-s3cr3t\n\n\
             Save it now: it is shown only this once. llmopsd keeps only its SHA-256 hash and cannot show it again\n\
             (if it is lost: `llmopsctl keys revoke key-7f3a9c01d2e4`, then create another).\n\n\
             Send it with each request to llmopsd's HTTP API as the header\n\
             \n    Authorization: Bearer sk-llmops-s3cr3t\n\n\
             or, for OpenAI SDKs and tools (with OPENAI_BASE_URL set to llmopsd's http://HOST:PORT/v1):\n\
             \n    export OPENAI_API_KEY=sk-llmops-s3cr3t\n"
        );
        let unnamed =
            CreatedKey { key: Some(ApiKey { name: String::new(), ..key("key-1", "store", false) }), ..created };
        assert!(render_created_key(&unnamed).starts_with("Created API key key-1 for tenant acme:\n"));
    }

    #[test]
    fn key_list_is_a_table_and_says_whether_keys_are_required() {
        let response = ListKeysResponse {
            keys: vec![
                key("config-9f86d081884c", "config", false),
                ApiKey { name: String::new(), created_unix_ms: 1_717_050_000_000, ..key("key-1", "store", true) },
            ],
            key_required: true,
        };
        let text = render_keys(&response, &now());
        assert_eq!(
            text,
            "ID                   TENANT  NAME       CREATED              SOURCE  REVOKED\n\
             config-9f86d081884c  acme    notebooks  2024-05-29 16:26:40  config  no\n\
             key-1                acme    -          06:20:00             store   yes\n\
             \n\
             Keys are required now: HTTP requests without a valid key get 401.\n"
        );
    }

    #[test]
    fn empty_key_list_says_how_to_make_one() {
        let text = render_keys(&ListKeysResponse::default(), &now());
        assert_eq!(
            text,
            "(no API keys: make one with `llmopsctl keys create --tenant NAME`)\n\n\
             Keys are not required now: HTTP requests without a key run as tenant \"default\".\n"
        );
    }

    #[test]
    fn revoked_key_names_what_was_revoked() {
        assert_eq!(
            render_revoked_key(&key("key-1", "store", true)),
            "Revoked API key key-1 (tenant acme, name notebooks): requests sending it now get 401.\n"
        );
        let unnamed = ApiKey { name: String::new(), ..key("key-2", "store", true) };
        assert_eq!(
            render_revoked_key(&unnamed),
            "Revoked API key key-2 (tenant acme): requests sending it now get 401.\n"
        );
    }
}
