//! `llmopsctl dataset create | add | import | export | list | show | delete` over `EvalService`.
use std::io::{BufRead, Write};
use std::path::Path;

use chrono::Local;
use llmops_proto::v1::{
    AddDatasetItemsRequest, AddDatasetItemsResponse, CreateDatasetRequest, Dataset, DeleteDatasetRequest,
    GetDatasetRequest, ListDatasetsRequest, ListTracesRequest, TraceStatus,
};
use llmops_tui::connect::Daemon;
use llmops_tui::table::{Column, Table};
use llmops_tui::text::dash_if_empty;
use llmops_tui::when::short_time;
use serde_json::{json, Value};
use tonic::Code;

use super::cli::{CreateArgs, DatasetCommand};
use super::eval_json::{dataset_json, item_jsonl};
use super::output::show;
use super::Failure;

/// Items sent per call when importing (the daemon takes at most 1,000).
const IMPORT_BATCH: usize = 500;
/// A JSONL file read at most (10,000 items of at most 256 KiB each is the most a dataset holds).
const MAX_IMPORT_BYTES: u64 = 512 * 1024 * 1024;

/// llmopsd's refusals name what is wrong: shown as they are.
pub fn refused<'a>(
    what: String,
    rpc_failure: &'a impl Fn(tonic::Status) -> Failure,
) -> impl Fn(tonic::Status) -> Failure + 'a {
    move |status: tonic::Status| match status.code() {
        Code::NotFound
        | Code::InvalidArgument
        | Code::ResourceExhausted
        | Code::AlreadyExists
        | Code::FailedPrecondition => Failure::Refused(format!("{what}: {}", status.message())),
        _ => rpc_failure(status),
    }
}

/// A JSON file's text (evaluators), bounded.
pub fn read_json_file(path: &Path) -> Result<String, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::Refused(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str::<Value>(&text)
        .map_err(|e| Failure::Refused(format!("{} is not JSON: {e}", path.display())))?;
    Ok(text)
}

