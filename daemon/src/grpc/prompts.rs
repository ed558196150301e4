//! `llmops.v1.PromptService`: list, show, push, label and diff registry prompts. Writes are audited with who
//! made them: the request's `by` and, on the Unix socket, the caller's uid as the kernel reports it.
use crate::prompts::{
    refs, AuditAction, AuditEntry, Author, Gate, NewVersion, PromptError, PromptMessage, PromptRef, PromptRegistry,
    PromptSummary, PromptVersion, RefKind,
};
use llmops_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Audit entries `GetPrompt` returns when the request asks for none in particular.
const DEFAULT_HISTORY: u32 = 100;

pub struct PromptApi {
    pub prompts: Arc<PromptRegistry>,
    /// Evaluation runs, which gate label moves (`gate_run`).
    pub gates: Arc<std::sync::Mutex<crate::evals::EvalStore>>,
}

/// Checks that `run` evaluated `name@version` and finished; refuses a run that did not pass unless `force`.
fn check_gate(
    gates: &std::sync::Mutex<crate::evals::EvalStore>,
    name: &str,
    version: u32,
    run: &str,
    force: bool,
) -> Result<Gate, Status> {
    use crate::evals::store::RunStatus;
    let record = gates
        .lock()
        .map_err(|_| Status::internal("evaluation store lock poisoned"))?
        .run(run)
        .map_err(|e| Status::failed_precondition(format!("gate: {e}")))?;
    let evaluated = PromptRef::parse(&record.prompt).ok();
    if evaluated.as_ref().is_none_or(|r| r.name != name || r.kind != RefKind::Version(version)) {
        return Err(Status::failed_precondition(format!(
            "gate: {run} evaluated prompt {:?}, not {name}@{version}",
            record.prompt
        )));
    }
    match record.status {
        RunStatus::Passed => Ok(Gate { run: run.to_string(), forced: false }),
        RunStatus::Running => Err(Status::failed_precondition(format!("gate: {run} has not finished"))),
        _ if force => Ok(Gate { run: run.to_string(), forced: true }),
        _ => Err(Status::failed_precondition(format!(
            "gate: {run} did not pass ({}); the label was not moved (force moves it anyway, audited)",
            record.verdict
        ))),
    }
}

fn status(error: PromptError) -> Status {
    match error {
        PromptError::NoSuchPrompt(_) | PromptError::NoSuchLabel { .. } | PromptError::NoSuchVersion { .. } => {
            Status::not_found(error.to_string())
        }
        PromptError::Invalid(_) | PromptError::Render { .. } => Status::invalid_argument(error.to_string()),
        PromptError::Full(_) => Status::resource_exhausted(error.to_string()),
        PromptError::Store(_) => Status::internal(error.to_string()),
    }
}

/// The caller's uid, when it came over the Unix socket.
fn peer_uid<T>(request: &Request<T>) -> Option<u32> {
    request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| cred.uid())
}

fn version_to_proto(version: &PromptVersion, summary: Option<&PromptSummary>) -> pb::PromptVersion {
    let labels = summary
        .map(|s| s.labels.iter().filter(|(_, v)| **v == version.version).map(|(l, _)| l.clone()).collect())
        .unwrap_or_default();
    pb::PromptVersion {
        name: version.name.clone(),
        version: version.version,
        messages: version
            .content
            .messages
            .iter()
            .map(|m| pb::PromptMessage { role: m.role.clone(), content: m.content.clone() })
            .collect(),
        parameters_json: serde_json::Value::Object(version.content.parameters.clone()).to_string(),
        model: version.content.model.clone(),
        sha256: version.sha256.clone(),
        created_at_unix_ms: version.created_at_unix_ms,
        created_by: version.created_by.clone(),
        labels,
        variables: version.variables.clone(),
    }
}

fn summary_to_proto(summary: &PromptSummary) -> pb::PromptSummary {
    pb::PromptSummary {
        name: summary.name.clone(),
        latest_version: summary.latest,
        versions: summary.latest,
        labels: summary.labels.iter().map(|(l, v)| (l.clone(), *v)).collect(),
        updated_at_unix_ms: summary.updated_at_unix_ms,
    }
}

fn audit_to_proto(entry: &AuditEntry) -> pb::PromptAuditEntry {
    let action = match entry.action {
        AuditAction::Push => pb::PromptAction::Push,
        AuditAction::Label => pb::PromptAction::Label,
    };
    pb::PromptAuditEntry {
        at_unix_ms: entry.at_unix_ms,
        by: entry.by.clone(),
        action: action as i32,
        label: entry.label.clone(),
        from_version: entry.from_version.unwrap_or(0),
        to_version: entry.to_version,
        gate_run: entry.gate.run.clone(),
        forced: entry.gate.forced,
    }
}

/// A ref as the API takes it: empty is `latest`.
fn parse_ref(text: &str) -> Result<RefKind, Status> {
    match text.trim() {
        "" => Ok(RefKind::Latest),
        text => refs::parse_ref(text).map_err(status),
    }
}

