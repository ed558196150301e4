//! `llmopsctl prompts list | show | push | label | diff`: the daemon's prompt registry over `PromptService`.
use std::io::Write;

use chrono::{DateTime, Local, TimeZone};
use llmops_proto::v1::{
    DiffPromptRequest, DiffPromptResponse, GetPromptRequest, GetPromptResponse, ListPromptsRequest,
    ListPromptsResponse, PromptAction, PromptAuditEntry, PromptSummary, PromptVersion, PushPromptRequest,
    PushPromptResponse, SetPromptLabelRequest, SetPromptLabelResponse,
};
use llmops_tui::connect::Daemon;
use llmops_tui::table::{Column, Table};
use llmops_tui::text::dash_if_empty;
use llmops_tui::when::{full_time, short_time};
use serde_json::{json, Value};
use tonic::Code;

use super::cli::PromptsCommand;
use super::output::show;
use super::Failure;

pub async fn prompts(
    daemon: &Daemon,
    command: &PromptsCommand,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let rpc_failure = &rpc_failure;
    // llmopsd's refusals name what is wrong (unknown prompt, label or version, a bound passed): shown as they are.
    let refused = |what: String| {
        move |status: tonic::Status| match status.code() {
            Code::NotFound | Code::InvalidArgument | Code::ResourceExhausted => {
                Failure::Refused(format!("{what}: {}", status.message()))
            }
            _ => rpc_failure(status),
        }
    };
    let mut client = daemon.prompts();
    match command {
        PromptsCommand::List => {
            let response = client.list_prompts(ListPromptsRequest {}).await;
            let list = response.map_err(refused("cannot list prompts".into()))?.into_inner();
            show(out, as_json, || list_json(&list), || render_list(&list, &Local::now()))?;
        }
        PromptsCommand::Show { reference, history } => {
            let (name, reference) = reference.split_once('@').unwrap_or((reference.as_str(), ""));
            let request =
                GetPromptRequest { name: name.to_owned(), reference: reference.to_owned(), history_limit: *history };
            let response = client.get_prompt(request).await;
            let got = response.map_err(refused(format!("cannot show prompt {name}")))?.into_inner();
            show(out, as_json, || get_json(&got), || render_get(&got, &Local))?;
        }
        PromptsCommand::Push { name, file, by } => {
            let file = super::prompt_file::read(file).map_err(Failure::Refused)?;
            let request = PushPromptRequest {
                name: name.clone(),
                messages: file.messages,
                parameters_json: file.parameters_json,
                model: file.model,
                by: by.clone().unwrap_or_else(default_by),
            };
            let response = client.push_prompt(request).await;
            let pushed = response.map_err(refused(format!("cannot push prompt {name}")))?.into_inner();
            show(out, as_json, || push_json(&pushed), || render_push(&pushed))?;
        }
        PromptsCommand::Label { name, version, label, by, gate, force } => {
            let by = by.clone().unwrap_or_else(default_by);
            let gate_run = match gate {
                Some(dataset) => {
                    let gate = Gate { name, version: *version, label, dataset, by: &by };
                    run_gate(daemon, gate, *force, as_json, out, rpc_failure).await?
                }
                None => String::new(),
            };
            let request = SetPromptLabelRequest {
                name: name.clone(),
                label: label.clone(),
                version: *version,
                by,
                gate_run,
                force: *force,
            };
            let response = client.set_prompt_label(request).await;
            let moved = response.map_err(refused(format!("cannot label {name} version {version}")))?.into_inner();
            show(out, as_json, || label_json(&moved, label), || render_label(&moved, label))?;
        }
        PromptsCommand::Diff { name, from, to } => {
            let request = DiffPromptRequest { name: name.clone(), from_ref: from.clone(), to_ref: to.clone() };
            let response = client.diff_prompt(request).await;
            let diff = response.map_err(refused(format!("cannot diff {name}")))?.into_inner();
            show(out, as_json, || diff_json(&diff), || render_diff(&diff, name))?;
        }
    }
    Ok(())
}

/// A gated label move: what to run before moving the label.
struct Gate<'a> {
    name: &'a str,
    version: u32,
    label: &'a str,
    dataset: &'a str,
    by: &'a str,
}

