//! Alerts: rules call [`AlertManager::raise`] and [`AlertManager::resolve`]; the manager folds duplicates into
//! one alert per key, keeps the firing -> acknowledged -> resolved lifecycle in SQLite, and fans every change
//! out to watchers ([`AlertManager::subscribe`]), the log and webhooks.
//!
//! Webhooks hear of new alerts, severity escalations, acknowledgements, resolutions and one-off alerts that
//! recur after an acknowledgement (not of every folded duplicate). Each (event, webhook) is delivered by a task
//! of its own, so `raise` never waits on the network; the events of one alert reach one webhook in order.
//! Deliveries run on the tokio runtime the manager was opened on (or, opened outside one, on a small runtime of
//! its own), so rules may raise from any thread: the request path, the sampler, the drift thread.
//! `raise`, `resolve` and `acknowledge` do one small SQLite write each (blocking, under the busy timeout); rules
//! evaluate every few seconds, so that is cheap.
mod budget;
mod model;
mod store;
mod webhook;

#[cfg(test)]
mod delivery_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;

pub use model::{
    Alert, AlertError, AlertEvent, AlertEventKind, AlertFilter, AlertState, Delivery, DeliveryStatus, Evidence, Raised,
    Severity, Summary,
};
pub use webhook::{WebhookConfig, WebhookPayload};

use crate::clock::unix_ms;
use crate::sync::MutexExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use store::Store;
use tokio::sync::{broadcast, oneshot, watch};
use webhook::{InFlight, Job, Webhook};

/// Watchers that fall further behind than this get `RecvError::Lagged` and should re-list.
const EVENTS_CAPACITY: usize = 256;

/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct AlertManager {
    inner: Arc<Inner>,
    /// The runtime deliveries run on when the manager was opened outside one; shut down with the last clone.
    /// Held here rather than in `Inner`, which delivery tasks hold: a runtime must not be dropped by its own task.
    _own_runtime: Option<Arc<OwnRuntime>>,
}

struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // Deliveries still under way are abandoned (as at a daemon stop); never blocks, even in async code.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether a raise that finds an acknowledged alert notifies again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recurrence {
    /// The rule's condition still holds: the acknowledgement covers it.
    Holds,
    /// A new one-off event (a change point, an anomalous request): fire again.
    Recurs,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<AlertEvent>,
    webhooks: Vec<Webhook>,
    client: reqwest::Client,
    /// Where delivery tasks run, captured at `open`: never the caller's context, which may have no runtime.
    runtime: tokio::runtime::Handle,
    /// Delivery tasks not yet finished, for [`AlertManager::wait_idle`].
    inflight: watch::Sender<usize>,
}

struct State {
    store: Store,
    /// Firing and acknowledged alerts by key. Resolved ones live only in the store.
    active: HashMap<String, Active>,
}

struct Active {
    alert: Alert,
    /// Per webhook: the end of the last delivery queued for this alert, which the next one waits for.
    lanes: Vec<Option<oneshot::Receiver<()>>>,
}

impl Active {
    fn new(alert: Alert, webhooks: usize) -> Active {
        Active { alert, lanes: (0..webhooks).map(|_| None).collect() }
    }
}

/// A failed write leaves the alert correct in memory and is logged: an alert must not be lost to a busy disk.
fn persist(store: &Store, alert: &Alert) {
    if let Err(e) = store.save(alert) {
        tracing::error!(alert = %alert.id, key = %alert.key, error = %e, "alert store write failed");
    }
}

