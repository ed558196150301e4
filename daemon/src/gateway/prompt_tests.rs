//! Reading a request's prompt (metadata and headers, with their bounds) and applying it from a real registry.
use super::*;
use crate::gateway::request::Endpoint;
use crate::prompts::{Author, NewVersion, PromptMessage};
use serde_json::json;

fn parse(body: &Value, headers: &HeaderMap) -> Result<ClientRequest, GatewayError> {
    ClientRequest::parse(Endpoint::ChatCompletions, body.to_string().as_bytes(), headers)
}

fn refused(body: &Value, headers: &HeaderMap) -> (Option<String>, String) {
    match parse(body, headers).expect_err("refused") {
        GatewayError::InvalidRequest { param, message } => (param, message),
        other => panic!("not a 400: {other:?}"),
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().expect("header value"));
    }
    map
}

#[test]
fn variables_come_as_an_object_a_json_string_or_a_header() {
    let object =
        json!({"model": "m", "messages": [], "metadata": {"prompt": "support@3", "variables": {"q": "hi", "n": 2}}});
    let call = parse(&object, &HeaderMap::new()).expect("valid").prompt.expect("a prompt");
    assert_eq!(call.reference, PromptRef::parse("support@3").expect("ref"));
    assert_eq!(call.variables.get("q").map(String::as_str), Some("hi"));
    assert_eq!(call.variables.get("n").map(String::as_str), Some("2"), "numbers are taken as their JSON text");

    let string = json!({"model": "m", "messages": [], "metadata": {"prompt": "support", "variables": "{\"q\":\"hi\"}", "team": "a"}});
    let request = parse(&string, &HeaderMap::new()).expect("valid");
    assert_eq!(request.prompt.expect("prompt").variables.get("q").map(String::as_str), Some("hi"));
    assert_eq!(request.tags.get("team").map(String::as_str), Some("a"), "other metadata stays a tag");
    assert!(!request.tags.contains_key("prompt") && !request.tags.contains_key("variables"));

    let from_headers = headers(&[(PROMPT_HEADER, "billing@staging"), (VARIABLES_HEADER, r#"{"q":"from header"}"#)]);
    let call = parse(&string, &from_headers).expect("valid").prompt.expect("prompt");
    assert_eq!(call.reference.to_string(), "billing@staging", "the header wins");
    assert_eq!(call.variables.get("q").map(String::as_str), Some("from header"));
    assert_eq!((call.source, call.variables_source), (PROMPT_HEADER, VARIABLES_HEADER));
    let request = parse(&json!({"model": "m", "messages": []}), &from_headers).expect("valid");
    assert!(request.tags.is_empty(), "prompt headers are not tags: {:?}", request.tags);
}

#[test]
fn hostile_prompt_fields_are_refused_naming_the_field() {
    let none = HeaderMap::new();
    let with = |metadata: Value| json!({"model": "m", "messages": [], "metadata": metadata});
    let (param, message) = refused(&with(json!({"prompt": 7})), &none);
    assert_eq!((param.as_deref(), message.contains("must be a string")), (Some("metadata.prompt"), true));
    let (param, message) = refused(&with(json!({"prompt": "bad name@1"})), &none);
    assert_eq!(param.as_deref(), Some("metadata.prompt"));
    assert!(message.contains("prompt name"), "{message}");
    let (param, _) = refused(&with(json!({"variables": {"q": "x"}})), &none);
    assert_eq!(param.as_deref(), Some("metadata.variables"), "variables without a prompt");
    let (param, message) = refused(&with(json!({"prompt": "p", "variables": {"q": ["x"]}})), &none);
    assert_eq!(param.as_deref(), Some("metadata.variables.q"));
    assert!(message.contains("must be a string"), "{message}");
    let (_, message) = refused(&with(json!({"prompt": "p", "variables": "not json"})), &none);
    assert!(message.contains("not a JSON object"), "{message}");
    let many: Map<String, Value> = (0..65).map(|i| (format!("v{i}"), json!("x"))).collect();
    let (_, message) = refused(&with(json!({"prompt": "p", "variables": many})), &none);
    assert!(message.contains("65 variables; at most 64"), "{message}");
    let big = json!({"a": "x".repeat(40_000), "b": "y".repeat(30_000)});
    let (_, message) = refused(&with(json!({"prompt": "p", "variables": big})), &none);
    assert!(message.contains("over 65536 bytes"), "{message}");
    let long_name = json!({"n".repeat(65): "x"});
    let (_, message) = refused(&with(json!({"prompt": "p", "variables": long_name})), &none);
    assert!(message.contains("1 to 64 bytes"), "{message}");
    let (param, message) = refused(&with(json!({"team": 5})), &none);
    assert_eq!(param.as_deref(), Some("metadata.team"));
    assert!(message.contains("a number, expected a string"), "{message}");
    let (param, _) = refused(&json!({"model": "m", "messages": []}), &headers(&[(VARIABLES_HEADER, "[1]")]));
    assert_eq!(param.as_deref(), Some("metadata.variables"), "a variables header without a prompt");
    let (param, _) =
        refused(&json!({"model": "m", "messages": []}), &headers(&[(PROMPT_HEADER, "p"), (VARIABLES_HEADER, "[1]")]));
    assert_eq!(param.as_deref(), Some(VARIABLES_HEADER));
    // Other endpoints take no registry prompt; chat without one still needs messages and a model.
    let completion = json!({"model": "m", "prompt": "x", "metadata": {"prompt": "p"}});
    let error =
        ClientRequest::parse(Endpoint::Completions, completion.to_string().as_bytes(), &none).expect_err("refused");
    assert!(error.to_string().contains("/v1/chat/completions only"), "{error}");
    assert_eq!(refused(&json!({"model": "m", "messages": []}), &none).1, "`messages` must not be empty");
    assert_eq!(refused(&json!({"messages": [{"role": "user", "content": "x"}]}), &none).1, "`model` is required");
}

fn registry(dir: &tempfile::TempDir) -> PromptRegistry {
    let registry = PromptRegistry::open(&dir.path().join("state.db")).expect("open");
    let messages = vec![
        PromptMessage { role: "system".into(), content: "You answer for {{ company }}.".into() },
        PromptMessage { role: "user".into(), content: "Context: {{ context }}".into() },
    ];
    let content =
        NewVersion::from_parts(messages, r#"{"temperature":0.1,"max_tokens":5,"seed":7}"#, "routed").expect("valid");
    let author = Author::new("test", None).expect("author");
    registry.push("support", content, &author).expect("push");
    registry.set_label("support", "production", 1, &author).expect("label");
    registry
}

#[test]
fn a_prompt_is_rendered_before_the_client_messages_with_its_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(&dir);
    let body = json!({
        "temperature": 0.9, "max_completion_tokens": 3,
        "messages": [{"role": "user", "content": "Where is my order?"}],
        "metadata": {"prompt": "support", "variables": {"company": "Acme", "context": "none"}, "team": "a"},
    });
    let mut request = parse(&body, &HeaderMap::new()).expect("valid");
    apply(&registry, &mut request).expect("applied");
    assert_eq!((request.prompt_id.as_str(), request.prompt_version.as_str()), ("support", "1"));
    assert_eq!(request.prompt_hash.len(), 64);
    assert_eq!(request.model, "routed", "the prompt's model when the request names none");
    let messages = &request.body["messages"];
    assert_eq!(messages[0], json!({"role": "system", "content": "You answer for Acme."}));
    assert_eq!(messages[1], json!({"role": "user", "content": "Context: none"}));
    assert_eq!(messages[2]["content"], "Where is my order?");
    assert_eq!(request.body["temperature"], 0.9, "the client's value wins");
    assert_eq!(request.body["seed"], 7, "a default the client did not set");
    assert!(request.body.get("max_tokens").is_none(), "max_completion_tokens counts as max_tokens");
    assert_eq!(request.body["metadata"], json!({"team": "a"}), "prompt and variables are not forwarded");
    assert!(request.prompt_text.starts_with("system: You answer for Acme.\nuser: Context: none\nuser: Where"));
}

#[test]
fn unknown_prompts_labels_and_missing_variables_are_400s_that_say_which() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(&dir);
    let attempt = |metadata: Value| {
        let mut request =
            parse(&json!({"model": "m", "messages": [], "metadata": metadata}), &HeaderMap::new()).expect("parses");
        let error = apply(&registry, &mut request).expect_err("refused");
        match error {
            GatewayError::InvalidRequest { param, message } => (param.unwrap_or_default(), message, request.prompt_id),
            other => panic!("not a 400: {other:?}"),
        }
    };
    let (param, message, prompt_id) = attempt(json!({"prompt": "nope@production"}));
    assert_eq!((param.as_str(), prompt_id.as_str()), ("metadata.prompt", "nope"));
    assert!(message.contains("no prompt named `nope`"), "{message}");
    let (_, message, _) = attempt(json!({"prompt": "support@staging"}));
    assert!(message.contains("no label `staging`") && message.contains("production -> 1"), "{message}");
    let (_, message, _) = attempt(json!({"prompt": "support@9"}));
    assert!(message.contains("no version 9"), "{message}");
    let (param, message, _) = attempt(json!({"prompt": "support@1", "variables": {"company": "Acme"}}));
    assert_eq!(param, "metadata.variables");
    assert!(message.contains("missing variable `context`"), "{message}");
    let huge = json!({"company": "x".repeat(60_000), "context": "y"});
    let mut request = parse(
        &json!({"model": "m", "messages": [], "metadata": {"prompt": "support", "variables": huge}}),
        &HeaderMap::new(),
    )
    .expect("parses");
    assert!(apply(&registry, &mut request).is_ok(), "60 KB of output is within the bound");
    // Variables within their bound can still render past the output bound when a template repeats them.
    let repeat = vec![PromptMessage { role: "user".into(), content: "{{ v }}".repeat(5) }];
    let content = NewVersion::from_parts(repeat, "", "").expect("valid");
    registry.push("repeat", content, &Author::new("", None).expect("author")).expect("push");
    let (param, message, _) = attempt(json!({"prompt": "repeat@latest", "variables": {"v": "z".repeat(60_000)}}));
    assert_eq!(param, "metadata.prompt");
    assert!(message.contains("over 262144 bytes"), "{message}");
}
