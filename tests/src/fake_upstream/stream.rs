//! The SSE body of a streaming answer: one frame per event, paced by the behaviour's delays, with a guard
//! that counts how the stream ended (completed, cut on purpose, or dropped by the client, stalled or not).
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde_json::Value;

use super::reply::ReplyPlan;
use super::{Behavior, Shared};

const FLUSH_PAUSE: Duration = Duration::from_millis(10);

/// One step of the stream: wait, then send a frame, break the connection, or go silent for good.
enum Step {
    Send { delay: Duration, frame: Bytes, last: bool },
    Abort,
    Stall,
}

/// How a stream ends when it does not end with `[DONE]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    Cut,
    Stall,
}

/// The `data:` payloads of `garbage_stream`: none of them is JSON.
const GARBAGE: [&str; 3] = ["this is not json", r#"{"id": "x", "choices": ["#, "<html>oops</html>"];

fn data_frame(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// Where the stream breaks off, if it does: after how many word chunks, and how. The smaller count wins;
/// at equal counts the stream stalls.
fn break_point(behavior: &Behavior) -> Option<(usize, Break)> {
    let cut = behavior.cut_after_chunks.map(|n| (n, Break::Cut));
    let stall = behavior.stall_after_chunks.map(|n| (n, Break::Stall));
    match (cut, stall) {
        (Some(cut), Some(stall)) => Some(if stall.0 <= cut.0 { stall } else { cut }),
        (cut, stall) => cut.or(stall),
    }
}

/// The steps for `plan` under `behavior`, decided up front so the stream itself only paces them.
fn plan_steps(plan: &ReplyPlan, behavior: &Behavior) -> Vec<Step> {
    let mut frames: Vec<(Duration, Bytes)> = Vec::new();
    // The first-token delay goes before the very first body byte, so it shows whichever chunk a client
    // counts as the first.
    let first_delay = Duration::from_millis(behavior.first_token_delay_ms);
    let token_delay = Duration::from_millis(behavior.token_delay_ms);
    let broken = if behavior.garbage_stream {
        for (index, garbage) in GARBAGE.iter().enumerate() {
            let delay = if index == 0 { first_delay } else { token_delay };
            frames.push((delay, Bytes::from(format!("data: {garbage}\n\n"))));
        }
        None
    } else {
        let broken = break_point(behavior);
        if let Some(role) = plan.role_chunk() {
            frames.push((first_delay, data_frame(&role)));
        }
        for (index, token) in plan.tokens.iter().enumerate() {
            if broken.is_some_and(|(after, _)| after == index) {
                break;
            }
            let delay = match (index, frames.is_empty()) {
                (0, true) => first_delay,
                (0, false) => Duration::ZERO,
                _ => token_delay,
            };
            frames.push((delay, data_frame(&plan.token_chunk(token))));
        }
        if broken.is_none() {
            frames.push((Duration::ZERO, data_frame(&plan.finish_chunk())));
            if plan.include_usage && !behavior.omit_usage {
                frames.push((Duration::ZERO, data_frame(&plan.usage_chunk())));
            }
        }
        broken.map(|(_, how)| how)
    };
    if broken.is_none() {
        frames.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
    }
    let count = frames.len();
    let mut steps: Vec<Step> = frames
        .into_iter()
        .enumerate()
        .map(|(i, (delay, frame))| Step::Send { delay, frame, last: broken.is_none() && i + 1 == count })
        .collect();
    match broken {
        Some(Break::Cut) => steps.push(Step::Abort),
        Some(Break::Stall) => steps.push(Step::Stall),
        None => {}
    }
    steps
}

/// Counts a stream as cancelled when it is dropped before its last frame or its deliberate abort (a stalled
/// stream included: it ends when the client goes away).
struct EndGuard {
    shared: Arc<Shared>,
    ended: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.shared.update_stats(|stats| stats.streams_cancelled += 1);
        }
    }
}

/// The streaming response body. Counters move before the frame that ends the stream is handed to the
/// server, so a client that has read `[DONE]` already sees `streams_completed` counted.
pub(crate) fn sse_body(plan: &ReplyPlan, behavior: &Behavior, shared: Arc<Shared>) -> Body {
    shared.update_stats(|stats| stats.streams_started += 1);
    let steps = plan_steps(plan, behavior).into_iter();
    let guard = EndGuard { shared, ended: false };
    let stream = futures::stream::unfold((steps, guard), |(mut steps, mut guard)| async move {
        match steps.next()? {
            Step::Send { delay, frame, last } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if last {
                    guard.ended = true;
                    guard.shared.update_stats(|stats| stats.streams_completed += 1);
                }
                Some((Ok(frame), (steps, guard)))
            }
            Step::Abort => {
                // Pausing lets the server flush the frames already sent; an error right behind them would
                // make it drop them unsent, and the client would see no response at all.
                tokio::time::sleep(FLUSH_PAUSE).await;
                guard.ended = true;
                guard.shared.update_stats(|stats| stats.streams_cut += 1);
                let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut_after_chunks");
                Some((Err(error), (steps, guard)))
            }
            Step::Stall => {
                guard.shared.update_stats(|stats| stats.streams_stalled += 1);
                // Never yields: the server keeps the connection open until the client closes it, and then
                // drops this body, whose guard counts the stream as cancelled.
                std::future::pending::<()>().await;
                None
            }
        }
    });
    Body::from_stream(stream)
}
