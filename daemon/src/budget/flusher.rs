//! Saves a ledger's counters on a thread of its own, every few hundred ms and once more at shutdown.
use super::ledger::Ledger;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// Flushes a ledger every `every` on a thread of its own; dropping it stops the thread after a last flush.
pub struct Flusher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(ledger: Ledger, every: Duration) -> std::io::Result<Flusher> {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new().name("budget-flush".into()).spawn(move || loop {
            let last = !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout));
            if let Err(error) = ledger.flush() {
                tracing::error!(%error, "could not save budget counters");
            }
            if last {
                break;
            }
        })?;
        Ok(Flusher { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("budget flush thread panicked");
            }
        }
    }
}
