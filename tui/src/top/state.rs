//! What the console knows and shows: each host's data as the daemon served it, and the UI's own state.
//! Plain data: the feed fills `Host`s, intents from input change the UI parts, the canvas only reads.
//! Behaviour lives beside it (`host.rs` applies updates, `tail.rs` filters and sorts traces, `playback.rs`
//! runs replay), so this file stays the one place that says what the console holds.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use llmops_proto::v1 as pb;

pub use super::app::evals::{EvalRunUi, EvalsUi};

/// Finished traces kept per host; older ones fall off the end of the tail.
pub const TRACE_TAIL_CAPACITY: usize = 10_000;
/// Points per GPU sparkline: five minutes at the daemon's default 1 s interval.
pub const SPARK_POINTS: usize = 300;

/// The screens, in `Tab` order after the fleet. Number keys: 1 overview, 2 traces, 3 alerts, 4 budgets and
/// engines, 5 evals, 0 fleet (with several hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Fleet,
    Overview,
    Traces,
    Detail,
    Alerts,
    Budgets,
    Replay,
    /// Evaluation runs, one run's items, one item's answer against its reference (`app::evals`).
    Evals,
}

/// The connection to one daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// First attempt, or a retry after `Down`.
    Connecting {
        attempt: u32,
    },
    Up,
    /// Lost or never reached; the next attempt is due after `retry_in` (doubling, capped).
    Down {
        error: String,
        attempt: u32,
        retry_in: Duration,
    },
}

/// The last `SPARK_POINTS` samples of one GPU, oldest first. A value the GPU did not report is not pushed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuHistory {
    pub memory_used_percent: VecDeque<u64>,
    pub utilization_percent: VecDeque<u64>,
    pub power_watts: VecDeque<u64>,
    pub temperature_celsius: VecDeque<u64>,
}

/// Traces from `ListTraces` (at connect) and `WatchTraces`; newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceTail {
    pub finished: VecDeque<pb::Trace>,
    /// Started and not finished yet, oldest first.
    pub in_flight: Vec<pb::Trace>,
    /// Events lost because this viewer fell behind (the daemon ends the watch; the feed re-lists).
    pub missed: u64,
}

/// One daemon as the console sees it. `None` means "not received yet"; a panel whose RPC the daemon does not
/// serve (an older llmopsd) has its reason in `unavailable`, keyed by panel ("budgets", "alerts", ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// As given to `--connect` (or the socket path).
    pub address: String,
    pub link: Link,
    pub status: Option<pb::Status>,
    /// The latest full picture (watch updates merged in).
    pub telemetry: Option<pb::TelemetrySample>,
    /// Keyed by GPU index.
    pub gpu_history: BTreeMap<u32, GpuHistory>,
    pub metrics: Option<pb::RequestMetrics>,
    pub budgets: Option<Vec<pb::Budget>>,
    /// Firing first, then acknowledged, then recently resolved.
    pub alerts: Vec<pb::Alert>,
    pub traces: TraceTail,
    /// The log tail of the engine selected in the budgets & engines view.
    pub engine_logs: Option<pb::EngineLogs>,
    pub unavailable: BTreeMap<&'static str, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Time,
    Route,
    Model,
    Status,
    Ttft,
    Latency,
    TokensIn,
    TokensOut,
    Cost,
}

/// The traces view: a live tail that follows new traces until the user moves or pauses.
#[derive(Debug, Clone, PartialEq)]
pub struct TracesUi {
    pub follow: bool,
    /// Index into the filtered, sorted rows.
    pub selected: usize,
    /// Words that must all match: `model:NAME`, `route:NAME`, `status:ok|error|rejected|cancelled`, or text
    /// found in the route, model, prompt or response.
    pub filter: String,
    pub sort: SortKey,
    pub descending: bool,
}

/// The trace detail view, filled by `GetTrace` (the tail carries no bodies).
#[derive(Debug, Clone, PartialEq)]
pub struct DetailUi {
    pub trace_id: String,
    pub trace: Option<pb::Trace>,
    pub error: Option<String>,
    pub scroll: u16,
    /// The daemon's telemetry samples from while the trace ran (`QueryTelemetry`), or why there are none.
    pub gpu: Option<Result<Vec<pb::TelemetrySample>, String>>,
}

