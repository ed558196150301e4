//! Constrained decoding's cost: single-stream decode tokens/s of the same prompt with and without
//! `response_format: json_schema` (llama.cpp grammars), on llmopsd's embedded engine and on llama.cpp's
//! `llama-server`, same GGUF and threads, in one run. Four cells (server × unconstrained/json_schema) take
//! turns round by round, the order reversed every other round, so drift of a noisy machine and the position
//! in a round hit all alike; the headline numbers are medians of the ratios within a round. Every
//! constrained answer is parsed (serde_json) and checked against the schema, and the failures are counted.
//!
//! ```text
//! benches/build-llama-server.sh            # prints the llama-server path; fetches the model too
//! cargo build --release -p llmopsd -p llmops-bench
//! target/release/constrained-decoding --llama-server PATH --model FILE.gguf
//! ```
//!
//! Reuses engine-throughput's servers and streaming client. Every HTTP call has a timeout and every server
//! start a deadline; the servers are killed on exit, on errors and on Ctrl-C.
#[path = "engine_throughput/host.rs"]
mod host;
// Only part of engine-throughput's measurements is used here.
#[allow(dead_code)]
#[path = "engine_throughput/interleave.rs"]
mod interleave;
#[allow(dead_code)]
#[path = "engine_throughput/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "engine_throughput/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "engine_throughput/stream.rs"]
mod stream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use interleave::paired_ratios;
use measure::Samples;
use server::Server;
use stream::{Prompt, StreamStats};

#[derive(Debug, Parser)]
#[command(about = "Decode speed with and without a JSON-Schema response_format, llmopsd against llama-server")]
struct Args {
    /// The llama-server binary (benches/build-llama-server.sh builds one).
    #[arg(long)]
    llama_server: PathBuf,
    /// The GGUF model both servers load.
    #[arg(long)]
    model: PathBuf,
    /// The llmopsd binary (default: the one next to this executable, or in $LLMOPS_BIN_DIR).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// CPU threads of each server.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Measured rounds; each round runs every cell once (after one unmeasured warm-up round).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// max_tokens of every request: enough for the schema's JSON to finish.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// `seed` of every request (they are greedy anyway: temperature 0).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timeout of every single HTTP request.
    #[arg(long, default_value_t = 120)]
    request_timeout_secs: u64,
    /// Measure llama-server alone (checks the setup without llmopsd).
    #[arg(long)]
    only_llama_server: bool,
}

/// ~6 properties: strings, an integer, an enum, an array and a nested object; strict (all required, no
/// other keys). Its keys are in the order the model is to write them.
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "occupation": {"type": "string"},
            "mood": {"type": "string", "enum": ["happy", "calm", "curious", "grumpy"]},
            "hobbies": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "occupation", "mood", "hobbies", "address"],
        "additionalProperties": false
    })
}

/// OpenAI's structured-outputs request field, as both servers take it on /v1/chat/completions.
fn response_format(schema: &Value) -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}})
}

/// The same prompt for every cell; it names the fields, so the unconstrained answers are about as long.
fn person_prompt() -> Prompt {
    Prompt {
        system: "You are a helpful assistant.".into(),
        user: "Describe a fictional person as JSON with the keys name, age, occupation, mood (one of happy, \
               calm, curious, grumpy), hobbies (a list of up to three) and address (an object with city and \
               country). Answer with the JSON only."
            .into(),
    }
}

