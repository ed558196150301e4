//! Terminal output that cannot be steered by what it prints. Prompts, answers, error messages and engine logs
//! come from clients and upstreams; printed raw, an escape sequence in one could retitle, repaint or hide lines
//! of the operator's terminal. Every control character except newline and tab is written as a visible escape
//! (`\x1b`, `\r`, `\u{9b}`), as `llmops-top` shows them. JSON output is unaffected: serde_json already escapes
//! control characters, so it never contains one raw.
use std::io::{self, Write};

pub struct SafeOutput<W: Write> {
    inner: W,
}

impl<W: Write> SafeOutput<W> {
    pub fn new(inner: W) -> Self {
        Self { inner }
    }
}

impl<W: Write> Write for SafeOutput<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `write!` hands over whole `&str` pieces, so a buffer is valid UTF-8 but for raw bytes written directly.
        match std::str::from_utf8(buf) {
            Ok(text) => self.inner.write_all(escape(text).as_bytes())?,
            Err(_) => {
                for byte in buf {
                    if is_unsafe_byte(*byte) {
                        write!(self.inner, "\\x{byte:02x}")?;
                    } else {
                        self.inner.write_all(&[*byte])?;
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn is_unsafe_byte(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\n' && byte != b'\t') || byte == 0x7f
}

/// `text` with its control characters (C0 but newline and tab, DEL, C1) written as escapes.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_printed_visibly_and_text_is_kept() {
        let hostile = "ok\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31mline\nnext\ttab é";
        assert_eq!(escape(hostile), "ok\\x1b]0;pwned\\x07\\x1b[2J\\r\\u{9b}31mline\nnext\ttab é");
        assert!(matches!(escape("plain text\n"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn the_writer_escapes_what_write_macros_send_and_raw_bytes() {
        let mut out = SafeOutput::new(Vec::new());
        let prompt = "hi\u{1b}[31m";
        writeln!(out, "prompt: {prompt}").expect("write");
        out.write_all(b"raw \x1b\xff\n").expect("write");
        let text = String::from_utf8_lossy(&out.inner).into_owned();
        assert_eq!(text, "prompt: hi\\x1b[31m\nraw \\x1b\u{fffd}\n");
    }
}
