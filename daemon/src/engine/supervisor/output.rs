//! A launched engine's output, kept line by line for `status` and `llmopsctl logs`. Bytes that are not UTF-8
//! are replaced (U+FFFD) instead of ending the capture, and a line longer than [`MAX_LINE_BYTES`] is cut with
//! a marker saying how much was dropped, so a process printing without newlines cannot grow the daemon.
use crate::sync::MutexExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The most bytes of one line that are kept.
pub const MAX_LINE_BYTES: usize = 4096;

/// The last lines, oldest first, shared by the stdout and stderr readers.
pub type Tail = Arc<Mutex<VecDeque<String>>>;

/// Reads `stream` to its end, keeping its last `max_lines` lines in `tail`.
pub async fn keep_tail(stream: impl AsyncRead + Unpin, tail: Tail, max_lines: usize) {
    let mut reader = BufReader::new(stream);
    let mut line = Line::default();
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let newline = buf.iter().position(|b| *b == b'\n');
        let end = newline.unwrap_or(buf.len());
        line.push(&buf[..end]);
        reader.consume(newline.map_or(end, |i| i + 1));
        if newline.is_some() {
            keep(&tail, line.take(), max_lines);
        }
    }
    if !line.is_empty() {
        keep(&tail, line.take(), max_lines);
    }
}

fn keep(tail: &Tail, line: String, max_lines: usize) {
    let mut tail = tail.locked();
    while tail.len() >= max_lines.max(1) {
        tail.pop_front();
    }
    tail.push_back(line);
}

/// One line as it arrives: at most [`MAX_LINE_BYTES`] kept, the rest counted.
#[derive(Default)]
struct Line {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Line {
    fn push(&mut self, chunk: &[u8]) {
        // Once cut, a line keeps nothing more.
        let room = if self.dropped > 0 { 0 } else { MAX_LINE_BYTES - self.bytes.len() };
        let mut keep = chunk.len().min(room);
        if keep < chunk.len() {
            // Cut before a character, not inside one (UTF-8 continuation bytes are 0b10xxxxxx; at most 3).
            let limit = keep.saturating_sub(3);
            while keep > limit && chunk[keep] & 0xC0 == 0x80 {
                keep -= 1;
            }
        }
        self.bytes.extend_from_slice(&chunk[..keep]);
        self.dropped += chunk.len() - keep;
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.bytes);
        let dropped = std::mem::take(&mut self.dropped);
        if dropped == 0 && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if dropped > 0 {
            text.push_str(&format!(" [... {dropped} more bytes of this line not kept]"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(bytes: &[u8], max_lines: usize) -> Vec<String> {
        let tail = Tail::default();
        keep_tail(bytes, tail.clone(), max_lines).await;
        let lines = tail.lock().expect("tail").iter().cloned().collect();
        lines
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_do_not_end_the_capture() {
        let lines = lines_of(b"before\n\xff\xfe bad \xc3\n\xe2\x82\xac ok\r\nlast without newline", 10).await;
        assert_eq!(lines, ["before", "\u{fffd}\u{fffd} bad \u{fffd}", "\u{20ac} ok", "last without newline"]);
    }

    #[tokio::test]
    async fn a_huge_line_is_cut_and_the_next_lines_are_kept() {
        let mut input = vec![b'x'; 3 * MAX_LINE_BYTES + 7];
        input.extend_from_slice(b"\nafter\n");
        let lines = lines_of(&input, 10).await;
        assert_eq!(lines.len(), 2, "{:?}", lines.iter().map(String::len).collect::<Vec<_>>());
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE_BYTES)), "keeps the start");
        assert!(lines[0].ends_with(&format!(" [... {} more bytes of this line not kept]", 2 * MAX_LINE_BYTES + 7)));
        assert!(lines[0].len() < MAX_LINE_BYTES + 60, "{}", lines[0].len());
        assert_eq!(lines[1], "after");
    }

    #[tokio::test]
    async fn a_cut_never_splits_a_character_and_old_lines_go() {
        let mut input = vec![b'a'; MAX_LINE_BYTES - 1];
        input.extend_from_slice("\u{20ac}\u{20ac}\n1\n2\n3\n".as_bytes());
        let lines = lines_of(&input, 3).await;
        assert_eq!(lines, ["1", "2", "3"], "only the last three");
        let lines = lines_of(&input, 10).await;
        assert_eq!(lines[0], format!("{} [... 6 more bytes of this line not kept]", "a".repeat(MAX_LINE_BYTES - 1)));
    }
}
