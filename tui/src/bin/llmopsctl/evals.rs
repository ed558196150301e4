//! `llmopsctl eval run | list | show | compare`: evaluation runs over `EvalService`. A run prints each item as
//! it finishes, then the evaluators, the comparison and the verdict, and exits 0 (PASSED), 100 (FAILED) or 1
//! (could not run); the verdict printed last always matches the exit status.
use std::io::Write;

use chrono::Local;
use llmops_proto::v1::eval_event::Event;
use llmops_proto::v1::{
    CompareEvalRunsRequest, EvalComparison, EvalItemResult, EvalRun, EvalStatus, GetEvalRunRequest,
    ListEvalRunsRequest, RunEvalRequest,
};
use llmops_tui::connect::Daemon;
use llmops_tui::table::{Column, Table};
use llmops_tui::text::{dash_if_empty, one_line, truncate};
use llmops_tui::when::short_time;
use serde_json::{json, Value};

use super::cli::{EvalCommand, RunArgs};
use super::datasets::{read_json_file, refused};
use super::eval_json::{comparison_json, item_result_json, pair_name, run_json, status_name};
use super::output::show;
use super::Failure;

/// Exit status of a run that FAILED on quality.
pub const QUALITY_FAILED: u8 = 100;

pub async fn evals(
    daemon: &Daemon,
    command: &EvalCommand,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: impl Fn(tonic::Status) -> Failure,
) -> Result<(), Failure> {
    let mut client = daemon.evals();
    match command {
        EvalCommand::Run(args) => {
            let request = run_request(args)?;
            let (run, items) = run_eval(daemon, request, as_json, out, &rpc_failure).await?;
            if let Some(path) = &args.junit {
                std::fs::write(path, super::junit::render(&run, &items))?;
            }
            if let Some(path) = &args.jsonl {
                let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
                for item in &items {
                    let mut line = item_result_json(item);
                    line["type"] = json!("item");
                    writeln!(file, "{line}")?;
                }
                let mut line = run_json(&run);
                line["type"] = json!("run");
                writeln!(file, "{line}")?;
                file.flush()?;
            }
            verdict_exit(&run)?;
        }
        EvalCommand::List { dataset, limit } => {
            let request = ListEvalRunsRequest { dataset: dataset.clone().unwrap_or_default(), limit: *limit };
            let list = client.list_eval_runs(request).await;
            let list = list.map_err(refused("cannot list runs".into(), &rpc_failure))?.into_inner();
            let to_json = || Value::Array(list.runs.iter().map(run_json).collect());
            show(out, as_json, to_json, || render_runs(&list.runs))?;
        }
        EvalCommand::Show { run, failed } => {
            let (detail, items) = fetch_run(daemon, run, &rpc_failure).await?;
            let items: Vec<EvalItemResult> =
                items.into_iter().filter(|i| !*failed || !i.passed || !i.error.is_empty()).collect();
            let to_json =
                || json!({"run": run_json(&detail), "items": items.iter().map(item_result_json).collect::<Vec<_>>()});
            show(out, as_json, to_json, || {
                let mut text = header(&detail);
                for item in &items {
                    text.push_str(&item_line(item));
                    text.push_str(&item_detail(item));
                }
                text.push_str(&footer(&detail));
                text
            })?;
        }
        EvalCommand::Compare { baseline, candidate } => {
            let request = CompareEvalRunsRequest { baseline: baseline.clone(), candidate: candidate.clone() };
            let compared = client.compare_eval_runs(request).await;
            let compared = compared.map_err(refused("cannot compare".into(), &rpc_failure))?.into_inner();
            show(out, as_json, || comparison_json(&compared), || comparison_text(&compared) + "\n")?;
        }
    }
    Ok(())
}

fn run_request(args: &RunArgs) -> Result<RunEvalRequest, Failure> {
    let parameters = super::replay::overrides(&args.set).map_err(Failure::Refused)?;
    Ok(RunEvalRequest {
        dataset: args.dataset.clone(),
        route: args.route.clone().unwrap_or_default(),
        prompt: args.prompt.clone().unwrap_or_default(),
        baseline_run: args.baseline.clone().unwrap_or_default(),
        against_route: args.against.clone().unwrap_or_default(),
        concurrency: args.concurrency,
        evaluators_json: args.evaluators.as_deref().map(read_json_file).transpose()?.unwrap_or_default(),
        parameters_json: if parameters.is_empty() { String::new() } else { Value::Object(parameters).to_string() },
        limit: args.limit.unwrap_or(0),
        by: args.by.clone().unwrap_or_else(|| std::env::var("USER").unwrap_or_default()),
        judge_route: args.judge_route.clone().unwrap_or_default(),
    })
}