/// One recorded chunk for playback.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub at_ms: f64,
    pub text: String,
}

/// Plays a recorded answer back at its original chunk timing, scaled by `speed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Playback {
    pub chunks: Vec<Chunk>,
    /// Chunks shown so far.
    pub shown: usize,
    /// Position in the recording, milliseconds from the trace's start.
    pub position_ms: f64,
    /// The recording's length (the trace's latency).
    pub total_ms: f64,
    /// 0.25 to 16.
    pub speed: f64,
    pub paused: bool,
}

/// Choosing the route for a re-run.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePicker {
    pub routes: Vec<String>,
    pub selected: usize,
}

/// A re-run in progress or done: the new answer as it streams, then the daemon's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct ReRun {
    pub route: String,
    /// Known once the daemon says it started.
    pub trace_id: Option<String>,
    pub text: String,
    pub chunks: usize,
    pub elapsed_ms: f64,
    pub done: Option<pb::ReplayDone>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayUi {
    /// The full original trace (from `GetTrace`).
    pub original: pb::Trace,
    pub playback: Playback,
    pub picker: Option<RoutePicker>,
    pub rerun: Option<ReRun>,
}

/// A line being typed at the bottom of the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// `/`: the traces filter, applied as it is typed.
    Filter { input: String },
    /// `:`: a view or action by name; `Tab` completes from `completions`.
    Command { input: String, completions: Vec<String>, pick: usize },
    /// `a` in a trace's detail: the dataset to add `trace_id` to (created when missing).
    Dataset { input: String, trace_id: String },
}

/// How to draw: 256 colours unless `NO_COLOR` (or `--no-color`); box and block characters unless `--ascii`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Look {
    pub no_color: bool,
    pub ascii: bool,
}

/// A one-line message in the footer (the result of an action, or why it failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub hosts: Vec<Host>,
    /// The host the per-host views show.
    pub focus: usize,
    pub view: View,
    /// Views to return to with `Esc`.
    pub back: Vec<View>,
    pub prompt: Option<Prompt>,
    pub help: bool,
    pub fleet_selected: usize,
    pub traces: TracesUi,
    pub alerts_selected: usize,
    /// The engine selected in the budgets & engines view (its log tail is shown).
    pub engine_selected: usize,
    pub detail: Option<DetailUi>,
    pub replay: Option<ReplayUi>,
    pub evals: EvalsUi,
    /// The dataset last named at the `a` prompt this session (its next opening starts with it).
    pub last_dataset: String,
    pub notice: Option<Notice>,
    pub look: Look,
    /// Wall clock for "ago" columns, set by the main loop before each frame (fixed in snapshot tests).
    pub now_unix_ms: i64,
    pub quit: bool,
}

impl Host {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            link: Link::Connecting { attempt: 1 },
            status: None,
            telemetry: None,
            gpu_history: BTreeMap::new(),
            metrics: None,
            budgets: None,
            alerts: Vec::new(),
            traces: TraceTail::default(),
            engine_logs: None,
            unavailable: BTreeMap::new(),
        }
    }
}

impl Default for TracesUi {
    fn default() -> Self {
        Self { follow: true, selected: 0, filter: String::new(), sort: SortKey::Time, descending: true }
    }
}

impl App {
    /// One host per address; a single host starts on the overview, several on the fleet view.
    pub fn new(addresses: &[String], look: Look) -> Self {
        Self {
            hosts: addresses.iter().map(Host::new).collect(),
            focus: 0,
            view: if addresses.len() > 1 { View::Fleet } else { View::Overview },
            back: Vec::new(),
            prompt: None,
            help: false,
            fleet_selected: 0,
            traces: TracesUi::default(),
            alerts_selected: 0,
            engine_selected: 0,
            detail: None,
            replay: None,
            evals: EvalsUi::default(),
            last_dataset: String::new(),
            notice: None,
            look,
            now_unix_ms: 0,
            quit: false,
        }
    }

    /// The host the per-host views show (there is always at least one).
    pub fn host(&self) -> &Host {
        &self.hosts[self.focus.min(self.hosts.len().saturating_sub(1))]
    }
}