impl AlertManager {
    /// Opens (creating if needed) the alert table in `path` and reloads the active alerts. Webhook deliveries
    /// run on the current tokio runtime; called outside one, the manager starts a one-thread runtime of its own.
    pub fn open(path: &Path, webhooks: Vec<WebhookConfig>) -> Result<AlertManager, AlertError> {
        let webhooks = webhooks.iter().map(Webhook::new).collect::<Result<Vec<_>, _>>()?;
        // A redirect would turn the POST into a GET; count it as a failed attempt instead.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlertError::Client(e.to_string()))?;
        let store = Store::open(path)?;
        let interrupted = store.fail_interrupted()?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "alert webhook deliveries cut short by the last stop were marked failed");
        }
        let active = store
            .active()?
            .into_iter()
            .map(|a| (a.key.clone(), Active::new(a, webhooks.len())))
            .collect::<HashMap<_, _>>();
        let (runtime, own_runtime) = match tokio::runtime::Handle::try_current() {
            Ok(handle) => (handle, None),
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("llmops-alerts")
                    .enable_all()
                    .build()
                    .map_err(|e| AlertError::Client(format!("cannot start the webhook runtime: {e}")))?;
                (runtime.handle().clone(), Some(Arc::new(OwnRuntime(Some(runtime)))))
            }
        };
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let inner = Inner {
            state: Mutex::new(State { store, active }),
            events,
            webhooks,
            client,
            runtime,
            inflight: watch::Sender::new(0),
        };
        Ok(AlertManager { inner: Arc::new(inner), _own_runtime: own_runtime })
    }

    /// Records that a rule's condition holds. A firing or acknowledged alert with the same key absorbs it
    /// (occurrences + 1, latest evidence and text, highest severity); otherwise a new firing alert starts.
    pub fn raise(&self, raised: Raised) -> Alert {
        self.raise_as(raised, Recurrence::Holds)
    }

    /// Records a one-off event (a change point, an anomalous request), which no later condition clears: like
    /// [`AlertManager::raise`], except that an acknowledged alert with the same key fires again (state firing,
    /// the acknowledgement cleared) and webhooks hear of it as `raised` anew. A firing one absorbs it silently.
    pub fn raise_recurring(&self, raised: Raised) -> Alert {
        self.raise_as(raised, Recurrence::Recurs)
    }

    fn raise_as(&self, raised: Raised, recurrence: Recurrence) -> Alert {
        let now = unix_ms();
        let mut guard = self.inner.lock();
        let State { store, active } = &mut *guard;
        if let Some(current) = active.get_mut(&raised.key) {
            let a = &mut current.alert;
            let refires = recurrence == Recurrence::Recurs && a.state == AlertState::Acknowledged;
            let rose = raised.severity > a.severity;
            a.severity = a.severity.max(raised.severity);
            a.occurrences = a.occurrences.saturating_add(1);
            a.evidence = raised.evidence;
            a.title = raised.title;
            a.message = raised.message;
            a.labels.extend(raised.labels);
            a.updated_at_unix_ms = now;
            let kind = if refires {
                a.state = AlertState::Firing;
                a.acknowledged_at_unix_ms = None;
                a.acknowledged_by = None;
                tracing::warn!(alert = %a.id, key = %a.key, severity = a.severity.as_str(), title = %a.title,
                    message = %a.message, "acknowledged alert fired again");
                self.notify(current, AlertEventKind::Raised);
                AlertEventKind::Raised
            } else {
                if rose {
                    tracing::warn!(alert = %a.id, key = %a.key, severity = a.severity.as_str(), title = %a.title,
                        "alert escalated");
                    self.notify(current, AlertEventKind::Updated);
                }
                AlertEventKind::Updated
            };
            let alert = current.alert.clone();
            persist(store, &alert);
            self.emit(kind, &alert);
            return alert;
        }
        let alert = Alert {
            id: uuid::Uuid::now_v7().to_string(),
            key: raised.key,
            rule: raised.rule,
            severity: raised.severity,
            state: AlertState::Firing,
            title: raised.title,
            message: raised.message,
            evidence: raised.evidence,
            started_at_unix_ms: now,
            updated_at_unix_ms: now,
            acknowledged_at_unix_ms: None,
            acknowledged_by: None,
            resolved_at_unix_ms: None,
            resolution: None,
            occurrences: 1,
            labels: raised.labels,
            deliveries: Vec::new(),
        };
        tracing::warn!(alert = %alert.id, key = %alert.key, rule = %alert.rule, severity = alert.severity.as_str(),
            title = %alert.title, message = %alert.message, "alert raised");
        let mut current = Active::new(alert, self.inner.webhooks.len());
        self.notify(&mut current, AlertEventKind::Raised);
        let alert = current.alert.clone();
        persist(store, &alert);
        active.insert(alert.key.clone(), current);
        self.emit(AlertEventKind::Raised, &alert);
        alert
    }

    /// Ends the active alert with this key, if any (rules call it whenever their condition clears).
    pub fn resolve(&self, key: &str, reason: &str) -> Option<Alert> {
        let now = unix_ms();
        let mut guard = self.inner.lock();
        let State { store, active } = &mut *guard;
        let mut current = active.remove(key)?;
        let a = &mut current.alert;
        a.state = AlertState::Resolved;
        a.resolved_at_unix_ms = Some(now);
        a.updated_at_unix_ms = now;
        a.resolution = Some(reason.to_string());
        tracing::info!(alert = %a.id, key = %a.key, reason, "alert resolved");
        self.notify(&mut current, AlertEventKind::Resolved);
        persist(store, &current.alert);
        self.emit(AlertEventKind::Resolved, &current.alert);
        Some(current.alert)
    }

    /// Marks an alert as seen by `by`. Acknowledging an acknowledged alert changes nothing.
    pub fn acknowledge(&self, id: &str, by: &str) -> Result<Alert, AlertError> {
        let now = unix_ms();
        let mut guard = self.inner.lock();
        let State { store, active } = &mut *guard;
        if let Some(current) = active.values_mut().find(|c| c.alert.id == id) {
            if current.alert.state == AlertState::Acknowledged {
                return Ok(current.alert.clone());
            }
            let a = &mut current.alert;
            a.state = AlertState::Acknowledged;
            a.acknowledged_at_unix_ms = Some(now);
            a.acknowledged_by = Some(by.to_string());
            a.updated_at_unix_ms = now;
            tracing::info!(alert = %a.id, key = %a.key, by, "alert acknowledged");
            self.notify(current, AlertEventKind::Acknowledged);
            persist(store, &current.alert);
            self.emit(AlertEventKind::Acknowledged, &current.alert);
            return Ok(current.alert.clone());
        }
        match store.load(id)? {
            Some(a) if a.state == AlertState::Resolved => Err(AlertError::AlreadyResolved(id.to_string())),
            _ => Err(AlertError::NotFound(id.to_string())),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let guard = self.inner.lock();
        if let Some(current) = guard.active.values().find(|c| c.alert.id == id) {
            return Ok(Some(current.alert.clone()));
        }
        guard.store.load(id)
    }

    /// Firing first, then acknowledged, then resolved; newest first within each.
    pub fn list(&self, filter: AlertFilter) -> Result<Vec<Alert>, AlertError> {
        self.inner.lock().store.list(filter)
    }

    /// The firing and acknowledged alerts, from memory (no I/O).
    pub fn active(&self) -> Vec<Alert> {
        let mut all: Vec<Alert> = self.inner.lock().active.values().map(|c| c.alert.clone()).collect();
        // The store's order: ids (UUIDv7) break ties between alerts started in the same millisecond.
        all.sort_by(|a, b| {
            let key = |x: &Alert| (x.state != AlertState::Firing, std::cmp::Reverse(x.started_at_unix_ms));
            key(a).cmp(&key(b)).then_with(|| b.id.cmp(&a.id))
        });
        all
    }

    /// Every change from now on. A receiver that falls behind gets `Lagged` and should re-list.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until every webhook delivery started so far has finished (delivered or out of attempts).
    pub async fn wait_idle(&self) {
        let mut idle = self.inner.inflight.subscribe();
        // Err only if the sender is gone, which `self` prevents.
        let _ = idle.wait_for(|n| *n == 0).await;
    }

    fn emit(&self, kind: AlertEventKind, alert: &Alert) {
        // Err just means nobody is watching.
        let _ = self.inner.events.send(AlertEvent { kind, alert: alert.clone() });
    }

    /// Queues `kind` for every webhook. Called with the state locked, so lanes are chained in event order.
    fn notify(&self, current: &mut Active, kind: AlertEventKind) {
        let inner = &self.inner;
        if inner.webhooks.is_empty() {
            return;
        }
        for (hook, webhook) in inner.webhooks.iter().enumerate() {
            let entry = Delivery {
                url: webhook.display.clone(),
                event: kind,
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_error: None,
                last_attempt_unix_ms: None,
            };
            set_delivery(&mut current.alert, hook, entry);
        }
        let body = match webhook::payload(kind, &current.alert) {
            Ok(body) => body,
            Err(e) => return self.fail_all(current, kind, &format!("payload: {e}")),
        };
        for hook in 0..inner.webhooks.len() {
            let (done, next) = oneshot::channel();
            let after = current.lanes.get_mut(hook).and_then(|lane| lane.replace(next));
            let job = Job {
                hook,
                event: kind,
                alert_id: current.alert.id.clone(),
                body: body.clone(),
                after,
                done,
                in_flight: InFlight::start(inner),
            };
            inner.runtime.spawn(webhook::deliver(inner.clone(), job));
        }
    }

    fn fail_all(&self, current: &mut Active, kind: AlertEventKind, error: &str) {
        tracing::error!(alert = %current.alert.id, error, "alert webhooks not notified");
        for d in current.alert.deliveries.iter_mut().filter(|d| d.event == kind) {
            d.status = DeliveryStatus::Failed;
            d.last_error = Some(error.to_string());
        }
    }
}

