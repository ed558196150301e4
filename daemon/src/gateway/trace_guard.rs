//! The trace under construction for one request. It is recorded exactly once: by `finish`, or, when the
//! request's future is dropped because the client went away, by `Drop` as `cancelled`.
use super::error::GatewayError;
use crate::alerts::{AlertManager, Evidence, Raised, Severity};
use crate::budget::BudgetAlert;
use crate::budget::{Amount, Reservation};
use crate::drift::DriftMonitor;
use crate::pricing::Price;
use crate::telemetry::{EnergyTicket, Telemetry};
use crate::trace::{Attempt, Recorder, Trace, TraceStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// nginx's code for "client closed request", recorded on cancelled traces.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What watches finished requests besides the trace store.
pub struct Observers {
    pub telemetry: Arc<Telemetry>,
    pub drift: Arc<DriftMonitor>,
    pub alerts: AlertManager,
}

/// A budget crossed 80% or 100% of its limit in its current window.
fn budget_alert(alert: &BudgetAlert) -> Raised {
    let percent = (alert.threshold * 100.0).round();
    let title = format!("budget {} at {percent}%", alert.budget);
    Raised {
        key: format!("budget:{}:{}:{percent}", alert.budget, alert.window_start),
        rule: "budget".into(),
        severity: if alert.threshold >= 1.0 { Severity::Critical } else { Severity::Warning },
        message: format!(
            "{title}: {} used in the window that started at {}",
            alert.amounts(),
            crate::budget::rfc3339(alert.window_start)
        ),
        title,
        evidence: Evidence {
            statistic: "budget_used_fraction".into(),
            value: alert.used / alert.limit.max(f64::MIN_POSITIVE),
            threshold: alert.threshold,
            ..Evidence::default()
        },
        labels: [("budget".to_string(), alert.budget.clone())].into(),
    }
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
    in_flight: Arc<AtomicU64>,
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
            in_flight,
        }
    }

    pub fn id(&self) -> &str {
        self.trace.as_ref().map_or("", |t| t.id.as_str())
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

    /// Meters the request's energy on `engine`'s GPUs. The first metered engine keeps it: a fallback after
    /// a failed attempt goes on adding to the same share.
    pub fn meter_energy(&mut self, engine: &str) {
        if self.energy.is_none() {
            self.energy = self.observers.telemetry.energy.begin(engine);
        }
    }

    /// Tokens generated just now, for the request's share of its GPU's energy.
    pub fn add_tokens(&self, tokens: u64) {
        if let (Some(ticket), true) = (&self.energy, tokens > 0) {
            ticket.add_tokens(tokens);
        }
    }

    pub fn push_attempt(&mut self, attempt: Attempt) {
        self.trace_mut().attempts.push(attempt);
    }

    pub fn finish(mut self, status: TraceStatus, http_status: u16) {
        self.record(status, http_status);
    }

    /// Records a failure: `rejected` if no engine was tried, else `error`.
    pub fn fail(mut self, error: &GatewayError) {
        let trace = self.trace_mut();
        trace.error_type = error.error_type().to_string();
        trace.error_message = error.message();
        let status = if trace.attempts.is_empty() { TraceStatus::Rejected } else { TraceStatus::Error };
        self.record(status, error.status().as_u16());
    }

    fn record(&mut self, status: TraceStatus, http_status: u16) {
        if let Some(mut trace) = self.trace.take() {
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
            self.observers.telemetry.requests.observe_trace(&trace);
            self.observers.drift.observe(&trace);
            let recorder = self.recorder.clone();
            let alerts = self.observers.alerts.clone();
            let observers = self.observers.clone();
            let reservation = self.reservation.take();
            // Settled once the cost is known: for GPU engines, after the energy of the last interval is in.
            let finalize = move |trace: Trace| {
                if let Some(reservation) = reservation {
                    let actual =
                        Amount { usd: trace.cost_usd.unwrap_or(0.0), tokens: trace.input_tokens + trace.output_tokens };
                    for alert in reservation.settle(actual, crate::clock::unix_ms()) {
                        alerts.raise(budget_alert(&alert));
                    }
                }
                observers.telemetry.requests.observe_cost(&trace);
                recorder.finished(trace);
            };
            match self.energy.take() {
                // Written after the next sample, with its share of the energy used until it ended.
                Some(ticket) => self.observers.telemetry.energy.finish(ticket, trace, Box::new(finalize)),
                None => finalize(trace),
            }
        }
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Some(trace) = self.trace.as_mut() {
            trace.error_type = "cancelled".into();
            trace.error_message = "client disconnected before the answer was complete".into();
            if let Some(attempt) = trace.attempts.last_mut().filter(|a| a.error.is_empty()) {
                attempt.error = "cancelled: client disconnected".into();
            }
            // An engine was asked and may have generated (a hosted one bills it) but no count arrived: settle the
            // estimate the request reserved, never $0 and 0 tokens.
            if !trace.attempts.is_empty() && trace.input_tokens == 0 && trace.output_tokens == 0 {
                let reserved = self.reservation.as_ref().map_or(0, |r| r.estimate().tokens);
                trace.input_tokens = super::proxy::estimate_tokens(&trace.prompt_text);
                trace.output_tokens = reserved.saturating_sub(trace.input_tokens);
                trace.tokens_estimated = true;
            }
            self.record(TraceStatus::Cancelled, CLIENT_CLOSED_REQUEST);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(route) = self.route_in_flight.take() {
            self.observers.telemetry.requests.finished(&route);
        }
    }
}
