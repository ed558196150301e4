//! The soak's mixed traffic: closed-loop clients cycling through request kinds, each request with a new
//! prompt version, user, session and tag value; counts per kind of what came back.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Stream,
    Fallback,
    CutStream,
    StalledStream,
    UnknownModel,
    OversizedModel,
    NoKey,
    ForeignOrigin,
}

/// The cycle each client walks: mostly served requests, then every fault and refusal once.
const CYCLE: [Kind; 12] = [
    Kind::Chat,
    Kind::Chat,
    Kind::Chat,
    Kind::Stream,
    Kind::Stream,
    Kind::Fallback,
    Kind::CutStream,
    Kind::StalledStream,
    Kind::UnknownModel,
    Kind::OversizedModel,
    Kind::NoKey,
    Kind::ForeignOrigin,
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Stream => "stream",
            Kind::Fallback => "fallback past a 500",
            Kind::CutStream => "stream cut by engine",
            Kind::StalledStream => "stream stalled (idle timeout)",
            Kind::UnknownModel => "unknown model",
            Kind::OversizedModel => "1 KB model name",
            Kind::NoKey => "no key",
            Kind::ForeignOrigin => "foreign Origin",
        }
    }

    /// Whether the daemon keeps a trace of it (refusals before authentication leave none).
    fn traced(self) -> bool {
        !matches!(self, Kind::NoKey | Kind::ForeignOrigin)
    }

    /// The status it must get, and for streams a text the body must hold.
    fn expected(self) -> (u16, Option<&'static str>) {
        match self {
            Kind::Chat | Kind::Fallback => (200, None),
            Kind::Stream => (200, Some("[DONE]")),
            Kind::CutStream | Kind::StalledStream => (200, Some("\"error\"")),
            Kind::UnknownModel => (404, None),
            Kind::OversizedModel => (400, None),
            Kind::NoKey => (401, None),
            Kind::ForeignOrigin => (403, None),
        }
    }

    fn body(self, n: u64) -> serde_json::Value {
        let model = match self {
            Kind::Chat | Kind::Stream | Kind::NoKey | Kind::ForeignOrigin => "chat".to_owned(),
            Kind::Fallback => "fallback".to_owned(),
            Kind::CutStream => "cut".to_owned(),
            Kind::StalledStream => "stall".to_owned(),
            Kind::UnknownModel => format!("no-such-model-{n}"),
            Kind::OversizedModel => format!("{n}-{}", "m".repeat(1024)),
        };
        let mut body = json!({
            "model": model,
            "messages": [{"role": "user", "content": format!("Soak request {n}.")}],
            "max_tokens": 32,
        });
        if matches!(self, Kind::Stream | Kind::CutStream | Kind::StalledStream) {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

#[derive(Default)]
struct KindCount {
    sent: u64,
    as_expected: u64,
    first_unexpected: Option<String>,
}

/// What the clients sent and got, per kind.
pub struct Counts {
    kinds: Vec<(Kind, KindCount)>,
}

impl Counts {
    /// Requests that must each leave a trace.
    pub fn traced(&self) -> u64 {
        self.kinds.iter().filter(|(kind, _)| kind.traced()).map(|(_, count)| count.sent).sum()
    }

    pub fn print(&self) {
        println!("{:<30} {:>9} {:>12}", "kind", "sent", "as expected");
        for (kind, count) in &self.kinds {
            println!("{:<30} {:>9} {:>12}", kind.label(), count.sent, count.as_expected);
            if let Some(example) = &count.first_unexpected {
                println!("    first unexpected: {example}");
            }
        }
        let sent: u64 = self.kinds.iter().map(|(_, count)| count.sent).sum();
        let unexpected: u64 = self.kinds.iter().map(|(_, count)| count.sent - count.as_expected).sum();
        println!("{sent} requests, {unexpected} not answered as expected");
    }
}

struct Shared {
    base: String,
    key: String,
    deadline: Instant,
    same_values: bool,
    next: AtomicU64,
    counts: Mutex<Vec<(Kind, KindCount)>>,
}

/// The running clients.
pub struct Traffic {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Traffic {
    /// With `same_values`, every request carries the same attribution headers instead of new ones.
    pub fn start(base: String, key: String, concurrency: usize, duration: Duration, same_values: bool) -> Traffic {
        let mut kinds: Vec<(Kind, KindCount)> = Vec::new();
        for kind in CYCLE {
            if !kinds.iter().any(|(k, _)| *k == kind) {
                kinds.push((kind, KindCount::default()));
            }
        }
        let shared = Arc::new(Shared {
            base,
            key,
            deadline: Instant::now() + duration,
            same_values,
            next: AtomicU64::new(0),
            counts: Mutex::new(kinds),
        });
        let workers = (0..concurrency.max(1)).map(|_| tokio::spawn(client(shared.clone()))).collect();
        Traffic { shared, workers }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.next.load(Ordering::Relaxed)
    }

    /// Whether the duration is over and every client has stopped.
    pub fn finished(&self) -> bool {
        Instant::now() >= self.shared.deadline && self.workers.iter().all(|worker| worker.is_finished())
    }

    pub async fn join(self) -> anyhow::Result<Counts> {
        for worker in self.workers {
            worker.await.context("a soak client panicked")??;
        }
        let kinds = std::mem::take(&mut *self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(Counts { kinds })
    }
}

async fn client(shared: Arc<Shared>) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().context("cannot build a client")?;
    while Instant::now() < shared.deadline {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let kind = CYCLE[(n % CYCLE.len() as u64) as usize];
        let outcome = one(&http, &shared, kind, n).await;
        let mut counts = shared.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, count)) = counts.iter_mut().find(|(k, _)| *k == kind) {
            count.sent += 1;
            match outcome {
                Ok(()) => count.as_expected += 1,
                Err(e) => {
                    count.first_unexpected.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }
    Ok(())
}

async fn one(http: &reqwest::Client, shared: &Shared, kind: Kind, n: u64) -> anyhow::Result<()> {
    let unique = if shared.same_values { 0 } else { n };
    let mut request = http
        .post(format!("{}/v1/chat/completions", shared.base))
        .header("x-llmops-prompt-id", format!("prompt-{unique}"))
        .header("x-llmops-prompt-version", format!("v{unique}"))
        .header("x-llmops-user", format!("user-{unique}"))
        .header("x-llmops-session-id", format!("session-{unique}"))
        .header("x-llmops-tag-run", format!("run-{unique}"))
        .json(&kind.body(n));
    if kind != Kind::NoKey {
        request = request.bearer_auth(&shared.key);
    }
    if kind == Kind::ForeignOrigin {
        request = request.header("origin", "https://evil.example");
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    let (want_status, want_text) = kind.expected();
    if status != want_status {
        anyhow::bail!("HTTP {status}, expected {want_status}: {}", body.chars().take(200).collect::<String>());
    }
    if let Some(text) = want_text {
        if !body.contains(text) {
            anyhow::bail!("body without {text}: {}", body.chars().take(300).collect::<String>());
        }
    }
    Ok(())
}
