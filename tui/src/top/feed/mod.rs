//! Collection: one task per daemon keeps a connection, lists then watches every panel's data, polls status
//! and metrics, and carries out the main loop's `Effect`s. Everything it learns goes to the main loop as
//! `(host index, HostUpdate)` over a bounded channel, so a slow screen slows the feed (and the daemon then
//! drops the watch, which is re-listed) instead of growing memory.
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tonic::Code;

use super::host::HostUpdate;
use super::state::Link;
use crate::address::Target;
use crate::auth::BearerAuth;
use crate::connect::Daemon;
use crate::tls::ClientTls;

mod actions;
mod evals;
mod panels;

pub use panels::slim_trace;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);
/// A session must stay up this long for the retry delay to start over; a daemon that accepts and then fails
/// at once would otherwise be retried twice a second forever.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// Before re-listing after a watch ended (fell behind, or closed by the daemon).
const RELIST_PAUSE: Duration = Duration::from_millis(250);
/// Actions waiting per host; more are refused with a notice.
const EFFECT_QUEUE: usize = 32;

/// What the main loop asks a host's feed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `GetTrace`, answered with `HostUpdate::TraceDetail`.
    FetchTrace {
        host: usize,
        id: String,
    },
    Ack {
        host: usize,
        alert_id: String,
    },
    /// Re-run the trace (on `route`, or its own when `None`), streamed back as `HostUpdate::Replay`.
    Replay {
        host: usize,
        trace_id: String,
        route: Option<String>,
    },
    FetchLogs {
        host: usize,
        engine: String,
    },
    /// `FeedbackService.AddScore`: a human pass/fail score named `thumbs`, answered with
    /// `HostUpdate::ScoreAdded` and a notice.
    Thumbs {
        host: usize,
        trace_id: String,
        up: bool,
    },
    /// `EvalService.GetEvalRun` (the first page of items), answered with `HostUpdate::EvalRunDetail`.
    FetchEvalRun {
        host: usize,
        id: String,
    },
    /// `EvalService.AddDatasetItems` with one trace (the dataset made when missing), answered with
    /// `HostUpdate::DatasetItemsAdded`.
    AddToDataset {
        host: usize,
        trace_id: String,
        dataset: String,
    },
}

impl Effect {
    pub fn host(&self) -> usize {
        match self {
            Effect::FetchTrace { host, .. }
            | Effect::Ack { host, .. }
            | Effect::Replay { host, .. }
            | Effect::FetchLogs { host, .. }
            | Effect::Thumbs { host, .. }
            | Effect::FetchEvalRun { host, .. }
            | Effect::AddToDataset { host, .. } => *host,
        }
    }
}

/// The running feed tasks, one per host; dropping the runtime stops them.
pub struct Feed {
    effects: Vec<mpsc::Sender<Effect>>,
    /// Per host: whether a view shows its trace tail (the trace watch runs only then).
    tails: Vec<watch::Sender<bool>>,
    /// Per host: whether the evals view is open (its runs are polled only then).
    evals: Vec<watch::Sender<bool>>,
}

impl Feed {
    /// Starts one task per target (host index = position); must be called inside a tokio runtime.
    pub fn start(
        targets: Vec<Target>,
        auth: BearerAuth,
        tls: ClientTls,
        updates: mpsc::Sender<(usize, HostUpdate)>,
    ) -> Self {
        let (effects, (tails, evals)) = targets
            .into_iter()
            .enumerate()
            .map(|(index, target)| {
                let (sender, receiver) = mpsc::channel(EFFECT_QUEUE);
                let (tail, tail_wanted) = watch::channel(false);
                let (evals, evals_wanted) = watch::channel(false);
                let updates = updates.clone();
                let host = HostFeed {
                    index,
                    target,
                    auth: auth.clone(),
                    tls: tls.clone(),
                    updates,
                    tail_wanted,
                    evals_wanted,
                };
                tokio::spawn(run_host(host, receiver));
                (sender, (tail, evals))
            })
            .unzip();
        Self { effects, tails, evals }
    }

    /// Keeps the trace tail of `host` live (re-listed when it starts) and stops the others'. At 100 req/s a
    /// trace watch costs the console a few percent of a core, worth paying only while the tail is on screen.
    pub fn follow_traces(&self, host: Option<usize>) {
        want_only(&self.tails, host);
    }

    /// Polls the eval runs of `host` (listed at once when it starts) and stops polling the others'.
    pub fn follow_evals(&self, host: Option<usize>) {
        want_only(&self.evals, host);
    }

    /// Hands an effect to its host's task; the error is a sentence for the footer.
    pub fn send(&self, effect: Effect) -> Result<(), String> {
        let sender = self.effects.get(effect.host()).ok_or_else(|| "no such host".to_owned())?;
        sender.try_send(effect).map_err(|_| "too many actions waiting for this host; try again".to_owned())
    }
}

/// Turns on the flag of `host` and off the others'; a flag that does not change wakes nobody.
fn want_only(flags: &[watch::Sender<bool>], host: Option<usize>) {
    for (index, flag) in flags.iter().enumerate() {
        flag.send_if_modified(|wanted| std::mem::replace(wanted, host == Some(index)) != (host == Some(index)));
    }
}

#[derive(Clone)]
struct HostFeed {
    index: usize,
    target: Target,
    auth: BearerAuth,
    tls: ClientTls,
    updates: mpsc::Sender<(usize, HostUpdate)>,
    tail_wanted: watch::Receiver<bool>,
    evals_wanted: watch::Receiver<bool>,
}

