//! Replaying a recorded answer at its original chunk timing. Time only moves through `advance`, which the
//! main loop calls with real elapsed time; `next_due` tells it how long to sleep until something changes.
use std::time::Duration;

use llmops_proto::v1 as pb;

use super::state::{Chunk, Playback};

const MIN_SPEED: f64 = 0.25;
const MAX_SPEED: f64 = 16.0;

impl Playback {
    /// The trace's answer cut into its recorded chunks. Without per-chunk sizes the text is spread evenly over
    /// the recorded offsets; an answer that was not streamed is one chunk arriving at the trace's latency.
    pub fn from_trace(trace: &pb::Trace) -> Self {
        let chars: Vec<char> = trace.response_text.chars().collect();
        let offsets = &trace.chunk_offsets_ms;
        let chunks = if offsets.is_empty() {
            vec![Chunk { at_ms: trace.latency_ms.max(0.0), text: trace.response_text.clone() }]
        } else if trace.chunk_chars.is_empty() {
            let count = offsets.len();
            offsets
                .iter()
                .enumerate()
                .map(|(i, &at_ms)| {
                    let (start, end) = (i * chars.len() / count, (i + 1) * chars.len() / count);
                    Chunk { at_ms, text: chars[start..end].iter().collect() }
                })
                .collect()
        } else {
            split_by_sizes(&chars, offsets, &trace.chunk_chars)
        };
        let last_chunk = chunks.iter().map(|c| c.at_ms).fold(0.0, f64::max);
        Self {
            chunks,
            shown: 0,
            position_ms: 0.0,
            total_ms: trace.latency_ms.max(last_chunk),
            speed: 1.0,
            paused: false,
        }
    }

    /// Moves the position on by `elapsed` real time at the current speed; pauses at the end.
    pub fn advance(&mut self, elapsed: Duration) {
        if self.paused {
            return;
        }
        let position = self.position_ms + elapsed.as_secs_f64() * 1000.0 * self.speed;
        self.seek(position.min(self.total_ms));
        if self.is_done() {
            self.paused = true;
        }
    }

    /// Pause or play; playing from the end starts over.
    pub fn toggle(&mut self) {
        if self.paused && self.is_done() {
            self.seek(0.0);
            self.paused = false;
        } else {
            self.paused = !self.paused;
        }
    }

    pub fn faster(&mut self) {
        self.speed = (self.speed * 2.0).clamp(MIN_SPEED, MAX_SPEED);
    }

    pub fn slower(&mut self) {
        self.speed = (self.speed / 2.0).clamp(MIN_SPEED, MAX_SPEED);
    }

    /// Pauses and jumps to the next chunk (or the end), or back to just before the last chunk shown.
    pub fn step(&mut self, forward: bool) {
        self.paused = true;
        if forward {
            let next = self.chunks.iter().map(|c| c.at_ms).find(|&at| at > self.position_ms);
            self.seek(next.unwrap_or(self.total_ms));
            return;
        }
        let last_shown = self.shown.checked_sub(1).map(|last| self.chunks[last].at_ms);
        let previous =
            last_shown.and_then(|last| self.chunks.iter().map(|c| c.at_ms).filter(|&at| at < last).reduce(f64::max));
        match previous {
            Some(at) => self.seek(at),
            None => {
                // Back to the very start, before any chunk (even one recorded at 0 ms).
                self.seek(0.0);
                self.shown = 0;
            }
        }
    }

    /// Real time until the next chunk (or the end) at the current speed; `None` while paused or done.
    pub fn next_due(&self) -> Option<Duration> {
        if self.paused || self.is_done() {
            return None;
        }
        let next_ms = self.chunks.get(self.shown).map_or(self.total_ms, |c| c.at_ms);
        let wait_ms = ((next_ms - self.position_ms) / self.speed).max(0.0);
        Some(Duration::from_secs_f64(wait_ms / 1000.0))
    }

    /// 0 at the start, 1 at the end.
    pub fn progress(&self) -> f64 {
        if self.total_ms <= 0.0 {
            return if self.shown == self.chunks.len() { 1.0 } else { 0.0 };
        }
        (self.position_ms / self.total_ms).clamp(0.0, 1.0)
    }

    pub fn text_shown(&self) -> String {
        self.chunks[..self.shown].iter().map(|c| c.text.as_str()).collect()
    }

    pub fn is_done(&self) -> bool {
        self.position_ms >= self.total_ms && self.shown == self.chunks.len()
    }

    fn seek(&mut self, position_ms: f64) {
        self.position_ms = position_ms;
        self.shown = self.chunks.iter().take_while(|c| c.at_ms <= position_ms).count();
    }
}