pub async fn datasets(
    daemon: &Daemon,
    command: &DatasetCommand,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let mut client = daemon.evals();
    match command {
        DatasetCommand::Create(args) => create(daemon, args, as_json, out, &rpc_failure).await?,
        DatasetCommand::Add { dataset, trace_ids } => {
            let request =
                AddDatasetItemsRequest { dataset: dataset.clone(), trace_ids: trace_ids.clone(), ..Default::default() };
            let added = client.add_dataset_items(request).await;
            let added = added.map_err(refused(format!("cannot add to {dataset}"), &rpc_failure))?.into_inner();
            show(out, as_json, || added_json(&added), || render_added(&added))?;
        }
        DatasetCommand::Import { dataset, file } => {
            let lines = read_jsonl(file)?;
            let mut total = AddDatasetItemsResponse::default();
            for (index, batch) in lines.chunks(IMPORT_BATCH).enumerate() {
                let request = AddDatasetItemsRequest {
                    dataset: dataset.clone(),
                    items_jsonl: batch.to_vec(),
                    create: true,
                    ..Default::default()
                };
                let first_line = index * IMPORT_BATCH + 1;
                let added = client.add_dataset_items(request).await.map_err(|status| {
                    // The daemon names the entry of the batch; the file's line is what the user can find.
                    let message = status.message().replace("items_jsonl[", "line offset [");
                    refused(format!("cannot import {} (batch from line {first_line})", file.display()), &rpc_failure)(
                        tonic::Status::new(status.code(), message),
                    )
                })?;
                let added = added.into_inner();
                total.added += added.added;
                total.dataset = added.dataset;
                eprintln!("llmopsctl: imported {} of {} items", total.added, lines.len());
            }
            show(out, as_json, || added_json(&total), || render_added(&total))?;
        }
        DatasetCommand::Export { dataset, file } => {
            let mut sink: Box<dyn Write> = match file {
                Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
                None => Box::new(&mut *out),
            };
            let mut offset = 0;
            loop {
                let request = GetDatasetRequest { name: dataset.clone(), offset, limit: 1000 };
                let page = client.get_dataset(request).await;
                let page = page.map_err(refused(format!("cannot export {dataset}"), &rpc_failure))?.into_inner();
                for item in &page.items {
                    serde_json::to_writer(&mut sink, &item_jsonl(item)).map_err(std::io::Error::from)?;
                    writeln!(sink)?;
                }
                if page.next_offset == 0 {
                    break;
                }
                offset = page.next_offset;
            }
            sink.flush()?;
        }
        DatasetCommand::List => {
            let list = client.list_datasets(ListDatasetsRequest {}).await;
            let list = list.map_err(refused("cannot list datasets".into(), &rpc_failure))?.into_inner();
            let to_json = || Value::Array(list.datasets.iter().map(dataset_json).collect());
            show(out, as_json, to_json, || render_list(&list.datasets))?;
        }
        DatasetCommand::Show { dataset, limit } => {
            let request = GetDatasetRequest { name: dataset.clone(), offset: 0, limit: *limit };
            let got = client.get_dataset(request).await;
            let got = got.map_err(refused(format!("cannot show {dataset}"), &rpc_failure))?.into_inner();
            let to_json = || {
                json!({
                    "dataset": got.dataset.as_ref().map(dataset_json),
                    "items": got.items.iter().map(|i| {
                        let mut line = item_jsonl(i);
                        line["id"] = json!(i.id);
                        line["source_trace_id"] = json!(i.source_trace_id);
                        line
                    }).collect::<Vec<_>>(),
                })
            };
            show(out, as_json, to_json, || render_show(&got.dataset.clone().unwrap_or_default(), &got.items))?;
        }
        DatasetCommand::Delete { dataset } => {
            let request = DeleteDatasetRequest { name: dataset.clone() };
            let deleted = client.delete_dataset(request).await;
            let deleted = deleted.map_err(refused(format!("cannot delete {dataset}"), &rpc_failure))?.into_inner();
            let to_json = || json!({"deleted": dataset, "items_deleted": deleted.items_deleted});
            show(out, as_json, to_json, || format!("deleted {dataset} ({} items)\n", deleted.items_deleted))?;
        }
    }
    Ok(())
}

async fn create(
    daemon: &Daemon,
    args: &CreateArgs,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: &impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let mut client = daemon.evals();
    let evaluators_json = args.evaluators.as_deref().map(read_json_file).transpose()?.unwrap_or_default();
    let request = CreateDatasetRequest {
        name: args.dataset.clone(),
        description: args.description.clone(),
        route: args.route.clone().unwrap_or_default(),
        evaluators_json,
        update_existing: args.update,
    };
    let created = client.create_dataset(request).await;
    let created = created.map_err(refused(format!("cannot create {}", args.dataset), rpc_failure))?.into_inner();
    if args.empty || args.update {
        return Ok(show(
            out,
            as_json,
            || dataset_json(&created),
            || format!("dataset {} ({} items)\n", created.name, created.items),
        )?);
    }
    let now = llmops_tui::when::now_unix_ms();
    let ago = |d: Option<std::time::Duration>| d.map_or(0, |d| llmops_tui::when::unix_ms_ago(now, d));
    let query = ListTracesRequest {
        since_unix_ms: ago(args.since),
        route: args.route.clone().unwrap_or_default(),
        model: args.model.clone().unwrap_or_default(),
        status: args.status.map_or(TraceStatus::Unspecified, TraceStatus::from) as i32,
        search: args.search.clone().unwrap_or_default(),
        limit: args.limit,
        include_bodies: true,
        ..Default::default()
    };
    let request = AddDatasetItemsRequest { dataset: args.dataset.clone(), query: Some(query), ..Default::default() };
    let added = client.add_dataset_items(request).await;
    let added = added.map_err(refused(format!("cannot fill {}", args.dataset), rpc_failure))?.into_inner();
    show(out, as_json, || added_json(&added), || render_added(&added))?;
    Ok(())
}

