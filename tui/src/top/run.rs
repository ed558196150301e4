//! The main loop: waits for a key, an update or the next replay chunk, applies it, and redraws only when
//! something changed, at most `MAX_FPS` times a second. Nothing ticks while nothing happens.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::feed::Feed;
use super::host::HostUpdate;
use super::input;
use super::state::{App, Look, Notice, View};
use super::terminal::Console;
use super::ui::{self, Hitmap};
use crate::address::Target;
use crate::auth::BearerAuth;
use crate::tls::ClientTls;
use crate::when;

/// Updates waiting for the main loop; a full queue makes the feed wait (and the daemon drop a slow watch).
const UPDATE_QUEUE: usize = 4096;
/// Updates applied per wake before the screen gets a turn.
const BATCH_MAX: usize = 4096;
/// Data alone redraws at most ten times a second (a live tail at 100 req/s looks the same, for a fraction
/// of the CPU); a key or the mouse redraws at once.
const DATA_FRAME: Duration = Duration::from_millis(100);
/// Far enough never to fire: the deadline of a sleep branch that has nothing to wait for.
const NEVER: Duration = Duration::from_secs(86_400);

/// Runs the console until the user quits; prints why when it cannot.
pub async fn run(targets: Vec<Target>, auth: BearerAuth, tls: ClientTls, look: Look) -> ExitCode {
    let console = match Console::enter() {
        Ok(console) => console,
        Err(err) => {
            eprintln!("llmops-top: {err}");
            return ExitCode::from(2);
        }
    };
    let result = main_loop(console, targets, auth, tls, look).await;
    // The console is dropped (terminal restored) by now, so the message is readable.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("llmops-top: terminal error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn main_loop(
    mut console: Console,
    targets: Vec<Target>,
    auth: BearerAuth,
    tls: ClientTls,
    look: Look,
) -> std::io::Result<()> {
    let addresses: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let mut app = App::new(&addresses, look);
    let (sender, mut updates) = mpsc::channel::<(usize, HostUpdate)>(UPDATE_QUEUE);
    let feed = Feed::start(targets, auth, tls, sender);
    let mut events = EventStream::new();
    let mut hits = Hitmap::default();
    let mut clock = PlaybackClock::default();
    // Whether the screen is out of date, and whether the user is waiting for it.
    let (mut dirty, mut touched) = (true, true);
    let mut last_draw: Option<Instant> = None;
    let mut tail_followed = None;
    let mut evals_followed = None;
    while !app.quit {
        // The trace tail streams only while a view shows it (see `Feed::follow_traces`).
        let tail = matches!(app.view, View::Traces | View::Detail | View::Replay).then_some(app.focus);
        if tail != tail_followed {
            feed.follow_traces(tail);
            tail_followed = tail;
        }
        // Eval runs are polled only while their view is open.
        let evals = (app.view == View::Evals).then_some(app.focus);
        if evals != evals_followed {
            feed.follow_evals(evals);
            evals_followed = evals;
        }
        let now = Instant::now();
        touched |= clock.tick(&mut app, now);
        dirty |= touched;
        let frame_due = match last_draw {
            Some(at) if !touched => at + DATA_FRAME,
            _ => now,
        };
        if dirty && now >= frame_due {
            app.settle();
            app.now_unix_ms = when::now_unix_ms();
            console.terminal.draw(|frame| hits = ui::draw(frame, &app))?;
            (dirty, touched, last_draw) = (false, false, Some(now));
        }
        // Wake for a held-back frame or the next replay chunk, whichever is first; otherwise only for input.
        let mut wake = clock.next_due(&app).map(|due| now + due);
        if dirty {
            wake = Some(wake.map_or(frame_due, |at| at.min(frame_due)));
        }
        let deadline = tokio::time::Instant::from_std(wake.unwrap_or(now + NEVER));
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => touched |= handle_event(&mut app, &feed, &hits, &event),
                Some(Err(err)) => return Err(err),
                // The terminal went away: nothing more can be shown.
                None => app.quit = true,
            },
            Some((host, update)) = updates.recv() => {
                // Data the screen does not show (traces while on the overview, ...) changes the state only.
                dirty |= app.shows(host, &update);
                app.apply_update(host, update);
                // Everything already queued goes into the same frame.
                for _ in 0..BATCH_MAX {
                    let Ok((host, update)) = updates.try_recv() else { break };
                    dirty |= app.shows(host, &update);
                    app.apply_update(host, update);
                }
            }
            () = sleep_until(deadline), if wake.is_some() => {}
        }
    }
    drop(console);
    Ok(())
}

/// Applies a terminal event; true when the screen must be redrawn.
fn handle_event(app: &mut App, feed: &Feed, hits: &Hitmap, event: &Event) -> bool {
    if matches!(event, Event::Resize(..)) {
        return true;
    }
    let Some(intent) = input::intent(app, event) else { return false };
    for effect in app.apply(intent, hits) {
        if let Err(text) = feed.send(effect) {
            app.notice = Some(Notice { text, error: true });
        }
    }
    true
}

/// Feeds real elapsed time to a running playback.
#[derive(Debug, Default)]
struct PlaybackClock {
    /// When the playback last advanced; `None` while none runs, so a pause is not counted as play.
    last: Option<Instant>,
}

impl PlaybackClock {
    /// Advances a running playback to `now`; true when it showed more (or stopped).
    fn tick(&mut self, app: &mut App, now: Instant) -> bool {
        let Some(playback) = app.replay.as_mut().map(|r| &mut r.playback).filter(|p| !p.paused) else {
            self.last = None;
            return false;
        };
        let Some(last) = self.last.replace(now) else { return false };
        let before = (playback.shown, playback.paused);
        playback.advance(now - last);
        before != (playback.shown, playback.paused)
    }

    fn next_due(&self, app: &App) -> Option<Duration> {
        app.replay.as_ref().and_then(|r| r.playback.next_due())
    }
}

#[cfg(test)]
mod tests {
    use llmops_proto::v1 as pb;

    use super::*;
    use crate::top::state::{Playback, ReplayUi};

    #[test]
    fn playback_clock_counts_only_time_spent_playing() {
        let mut app = App::new(&["a".to_owned()], Look::default());
        let original = pb::Trace {
            response_text: "ab".into(),
            chunk_offsets_ms: vec![100.0, 200.0],
            latency_ms: 200.0,
            ..Default::default()
        };
        app.replay = Some(ReplayUi { playback: Playback::from_trace(&original), original, picker: None, rerun: None });
        let start = Instant::now();
        let mut clock = PlaybackClock::default();
        assert!(!clock.tick(&mut app, start), "the first tick only starts the clock");
        assert!(clock.tick(&mut app, start + Duration::from_millis(150)));
        let shown = |app: &App| app.replay.as_ref().map(|r| r.playback.shown);
        assert_eq!(shown(&app), Some(1));
        if let Some(replay) = app.replay.as_mut() {
            replay.playback.toggle();
        }
        assert!(!clock.tick(&mut app, start + Duration::from_secs(10)), "paused: nothing moves");
        assert_eq!(clock.next_due(&app), None);
        if let Some(replay) = app.replay.as_mut() {
            replay.playback.toggle();
        }
        clock.tick(&mut app, start + Duration::from_secs(20));
        assert_eq!(shown(&app), Some(1), "the pause is not counted as play");
        assert_eq!(clock.next_due(&app), Some(Duration::from_millis(50)));
    }
}