/// Chunks of the recorded sizes; text beyond the sizes goes to the last chunk, offsets beyond them get none.
fn split_by_sizes(chars: &[char], offsets: &[f64], sizes: &[u32]) -> Vec<Chunk> {
    let mut start = 0;
    let mut chunks: Vec<Chunk> = offsets
        .iter()
        .enumerate()
        .map(|(i, &at_ms)| {
            let size = sizes.get(i).map_or(0, |&s| s as usize);
            let end = (start + size).min(chars.len());
            let text = chars[start..end].iter().collect();
            start = end;
            Chunk { at_ms, text }
        })
        .collect();
    if let Some(last) = chunks.last_mut() {
        last.text.extend(&chars[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(text: &str, offsets: &[f64], sizes: &[u32], latency_ms: f64) -> Playback {
        Playback::from_trace(&pb::Trace {
            response_text: text.into(),
            chunk_offsets_ms: offsets.to_vec(),
            chunk_chars: sizes.to_vec(),
            latency_ms,
            ..pb::Trace::default()
        })
    }

    fn texts(playback: &Playback) -> Vec<&str> {
        playback.chunks.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn chunks_follow_recorded_sizes() {
        let playback = streamed("héllo world", &[100.0, 200.0, 300.0], &[2, 4, 5], 350.0);
        assert_eq!(texts(&playback), ["hé", "llo ", "world"]);
        assert_eq!(playback.total_ms, 350.0);
        let short = streamed("abcdef", &[1.0, 2.0], &[2, 1], 5.0);
        assert_eq!(texts(&short), ["ab", "cdef"], "the rest goes to the last chunk");
    }

    #[test]
    fn without_sizes_text_is_spread_evenly() {
        let playback = streamed("abcdef", &[10.0, 20.0, 30.0], &[], 40.0);
        assert_eq!(texts(&playback), ["ab", "cd", "ef"]);
    }

    #[test]
    fn unstreamed_answer_is_one_chunk_at_the_latency() {
        let playback = streamed("whole", &[], &[], 250.0);
        assert_eq!(playback.chunks, [Chunk { at_ms: 250.0, text: "whole".into() }]);
    }

    #[test]
    fn advance_shows_chunks_in_time_and_pauses_at_the_end() {
        let mut playback = streamed("abc", &[100.0, 200.0, 300.0], &[1, 1, 1], 400.0);
        assert_eq!(playback.next_due(), Some(Duration::from_millis(100)));
        playback.advance(Duration::from_millis(150));
        assert_eq!((playback.shown, playback.text_shown().as_str()), (1, "a"));
        playback.faster();
        assert_eq!(playback.next_due(), Some(Duration::from_millis(25)), "50 ms of recording at 2x");
        playback.advance(Duration::from_millis(100));
        assert_eq!(playback.text_shown(), "abc");
        assert!(!playback.paused, "the recording runs on to its latency");
        assert_eq!(playback.next_due(), Some(Duration::from_millis(25)));
        playback.advance(Duration::from_secs(1));
        assert!(playback.paused && playback.is_done());
        assert_eq!(playback.progress(), 1.0);
        assert_eq!(playback.next_due(), None);
        playback.toggle();
        assert!(!playback.paused && playback.shown == 0, "playing from the end starts over");
    }

    #[test]
    fn paused_playback_does_not_move_or_wake() {
        let mut playback = streamed("ab", &[100.0, 200.0], &[1, 1], 200.0);
        playback.toggle();
        playback.advance(Duration::from_secs(5));
        assert_eq!((playback.shown, playback.position_ms, playback.next_due()), (0, 0.0, None));
    }

    #[test]
    fn speed_doubles_and_halves_within_limits() {
        let mut playback = streamed("a", &[], &[], 10.0);
        for _ in 0..10 {
            playback.faster();
        }
        assert_eq!(playback.speed, 16.0);
        for _ in 0..10 {
            playback.slower();
        }
        assert_eq!(playback.speed, 0.25);
    }

    #[test]
    fn step_jumps_between_chunk_boundaries_and_pauses() {
        let mut playback = streamed("abc", &[0.0, 100.0, 200.0], &[1, 1, 1], 300.0);
        playback.step(true);
        assert!(playback.paused);
        assert_eq!((playback.shown, playback.position_ms), (2, 100.0));
        playback.step(true);
        playback.step(true);
        assert_eq!((playback.shown, playback.position_ms), (3, 300.0));
        playback.step(false);
        assert_eq!((playback.shown, playback.position_ms), (2, 100.0));
        playback.step(false);
        assert_eq!((playback.shown, playback.position_ms), (1, 0.0));
        playback.step(false);
        assert_eq!((playback.shown, playback.position_ms), (0, 0.0));
        assert_eq!(playback.progress(), 0.0);
    }
}
