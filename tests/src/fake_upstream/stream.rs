//! The SSE body of a streaming answer: one frame per event, paced by the behaviour's delays, with a guard
//! that counts how the stream ended (completed, cut on purpose, or dropped by the client).
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde_json::Value;

use super::reply::ReplyPlan;
use super::{Behavior, Shared};

const FLUSH_PAUSE: Duration = Duration::from_millis(10);

/// One step of the stream: wait, then send a frame or break the connection.
enum Step {
    Send { delay: Duration, frame: Bytes, last: bool },
    Abort,
}

fn data_frame(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// The steps for `plan` under `behavior`, decided up front so the stream itself only paces them.
fn plan_steps(plan: &ReplyPlan, behavior: &Behavior) -> Vec<Step> {
    let mut frames: Vec<(Duration, Bytes)> = Vec::new();
    // The first-token delay goes before the very first body byte, so it shows whichever chunk a client
    // counts as the first.
    let first_delay = Duration::from_millis(behavior.first_token_delay_ms);
    let token_delay = Duration::from_millis(behavior.token_delay_ms);
    if let Some(role) = plan.role_chunk() {
        frames.push((first_delay, data_frame(&role)));
    }
    for (index, token) in plan.tokens.iter().enumerate() {
        if behavior.cut_after_chunks == Some(index) {
            break;
        }
        let delay = match (index, frames.is_empty()) {
            (0, true) => first_delay,
            (0, false) => Duration::ZERO,
            _ => token_delay,
        };
        frames.push((delay, data_frame(&plan.token_chunk(token))));
    }
    let cut = behavior.cut_after_chunks.is_some();
    if !cut {
        frames.push((Duration::ZERO, data_frame(&plan.finish_chunk())));
        if plan.include_usage && !behavior.omit_usage {
            frames.push((Duration::ZERO, data_frame(&plan.usage_chunk())));
        }
        frames.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
    }
    let count = frames.len();
    let mut steps: Vec<Step> = frames
        .into_iter()
        .enumerate()
        .map(|(i, (delay, frame))| Step::Send { delay, frame, last: !cut && i + 1 == count })
        .collect();
    if cut {
        steps.push(Step::Abort);
    }
    steps
}

/// Counts a stream as cancelled when it is dropped before its last frame or its deliberate abort.
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
        }
    });
    Body::from_stream(stream)
}
