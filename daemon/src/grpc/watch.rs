//! One convention for every `Watch*` stream (traces, telemetry, budgets, alerts). Each viewer reads changes
//! through a bounded buffer of its own, so the daemon never waits for it. A viewer that falls further behind
//! than its buffer holds gets one message whose `missed` field says how many changes it missed, and the stream
//! ends there (it lists and watches again to catch up).
//!
//! The buffer is a `broadcast` receiver where changes are evented (traces, telemetry, alerts), or a
//! [`channel`] filled by a task that polls (budgets).
use crate::shutdown::Shutdown;
use futures::Stream;
use llmops_proto::v1 as pb;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;

pub type WatchStream<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// A watch stream's message: each kind has a `missed` field.
pub trait WatchMessage: Send + 'static {
    /// The message that tells a viewer it missed `missed` changes; the stream ends after it.
    fn missed(missed: u64) -> Self;

    /// A status to end the stream with after that message, for clients from before the message could say so.
    fn legacy_ending(_missed: u64) -> Option<Status> {
        None
    }
}

impl WatchMessage for pb::TraceEvent {
    fn missed(missed: u64) -> Self {
        pb::TraceEvent { missed, ..pb::TraceEvent::default() }
    }

    /// `TraceEvent.missed` is newer than the traces watch: older clients learn of it from this status.
    fn legacy_ending(missed: u64) -> Option<Status> {
        Some(Status::resource_exhausted(format!(
            "viewer too slow: dropped after missing {missed} trace events; reconnect to resume"
        )))
    }
}

impl WatchMessage for pb::AlertEvent {
    fn missed(missed: u64) -> Self {
        pb::AlertEvent { missed, ..pb::AlertEvent::default() }
    }
}

impl WatchMessage for pb::TelemetryUpdate {
    fn missed(missed: u64) -> Self {
        pb::TelemetryUpdate { missed, ..pb::TelemetryUpdate::default() }
    }
}

impl WatchMessage for pb::BudgetUpdate {
    /// Timed like every budget update.
    fn missed(missed: u64) -> Self {
        pb::BudgetUpdate { at_unix_ms: crate::clock::unix_ms(), budgets: Vec::new(), missed }
    }
}

/// What a viewer's buffer has next.
pub enum Next<T> {
    Change(T),
    /// The viewer fell behind and missed this many changes.
    Missed(u64),
    /// No more changes will come.
    Closed,
}

/// One viewer's bounded buffer of changes.
pub trait Changes: Send + 'static {
    type Change: Send;

    fn next(&mut self) -> impl Future<Output = Next<Self::Change>> + Send;
}

impl<T: Clone + Send + 'static> Changes for broadcast::Receiver<T> {
    type Change = T;

    async fn next(&mut self) -> Next<T> {
        match self.recv().await {
            Ok(change) => Next::Change(change),
            Err(broadcast::error::RecvError::Lagged(missed)) => Next::Missed(missed),
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

/// The stream for one viewer: `render` of each change until the buffer closes or the daemon shuts down; for a
/// viewer that fell behind, the message that says how many it missed, then the end.
pub fn follow<C, M, F>(changes: C, shutdown: Shutdown, render: F) -> WatchStream<M>
where
    C: Changes,
    M: WatchMessage,
    F: FnMut(C::Change) -> M + Send + 'static,
{
    Box::pin(futures::stream::unfold(Follow::Live(changes, shutdown, render), |state| async move {
        match state {
            Follow::Live(mut changes, mut shutdown, mut render) => {
                let next = tokio::select! {
                    next = changes.next() => next,
                    _ = shutdown.wait() => return None,
                };
                match next {
                    Next::Change(change) => Some((Ok(render(change)), Follow::Live(changes, shutdown, render))),
                    Next::Missed(missed) => Some((Ok(M::missed(missed)), Follow::Dropped(missed))),
                    Next::Closed => None,
                }
            }
            Follow::Dropped(missed) => M::legacy_ending(missed).map(|status| (Err(status), Follow::Ended)),
            Follow::Ended => None,
        }
    }))
}

enum Follow<C, F> {
    Live(C, Shutdown, F),
    /// Told what it missed; only a legacy ending may follow.
    Dropped(u64),
    Ended,
}

/// A bounded buffer for changes a task polls for rather than receives: the task [`Sender::offer`]s each one and
/// never waits for the viewer.
pub fn channel<T: Send + 'static>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (changes, buffered) = mpsc::channel(capacity);
    let (drop_viewer, dropped) = oneshot::channel();
    (Sender { changes, drop_viewer }, Receiver { buffered, dropped })
}

pub struct Sender<T> {
    changes: mpsc::Sender<T>,
    drop_viewer: oneshot::Sender<u64>,
}

/// What became of an offered change.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Buffered,
    /// The viewer's buffer is full: the change was not kept.
    Full,
    /// The viewer went away.
    Gone,
}