/// Runs `request`, printing each item as it finishes (text) and at the end the summary and verdict (or the
/// run and its items as one JSON document). Returns the finished run and its items.
pub async fn run_eval(
    daemon: &Daemon,
    request: RunEvalRequest,
    as_json: bool,
    out: &mut impl Write,
    rpc_failure: &impl Fn(tonic::Status) -> Failure,
) -> Result<(EvalRun, Vec<EvalItemResult>), Failure> {
    let dataset = request.dataset.clone();
    let stream = daemon.evals().run_eval(request).await;
    let mut stream = stream.map_err(refused(format!("cannot run {dataset}"), rpc_failure))?.into_inner();
    let mut items = Vec::new();
    let mut total = 0;
    loop {
        let event = stream.message().await.map_err(refused(format!("run of {dataset}"), rpc_failure))?;
        let Some(event) = event.and_then(|e| e.event) else {
            return Err(Failure::Refused(format!("the run of {dataset} ended before its verdict")));
        };
        match event {
            Event::Started(run) => {
                total = run.items_total;
                if !as_json {
                    write!(out, "{}", header(&run))?;
                    out.flush()?;
                }
            }
            Event::Item(item) => {
                if !as_json {
                    write!(out, "{}", item_line(&item))?;
                    out.flush()?;
                } else {
                    eprint!("\rllmopsctl: {} of {total} items", items.len() + 1);
                }
                items.push(item);
            }
            Event::Finished(run) => {
                if as_json {
                    eprintln!();
                }
                let to_json =
                    || json!({"run": run_json(&run), "items": items.iter().map(item_result_json).collect::<Vec<_>>()});
                show(out, as_json, to_json, || footer(&run))?;
                items.sort_by_key(|i| i.item_id.parse::<u64>().unwrap_or(u64::MAX));
                return Ok((run, items));
            }
        }
    }
}

/// The exit status the run's verdict asks for.
pub fn verdict_exit(run: &EvalRun) -> Result<(), Failure> {
    match EvalStatus::try_from(run.status).unwrap_or(EvalStatus::Unspecified) {
        EvalStatus::Passed => Ok(()),
        EvalStatus::Failed => Err(Failure::Verdict(QUALITY_FAILED)),
        _ => Err(Failure::Verdict(1)),
    }
}

async fn fetch_run(
    daemon: &Daemon,
    id: &str,
    rpc_failure: &impl Fn(tonic::Status) -> Failure,
) -> Result<(EvalRun, Vec<EvalItemResult>), Failure> {
    let mut client = daemon.evals();
    let mut items = Vec::new();
    let mut offset = 0;
    loop {
        let request = GetEvalRunRequest { id: id.to_owned(), item_offset: offset, item_limit: 0 };
        let page = client.get_eval_run(request).await;
        let page = page.map_err(refused(format!("cannot show {id}"), rpc_failure))?.into_inner();
        items.extend(page.items);
        if page.next_item_offset == 0 {
            return Ok((page.run.unwrap_or_default(), items));
        }
        offset = page.next_item_offset;
    }
}

fn header(run: &EvalRun) -> String {
    let mut text = format!("{}: dataset {}, {} items on route {}", run.id, run.dataset, run.items_total, run.route);
    if !run.prompt.is_empty() {
        text.push_str(&format!(", prompt {}", run.prompt));
    }
    if !run.baseline_run.is_empty() {
        text.push_str(&format!(", compared with {}", run.baseline_run));
    }
    if !run.against_route.is_empty() {
        text.push_str(&format!(", against route {}", run.against_route));
    }
    text.push('\n');
    text
}

fn item_line(item: &EvalItemResult) -> String {
    let (mark, detail) = if !item.error.is_empty() {
        ("ERROR", truncate(&one_line(&item.error), 100))
    } else if item.passed {
        ("pass ", String::new())
    } else {
        let failed: Vec<String> = item
            .results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.name, truncate(&one_line(&r.reasoning), 60)))
            .collect();
        ("fail ", failed.join("; "))
    };
    let pairwise = match pair_name(item.pairwise) {
        "" => String::new(),
        outcome => format!(" [{outcome}]"),
    };
    format!("  {mark} item {:<5} {:>8}{pairwise}  {detail}\n", item.item_id, format!("{:.0} ms", item.latency_ms))
}