/// Where `value` breaks `schema`, for the subset of JSON Schema used here (type, properties, required,
/// additionalProperties: false, enum, items, minItems, maxItems); None when it conforms.
fn schema_violation(value: &Value, schema: &Value, path: &str) -> Option<String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return Some(format!("{path}: {value} is not one of the enum"));
        }
    }
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let type_ok = match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !type_ok {
        return Some(format!("{path}: {value} is not of type {kind}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        let required = schema.get("required").and_then(Value::as_array).into_iter().flatten();
        if let Some(missing) = required.filter_map(Value::as_str).find(|key| !object.contains_key(*key)) {
            return Some(format!("{path}: no `{missing}`"));
        }
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => {
                    if let Some(violation) = schema_violation(item, sub, &format!("{path}.{key}")) {
                        return Some(violation);
                    }
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Some(format!("{path}: unexpected `{key}`"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        let bound = |name| schema.get(name).and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
        if bound("minItems").is_some_and(|min| items.len() < min)
            || bound("maxItems").is_some_and(|max| items.len() > max)
        {
            return Some(format!("{path}: {} items, outside minItems/maxItems", items.len()));
        }
        if let Some(sub) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                if let Some(violation) = schema_violation(item, sub, &format!("{path}[{i}]")) {
                    return Some(violation);
                }
            }
        }
    }
    None
}

/// What an answer is, against the schema.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Conforms,
    /// Valid JSON that breaks the schema (why).
    Violates(String),
    /// Not JSON at all (serde_json's error).
    NotJson(String),
}

fn judge(answer: &str, schema: &Value) -> Verdict {
    match serde_json::from_str::<Value>(answer) {
        Err(e) => Verdict::NotJson(e.to_string()),
        Ok(value) => schema_violation(&value, schema, "$").map_or(Verdict::Conforms, Verdict::Violates),
    }
}

/// One of the four cells: a server, with or without the schema.
struct Cell<'a> {
    server: &'a Server,
    constrained: bool,
    rates: Vec<f64>,
    /// Time to first token, ms: prompt processing plus, constrained, the grammar's setup.
    ttft: Vec<f64>,
    completion_tokens: Vec<u64>,
    finish_reasons: BTreeMap<String, usize>,
    /// Measured answers that are valid JSON, and those of them that conform to the schema.
    json: usize,
    conforming: usize,
    /// The first answer that does not conform, and why.
    first_failure: Option<(String, String)>,
    last_answer: String,
}

impl<'a> Cell<'a> {
    fn new(server: &'a Server, constrained: bool) -> Self {
        Cell {
            server,
            constrained,
            rates: Vec::new(),
            ttft: Vec::new(),
            completion_tokens: Vec::new(),
            finish_reasons: BTreeMap::new(),
            json: 0,
            conforming: 0,
            first_failure: None,
            last_answer: String::new(),
        }
    }

    fn label(&self) -> String {
        format!("{} {}", self.server.label, if self.constrained { "json_schema" } else { "unconstrained" })
    }

    fn record(&mut self, stats: StreamStats, rate: f64, schema: &Value) {
        self.rates.push(rate);
        self.ttft.push(stats.first_token.map_or(f64::NAN, |t| t.as_secs_f64() * 1000.0));
        self.completion_tokens.push(stats.tokens());
        *self.finish_reasons.entry(stats.finish_reason.clone().unwrap_or_else(|| "none".into())).or_default() += 1;
        let verdict = judge(&stats.content, schema);
        if !matches!(verdict, Verdict::NotJson(_)) {
            self.json += 1;
        }
        match verdict {
            Verdict::Conforms => self.conforming += 1,
            Verdict::Violates(why) | Verdict::NotJson(why) => {
                self.first_failure.get_or_insert_with(|| (why, stats.content.clone()));
            }
        }
        self.last_answer = stats.content;
    }
}

