//! `llmopsctl keys ...` and `llmopsctl budgets [--watch]`.
use std::io::{self, Write};

use chrono::Local;
use llmops_proto::v1::{CreateKeyRequest, ListBudgetsRequest, ListKeysRequest, RevokeKeyRequest, WatchBudgetsRequest};
use llmops_tui::connect::Daemon;
use llmops_tui::{json, report};
use tonic::Code;

use super::cli::KeysCommand;
use super::{print_json, Failure};

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
            if as_json {
                print_json(out, &json::created_key_to_json(&created))?;
            } else {
                write!(out, "{}", report::render_created_key(&created))?;
            }
        }
        KeysCommand::List => {
            let response = daemon.keys().list_keys(ListKeysRequest {}).await;
            let keys = response.map_err(rpc_failure)?.into_inner();
            if as_json {
                print_json(out, &json::keys_to_json(&keys))?;
            } else {
                write!(out, "{}", report::render_keys(&keys, &Local::now()))?;
            }
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
            if as_json {
                print_json(out, &json::api_key_to_json(&key))?;
            } else {
                write!(out, "{}", report::render_revoked_key(&key))?;
            }
        }
    }
    Ok(())
}

pub async fn budgets(
    daemon: &Daemon,
    watch: bool,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    if !watch {
        let response = daemon.budgets().list_budgets(ListBudgetsRequest {}).await;
        let budgets = response.map_err(rpc_failure)?.into_inner();
        if as_json {
            print_json(out, &json::budgets_to_json(&budgets))?;
        } else {
            write!(out, "{}", report::render_budgets(&budgets, &Local::now()))?;
        }
        return Ok(());
    }

    let response = daemon.budgets().watch_budgets(WatchBudgetsRequest {}).await;
    let mut updates = response.map_err(rpc_failure)?.into_inner();
    if !as_json {
        writeln!(out, "{}", report::budget_watch_header())?;
    }
    let mut first = true;
    loop {
        let update = match updates.message().await {
            Ok(Some(update)) => update,
            Ok(None) => break,
            Err(status) => return Err(Failure::WatchEnded(Box::new(status))),
        };
        if as_json {
            serde_json::to_writer(&mut *out, &json::budget_update_to_json(&update)).map_err(io::Error::from)?;
            writeln!(out)?;
        } else {
            // The first update lists every budget, so an empty one means there are none to follow.
            if first && update.budgets.is_empty() && update.missed == 0 {
                writeln!(out, "{}", report::NO_BUDGETS)?;
            }
            for line in report::budget_watch_lines(&update, &Local::now()) {
                writeln!(out, "{line}")?;
            }
        }
        first = false;
        // The daemon ends the stream after telling a slow viewer what it missed.
        if update.missed > 0 {
            out.flush()?;
            return Err(Failure::TooSlow(update.missed));
        }
    }
    Ok(())
}