/// What `eval show` adds under each item: input, answer, reference and every evaluator's reasoning.
fn item_detail(item: &EvalItemResult) -> String {
    let mut text = format!("      input:     {}\n", truncate(&one_line(&item.input_preview), 200));
    text.push_str(&format!("      answer:    {}\n", truncate(&one_line(&item.output), 200)));
    if !item.reference.is_empty() {
        text.push_str(&format!("      reference: {}\n", truncate(&one_line(&item.reference), 200)));
    }
    if !item.against_output.is_empty() {
        text.push_str(&format!("      other:     {}\n", truncate(&one_line(&item.against_output), 200)));
    }
    for r in &item.results {
        let mark = if r.passed { "pass" } else { "FAIL" };
        text.push_str(&format!(
            "      {mark} {} ({:.2}): {}\n",
            r.name,
            r.score,
            truncate(&one_line(&r.reasoning), 200)
        ));
    }
    if !item.pairwise_reasoning.is_empty() {
        text.push_str(&format!("      pairwise: {}\n", truncate(&one_line(&item.pairwise_reasoning), 300)));
    }
    text
}

fn comparison_text(c: &EvalComparison) -> String {
    let mut text = format!(
        "compared with {}: {} paired, {} wins, {} ties, {} losses; mean difference {:+.3} (95% CI {:+.3} to {:+.3})",
        c.baseline, c.paired, c.wins, c.ties, c.losses, c.mean_difference, c.ci_low, c.ci_high
    );
    if !c.regressed_items.is_empty() {
        let shown: Vec<&str> = c.regressed_items.iter().take(20).map(String::as_str).collect();
        text.push_str(&format!("\nregressed items: {}", shown.join(", ")));
        if c.regressed_items.len() > shown.len() {
            text.push_str(&format!(" (and {} more)", c.regressed_items.len() - shown.len()));
        }
    }
    text
}

fn footer(run: &EvalRun) -> String {
    let mut table = Table::new(&[
        Column::left("EVALUATOR"),
        Column::left("KIND"),
        Column::right("PASSED"),
        Column::right("RATE"),
        Column::right("THRESHOLD"),
        Column::left("OK"),
    ]);
    for e in &run.evaluators {
        table.push(vec![
            e.name.clone(),
            e.kind.clone(),
            format!("{}/{}", e.passed, e.scored),
            format!("{:.1}%", e.pass_rate * 100.0),
            format!("{:.1}%", e.threshold * 100.0),
            if e.ok { "yes" } else { "NO" }.to_owned(),
        ]);
    }
    let mut text = String::from("\n");
    text.push_str(&table.render());
    if let Some(c) = &run.comparison {
        text.push_str(&comparison_text(c));
        text.push('\n');
    }
    let wall_s = (run.finished_at_unix_ms - run.started_at_unix_ms).max(0) as f64 / 1000.0;
    let rate = if wall_s > 0.0 { f64::from(run.items_done) / wall_s } else { 0.0 };
    text.push_str(&format!(
        "{} of {} items passed, {} errored; {:.1} s ({rate:.2} items/s); judge tokens {} in, {} out\n",
        run.items_passed, run.items_total, run.items_errored, wall_s, run.judge_input_tokens, run.judge_output_tokens
    ));
    // The verdict starts with PASS, FAIL or ERROR (or says it was cancelled).
    text.push_str(&format!("{}\n", run.verdict));
    text
}

fn render_runs(runs: &[EvalRun]) -> String {
    if runs.is_empty() {
        return "(no evaluation runs: start one with `llmopsctl eval run DATASET`)\n".into();
    }
    let now = Local::now();
    let mut table = Table::new(&[
        Column::left("RUN"),
        Column::left("DATASET"),
        Column::left("ROUTE"),
        Column::left("PROMPT"),
        Column::left("STATUS"),
        Column::right("PASSED"),
        Column::left("VS"),
        Column::left("STARTED"),
    ]);
    for run in runs {
        let vs = run
            .comparison
            .as_ref()
            .map_or(String::new(), |c| format!("{} {}/{}/{}", c.baseline, c.wins, c.ties, c.losses));
        table.push(vec![
            run.id.clone(),
            run.dataset.clone(),
            run.route.clone(),
            dash_if_empty(&run.prompt),
            status_name(run.status).to_owned(),
            format!("{}/{}", run.items_passed, run.items_total),
            dash_if_empty(&vs),
            short_time(run.started_at_unix_ms, &now),
        ]);
    }
    table.render()
}
