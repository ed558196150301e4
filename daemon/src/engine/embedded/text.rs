//! Turning generated token bytes into text a client can be sent: a token may end inside a UTF-8 character
//! (held until the character completes), and text that could be the start of a stop sequence is held until
//! it is known not to be one, so a stop sequence never reaches the client even when split across tokens.

#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text that is safe to send (may be empty).
    Text(String),
    /// A stop sequence appeared: the text before it; generation ends.
    Stopped(String),
}

#[derive(Debug, Default)]
pub struct TextOut {
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not yet sent because it may begin a stop sequence.
    held: String,
    stops: Vec<String>,
}

impl TextOut {
    pub fn new(stops: Vec<String>) -> Self {
        Self { partial: Vec::new(), held: String::new(), stops }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Piece {
        self.partial.extend_from_slice(bytes);
        self.decode_partial();
        if let Some(at) = self.earliest_stop() {
            self.held.truncate(at);
            return Piece::Stopped(std::mem::take(&mut self.held));
        }
        let keep = self.stop_prefix_len();
        let ready = self.held.len() - keep;
        let rest = self.held.split_off(ready);
        Piece::Text(std::mem::replace(&mut self.held, rest))
    }

    /// What is left when generation ends without a stop sequence.
    pub fn finish(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.held);
        rest.push_str(&String::from_utf8_lossy(&self.partial));
        self.partial.clear();
        rest
    }

    /// Moves every complete character from `partial` to `held`; bytes that can never be UTF-8 become U+FFFD.
    fn decode_partial(&mut self) {
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.partial[start..]) {
                Ok(text) => {
                    self.held.push_str(text);
                    self.partial.clear();
                    return;
                }
                Err(error) => {
                    let valid = start + error.valid_up_to();
                    if let Ok(text) = std::str::from_utf8(&self.partial[start..valid]) {
                        self.held.push_str(text);
                    }
                    match error.error_len() {
                        Some(bad) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start = valid + bad;
                        }
                        None => {
                            self.partial.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn earliest_stop(&self) -> Option<usize> {
        self.stops.iter().filter_map(|stop| self.held.find(stop.as_str())).min()
    }

    /// Length of the longest end of `held` that some stop sequence starts with.
    fn stop_prefix_len(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            let most = stop.len().saturating_sub(1).min(self.held.len());
            for len in (longest + 1..=most).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start) && stop.starts_with(&self.held[start..]) {
                    longest = len;
                    break;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(piece: Piece) -> String {
        match piece {
            Piece::Text(text) => text,
            Piece::Stopped(text) => panic!("unexpected stop after {text:?}"),
        }
    }

    #[test]
    fn a_character_split_across_tokens_is_sent_whole() {
        let mut out = TextOut::new(Vec::new());
        let euro = "€".as_bytes();
        assert_eq!(text(out.push(&euro[..1])), "");
        assert_eq!(text(out.push(&euro[1..])), "€");
        assert_eq!(text(out.push(&[0xff, b'a'])), "\u{fffd}a");
    }

    #[test]
    fn a_stop_sequence_split_across_tokens_is_never_sent() {
        let mut out = TextOut::new(vec!["END".into()]);
        assert_eq!(text(out.push(b"one E")), "one ");
        assert_eq!(text(out.push(b"N")), "");
        assert_eq!(out.push(b"D and more"), Piece::Stopped(String::new()));
    }

    #[test]
    fn held_text_that_turns_out_not_to_stop_is_released() {
        let mut out = TextOut::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(text(out.push(b"EN")), "");
        assert_eq!(text(out.push(b"VY\n")), "ENVY");
        assert_eq!(out.push(b"\nnext"), Piece::Stopped(String::new()));
        let mut out = TextOut::new(vec!["END".into()]);
        assert_eq!(text(out.push(b"the E")), "the ");
        assert_eq!(out.finish(), "E");
    }

    #[test]
    fn the_earliest_stop_wins() {
        let mut out = TextOut::new(vec!["b".into(), "a".into()]);
        assert_eq!(out.push(b"xyab"), Piece::Stopped("xy".into()));
    }
}
