//! The measurements against one running server: one request timing its decode rate or its time to first
//! token (for a long prompt), and one window of aggregate decode throughput of N closed-loop clients.
//! `interleave` alternates them between the servers.
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::server::Server;
use crate::stream::{self, Prompt};

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

/// What one measured request times.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    /// Single-stream decode rate, tokens/s, of a `max_tokens` answer to the story prompt.
    Decode { max_tokens: u32 },
    /// Time to the first token, ms, of a one-token answer to a notes prompt of `sentences`.
    Ttft { sentences: usize },
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Decode { .. } => "decode",
            Metric::Ttft { .. } => "TTFT",
        }
    }
}

/// One value of a [`Metric`] and the token count that goes with it: completion tokens for decode,
/// prompt tokens for TTFT (None when the server reported no usage).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub value: f64,
    pub tokens: Option<u64>,
}

/// One server's values of a metric and their token counts, in the order measured.
#[derive(Debug, Default)]
pub struct Series {
    pub values: Samples,
    pub tokens: Vec<u64>,
}

/// One request measuring `metric` on `server`.
pub async fn once(client: &reqwest::Client, server: &Server, metric: Metric) -> anyhow::Result<Sample> {
    let (prompt, max_tokens) = match metric {
        Metric::Decode { max_tokens } => (story_prompt(), max_tokens),
        Metric::Ttft { sentences } => (notes_prompt(sentences), 1),
    };
    let body = stream::request_body(&server.model, &prompt, max_tokens);
    let stats = stream::run(client, &server.chat_url(), &body, None).await?;
    match metric {
        Metric::Decode { .. } => {
            let rate = stats.decode_rate().with_context(|| format!("too few tokens to time: {stats:?}"))?;
            Ok(Sample { value: rate, tokens: Some(stats.tokens()) })
        }
        Metric::Ttft { .. } => {
            let first = stats.first_token.with_context(|| format!("no token in the answer: {stats:?}"))?;
            Ok(Sample { value: first.as_secs_f64() * 1000.0, tokens: stats.prompt_tokens })
        }
    }
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

    /// Adds `other`'s counts and keeps the first error seen; the window stays.
    fn add_counts(&mut self, other: &Aggregate) {
        self.tokens += other.tokens;
        self.completed += other.completed;
        self.completed_tokens += other.completed_tokens;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Consecutive windows of one server as one: counts and windows summed.
    pub fn total(windows: &[Aggregate]) -> Aggregate {
        let mut total = Aggregate::default();
        for window in windows {
            total.clients = window.clients;
            total.window += window.window;
            total.add_counts(window);
        }
        total
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
        total.add_counts(&part);
    }
    tokio::time::sleep(COOL_DOWN).await;
    Ok(total)
}
