//! Budget windows are calendar windows in UTC (a minute budget resets at :00, a day budget at 00:00Z). A test
//! that spends against one and checks what is left must run inside one window: these helpers make sure it
//! does, by computing the next reset from the clock (never guessing) and waiting it out when it is too close.
#![allow(dead_code)]

use std::time::Duration;

pub const MINUTE: Duration = Duration::from_secs(60);
pub const DAY: Duration = Duration::from_secs(86_400);
/// How long after a reset the test starts, when it waits one out: the daemon reads the clock a moment after us.
const AFTER_RESET: Duration = Duration::from_millis(250);

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Start (Unix ms) of the `window` containing `unix_ms`, as the daemon counts windows.
fn window_start(window: Duration, unix_ms: u64) -> u64 {
    let length = window.as_millis() as u64;
    unix_ms / length * length
}

/// How long to wait at `unix_ms` before `needed` fits before the next reset of `window`: zero if it fits now.
fn wait_before(window: Duration, needed: Duration, unix_ms: u64) -> Duration {
    let end = window_start(window, unix_ms) + window.as_millis() as u64;
    let left = Duration::from_millis(end - unix_ms);
    if left >= needed {
        Duration::ZERO
    } else {
        left + AFTER_RESET
    }
}

/// One window of budgets, entered with at least some time left in it.
pub struct Window {
    length: Duration,
    start: u64,
    needed: Duration,
}

impl Window {
    /// Returns once at least `needed` is left before the next reset of `window`: at once, unless a reset is
    /// closer than that, then just after it.
    pub async fn enter(window: Duration, needed: Duration) -> Window {
        assert!(needed < window / 2, "a test that needs {needed:?} does not fit a {window:?} window reliably");
        loop {
            let now = unix_ms();
            let wait = wait_before(window, needed, now);
            if wait.is_zero() {
                return Window { length: window, start: window_start(window, now), needed };
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Fails, saying why, if the window has ended: what the test saw may then span two windows.
    pub fn assert_still_inside(&self) {
        assert_eq!(
            window_start(self.length, unix_ms()),
            self.start,
            "the test took longer than the {:?} it reserved in this {:?} budget window, so its requests may \
             straddle a reset and its results say nothing",
            self.needed,
            self.length
        );
    }
}

#[test]
fn a_reset_too_close_is_waited_out_and_only_then() {
    let (needed, minute_ms) = (Duration::from_secs(15), 60_000);
    let at = |second: u64| 1_700_000_000 / 60 * minute_ms + second * 1000;
    assert_eq!(wait_before(MINUTE, needed, at(0)), Duration::ZERO);
    assert_eq!(wait_before(MINUTE, needed, at(45)), Duration::ZERO, "exactly 15 s left");
    assert_eq!(wait_before(MINUTE, needed, at(46)), Duration::from_secs(14) + AFTER_RESET);
    assert_eq!(window_start(MINUTE, at(59) + 999), at(0));
    assert_eq!(window_start(DAY, 86_400_000 * 3 + 5), 86_400_000 * 3, "UTC midnight");
    assert_eq!(wait_before(DAY, Duration::from_secs(300), 86_400_000 * 4 - 1000), Duration::from_secs(1) + AFTER_RESET);
}
