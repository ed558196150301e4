//! A word-level diff of the original answer against a re-run's: deletions red and struck through, insertions
//! green; without colour, `[-deleted-]` and `{+inserted+}` markers carry the meaning.
use std::time::Duration;

use ratatui::text::{Line, Span};
use similar::{ChangeTag, TextDiff};

use super::theme::Theme;

/// A long answer must not stall a frame: past this the diff falls back to coarser (still correct) output.
const DIFF_TIMEOUT: Duration = Duration::from_millis(20);

/// The diff as lines (split at the texts' own line breaks), for a wrapping paragraph.
pub fn word_diff(old: &str, new: &str, theme: &Theme) -> Vec<Line<'static>> {
    let diff = TextDiff::configure().timeout(DIFF_TIMEOUT).diff_words(old, new);
    // Neighbouring words with the same fate read as one change: "[-thousand years.-]", not one per word.
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        match runs.last_mut() {
            Some((tag, text)) if *tag == change.tag() => text.push_str(change.value()),
            _ => runs.push((change.tag(), change.value().to_owned())),
        }
    }
    let mut lines = Vec::new();
    let mut spans: Vec<Span<'static>> = Vec::new();
    for (tag, text) in runs {
        let (style, open, close) = match tag {
            ChangeTag::Equal => (theme.plain(), "", ""),
            ChangeTag::Delete => (theme.deleted(), "[-", "-]"),
            ChangeTag::Insert => (theme.inserted(), "{+", "+}"),
        };
        let markers = theme.no_color && tag != ChangeTag::Equal;
        // A change can span line breaks; each piece goes on its own line.
        for (index, piece) in text.split('\n').enumerate() {
            if index > 0 {
                lines.push(Line::from(std::mem::take(&mut spans)));
            }
            if piece.is_empty() {
                continue;
            }
            if !markers {
                spans.push(Span::styled(piece.to_owned(), style));
                continue;
            }
            // Spaces stay outside the markers so a wrapped line never splits "[-word" from "-]".
            let core = piece.trim_end();
            if !core.is_empty() {
                spans.push(Span::styled(format!("{open}{core}{close}"), style));
            }
            spans.push(Span::raw(piece[core.len()..].to_owned()));
        }
    }
    lines.push(Line::from(spans));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect()).collect()
    }

    #[test]
    fn markers_without_colour() {
        let theme = Theme { no_color: true, ascii: true };
        let lines = word_diff("the cat sat", "the dog sat", &theme);
        assert_eq!(plain(&lines), ["the [-cat-]{+dog+} sat"]);
    }
}
