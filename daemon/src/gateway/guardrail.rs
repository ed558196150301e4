//! Guardrails on the request path: the texts a client wrote, checked before any engine is called (classifier
//! rules ask their own route, within their timeout), and the texts of a whole answer before the client gets
//! it. Streams are checked by `holdback`. Verdicts go on the trace; a `block` is an OpenAI-shaped 400 with code
//! `guardrail_blocked` naming the rule, never the matched text.
use super::error::GatewayError;
use super::proxy::{self, Caller};
use super::request::{ClientRequest, Endpoint};
use super::trace_guard::TraceGuard;
use super::Gateway;
use crate::auth::Principal;
use crate::guardrails::{Action, Guardrails, Rule, Stage};
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// At most this much of a request goes to a classifier (the end is kept: instructions tend to come last).
const MAX_CLASSIFIER_INPUT_CHARS: usize = 32 * 1024;
/// A classifier's answer is read up to this size.
const MAX_CLASSIFIER_ANSWER_BYTES: usize = 64 * 1024;

/// Checks a request's texts with the input rules that apply to its route and tenant: masks in place, records
/// verdicts on the trace, and refuses it when a `block` rule (or a classifier) says so.
pub fn check_input<'a>(
    gateway: &'a Arc<Gateway>,
    principal: &'a Principal,
    endpoint: Endpoint,
    request: &'a mut ClientRequest,
    guard: &'a mut TraceGuard,
) -> InputCheck<'a> {
    Box::pin(check_input_now(gateway, principal, endpoint, request, guard))
}

async fn check_input_now(
    gateway: &Arc<Gateway>,
    principal: &Principal,
    endpoint: Endpoint,
    request: &mut ClientRequest,
    guard: &mut TraceGuard,
) -> Result<(), GatewayError> {
    let guardrails = &gateway.guardrails;
    let selected = guardrails.select(&request.model, &principal.tenant, Stage::Input);
    if selected.is_empty() {
        return Ok(());
    }
    let mut texts = input_texts(endpoint, &mut request.body);
    let checked = guardrails.check(&selected, Stage::Input, &mut texts);
    let has_classifier = selected.iter().any(|&i| guardrails.rule(i).classifier.is_some());
    let joined =
        if has_classifier { texts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join("\n") } else { String::new() };
    let trace = guard.trace_mut();
    // The trace keeps what the engine was sent, not what a mask or block rule caught (nothing to look for
    // when none fired).
    if caught(&checked) {
        trace.prompt_text = redact(guardrails, &selected, &trace.prompt_text);
        trace.request_json = redact(guardrails, &selected, &trace.request_json);
    }
    trace.guardrails.extend(checked.verdicts);
    if let Some(index) = checked.blocked {
        return Err(GatewayError::guardrail(&guardrails.rule(index).name, "input", "the request matched it"));
    }
    for index in selected.into_iter().filter(|&i| guardrails.rule(i).classifier.is_some()) {
        let verdict = classify(gateway, principal, guardrails.rule(index), &joined).await;
        let rule = guardrails.rule(index);
        let (unsafe_, detail) = match verdict {
            Ok(true) => (true, "unsafe".to_string()),
            Ok(false) => continue,
            Err(why) => {
                guardrails.classifier_failed(index);
                let closed = rule
                    .classifier
                    .as_ref()
                    .is_some_and(|c| c.on_error == crate::guardrails::rules::OnError::FailClosed);
                let detail = format!("{why}; {}", if closed { "fail_closed" } else { "fail_open" });
                (closed, detail)
            }
        };
        let verdict = guardrails.verdict(index, Stage::Input, 0, detail.clone());
        guard.trace_mut().guardrails.push(verdict);
        if unsafe_ && rule.action == Action::Block {
            return Err(GatewayError::guardrail(&rule.name, "input", &format!("classifier: {detail}")));
        }
    }
    Ok(())
}

/// Checks a whole answer's texts with the output rules: masks them in the body, or refuses the answer.
/// Returns whether the body changed.
pub fn check_output(
    guardrails: &Guardrails,
    selected: &[usize],
    endpoint: Endpoint,
    body: &mut Value,
    guard: &mut TraceGuard,
) -> Result<bool, GatewayError> {
    let mut texts = output_texts(endpoint, body);
    let checked = guardrails.check(selected, Stage::Output, &mut texts);
    let changed = checked.verdicts.iter().any(|v| v.action == "mask");
    let trace = guard.trace_mut();
    if caught(&checked) {
        trace.response_text = redact(guardrails, selected, &trace.response_text);
    }
    trace.guardrails.extend(checked.verdicts);
    match checked.blocked {
        Some(index) => Err(GatewayError::guardrail(&guardrails.rule(index).name, "output", "the answer matched it")),
        None => Ok(changed),
    }
}

