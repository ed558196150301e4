//! Every request parameter the embedded engine knows, and what it does with each: nothing a client sends is
//! silently ignored. A parameter is honoured, or accepted only at the value that means what the engine does
//! anyway, or refused with a 400 naming it; a parameter not in the table is refused as unknown. README.md's
//! parameter table says the same for clients.
use super::request::Refusal;
use serde_json::Value;

/// What the engine does with one parameter.
#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// Read and acted on (by the engine, or by the gateway before it: `user`, `metadata`, `stream_options`).
    Honoured,
    /// Accepted when absent, null, or at the value given by `allowed`; refused otherwise, with the reason.
    Only { allowed: fn(&Value) -> bool, reason: &'static str },
}

use Support::{Honoured, Only};

fn is_false(value: &Value) -> bool {
    value == &Value::Bool(false)
}

fn is_one(value: &Value) -> bool {
    value.as_u64() == Some(1)
}

fn is_zero(value: &Value) -> bool {
    value.as_u64() == Some(0)
}

fn text_only(value: &Value) -> bool {
    value.as_array().is_some_and(|m| m.iter().all(|m| m == "text"))
}

fn default_tier(value: &Value) -> bool {
    matches!(value.as_str(), Some("auto" | "default"))
}

fn empty(value: &Value) -> bool {
    value.as_str().is_some_and(str::is_empty) || value.as_array().is_some_and(Vec::is_empty)
}

fn never(_: &Value) -> bool {
    false
}

/// Parameters of `/v1/chat/completions` (OpenAI's list, then llama.cpp server's sampling extensions).
pub const CHAT: &[(&str, Support)] = &[
    ("model", Honoured),
    ("messages", Honoured),
    ("audio", Only { allowed: never, reason: "the embedded engine answers in text only" }),
    ("frequency_penalty", Honoured),
    ("function_call", Only { allowed: never, reason: "deprecated by OpenAI; use `tool_choice`" }),
    ("functions", Only { allowed: never, reason: "deprecated by OpenAI; use `tools`" }),
    ("logit_bias", Honoured),
    ("logprobs", Only { allowed: is_false, reason: "the embedded engine does not return logprobs" }),
    ("max_completion_tokens", Honoured),
    ("max_tokens", Honoured),
    ("metadata", Honoured),
    ("modalities", Only { allowed: text_only, reason: "the embedded engine answers in text only" }),
    ("n", Only { allowed: is_one, reason: "the embedded engine returns one choice per request; `n` must be 1" }),
    ("parallel_tool_calls", Honoured),
    ("prediction", Only { allowed: never, reason: "predicted outputs are not supported by the embedded engine" }),
    ("presence_penalty", Honoured),
    ("prompt_cache_key", Only { allowed: empty, reason: "the embedded engine keeps no prompt cache between requests" }),
    ("reasoning_effort", Only { allowed: never, reason: "the embedded model is not a reasoning model" }),
    ("response_format", Honoured),
    ("safety_identifier", Honoured),
    ("seed", Honoured),
    ("service_tier", Only { allowed: default_tier, reason: "the embedded engine has one service tier" }),
    ("stop", Honoured),
    (
        "store",
        Only {
            allowed: is_store_true,
            reason: "llmopsd records every request as a trace; `store: false` cannot be honoured",
        },
    ),
    ("stream", Honoured),
    ("stream_options", Honoured),
    ("temperature", Honoured),
    ("tool_choice", Honoured),
    ("tools", Honoured),
    ("top_logprobs", Only { allowed: is_zero, reason: "the embedded engine does not return logprobs" }),
    ("top_p", Honoured),
    ("user", Honoured),
    ("verbosity", Only { allowed: never, reason: "the embedded engine has no verbosity control" }),
    ("web_search_options", Only { allowed: never, reason: "the embedded engine cannot search the web" }),
    // llama.cpp server's extensions.
    ("top_k", Honoured),
    ("min_p", Honoured),
    ("repetition_penalty", Honoured),
];

fn is_store_true(value: &Value) -> bool {
    value == &Value::Bool(true)
}

/// Parameters of `/v1/completions`.
pub const COMPLETIONS: &[(&str, Support)] = &[
    ("model", Honoured),
    ("prompt", Honoured),
    ("best_of", Only { allowed: is_one, reason: "the embedded engine returns one choice per request" }),
    ("echo", Only { allowed: is_false, reason: "the embedded engine does not echo the prompt" }),
    ("frequency_penalty", Honoured),
    ("logit_bias", Honoured),
    ("logprobs", Only { allowed: is_zero, reason: "the embedded engine does not return logprobs" }),
    ("max_tokens", Honoured),
    ("n", Only { allowed: is_one, reason: "the embedded engine returns one choice per request; `n` must be 1" }),
    ("presence_penalty", Honoured),
    ("seed", Honoured),
    ("stop", Honoured),
    ("stream", Honoured),
    ("stream_options", Honoured),
    ("suffix", Only { allowed: empty, reason: "the embedded engine does not insert text (`suffix`)" }),
    ("temperature", Honoured),
    ("top_p", Honoured),
    ("user", Honoured),
    ("metadata", Honoured),
    ("top_k", Honoured),
    ("min_p", Honoured),
    ("repetition_penalty", Honoured),
];

/// Refuses the first parameter the engine would otherwise ignore: unknown, or at a value it cannot honour.
pub fn check(chat: bool, body: &Value) -> Result<(), Refusal> {
    let table = if chat { CHAT } else { COMPLETIONS };
    let Some(object) = body.as_object() else { return Ok(()) };
    for (name, value) in object {
        let Some((known, support)) = table.iter().find(|(known, _)| known == name) else {
            let shown: String = name.chars().take(64).collect();
            let endpoint = if chat { "/v1/chat/completions" } else { "/v1/completions" };
            return Err(Refusal::invalid_named(
                shown.clone(),
                format!("unknown parameter `{shown}` for {endpoint}: the embedded engine would ignore it"),
            ));
        };
        if let Only { allowed, reason } = support {
            if !value.is_null() && !allowed(value) {
                return Err(Refusal::invalid(known, format!("`{known}` cannot be honoured: {reason}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_and_unhonourable_parameters_are_named() {
        let refused = |chat, body: Value| check(chat, &body).expect_err("refused").param;
        assert_eq!(refused(true, json!({"model": "m", "n": 2})).as_deref(), Some("n"));
        assert_eq!(refused(true, json!({"model": "m", "logprobs": true})).as_deref(), Some("logprobs"));
        assert_eq!(refused(true, json!({"model": "m", "no_such_thing": 1})).as_deref(), Some("no_such_thing"));
        assert_eq!(refused(true, json!({"store": false})).as_deref(), Some("store"));
        assert_eq!(refused(false, json!({"echo": true})).as_deref(), Some("echo"));
        assert_eq!(refused(false, json!({"tools": []})).as_deref(), Some("tools"));
    }

    #[test]
    fn defaults_and_nulls_pass() {
        let body = json!({"model": "m", "n": 1, "logprobs": false, "audio": null, "modalities": ["text"],
                          "service_tier": "auto", "store": true, "top_logprobs": 0, "prompt_cache_key": ""});
        assert_eq!(check(true, &body), Ok(()));
        assert_eq!(check(false, &json!({"prompt": "x", "echo": false, "best_of": 1, "suffix": null})), Ok(()));
    }

    #[test]
    fn the_tables_have_no_duplicates() {
        for table in [CHAT, COMPLETIONS] {
            let mut names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count);
        }
    }
}