/// One streamed request of `cell`; its stats and decode rate.
async fn once(
    client: &reqwest::Client,
    cell: &Cell<'_>,
    args: &Args,
    format: &Value,
) -> anyhow::Result<(StreamStats, f64)> {
    let mut body = stream::request_body(&cell.server.model, &person_prompt(), args.max_tokens);
    body["seed"] = json!(args.seed);
    if cell.constrained {
        body["response_format"] = format.clone();
    }
    let stats = stream::run(client, &cell.server.chat_url(), &body, None).await?;
    let rate = stats.decode_rate().with_context(|| format!("too few tokens to time: {stats:?}"))?;
    Ok((stats, rate))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.threads == 0 || args.max_tokens < 2 {
        bail!("--runs and --threads must be positive and --max-tokens at least 2");
    }
    host::run_until_signal(run(&args))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!("warning: debug build of the client; build with --release");
    }
    let (llama_program, model, daemon) =
        host::programs(&args.llama_server, &args.model, args.daemon.as_deref(), args.only_llama_server)?;
    let work = tempfile::tempdir().context("cannot create a work directory")?;
    let client = stream::client(Duration::from_secs(args.request_timeout_secs))?;
    let schema = person_schema();
    let format = response_format(&schema);

    println!("llama-server: {} ({})", llama_program.display(), server::version(&llama_program).await);
    if let Some(daemon) = &daemon {
        println!("llmopsd:      {} ({})", daemon.display(), server::version(daemon).await);
    }
    println!("model: {}   threads: {}   cores: {}", model.display(), args.threads, host::cores());
    println!("prompt: {}", person_prompt().user);
    println!("response_format: {format}");
    host::print_load_before();

    // One sequence each: a single stream is what is measured.
    let llama = Server::llama_server(&llama_program, &model, args.threads, 1, work.path()).await?;
    let ours = match &daemon {
        Some(daemon) => Some(Server::llmopsd(daemon, &model, args.threads, 1, work.path()).await?),
        None => None,
    };
    let mut cells: Vec<Cell> = std::iter::once(&llama)
        .chain(ours.as_ref())
        .flat_map(|server| [Cell::new(server, false), Cell::new(server, true)])
        .collect();

    eprintln!("{} cells, {} rounds (+1 warm-up), order reversed every other round", cells.len(), args.runs);
    for round in 0..=args.runs {
        let mut order: Vec<usize> = (0..cells.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let cell = &cells[i];
            let (stats, rate) = once(&client, cell, args, &format).await.with_context(|| {
                format!("{} round {round}/{} (0: warm-up)\n{}", cell.label(), args.runs, cell.server.log_tail())
            })?;
            if round > 0 {
                cells[i].record(stats, rate, &schema);
            }
        }
    }
    // The servers idle from here on; the cells borrow them for their labels.
    let failures = print(&cells, args);
    drop(cells);
    llama.stop().await;
    if let Some(ours) = ours {
        ours.stop().await;
    }
    println!();
    println!("load average (1 min) after: {}", host::load_average());
    if failures > 0 {
        println!("constrained answers that do not conform to the schema: {failures} (see above)");
    }
    Ok(())
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