impl HostFeed {
    /// False once the main loop is gone.
    async fn send(&self, update: HostUpdate) -> bool {
        self.updates.send((self.index, update)).await.is_ok()
    }
}

/// How one panel's list-and-watch ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// List and watch again (the viewer fell behind, or the daemon closed the stream).
    Again,
    /// The connection is gone: reconnect.
    LinkLost(String),
    /// This daemon will not serve the panel (older version, token refused); do not retry on this connection.
    Refused(String),
}

fn classify(status: &tonic::Status, what: &str) -> Ending {
    match status.code() {
        Code::ResourceExhausted => Ending::Again,
        Code::Unimplemented => Ending::Refused(format!("this llmopsd does not serve {what} (older than llmops-top?)")),
        Code::Unauthenticated | Code::PermissionDenied => {
            Ending::Refused(format!("{what} refused: {} (check --token or LLMOPS_TOKEN)", status.message()))
        }
        _ if status.message().is_empty() => Ending::LinkLost(format!("{:?}", status.code())),
        _ => Ending::LinkLost(status.message().to_owned()),
    }
}

/// Retry delays: 0.5 s doubling to 30 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: FIRST_RETRY }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(LAST_RETRY);
        delay
    }
}

async fn run_host(feed: HostFeed, mut effects: mpsc::Receiver<Effect>) {
    let mut backoff = Backoff::new();
    let mut attempt = 1;
    loop {
        if !feed.send(HostUpdate::Link(Link::Connecting { attempt })).await {
            return;
        }
        let error = match Daemon::connect(&feed.target, feed.auth.clone(), &feed.tls).await {
            Ok(daemon) => {
                feed.send(HostUpdate::Link(Link::Up)).await;
                let since = Instant::now();
                let Some(error) = session(&feed, &daemon, &mut effects).await else { return };
                if since.elapsed() >= STABLE_SESSION {
                    (backoff, attempt) = (Backoff::new(), 1);
                }
                error
            }
            Err(unreachable) => unreachable.cause,
        };
        let retry_in = backoff.next_delay();
        feed.send(HostUpdate::Link(Link::Down { error, attempt, retry_in })).await;
        if !refuse_while_down(&feed, &mut effects, retry_in).await {
            return;
        }
        attempt += 1;
    }
}

/// Waits `delay`, answering effects with "down" errors; false once the main loop is gone.
async fn refuse_while_down(feed: &HostFeed, effects: &mut mpsc::Receiver<Effect>, delay: Duration) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            effect = effects.recv() => {
                let Some(effect) = effect else { return false };
                let reason = format!("{} is not connected", feed.target);
                feed.send(actions::failure(&effect, reason)).await;
            }
        }
    }
}

/// Everything one connection does until it breaks: `Some(error)`, or `None` once the main loop is gone.
async fn session(feed: &HostFeed, daemon: &Daemon, effects: &mut mpsc::Receiver<Effect>) -> Option<String> {
    let panels = async {
        tokio::select! {
            error = panel(feed, "traces", || panels::traces(feed, daemon)) => error,
            error = panel(feed, "telemetry", || panels::telemetry(feed, daemon)) => error,
            error = panel(feed, "budgets", || panels::budgets(feed, daemon)) => error,
            error = panel(feed, "alerts", || panels::alerts(feed, daemon)) => error,
            error = panel(feed, "status", || panels::poll_status(feed, daemon)) => error,
            error = panel(feed, "metrics", || panels::poll_metrics(feed, daemon)) => error,
            error = panel(feed, "evals", || evals::poll_runs(feed, daemon)) => error,
        }
    };
    tokio::pin!(panels);
    // Only one re-run streams at a time: a new one replaces the last.
    let mut replay: Option<AbortHandle> = None;
    loop {
        tokio::select! {
            error = &mut panels => return Some(error),
            effect = effects.recv() => {
                let effect = effect?;
                let is_replay = matches!(effect, Effect::Replay { .. });
                let task = tokio::spawn(actions::perform(feed.clone(), daemon.clone(), effect));
                if is_replay {
                    if let Some(previous) = replay.replace(task.abort_handle()) {
                        previous.abort();
                    }
                }
            }
        }
    }
}

/// Runs one panel's list-and-watch over and over; returns only when the link is lost.
async fn panel<F, Fut>(feed: &HostFeed, name: &'static str, mut once: F) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Ending>,
{
    loop {
        match once().await {
            Ending::Again => tokio::time::sleep(RELIST_PAUSE).await,
            Ending::LinkLost(error) => return error,
            Ending::Refused(reason) => {
                feed.send(HostUpdate::Unavailable { panel: name, reason }).await;
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_to_thirty_seconds() {
        let mut backoff = Backoff::new();
        let delays: Vec<u128> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    }

    #[test]
    fn errors_are_sorted_into_relist_refuse_or_reconnect() {
        assert_eq!(classify(&tonic::Status::resource_exhausted("missed 12"), "traces"), Ending::Again);
        let Ending::Refused(reason) = classify(&tonic::Status::unimplemented(""), "budgets") else {
            panic!("an older daemon refuses for good")
        };
        assert!(reason.contains("budgets"), "{reason}");
        assert!(matches!(classify(&tonic::Status::unauthenticated("bad token"), "alerts"), Ending::Refused(_)));
        assert_eq!(
            classify(&tonic::Status::unavailable("connection reset"), "traces"),
            Ending::LinkLost("connection reset".into())
        );
    }
}
