//! The trace under construction for one request, and the one place it is finished. Both answer paths
//! (whole and streamed) describe what the engine said as an [`AnswerSummary`]; the guard writes it into the
//! trace, and the trace is recorded exactly once: by `finish`/`fail`, or, when the request's future is
//! dropped because the client went away, by `Drop` as `cancelled`. Whoever started the request can ask for
//! the finished trace back ([`TraceGuard::hand_back`]): replay and evaluation runs read their result there.
use super::cache_path::{Fill, Stored};
use super::error::GatewayError;
use super::usage::{estimate_tokens, settle_tokens};
use crate::alerts::AlertManager;
use crate::budget::{Amount, Reservation};
use crate::cache::CachedBody;
use crate::drift::DriftMonitor;
use crate::pricing::Price;
use crate::telemetry::{EnergyTicket, Telemetry};
use crate::trace::{Attempt, Recorder, Trace, TraceStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// nginx's code for "client closed request", recorded on cancelled traces.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What watches finished requests besides the trace store.
pub struct Observers {
    pub telemetry: Arc<Telemetry>,
    pub drift: Arc<DriftMonitor>,
    pub alerts: AlertManager,
}

/// What an engine's answer said, as far as it got: the same for a whole answer and a stream.
#[derive(Debug, Default)]
pub struct AnswerSummary {
    pub text: String,
    pub finish_reason: String,
    /// The model the engine says answered, when it said.
    pub model: Option<String>,
    /// (prompt, completion) tokens as the engine reported them.
    pub usage: Option<(u64, u64)>,
    /// Completion tokens by the daemon's own count (stream chunks, or estimated from the text), used when the
    /// engine reported none.
    pub counted_output: u64,
    /// When each streamed chunk arrived, ms after the request did; empty for a whole answer.
    pub chunk_offsets_ms: Vec<f64>,
    /// Characters each of those chunks added.
    pub chunk_chars: Vec<u32>,
}

/// The finished trace, and the streamed text as it arrives, for a caller inside the daemon.
pub struct HandBack {
    pub trace: oneshot::Receiver<Trace>,
    /// Text of each streamed chunk, as the client gets it (unbounded: the caller drains it as it reads the
    /// response, and the answer itself is bounded by the request timeout and event size).
    pub chunks: mpsc::UnboundedReceiver<String>,
}

pub struct TraceGuard {
    trace: Option<Trace>,
    started: Instant,
    recorder: Recorder,
    observers: Arc<Observers>,
    /// Set while the request runs on an engine whose GPUs are measured.
    energy: Option<EnergyTicket>,
    /// The route counted as in flight, once the request was routed.
    route_in_flight: Option<String>,
    /// Budget held for the target serving the request; settled with what it used.
    reservation: Option<Reservation>,
    /// The serving target's price per token, for engines that charge by the token.
    price: Option<Price>,
    /// When the current attempt began, in ms after the request arrived.
    attempt_start_ms: f64,
    in_flight: Arc<AtomicU64>,
    hand_back: Option<oneshot::Sender<Trace>>,
    chunks: Option<mpsc::UnboundedSender<String>>,
    /// A cache miss that may be stored, and the answer to store once the request ends well.
    cache_fill: Option<(Fill, Option<CachedBody>)>,
}

impl TraceGuard {
    pub fn new(recorder: Recorder, observers: Arc<Observers>, in_flight: Arc<AtomicU64>, endpoint: &str) -> Self {
        in_flight.fetch_add(1, Ordering::Relaxed);
        let trace = Trace {
            id: uuid::Uuid::now_v7().to_string(),
            started_at_unix_ms: crate::clock::unix_ms(),
            endpoint: endpoint.to_string(),
            tenant: String::new(),
            ..Trace::default()
        };
        Self {
            trace: Some(trace),
            started: Instant::now(),
            recorder,
            observers,
            energy: None,
            route_in_flight: None,
            reservation: None,
            price: None,
            attempt_start_ms: 0.0,
            in_flight,
            hand_back: None,
            chunks: None,
            cache_fill: None,
        }
    }

    /// Keep this request's answer in the response cache if it ends well.
    pub fn fill_cache(&mut self, fill: Fill) {
        self.cache_fill = Some((fill, None));
    }

    /// The answer as the cache keeps it (only taken when `fill_cache` was called).
    pub fn cache_answer(&mut self, body: CachedBody) {
        if let Some((_, slot)) = &mut self.cache_fill {
            *slot = Some(body);
        }
    }

    /// Whether the answer is wanted for the cache (so the answer paths keep a copy only then).
    pub fn wants_cache_answer(&self) -> bool {
        self.cache_fill.is_some()
    }

    pub fn id(&self) -> &str {
        self.trace.as_ref().map_or("", |t| t.id.as_str())
    }

    /// Asks for the finished trace (once recorded, energy included) and the streamed text as it goes.
    pub fn hand_back(&mut self) -> HandBack {
        let (trace_sender, trace) = oneshot::channel();
        let (chunk_sender, chunks) = mpsc::unbounded_channel();
        self.hand_back = Some(trace_sender);
        self.chunks = Some(chunk_sender);
        HandBack { trace, chunks }
    }

    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    pub fn trace_mut(&mut self) -> &mut Trace {
        self.trace.get_or_insert_with(Trace::default)
    }

    /// Tells live viewers the request has started.
    pub fn announce(&self) {
        if let Some(trace) = &self.trace {
            self.recorder.started(trace);
        }
    }

    /// The target now serving the request: its budget reservation (replacing, and so releasing, an earlier
    /// target's) and its price.
    pub fn serve_from(&mut self, reservation: Reservation, price: Option<Price>) {
        self.reservation = Some(reservation);
        self.price = price;
    }

    /// Gives back the budget held for a target that did not serve.
    pub fn release_reservation(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            reservation.release();
        }
    }

    /// Counts the request as in flight on `route` until it ends.
    pub fn enter_route(&mut self, route: &str) {
        if self.route_in_flight.is_none() {
            self.observers.telemetry.requests.started(route);
            self.route_in_flight = Some(route.to_string());
        }
    }

    /// Tokens generated just now, for the request's share of its GPU's energy.
    pub fn add_tokens(&self, tokens: u64) {
        if let (Some(ticket), true) = (&self.energy, tokens > 0) {
            ticket.add_tokens(tokens);
        }
    }

    /// Streamed text as the client gets it, for a caller that asked for it back.
    pub fn chunk(&self, text: &str) {
        if let (Some(chunks), false) = (&self.chunks, text.is_empty()) {
            // The caller may have stopped reading; the trace still gets everything.
            let _ = chunks.send(text.to_string());
        }
    }

    /// A target that was not asked (breaker open, budget, overload), and why.
    pub fn skip(&mut self, engine: &str, model: &str, reason: String) {
        let start_offset_ms = self.elapsed_ms();
        self.trace_mut().attempts.push(Attempt {
            engine: engine.to_string(),
            model: model.to_string(),
            start_offset_ms,
            error: reason,
            ..Attempt::default()
        });
    }

    /// An engine is asked now: a new attempt, and the engine and model the trace names from here on. The
    /// first metered engine keeps the energy share: a fallback after a failed attempt adds to the same one.
    pub fn start_attempt(&mut self, engine: &str, model: &str) {
        self.attempt_start_ms = self.elapsed_ms();
        let start_offset_ms = self.attempt_start_ms;
        let trace = self.trace_mut();
        trace.attempts.push(Attempt {
            engine: engine.to_string(),
            model: model.to_string(),
            start_offset_ms,
            ..Attempt::default()
        });
        trace.engine = engine.to_string();
        trace.model_served = model.to_string();
        if self.energy.is_none() {
            self.energy = self.observers.telemetry.energy.begin(engine);
        }
    }

    /// The engine answered with this HTTP status (the body may still fail).
    pub fn attempt_status(&mut self, upstream_status: u16) {
        if let Some(attempt) = self.trace_mut().attempts.last_mut() {
            attempt.upstream_status = upstream_status;
        }
    }

    /// The current attempt is over: its latency, and its error if it failed.
    pub fn end_attempt(&mut self, error: Option<String>) {
        let latency_ms = self.elapsed_ms() - self.attempt_start_ms;
        if let Some(attempt) = self.trace_mut().attempts.last_mut() {
            attempt.latency_ms = latency_ms;
            if let Some(error) = error {
                attempt.error = error;
            }
        }
    }

    /// Writes what the engine said into the trace: text, model, finish reason, token counts and timing.
    pub fn record_answer(&mut self, answer: AnswerSummary) {
        let first_chunk_ms = answer.chunk_offsets_ms.first().copied();
        let attempt_start_ms = self.attempt_start_ms;
        let trace = self.trace_mut();
        if let Some(attempt) = trace.attempts.last_mut() {
            attempt.ttft_ms = first_chunk_ms.map(|first| first - attempt_start_ms);
        }
        if let Some(model) = answer.model {
            trace.model_served = model;
        }
        trace.ttft_ms = first_chunk_ms;
        trace.finish_reason = answer.finish_reason;
        trace.response_text = answer.text;
        trace.chunk_offsets_ms = answer.chunk_offsets_ms;
        trace.chunk_chars = answer.chunk_chars;
        settle_tokens(trace, answer.usage, answer.counted_output);
    }

    pub fn finish(mut self, status: TraceStatus, http_status: u16) {
        self.record(status, http_status);
    }

    /// Records a failure before anything reached the client: `rejected` if no engine was tried, else `error`.
    pub fn fail(mut self, error: &GatewayError) {
        let trace = self.trace_mut();
        trace.error_type = error.error_type().to_string();
        trace.error_message = error.message();
        let status = if trace.attempts.is_empty() { TraceStatus::Rejected } else { TraceStatus::Error };
        self.record(status, error.status().as_u16());
    }

    /// Records a stream that failed after the client got its 200: traced like the same failure without a
    /// stream (type and message from the error), with the 200 the client got and finish reason `error`.
    pub fn fail_streamed(mut self, error: &GatewayError) {
        let trace = self.trace_mut();
        trace.error_type = error.error_type().to_string();
        trace.error_message = error.message();
        trace.finish_reason = "error".into();
        self.record(TraceStatus::Error, 200);
    }

    fn record(&mut self, status: TraceStatus, http_status: u16) {
        let Some(mut trace) = self.trace.take() else { return };
        trace.status = status;
        trace.http_status = http_status;
        trace.latency_ms = self.elapsed_ms();
        trace.ended_at_unix_ms = crate::clock::unix_ms();
        if let (None, Some(price)) = (trace.cost_usd, self.price) {
            trace.cost_usd = Some(price.cost_usd(trace.input_tokens, trace.output_tokens, 0));
        }
        // Neither priced per token nor on a measured GPU (e.g. the embedded engine on CPU): nothing to charge.
        if trace.cost_usd.is_none() && self.energy.is_none() {
            trace.cost_usd = Some(0.0);
        }
        let stored = match (status, self.cache_fill.take()) {
            (TraceStatus::Ok, Some((fill, Some(body)))) => fill.store(body, &trace),
            _ => None,
        };
        if let Some(outcome) = trace.cache.as_mut() {
            outcome.stored = stored.is_some();
        }
        self.observers.telemetry.requests.observe_trace(&trace);
        self.observers.drift.observe(&trace);
        let settlement = Settlement {
            stored,
            reservation: self.reservation.take(),
            observers: self.observers.clone(),
            recorder: self.recorder.clone(),
            hand_back: self.hand_back.take(),
        };
        match self.energy.take() {
            // Completed after the next sample, with its share of the energy used until it ended.
            Some(ticket) => {
                self.observers.telemetry.energy.finish(ticket, trace, Box::new(move |trace| settlement.complete(trace)))
            }
            None => settlement.complete(trace),
        }
    }
}

