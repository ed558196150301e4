//! Server-sent events from an engine, split into events as they arrive, within a size bound.
use std::borrow::Cow;

/// The largest SSE event accepted from an engine. Chunks are a few hundred bytes; a stream that goes on this long
/// without a blank line is broken (or hostile), and holding it would grow without bound.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// An event's data: its `data:` lines (one space after the colon dropped), joined by newlines. One data line
/// per event is the norm: it is borrowed; several are joined.
pub fn event_data(event: &str) -> Cow<'_, str> {
    let mut lines =
        event.lines().filter_map(|line| line.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d));
    let first = lines.next().unwrap_or_default();
    match lines.next() {
        None => Cow::Borrowed(first),
        Some(second) => Cow::Owned([first, second].into_iter().chain(lines).collect::<Vec<_>>().join("\n")),
    }
}

/// Splits a byte stream into SSE events (the text between blank lines), across chunk boundaries. Lines may end
/// in `\n`, `\r\n` or `\r` (the SSE grammar), even when a `\r\n` is split between two reads.
#[derive(Default)]
pub struct SseSplitter {
    buffer: String,
    /// Bytes of a UTF-8 character split across chunks.
    partial: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` starting the next one belongs to the same line ending.
    pending_cr: bool,
    /// How far `buffer` has been searched for a blank line, so a long event is not rescanned on every read.
    scanned: usize,
    /// Set once an event outgrew [`MAX_EVENT_BYTES`]; the stream cannot go on.
    pub overflowed: bool,
}

impl SseSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        if self.overflowed {
            return Vec::new();
        }
        let bytes: Cow<'_, [u8]> = if self.partial.is_empty() {
            Cow::Borrowed(chunk)
        } else {
            self.partial.extend_from_slice(chunk);
            Cow::Owned(std::mem::take(&mut self.partial))
        };
        let text = self.decode(&bytes);
        self.append(&text);
        let mut events = Vec::new();
        let mut consumed = 0;
        // A blank line can straddle the previous search's end by one byte: a `\n` (one byte, so a character
        // boundary; the byte before the end may be inside a multi-byte character).
        let ends_in_newline =
            self.scanned.checked_sub(1).and_then(|last| self.buffer.as_bytes().get(last)) == Some(&b'\n');
        let mut from = if ends_in_newline { self.scanned - 1 } else { self.scanned.min(self.buffer.len()) };
        while let Some(end) = self.buffer[from..].find("\n\n").map(|i| from + i) {
            let event = self.buffer[consumed..end].trim_end_matches('\n');
            if !event.is_empty() {
                events.push(event.to_string());
            }
            consumed = end + 2;
            from = consumed;
        }
        self.buffer.drain(..consumed);
        self.scanned = self.buffer.len();
        if self.buffer.len() > MAX_EVENT_BYTES {
            self.overflowed = true;
            self.buffer = String::new();
        }
        events
    }

    /// Decoded as `String::from_utf8_lossy` would decode the whole stream, however it is cut into reads: each
    /// invalid sequence becomes one U+FFFD, and a character cut at the end of the read waits for the next.
    fn decode<'a>(&mut self, bytes: &'a [u8]) -> Cow<'a, str> {
        if let Ok(valid) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(valid);
        }
        let mut rest = bytes;
        let mut text = String::with_capacity(bytes.len() + 2);
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    return Cow::Owned(text);
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    let Some(invalid) = error.error_len() else {
                        self.partial = after.to_vec();
                        return Cow::Owned(text);
                    };
                    text.push(char::REPLACEMENT_CHARACTER);
                    rest = &after[invalid..];
                }
            }
        }
    }

    fn append(&mut self, text: &str) {
        if text.is_empty() {
            // Only a character can tell whether a held-back `\r` was the first half of a `\r\n`.
            return;
        }
        let mut text = Cow::Borrowed(text);
        if std::mem::take(&mut self.pending_cr) {
            // The `\r` held back from the last chunk ends a line, with or without this chunk's leading `\n`.
            self.buffer.push('\n');
            if let Some(rest) = text.strip_prefix('\n') {
                text = Cow::Owned(rest.to_string());
            }
        }
        if let Some(rest) = text.strip_suffix('\r') {
            self.pending_cr = true;
            text = Cow::Owned(rest.to_string());
        }
        if text.contains('\r') {
            self.buffer.push_str(&text.replace("\r\n", "\n").replace('\r', "\n"));
        } else {
            self.buffer.push_str(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_handles_events_across_chunks_and_crlf() {
        let mut splitter = SseSplitter::default();
        assert!(splitter.push(b"data: {\"a\":").is_empty());
        assert_eq!(splitter.push(b"1}\n\ndata: [DONE]\r\n\r\n"), ["data: {\"a\":1}", "data: [DONE]"]);
        // A multi-byte character split between chunks survives.
        let bytes = "data: é\n\n".as_bytes();
        assert!(splitter.push(&bytes[..7]).is_empty());
        assert_eq!(splitter.push(&bytes[7..]), ["data: é"]);
        // A byte that is not UTF-8 is replaced; the events after it still come through.
        assert_eq!(splitter.push(b"data: a\xffb\n\ndata: c\n\n"), ["data: a\u{fffd}b", "data: c"]);
        assert_eq!(splitter.push(b"data: d\n\n"), ["data: d"]);
    }

    #[test]
    fn a_read_that_ends_after_a_multi_byte_character_is_searched_from_a_character_boundary() {
        // Found by fuzzing (fuzz/fuzz_targets/sse_splitter.rs): the search resumed one byte before the last read's end,
        // inside the `é`, and slicing there panicked.
        let mut splitter = SseSplitter::default();
        assert!(splitter.push("data: {\"content\":\"é".as_bytes()).is_empty());
        assert_eq!(splitter.push(b"\"}\n\n"), ["data: {\"content\":\"é\"}"]);
        let mut splitter = SseSplitter::default();
        assert!(splitter.push("data: 😀".as_bytes()).is_empty());
        assert_eq!(splitter.push(b"\n\n"), ["data: 😀"]);
        // A read that is only the start of a character does not settle a held-back `\r` (also found by fuzzing).
        let mut splitter = SseSplitter::default();
        assert!(splitter.push(b"data: a\r").is_empty());
        assert!(splitter.push(b"\r").is_empty());
        assert!(splitter.push(b"\xf0\x9f").is_empty(), "the second CR may still be half of a CRLF");
        assert_eq!(splitter.push(&"\u{1F600}".as_bytes()[2..]), ["data: a"], "the character settles it");
        assert_eq!(splitter.push(b"\n\n"), ["\u{1F600}"]);
        // Bytes like the input the fuzzer found, whole and cut into reads of 3 bytes.
        let stream =
            b"\x00\x00\x00[\x85\xdd\x9b\x9a\x93\x8b\x9e\xe6:{\"content\":\"h\xc3\xa9\"}}]}\r\n\r\ndata: x\r\r\n";
        let whole = SseSplitter::default().push(stream);
        let mut cut = SseSplitter::default();
        let mut events = Vec::new();
        for piece in stream.chunks(3) {
            events.extend(cut.push(piece));
        }
        assert_eq!(events, whole);
    }

    #[test]
    fn a_crlf_blank_line_split_between_reads_still_separates_events() {
        let mut splitter = SseSplitter::default();
        assert!(splitter.push(b"data: 1\r\n\r").is_empty());
        assert_eq!(splitter.push(b"\ndata: 2\r\n\r\n"), ["data: 1", "data: 2"]);
        // Every split point of a CRLF stream gives the same events.
        let stream = b"data: a\r\n\r\ndata: b\r\n\r\n: ping\r\n\r\ndata: c\r\n\r\n";
        for cut in 0..stream.len() {
            let mut splitter = SseSplitter::default();
            let mut events = splitter.push(&stream[..cut]);
            events.extend(splitter.push(&stream[cut..]));
            assert_eq!(events, ["data: a", "data: b", ": ping", "data: c"], "cut at {cut}");
        }
        // Lone CRs end lines too (a CR last in a read waits to see whether a LF follows).
        let mut splitter = SseSplitter::default();
        assert_eq!(splitter.push(b"data: x\r\rdata: y\r\r"), ["data: x"]);
        assert_eq!(splitter.push(b"data: z\n\n"), ["data: y", "data: z"]);
    }

    #[test]
    fn an_endless_event_is_refused_not_buffered() {
        let mut splitter = SseSplitter::default();
        let line = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_EVENT_BYTES / line.len()) {
            assert!(splitter.push(&line).is_empty());
            assert!(!splitter.overflowed);
        }
        assert!(splitter.push(&line).is_empty());
        assert!(splitter.overflowed, "past the limit the stream is broken");
        assert!(splitter.buffer.capacity() < 1024, "and nothing is held");
        assert!(splitter.push(b"\n\ndata: late\n\n").is_empty());
    }
}