impl<T: Send + 'static> Sender<T> {
    pub fn offer(&self, change: T) -> Offer {
        match self.changes.try_send(change) {
            Ok(()) => Offer::Buffered,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }

    /// Drops the viewer: once it has read what is buffered, it is told it missed `missed` changes.
    pub fn drop_viewer(self, missed: u64) {
        let _ = self.drop_viewer.send(missed);
    }

    /// Resolves when the viewer has gone away.
    pub async fn closed(&self) {
        self.changes.closed().await;
    }
}

pub struct Receiver<T> {
    buffered: mpsc::Receiver<T>,
    dropped: oneshot::Receiver<u64>,
}

impl<T: Send + 'static> Changes for Receiver<T> {
    type Change = T;

    async fn next(&mut self) -> Next<T> {
        match self.buffered.recv().await {
            Some(change) => Next::Change(change),
            // The sender is gone: dropped for being slow, or done.
            None => self.dropped.try_recv().map_or(Next::Closed, Next::Missed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn update(at_unix_ms: i64) -> pb::BudgetUpdate {
        pb::BudgetUpdate { at_unix_ms, ..pb::BudgetUpdate::default() }
    }

    async fn collect<M: std::fmt::Debug>(stream: WatchStream<M>) -> Vec<Result<M, tonic::Code>> {
        stream.map(|item| item.map_err(|status| status.code())).collect().await
    }

    #[tokio::test]
    async fn a_viewer_gets_each_change_until_the_source_closes() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let (sender, receiver) = broadcast::channel(8);
        let stream = follow(receiver, shutdown, update);
        for at in [1, 2] {
            sender.send(at).expect("a viewer");
        }
        drop(sender);
        assert_eq!(collect(stream).await, [Ok(update(1)), Ok(update(2))]);
    }

    #[tokio::test]
    async fn a_slow_viewer_is_told_what_it_missed_and_dropped() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let (sender, receiver) = broadcast::channel(2);
        let stream = follow(receiver, shutdown.clone(), update);
        for at in 0..5 {
            sender.send(at).expect("a viewer");
        }
        assert_eq!(collect(stream).await, [Ok(pb::BudgetUpdate::missed(3))], "nothing after the missed message");
        // The traces watch also ends as it did before its messages had `missed`.
        let traces = follow(sender.subscribe(), shutdown, |_: i64| pb::TraceEvent::default());
        for at in 0..5 {
            sender.send(at).expect("a viewer");
        }
        let items = collect(traces).await;
        assert_eq!(items, [Ok(pb::TraceEvent::missed(3)), Err(tonic::Code::ResourceExhausted)]);
    }

    #[tokio::test]
    async fn shutdown_ends_every_watch() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (_sender, receiver) = broadcast::channel::<i64>(2);
        let stream = follow(receiver, shutdown, update);
        trigger.fire();
        assert!(collect(stream).await.is_empty());
    }

    #[tokio::test]
    async fn a_polled_viewer_reads_its_buffer_then_what_it_missed() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let (sender, receiver) = channel(2);
        assert_eq!(
            (sender.offer(1), sender.offer(2), sender.offer(3)),
            (Offer::Buffered, Offer::Buffered, Offer::Full)
        );
        sender.drop_viewer(1);
        let items = collect(follow(receiver, shutdown.clone(), update)).await;
        assert_eq!(items, [Ok(update(1)), Ok(update(2)), Ok(pb::BudgetUpdate::missed(1))]);
        let (sender, receiver) = channel::<i64>(2);
        drop(receiver);
        assert_eq!(sender.offer(1), Offer::Gone);
        let (sender, receiver) = channel(2);
        assert_eq!(sender.offer(7), Offer::Buffered);
        drop(sender);
        assert_eq!(collect(follow(receiver, shutdown, update)).await, [Ok(update(7))], "done, not dropped");
    }
}