/// Runs a registry call off the async workers (it may write SQLite).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PromptError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("prompt task failed: {e}")))?
        .map_err(status)
}

#[tonic::async_trait]
impl pb::prompt_service_server::PromptService for PromptApi {
    async fn list_prompts(
        &self,
        _: Request<pb::ListPromptsRequest>,
    ) -> Result<Response<pb::ListPromptsResponse>, Status> {
        let prompts = self.prompts.list().iter().map(summary_to_proto).collect();
        Ok(Response::new(pb::ListPromptsResponse { prompts }))
    }

    async fn get_prompt(
        &self,
        request: Request<pb::GetPromptRequest>,
    ) -> Result<Response<pb::GetPromptResponse>, Status> {
        let request = request.into_inner();
        crate::prompts::check_name("prompt name", &request.name).map_err(status)?;
        let reference = PromptRef { name: request.name.clone(), kind: parse_ref(&request.reference)? };
        let limit = if request.history_limit == 0 { DEFAULT_HISTORY } else { request.history_limit };
        let registry = self.prompts.clone();
        let (version, summary, history) = blocking(move || {
            let (version, summary) = registry.get(&reference, RefKind::Latest)?;
            let history = registry.history(&reference.name, usize::try_from(limit).unwrap_or(usize::MAX))?;
            Ok((version, summary, history))
        })
        .await?;
        Ok(Response::new(pb::GetPromptResponse {
            version: Some(version_to_proto(&version, Some(&summary))),
            summary: Some(summary_to_proto(&summary)),
            history: history.iter().map(audit_to_proto).collect(),
        }))
    }

    async fn push_prompt(
        &self,
        request: Request<pb::PushPromptRequest>,
    ) -> Result<Response<pb::PushPromptResponse>, Status> {
        let uid = peer_uid(&request);
        let request = request.into_inner();
        let author = Author::new(&request.by, uid).map_err(status)?;
        let messages =
            request.messages.into_iter().map(|m| PromptMessage { role: m.role, content: m.content }).collect();
        let content = NewVersion::from_parts(messages, &request.parameters_json, &request.model).map_err(status)?;
        let registry = self.prompts.clone();
        let name = request.name;
        let (version, created) = blocking(move || registry.push(&name, content, &author)).await?;
        if created {
            tracing::info!(prompt = %version.name, version = version.version, by = %version.created_by, "prompt pushed");
        }
        let summary = self.prompts.list().into_iter().find(|s| s.name == version.name);
        Ok(Response::new(pb::PushPromptResponse {
            version: Some(version_to_proto(&version, summary.as_ref())),
            created,
        }))
    }

    async fn set_prompt_label(
        &self,
        request: Request<pb::SetPromptLabelRequest>,
    ) -> Result<Response<pb::SetPromptLabelResponse>, Status> {
        let uid = peer_uid(&request);
        let request = request.into_inner();
        let author = Author::new(&request.by, uid).map_err(status)?;
        let registry = self.prompts.clone();
        let (name, label, number) = (request.name, request.label.clone(), request.version);
        let gate = match request.gate_run.as_str() {
            "" if request.force => return Err(Status::invalid_argument("force applies to a gate_run only")),
            "" => Gate::default(),
            run => {
                let (gates, name, run, force) = (self.gates.clone(), name.clone(), run.to_string(), request.force);
                tokio::task::spawn_blocking(move || check_gate(&gates, &name, number, &run, force))
                    .await
                    .map_err(|e| Status::internal(format!("gate task failed: {e}")))??
            }
        };
        let (version, from) = blocking(move || registry.set_label_gated(&name, &label, number, &author, &gate)).await?;
        let (label, from_version) = (request.label, from.unwrap_or(0));
        tracing::info!(prompt = %version.name, %label, from = from_version, to = version.version, "prompt label moved");
        let summary = self.prompts.list().into_iter().find(|s| s.name == version.name);
        Ok(Response::new(pb::SetPromptLabelResponse {
            version: Some(version_to_proto(&version, summary.as_ref())),
            from_version: from.unwrap_or(0),
        }))
    }

    async fn diff_prompt(
        &self,
        request: Request<pb::DiffPromptRequest>,
    ) -> Result<Response<pb::DiffPromptResponse>, Status> {
        let request = request.into_inner();
        crate::prompts::check_name("prompt name", &request.name).map_err(status)?;
        let (from, to) = (parse_ref(&request.from_ref)?, parse_ref(&request.to_ref)?);
        let registry = self.prompts.clone();
        let name = request.name;
        let (old, new, diff) = blocking(move || registry.diff(&name, &from, &to)).await?;
        Ok(Response::new(pb::DiffPromptResponse {
            from_version: old.version,
            to_version: new.version,
            identical: diff.is_empty(),
            unified_diff: diff,
        }))
    }
}