/// Runs the gate's dataset with NAME@VERSION (compared with the newest finished run of the version the label
/// points at now, when there is one) and returns the run's id when the label may move: it passed, or
/// `force`. A FAILED run without `force` exits 100, one that could not run exits 1; nothing moves.
async fn run_gate(
    daemon: &Daemon,
    gate: Gate<'_>,
    force: bool,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: &impl Fn(tonic::Status) -> Failure,
) -> Result<String, Failure> {
    use llmops_proto::v1::{EvalStatus, ListEvalRunsRequest, RunEvalRequest};
    let Gate { name, version, label, dataset, by } = gate;
    let current = daemon
        .prompts()
        .get_prompt(GetPromptRequest { name: name.to_owned(), reference: label.to_owned(), history_limit: 1 })
        .await
        .ok()
        .and_then(|got| got.into_inner().version)
        .map(|v| v.version)
        .filter(|current| *current != version);
    let mut baseline_run = String::new();
    if let Some(current) = current {
        let request = ListEvalRunsRequest { dataset: dataset.to_owned(), limit: 200 };
        let runs = daemon.evals().list_eval_runs(request).await;
        let runs = runs.map_err(super::datasets::refused(format!("gate {dataset}"), rpc_failure))?.into_inner();
        let finished = [EvalStatus::Passed as i32, EvalStatus::Failed as i32];
        let wanted = format!("{name}@{current}");
        if let Some(run) = runs.runs.iter().find(|r| r.prompt == wanted && finished.contains(&r.status)) {
            baseline_run = run.id.clone();
        }
    }
    let request = RunEvalRequest {
        dataset: dataset.to_owned(),
        prompt: format!("{name}@{version}"),
        baseline_run,
        by: by.to_owned(),
        ..RunEvalRequest::default()
    };
    let (run, _) = super::evals::run_eval(daemon, request, as_json, out, rpc_failure).await?;
    match super::evals::verdict_exit(&run) {
        Ok(()) => Ok(run.id),
        Err(_) if force && run.status == EvalStatus::Failed as i32 => {
            eprintln!("llmopsctl: gate {} FAILED; moving {label} anyway (--force, audited)", run.id);
            Ok(run.id)
        }
        Err(failure) => {
            eprintln!("llmopsctl: gate {} did not pass: {label} was not moved", run.id);
            Err(failure)
        }
    }
}

/// Who the audit says pushed or moved: `$USER`, else llmopsd's own default.
fn default_by() -> String {
    std::env::var("USER").ok().filter(|user| !user.trim().is_empty()).unwrap_or_default()
}

fn labels_text(labels: impl IntoIterator<Item = (String, u32)>) -> String {
    let mut labels: Vec<(String, u32)> = labels.into_iter().collect();
    labels.sort();
    let text: Vec<String> = labels.into_iter().map(|(label, version)| format!("{label}={version}")).collect();
    dash_if_empty(&text.join(" "))
}

fn render_list<Tz: TimeZone>(list: &ListPromptsResponse, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if list.prompts.is_empty() {
        return "(no prompts: push one with `llmopsctl prompts push NAME --file FILE`)\n".to_owned();
    }
    let mut table =
        Table::new(&[Column::left("NAME"), Column::right("LATEST"), Column::left("LABELS"), Column::left("UPDATED")]);
    for prompt in &list.prompts {
        table.push(vec![
            prompt.name.clone(),
            prompt.latest_version.to_string(),
            labels_text(prompt.labels.clone()),
            short_time(prompt.updated_at_unix_ms, now),
        ]);
    }
    table.render()
}

fn render_version<Tz: TimeZone>(text: &mut String, version: &PromptVersion, zone: &Tz)
where
    Tz::Offset: std::fmt::Display,
{
    let labels = if version.labels.is_empty() { "-".to_owned() } else { version.labels.join(", ") };
    let fields = [
        ("prompt", format!("{}@{}", version.name, version.version)),
        ("labels", labels),
        ("model", dash_if_empty(&version.model)),
        ("parameters", if version.parameters_json == "{}" { "-".to_owned() } else { version.parameters_json.clone() }),
        ("variables", dash_if_empty(&version.variables.join(", "))),
        ("sha256", version.sha256.clone()),
        ("created", full_time(version.created_at_unix_ms, zone)),
        ("created by", dash_if_empty(&version.created_by)),
    ];
    for (label, value) in fields {
        text.push_str(&format!("{label:<12}{value}\n"));
    }
    for (index, message) in version.messages.iter().enumerate() {
        text.push_str(&format!("\n[{} {}]\n{}", index + 1, message.role, message.content));
        if !message.content.ends_with('\n') {
            text.push('\n');
        }
    }
}