/// Prints the table, the paired ratios and the answers' checks; returns the constrained answers that do not
/// conform.
fn print(cells: &[Cell], args: &Args) -> usize {
    println!(
        "\n== single-stream decode, tokens/s ({} interleaved rounds, max_tokens {}, temperature 0, seed {}) ==",
        args.runs, args.max_tokens, args.seed
    );
    println!(
        "  {:<27} {:>8} {:>8} {:>8} {:>9} {:>20} {:>6} {:>6}   finish",
        "cell", "median", "min", "max", "TTFT ms", "tokens med (min-max)", "JSON", "schema"
    );
    for cell in cells {
        let rates = Samples(cell.rates.clone());
        let tokens = Samples(cell.completion_tokens.iter().map(|&t| t as f64).collect());
        let finish: Vec<String> = cell.finish_reasons.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        println!(
            "  {:<27} {:>8} {:>8} {:>8} {:>9} {:>20} {:>6} {:>6}   {}",
            cell.label(),
            fmt(rates.median(), 1),
            fmt(rates.min(), 1),
            fmt(rates.max(), 1),
            fmt(Samples(cell.ttft.clone()).median(), 1),
            format!("{} ({}-{})", fmt(tokens.median(), 0), fmt(tokens.min(), 0), fmt(tokens.max(), 0)),
            format!("{}/{}", cell.json, cell.rates.len()),
            format!("{}/{}", cell.conforming, cell.rates.len()),
            finish.join(", ")
        );
    }

    println!("  paired ratios (median of the per-round ratios, range):");
    let find = |label: &str, constrained| {
        cells.iter().find(|c| c.server.label == label && c.constrained == constrained).map(|c| &c.rates)
    };
    let pairs = [
        ("llama-server json_schema / unconstrained", ("llama-server", false), ("llama-server", true)),
        ("llmopsd json_schema / unconstrained", ("llmopsd", false), ("llmopsd", true)),
        ("llmopsd / llama-server, unconstrained", ("llama-server", false), ("llmopsd", false)),
        ("llmopsd / llama-server, json_schema", ("llama-server", true), ("llmopsd", true)),
    ];
    for (name, (a_server, a_constrained), (b_server, b_constrained)) in pairs {
        let (Some(a), Some(b)) = (find(a_server, a_constrained), find(b_server, b_constrained)) else {
            continue;
        };
        let ratios = paired_ratios(a, b);
        println!("    {name:<42} {}x  ({}..{})", fmt(ratios.median(), 3), fmt(ratios.min(), 3), fmt(ratios.max(), 3));
    }

    let mut failures = 0;
    println!("\n== answers ==");
    for cell in cells {
        let bad = cell.rates.len() - cell.conforming;
        if cell.constrained {
            failures += bad;
        }
        println!("  {}: {} of {} conform to the schema", cell.label(), cell.conforming, cell.rates.len());
        if let (true, Some((why, answer))) = (cell.constrained, &cell.first_failure) {
            println!("    first failure: {why}\n    answer: {}", shorten(answer));
        }
        println!("    last answer: {}", shorten(&cell.last_answer));
    }
    failures
}

/// `text` on one line, at most 400 characters.
fn shorten(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(400) {
        Some((end, _)) => format!("{}…", &flat[..end]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conforming_person_passes() {
        let answer = r#"{"name": "Ada", "age": 36, "occupation": "engineer", "mood": "curious",
            "hobbies": ["chess", "sailing"], "address": {"city": "Oslo", "country": "Norway"}}"#;
        assert_eq!(judge(answer, &person_schema()), Verdict::Conforms);
    }

    #[test]
    fn violations_and_non_json_are_told_apart() {
        let schema = person_schema();
        let person = |change: &dyn Fn(&mut Value)| {
            let mut value = json!({"name": "Ada", "age": 36, "occupation": "engineer", "mood": "calm",
                "hobbies": ["chess"], "address": {"city": "Oslo", "country": "Norway"}});
            change(&mut value);
            judge(&value.to_string(), &schema)
        };
        let violates = |verdict: Verdict, what: &str| match verdict {
            Verdict::Violates(why) => assert!(why.contains(what), "{why}"),
            other => panic!("{other:?}"),
        };
        violates(person(&|v| v["mood"] = json!("sad")), "$.mood");
        violates(person(&|v| v["age"] = json!(36.5)), "integer");
        violates(person(&|v| v["hobbies"] = json!(["a", "b", "c", "d"])), "4 items");
        violates(person(&|v| v["hobbies"] = json!([1])), "$.hobbies[0]");
        violates(person(&|v| v["address"] = json!({"city": "Oslo"})), "no `country`");
        violates(person(&|v| v["extra"] = json!(1)), "unexpected `extra`");
        violates(person(&|v| v["address"]["zip"] = json!("0150")), "$.address: unexpected `zip`");
        assert!(matches!(judge("```json\n{}\n```", &schema), Verdict::NotJson(_)));
        assert!(matches!(judge(r#"{"name": "Ada", "age": 3"#, &schema), Verdict::NotJson(_)));
    }

    #[test]
    fn the_request_field_is_openais() {
        let format = response_format(&person_schema());
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["json_schema"]["name"], "person");
        assert_eq!(format["json_schema"]["strict"], true);
        assert_eq!(format["json_schema"]["schema"]["required"].as_array().map(Vec::len), Some(6));
    }
}
