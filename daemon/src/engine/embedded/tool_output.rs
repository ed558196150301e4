//! Reading tool calls out of the model's text as it is generated, so a stream can send OpenAI's
//! `delta.tool_calls`: the call's name as soon as it is known, then its arguments in pieces as they come.
//! The grammar (`tools`) fixes the shape: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`,
//! name first; text before the first call is the answer's content.
use super::tools::{CLOSE_TAG, OPEN_TAG};

#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Content(String),
    /// A call begins: its index in the answer, id and function name.
    Call {
        index: usize,
        id: String,
        name: String,
    },
    /// More of the arguments (JSON text) of call `index`.
    Arguments {
        index: usize,
        text: String,
    },
}

#[derive(Debug, Default)]
enum State {
    /// Content, until `<tool_call>`.
    #[default]
    Content,
    /// Inside a call, before its name is read.
    Name,
    /// Before the arguments' value begins.
    BeforeArguments,
    /// Inside the arguments' JSON value.
    Arguments(Scan),
    /// After the arguments, until `</tool_call>`.
    Closing,
}

/// Where a JSON value being streamed ends: depth of brackets, outside strings.
#[derive(Debug, Default)]
struct Scan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    started: bool,
}

impl Scan {
    /// Consumes `c`; true when the value is complete after it.
    fn push(&mut self, c: char) -> bool {
        if self.in_string {
            match (self.escaped, c) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => self.in_string = false,
                _ => {}
            }
            return false;
        }
        match c {
            '"' => self.in_string = true,
            '{' | '[' => self.depth += 1,
            '}' | ']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.started = true;
        self.depth == 0
    }
}

#[derive(Debug, Default)]
pub struct ToolOutput {
    state: State,
    /// Text received but not yet turned into deltas.
    pending: String,
    calls: usize,
}

impl ToolOutput {
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The deltas `text` completes.
    pub fn push(&mut self, text: &str) -> Vec<Delta> {
        self.pending.push_str(text);
        let mut deltas = Vec::new();
        while self.step(&mut deltas) {}
        deltas
    }

    /// What is left when generation ends (an unfinished call's text, cut by `max_tokens`, is content).
    pub fn finish(&mut self) -> Vec<Delta> {
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Content if !rest.is_empty() => vec![Delta::Content(rest)],
            State::Arguments(_) if !rest.is_empty() => {
                vec![Delta::Arguments { index: self.calls.saturating_sub(1), text: rest }]
            }
            _ => Vec::new(),
        }
    }

    /// Moves one state forward if `pending` allows; false when it needs more text.
    fn step(&mut self, deltas: &mut Vec<Delta>) -> bool {
        match &mut self.state {
            State::Content => {
                if let Some(at) = self.pending.find(OPEN_TAG) {
                    let content = self.pending[..at].trim_end().to_string();
                    if !content.is_empty() {
                        deltas.push(Delta::Content(content));
                    }
                    self.pending.drain(..at + OPEN_TAG.len());
                    self.state = State::Name;
                    return true;
                }
                // Hold back what may be the start of the tag, and the whitespace before it (a call's content
                // ends without the line break that separates it from the call).
                let keep = partial_suffix(&self.pending, OPEN_TAG);
                let ready = self.pending[..self.pending.len() - keep].trim_end().len();
                if ready > 0 {
                    deltas.push(Delta::Content(self.pending.drain(..ready).collect()));
                }
                false
            }
            State::Name => {
                let Some((name, end)) = read_name(&self.pending) else { return false };
                self.pending.drain(..end);
                deltas.push(Delta::Call { index: self.calls, id: call_id(), name });
                self.calls += 1;
                self.state = State::BeforeArguments;
                true
            }
            State::BeforeArguments => {
                let Some(key) = self.pending.find("\"arguments\"") else { return false };
                let after = key + "\"arguments\"".len();
                let Some(colon) = self.pending[after..].find(':') else { return false };
                let start = after + colon + 1;
                let value_at = self.pending[start..].find(|c: char| !c.is_whitespace()).map(|i| start + i);
                let Some(value_at) = value_at else { return false };
                self.pending.drain(..value_at);
                self.state = State::Arguments(Scan::default());
                true
            }
            State::Arguments(scan) => {
                let mut end = None;
                for (i, c) in self.pending.char_indices() {
                    if scan.push(c) {
                        end = Some(i + c.len_utf8());
                        break;
                    }
                }
                let index = self.calls - 1;
                let take = end.unwrap_or(self.pending.len());
                if take > 0 {
                    deltas.push(Delta::Arguments { index, text: self.pending.drain(..take).collect() });
                }
                if end.is_some() {
                    self.state = State::Closing;
                }
                end.is_some()
            }
            State::Closing => {
                let Some(at) = self.pending.find(CLOSE_TAG) else { return false };
                self.pending.drain(..at + CLOSE_TAG.len());
                self.state = State::Content;
                // Between parallel calls only a newline; after the last, nothing (the grammar allows no more).
                self.pending = self.pending.trim_start().to_string();
                true
            }
        }
    }
}