fn render_get<Tz: TimeZone>(got: &GetPromptResponse, zone: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut text = String::new();
    if let Some(version) = &got.version {
        render_version(&mut text, version, zone);
    }
    if let Some(summary) = &got.summary {
        text.push_str(&format!(
            "\nVERSIONS 1 to {}, labels: {}\n",
            summary.latest_version,
            labels_text(summary.labels.clone())
        ));
    }
    text.push_str("\nHISTORY (newest first)\n");
    if got.history.is_empty() {
        text.push_str("(none)\n");
        return text;
    }
    let mut table = Table::new(&[
        Column::left("WHEN"),
        Column::left("ACTION"),
        Column::left("LABEL"),
        Column::right("FROM"),
        Column::right("TO"),
        Column::left("BY"),
        Column::left("GATE"),
    ]);
    for entry in &got.history {
        let gate = match (entry.gate_run.as_str(), entry.forced) {
            ("", _) => String::new(),
            (run, true) => format!("{run} (forced)"),
            (run, false) => run.to_owned(),
        };
        table.push(vec![
            full_time(entry.at_unix_ms, zone),
            action_name(entry.action).to_owned(),
            dash_if_empty(&entry.label),
            if entry.from_version == 0 { "-".to_owned() } else { entry.from_version.to_string() },
            entry.to_version.to_string(),
            dash_if_empty(&entry.by),
            dash_if_empty(&gate),
        ]);
    }
    text.push_str(&table.render());
    text
}

fn render_push(pushed: &PushPromptResponse) -> String {
    let Some(version) = &pushed.version else { return "llmopsd answered without the version\n".to_owned() };
    if pushed.created {
        format!("pushed {}@{} (sha256 {})\n", version.name, version.version, version.sha256)
    } else {
        format!("unchanged: {}@{} has the same content (sha256 {})\n", version.name, version.version, version.sha256)
    }
}

fn render_label(moved: &SetPromptLabelResponse, label: &str) -> String {
    let Some(version) = &moved.version else { return "llmopsd answered without the version\n".to_owned() };
    match moved.from_version {
        0 => format!("{}: {label} -> {} (new label)\n", version.name, version.version),
        from => format!("{}: {label} {from} -> {}\n", version.name, version.version),
    }
}

fn render_diff(diff: &DiffPromptResponse, name: &str) -> String {
    if diff.identical {
        return format!("{name}@{} and {name}@{} are identical\n", diff.from_version, diff.to_version);
    }
    diff.unified_diff.clone()
}

fn action_name(action: i32) -> &'static str {
    match PromptAction::try_from(action) {
        Ok(PromptAction::Push) => "push",
        Ok(PromptAction::Label) => "label",
        _ => "unknown",
    }
}

fn version_json(version: &PromptVersion) -> Value {
    let parameters: Value = serde_json::from_str(&version.parameters_json).unwrap_or_else(|_| json!({}));
    json!({
        "name": version.name,
        "version": version.version,
        "messages": version.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "parameters": parameters,
        "model": version.model,
        "sha256": version.sha256,
        "created_at_unix_ms": version.created_at_unix_ms,
        "created_by": version.created_by,
        "labels": version.labels,
        "variables": version.variables,
    })
}

fn summary_json(summary: &PromptSummary) -> Value {
    json!({
        "name": summary.name,
        "latest_version": summary.latest_version,
        "labels": summary.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "updated_at_unix_ms": summary.updated_at_unix_ms,
    })
}

fn audit_json(entry: &PromptAuditEntry) -> Value {
    json!({
        "at_unix_ms": entry.at_unix_ms,
        "by": entry.by,
        "action": action_name(entry.action),
        "label": entry.label,
        "from_version": (entry.from_version > 0).then_some(entry.from_version),
        "to_version": entry.to_version,
        "gate_run": Some(&entry.gate_run).filter(|run| !run.is_empty()),
        "forced": entry.forced,
    })
}

fn list_json(list: &ListPromptsResponse) -> Value {
    json!({"prompts": list.prompts.iter().map(summary_json).collect::<Vec<_>>()})
}

fn get_json(got: &GetPromptResponse) -> Value {
    json!({
        "version": got.version.as_ref().map(version_json),
        "summary": got.summary.as_ref().map(summary_json),
        "history": got.history.iter().map(audit_json).collect::<Vec<_>>(),
    })
}

fn push_json(pushed: &PushPromptResponse) -> Value {
    json!({"version": pushed.version.as_ref().map(version_json), "created": pushed.created})
}

fn label_json(moved: &SetPromptLabelResponse, label: &str) -> Value {
    json!({
        "label": label,
        "version": moved.version.as_ref().map(version_json),
        "from_version": (moved.from_version > 0).then_some(moved.from_version),
    })
}

fn diff_json(diff: &DiffPromptResponse) -> Value {
    json!({
        "from_version": diff.from_version,
        "to_version": diff.to_version,
        "identical": diff.identical,
        "unified_diff": diff.unified_diff,
    })
}