/// What happens once a trace's cost is known: the budget is settled (alerting at 80% and 100%), the cost
/// counted, the trace stored and handed back to whoever asked.
struct Settlement {
    /// A cache entry made from this answer: it learns the final cost.
    stored: Option<Stored>,
    reservation: Option<Reservation>,
    observers: Arc<Observers>,
    recorder: Recorder,
    hand_back: Option<oneshot::Sender<Trace>>,
}

impl Settlement {
    fn complete(self, trace: Trace) {
        if let Some(reservation) = self.reservation {
            let actual =
                Amount { usd: trace.cost_usd.unwrap_or(0.0), tokens: trace.input_tokens + trace.output_tokens };
            for alert in reservation.settle(actual, crate::clock::unix_ms()) {
                self.observers.alerts.raise((&alert).into());
            }
        }
        if let Some(stored) = self.stored {
            stored.settle(trace.cost_usd.unwrap_or(0.0));
        }
        self.observers.telemetry.requests.observe_cost(&trace);
        match self.hand_back {
            Some(hand_back) => {
                self.recorder.finished(trace.clone());
                let _ = hand_back.send(trace);
            }
            None => self.recorder.finished(trace),
        }
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let reserved = self.reservation.as_ref().map_or(0, |r| r.estimate().tokens);
        if let Some(trace) = self.trace.as_mut() {
            trace.error_type = "cancelled".into();
            trace.error_message = "client disconnected before the answer was complete".into();
            if let Some(attempt) = trace.attempts.last_mut().filter(|a| a.error.is_empty()) {
                attempt.error = "cancelled: client disconnected".into();
            }
            // An engine was asked and may have generated (a hosted one bills it) but no count arrived: settle the
            // estimate the request reserved, never $0 and 0 tokens.
            if !trace.attempts.is_empty() && trace.input_tokens == 0 && trace.output_tokens == 0 {
                let output = reserved.saturating_sub(estimate_tokens(&trace.prompt_text));
                settle_tokens(trace, None, output);
            }
            self.record(TraceStatus::Cancelled, CLIENT_CLOSED_REQUEST);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(route) = self.route_in_flight.take() {
            self.observers.telemetry.requests.finished(&route);
        }
    }
}