/// Whether a mask or block rule fired (so the trace's copies of the text need redacting).
fn caught(checked: &crate::guardrails::Checked) -> bool {
    checked.verdicts.iter().any(|v| v.action != "flag")
}

/// `text` with every match of the selected mask and block rules replaced by its token: what a trace keeps.
pub fn redact(guardrails: &Guardrails, selected: &[usize], text: &str) -> String {
    let mut findings = Vec::new();
    for &index in selected {
        let rule = guardrails.rule(index);
        if rule.classifier.is_none() && rule.action != Action::Flag && rule.is_match(text) {
            rule.find(text, &mut findings);
        }
    }
    if findings.is_empty() {
        text.to_string()
    } else {
        crate::guardrails::rules::mask(text, &findings)
    }
}

/// The texts a client wrote, in place: chat message contents (strings and text parts), a completion's prompt,
/// an embedding's input (strings; token arrays carry no text to check).
pub fn input_texts(endpoint: Endpoint, body: &mut Value) -> Vec<&mut String> {
    let mut out = Vec::new();
    match endpoint {
        Endpoint::ChatCompletions => {
            if let Some(Value::Array(messages)) = body.get_mut("messages") {
                for message in messages {
                    match message.get_mut("content") {
                        Some(Value::String(text)) => out.push(text),
                        Some(Value::Array(parts)) => {
                            for part in parts {
                                if let Some(Value::String(text)) = part.get_mut("text") {
                                    out.push(text);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Endpoint::Completions => strings(body.get_mut("prompt"), &mut out),
        Endpoint::Embeddings => strings(body.get_mut("input"), &mut out),
    }
    out
}

/// The texts of a whole answer, in place: each choice's message content (chat) or text (completions).
pub fn output_texts(endpoint: Endpoint, body: &mut Value) -> Vec<&mut String> {
    let mut out = Vec::new();
    let field = match endpoint {
        Endpoint::ChatCompletions => "/message/content",
        Endpoint::Completions => "/text",
        Endpoint::Embeddings => return out,
    };
    if let Some(Value::Array(choices)) = body.get_mut("choices") {
        for choice in choices {
            if let Some(Value::String(text)) = choice.pointer_mut(field) {
                out.push(text);
            }
        }
    }
    out
}

fn strings<'a>(value: Option<&'a mut Value>, out: &mut Vec<&'a mut String>) {
    match value {
        Some(Value::String(text)) => out.push(text),
        Some(Value::Array(items)) => out.extend(items.iter_mut().filter_map(|item| match item {
            Value::String(text) => Some(text),
            _ => None,
        })),
        _ => {}
    }
}

/// The input check as the gateway awaits it: boxed, because a classifier's request runs through the gateway
/// inside the request it checks (a future cannot contain itself).
pub type InputCheck<'a> = Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>>;

/// Asks a classifier rule's route about `text`: `Ok(true)` when its answer matches the rule's unsafe pattern,
/// `Err` (with why) when it failed or took longer than the rule's timeout. The call is a request of its own
/// through the gateway (traced, budgets apply, tagged `guardrail`), on behalf of the same tenant; guardrails
/// do not run on it.
async fn classify(gateway: &Arc<Gateway>, principal: &Principal, rule: &Rule, text: &str) -> Result<bool, String> {
    let Some(classifier) = &rule.classifier else { return Ok(false) };
    let skip = text.chars().count().saturating_sub(MAX_CLASSIFIER_INPUT_CHARS);
    let text: String = text.chars().skip(skip).collect();
    let body = json!({
        "model": classifier.route,
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
        "max_tokens": 32,
        "metadata": {"guardrail": rule.name},
    });
    let caller = Caller::Guardrail(principal.clone());
    let served = proxy::serve(
        gateway.clone(),
        Endpoint::ChatCompletions,
        caller,
        HeaderMap::new(),
        Bytes::from(body.to_string()),
    );
    let timeout = classifier.timeout;
    let answer = tokio::time::timeout(timeout, async move {
        let (response, _hand_back) = served.await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), MAX_CLASSIFIER_ANSWER_BYTES).await;
        (status, body)
    })
    .await;
    let (status, body) = answer.map_err(|_| format!("classifier timed out after {} ms", timeout.as_millis()))?;
    if !status.is_success() {
        return Err(format!("classifier answered HTTP {}", status.as_u16()));
    }
    let body = body.map_err(|e| format!("classifier answer unreadable: {e}"))?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| "classifier answer is not JSON".to_string())?;
    let content = value.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default();
    Ok(classifier.is_unsafe(content))
}