/// `"name": "<name>"` at the start of a call object: the name and where its string ends.
fn read_name(text: &str) -> Option<(String, usize)> {
    let key = text.find("\"name\"")?;
    let after = key + "\"name\"".len();
    let colon = after + text[after..].find(':')?;
    let open = colon + 1 + text[colon + 1..].find('"')?;
    let mut escaped = false;
    for (i, c) in text[open + 1..].char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => {
                let end = open + 1 + i + 1;
                let name: String = serde_json::from_str(&text[open..end]).ok()?;
                return Some((name, end));
            }
            _ => {}
        }
    }
    None
}

/// The length of the longest end of `text` that `tag` starts with.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

fn call_id() -> String {
    // The random low bits of a v7 UUID, as OpenAI's `call_` ids are random.
    let hex = uuid::Uuid::now_v7().simple().to_string();
    format!("call_{}", &hex[hex.len() - 24..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `size` characters; returns (content, calls as (name, arguments)).
    fn read(text: &str, size: usize) -> (String, Vec<(String, String)>, usize) {
        let mut output = ToolOutput::default();
        let chars: Vec<char> = text.chars().collect();
        let mut deltas = Vec::new();
        for piece in chars.chunks(size) {
            deltas.extend(output.push(&piece.iter().collect::<String>()));
        }
        deltas.extend(output.finish());
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut argument_pieces = 0;
        for delta in deltas {
            match delta {
                Delta::Content(text) => content.push_str(&text),
                Delta::Call { index, id, name } => {
                    assert_eq!(index, calls.len());
                    assert!(id.starts_with("call_") && id.len() == 29, "{id}");
                    calls.push((name, String::new()));
                }
                Delta::Arguments { index, text } => {
                    calls[index].1.push_str(&text);
                    argument_pieces += 1;
                }
            }
        }
        (content, calls, argument_pieces)
    }

    #[test]
    fn calls_are_read_however_the_text_is_cut() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa}ris\", \
                    \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        for size in [1, 2, 3, 7, 1000] {
            let (content, calls, pieces) = read(text, size);
            assert_eq!(content, "Let me check.");
            assert_eq!(
                calls,
                [
                    ("get_weather".to_string(), "{\"city\": \"Pa}ris\", \"days\": [1, 2]}".to_string()),
                    ("get_time".to_string(), "{}".to_string())
                ]
            );
            if size == 1 {
                assert!(pieces > 10, "arguments stream in pieces");
            }
        }
    }

    #[test]
    fn text_without_calls_is_content_even_if_it_looks_like_a_tag() {
        let (content, calls, _) = read("a <tool and <tool_c", 2);
        assert_eq!(content, "a <tool and <tool_c");
        assert!(calls.is_empty());
    }

    #[test]
    fn a_call_cut_short_keeps_its_partial_arguments() {
        let (_, calls, _) = read("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"unfini", 4);
        assert_eq!(calls, [("f".to_string(), "{\"a\": \"unfini".to_string())]);
    }
}