/// The file's non-blank lines, each checked to be JSON here so a bad one is named by its line number.
fn read_jsonl(path: &Path) -> Result<Vec<String>, Failure> {
    let cannot = |e: std::io::Error| Failure::Refused(format!("cannot read {}: {e}", path.display()));
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(cannot)?))
    };
    let mut lines = Vec::new();
    let mut read = 0u64;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(cannot)?;
        read += line.len() as u64 + 1;
        if read > MAX_IMPORT_BYTES {
            return Err(Failure::Refused(format!("{} is over {MAX_IMPORT_BYTES} bytes", path.display())));
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<Value>(&line) {
            return Err(Failure::Refused(format!("{} line {}: not JSON: {e}", path.display(), index + 1)));
        }
        lines.push(line);
    }
    Ok(lines)
}

fn added_json(added: &AddDatasetItemsResponse) -> Value {
    json!({
        "dataset": added.dataset.as_ref().map(dataset_json),
        "added": added.added,
        "skipped": added.skipped,
        "skipped_reasons": added.skipped_reasons,
    })
}

fn render_added(added: &AddDatasetItemsResponse) -> String {
    let dataset = added.dataset.clone().unwrap_or_default();
    let mut text = format!("{}: added {} items, now {}", dataset.name, added.added, dataset.items);
    if added.skipped > 0 {
        text.push_str(&format!("; skipped {}:", added.skipped));
        for reason in &added.skipped_reasons {
            text.push_str(&format!("\n  {reason}"));
        }
        if added.skipped as usize > added.skipped_reasons.len() {
            text.push_str("\n  ...");
        }
    }
    text.push('\n');
    text
}

fn render_list(datasets: &[Dataset]) -> String {
    if datasets.is_empty() {
        return "(no datasets: make one with `llmopsctl dataset create NAME --route ROUTE --since 1d`)\n".into();
    }
    let now = Local::now();
    let mut table = Table::new(&[
        Column::left("NAME"),
        Column::right("ITEMS"),
        Column::left("ROUTE"),
        Column::left("EVALUATORS"),
        Column::left("UPDATED"),
    ]);
    for d in datasets {
        let evaluators = serde_json::from_str::<Value>(&d.evaluators_json)
            .ok()
            .and_then(|v| {
                v.as_array().map(|a| a.iter().filter_map(|e| e["type"].as_str()).collect::<Vec<_>>().join(","))
            })
            .unwrap_or_default();
        table.push(vec![
            d.name.clone(),
            d.items.to_string(),
            dash_if_empty(&d.route),
            dash_if_empty(&evaluators),
            short_time(d.updated_at_unix_ms, &now),
        ]);
    }
    table.render()
}

fn render_show(dataset: &Dataset, items: &[llmops_proto::v1::DatasetItem]) -> String {
    let mut text =
        format!("dataset {}: {} items, route {}\n", dataset.name, dataset.items, dash_if_empty(&dataset.route));
    if !dataset.description.is_empty() {
        text.push_str(&format!("{}\n", dataset.description));
    }
    if !dataset.evaluators_json.is_empty() {
        text.push_str(&format!("evaluators: {}\n", dataset.evaluators_json));
    }
    let mut table =
        Table::new(&[Column::left("ID"), Column::left("INPUT"), Column::left("REFERENCE"), Column::left("TRACE")]);
    for item in items {
        let messages: Value = serde_json::from_str(&item.messages_json).unwrap_or_default();
        let last = messages.as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("");
        table.push(vec![
            item.id.clone(),
            llmops_tui::text::truncate(&llmops_tui::text::one_line(last), 50),
            llmops_tui::text::truncate(&llmops_tui::text::one_line(&item.reference), 40),
            dash_if_empty(&item.source_trace_id),
        ]);
    }
    text.push_str(&table.render());
    text
}
