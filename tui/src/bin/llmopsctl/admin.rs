//! `llmopsctl keys ...` and `llmopsctl budgets [--watch]`.
use std::io::Write;

use chrono::Local;
use llmops_proto::v1::{CreateKeyRequest, ListBudgetsRequest, ListKeysRequest, RevokeKeyRequest, WatchBudgetsRequest};
use llmops_tui::connect::Daemon;
use llmops_tui::{json, report};
use tonic::Code;

use super::cli::KeysCommand;
use super::output::{show, watch};
use super::Failure;

pub async fn keys(
    daemon: &Daemon,
    command: &KeysCommand,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    match command {
        KeysCommand::Create { tenant, name } => {
            let request = CreateKeyRequest { tenant: tenant.clone(), name: name.clone().unwrap_or_default() };
            let created = match daemon.keys().create_key(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::InvalidArgument => {
                    return Err(Failure::Refused(format!("cannot create a key: {}", status.message())));
                }
                Err(status) => return Err(rpc_failure(status)),
            };
            show(out, as_json, || json::created_key_to_json(&created), || report::render_created_key(&created))?;
        }
        KeysCommand::List => {
            let response = daemon.keys().list_keys(ListKeysRequest {}).await;
            let keys = response.map_err(rpc_failure)?.into_inner();
            show(out, as_json, || json::keys_to_json(&keys), || report::render_keys(&keys, &Local::now()))?;
        }
        KeysCommand::Revoke { id } => {
            let key = match daemon.keys().revoke_key(RevokeKeyRequest { id: id.clone() }).await {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::NotFound => return Err(Failure::NoSuchKey(id.clone())),
                Err(status) if status.code() == Code::InvalidArgument => {
                    return Err(Failure::Refused(format!("cannot revoke key {id}: {}", status.message())));
                }
                Err(status) => return Err(rpc_failure(status)),
            };
            show(out, as_json, || json::api_key_to_json(&key), || report::render_revoked_key(&key))?;
        }
    }
    Ok(())
}

pub async fn budgets(
    daemon: &Daemon,
    watching: bool,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    if !watching {
        let response = daemon.budgets().list_budgets(ListBudgetsRequest {}).await;
        let budgets = response.map_err(rpc_failure)?.into_inner();
        let text = || report::render_budgets(&budgets, &Local::now());
        return Ok(show(out, as_json, || json::budgets_to_json(&budgets), text)?);
    }
    let response = daemon.budgets().watch_budgets(WatchBudgetsRequest {}).await;
    let mut updates = response.map_err(rpc_failure)?.into_inner();
    let mut first = true;
    watch(out, as_json, &mut updates, &report::budget_watch_header(), |update| {
        let mut lines = Vec::new();
        // The first update lists every budget, so an empty one means there are none to follow.
        if std::mem::take(&mut first) && update.budgets.is_empty() && update.missed == 0 {
            lines.push(report::NO_BUDGETS.to_owned());
        }
        lines.extend(report::budget_watch_lines(update, &Local::now()));
        lines
    })
    .await
}
