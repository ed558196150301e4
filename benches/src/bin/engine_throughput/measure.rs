//! The three measurements, each against one running server: single-stream decode rate, time to first
//! token for a long prompt, and aggregate decode throughput of N closed-loop clients.
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::server::Server;
use crate::stream::{self, Prompt, StreamStats};

/// Pause after a load that cut streams, so a server still finishing them does not slow the next step.
const COOL_DOWN: Duration = Duration::from_secs(3);

/// Asks for an answer longer than any `max_tokens` used here, so runs stop at `max_tokens`, not at EOS.
pub fn story_prompt() -> Prompt {
    Prompt {
        system: "You are a helpful assistant. You answer in detail and at length.".into(),
        user: "Write a long story, at least 800 words, about a lighthouse keeper who finds a message in a \
               bottle. Describe the sea, the weather, the village and every person the keeper meets."
            .into(),
    }
}

const NOTES: &[&str] = &[
    "The harbour opens at six and the first ferry leaves at half past seven.",
    "Fishing boats return in the afternoon with cod, mackerel and sometimes crab.",
    "The bakery on the hill sells rye bread, cinnamon rolls and apple cake.",
    "In winter the northern road is often closed because of snow and ice.",
    "The library keeps old maps of the coast and a collection of ship logs.",
    "Every summer the village holds a music festival on the town square.",
    "The lighthouse was built in 1872 and automated a hundred years later.",
    "A narrow path leads from the church to the cliffs above the bay.",
    "The school has forty pupils and two teachers who also run the choir.",
    "Tourists come in August to watch seals on the rocks near the island.",
];

/// A prompt of about `sentences` × 15 tokens: village notes, then a question with a one-word answer.
pub fn notes_prompt(sentences: usize) -> Prompt {
    let notes: Vec<&str> = NOTES.iter().copied().cycle().take(sentences).collect();
    Prompt {
        system: "You are a helpful assistant.".into(),
        user: format!(
            "Read these notes about a village.\n{}\nIn one word: what is the village's main trade?",
            notes.join("\n")
        ),
    }
}

/// A notes prompt that the server counts as about `target` prompt tokens (within 5%, three tries), and
/// its count.
pub async fn calibrate_notes_prompt(
    client: &reqwest::Client,
    server: &Server,
    target: u64,
) -> anyhow::Result<(usize, u64)> {
    let mut sentences = usize::try_from(target / 15).unwrap_or(1).max(1);
    let mut counted = 0;
    for _ in 0..3 {
        let body = stream::request_body(&server.model, &notes_prompt(sentences), 1);
        let stats = stream::run(client, &server.chat_url(), &body, None)
            .await
            .with_context(|| format!("{} calibration request\n{}", server.label, server.log_tail()))?;
        counted = stats.prompt_tokens.context("no usage.prompt_tokens in the stream (stream_options.include_usage)")?;
        if counted.abs_diff(target) * 20 <= target {
            break;
        }
        sentences = ((sentences as f64 * target as f64 / counted.max(1) as f64).round() as usize).max(1);
    }
    Ok((sentences, counted))
}

/// Values of repeated runs.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn median(&self) -> Option<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.0.iter().copied().min_by(f64::total_cmp)
    }

    pub fn max(&self) -> Option<f64> {
        self.0.iter().copied().max_by(f64::total_cmp)
    }
}

/// One request per run, one after another, after one unmeasured warm-up request (first use of a prompt
/// size or answer length may allocate); fails on the first failed request.
async fn sequential(
    client: &reqwest::Client,
    server: &Server,
    prompt: &Prompt,
    max_tokens: u32,
    runs: usize,
    what: &str,
) -> anyhow::Result<Vec<StreamStats>> {
    let mut all = Vec::with_capacity(runs);
    for run in 0..=runs {
        let body = stream::request_body(&server.model, prompt, max_tokens);
        let stats = stream::run(client, &server.chat_url(), &body, None)
            .await
            .with_context(|| format!("{} {what} run {run}/{runs} (0: warm-up)\n{}", server.label, server.log_tail()))?;
        if run > 0 {
            all.push(stats);
        }
    }
    Ok(all)
}

pub struct Decode {
    pub tokens_per_second: Samples,
    /// completion_tokens of each run.
    pub tokens: Vec<u64>,
}

pub async fn decode(client: &reqwest::Client, server: &Server, max_tokens: u32, runs: usize) -> anyhow::Result<Decode> {
    let all = sequential(client, server, &story_prompt(), max_tokens, runs, "decode").await?;
    let mut rates = Vec::new();
    for stats in &all {
        rates
            .push(stats.decode_rate().with_context(|| format!("{}: too few tokens to time: {stats:?}", server.label))?);
    }
    Ok(Decode { tokens_per_second: Samples(rates), tokens: all.iter().map(StreamStats::tokens).collect() })
}

pub struct Ttft {
    pub millis: Samples,
    pub prompt_tokens: Vec<u64>,
}

pub async fn ttft(client: &reqwest::Client, server: &Server, sentences: usize, runs: usize) -> anyhow::Result<Ttft> {
    let all = sequential(client, server, &notes_prompt(sentences), 1, runs, "TTFT").await?;
    let mut millis = Vec::new();
    for stats in &all {
        let first =
            stats.first_token.with_context(|| format!("{}: no token in the answer: {stats:?}", server.label))?;
        millis.push(first.as_secs_f64() * 1000.0);
    }
    Ok(Ttft { millis: Samples(millis), prompt_tokens: all.iter().filter_map(|s| s.prompt_tokens).collect() })
}

#[derive(Debug, Default)]
pub struct Aggregate {
    pub clients: usize,
    /// Completion tokens that arrived within the window: whole answers plus the part of the cut ones.
    pub tokens: u64,
    pub completed: u64,
    pub completed_tokens: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
}

impl Aggregate {
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }
}

/// `clients` closed-loop clients stream long answers for `window`; the
/// answers still running at the end are cut and count with the tokens they had streamed.
pub async fn aggregate(
    server: &Server,
    clients: usize,
    window: Duration,
    max_tokens: u32,
    request_timeout: Duration,
) -> anyhow::Result<Aggregate> {
    let deadline = Instant::now() + window;
    let mut workers = Vec::new();
    for _ in 0..clients {
        let client = stream::client(request_timeout)?;
        let (url, model) = (server.chat_url(), server.model.clone());
        workers.push(tokio::spawn(async move {
            let mut part = Aggregate::default();
            while Instant::now() < deadline {
                let body = stream::request_body(&model, &story_prompt(), max_tokens);
                match stream::run(&client, &url, &body, Some(deadline)).await {
                    Ok(stats) if stats.finished => {
                        part.completed += 1;
                        part.completed_tokens += stats.tokens();
                        part.tokens += stats.tokens();
                    }
                    Ok(stats) => part.tokens += stats.content_chunks,
                    Err(e) => {
                        part.errors += 1;
                        part.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // A refusing server must not turn the loop into a busy spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            part
        }));
    }
    let mut total = Aggregate { clients, window, ..Aggregate::default() };
    for worker in workers {
        let part = worker.await.context("a load client panicked")?;
        total.tokens += part.tokens;
        total.completed += part.completed;
        total.completed_tokens += part.completed_tokens;
        total.errors += part.errors;
        total.first_error = total.first_error.or(part.first_error);
    }
    tokio::time::sleep(COOL_DOWN).await;
    Ok(total)
}