/// Puts `entry` in the alert's slot for webhook `hook`: by position if the URL matches (the usual case), else
/// by URL (the configuration changed since the alert started), else appended.
fn set_delivery(alert: &mut Alert, hook: usize, entry: Delivery) {
    let slot = match alert.deliveries.get(hook) {
        Some(d) if d.url == entry.url => Some(hook),
        _ => alert.deliveries.iter().position(|d| d.url == entry.url),
    };
    match slot.and_then(|i| alert.deliveries.get_mut(i)) {
        Some(d) => *d = entry,
        None => alert.deliveries.push(entry),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state usable: every update is a plain assignment.
        self.state.locked()
    }

    /// Stores the progress of one delivery, on the active alert in memory or on the stored (resolved) one.
    fn record_delivery(&self, id: &str, hook: usize, entry: Delivery) {
        let mut guard = self.lock();
        let State { store, active } = &mut *guard;
        if let Some(current) = active.values_mut().find(|c| c.alert.id == id) {
            set_delivery(&mut current.alert, hook, entry);
            return persist(store, &current.alert);
        }
        match store.load(id) {
            Ok(Some(mut alert)) => {
                set_delivery(&mut alert, hook, entry);
                persist(store, &alert);
            }
            Ok(None) => tracing::warn!(alert = %id, "delivery status for an alert that is not stored"),
            Err(e) => tracing::error!(alert = %id, error = %e, "alert store read failed"),
        }
    }
}
