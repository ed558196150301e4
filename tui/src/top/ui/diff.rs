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
    lines(runs(old, new), theme)
}

/// The same diff for two panes side by side: `old` with its deletions marked, and `new` with its insertions.
pub fn side_by_side(old: &str, new: &str, theme: &Theme) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
    let runs = runs(old, new);
    let without = |hidden: ChangeTag| runs.iter().filter(|(tag, _)| *tag != hidden).cloned().collect();
    (lines(without(ChangeTag::Insert), theme), lines(without(ChangeTag::Delete), theme))
}

/// Neighbouring words with the same fate read as one change: "[-thousand years.-]", not one per word.
fn runs(old: &str, new: &str) -> Vec<(ChangeTag, String)> {
    let diff = TextDiff::configure().timeout(DIFF_TIMEOUT).diff_words(old, new);
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        match runs.last_mut() {
            Some((tag, text)) if *tag == change.tag() => text.push_str(change.value()),
            _ => runs.push((change.tag(), change.value().to_owned())),
        }
    }
    runs
}

fn lines(runs: Vec<(ChangeTag, String)>, theme: &Theme) -> Vec<Line<'static>> {
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

    #[test]
    fn side_by_side_marks_deletions_left_and_insertions_right() {
        let theme = Theme { no_color: true, ascii: true };
        let (left, right) = side_by_side("the cat sat\nstill", "the dog sat\nstill", &theme);
        assert_eq!(plain(&left), ["the [-cat-] sat", "still"]);
        assert_eq!(plain(&right), ["the {+dog+} sat", "still"]);
    }
}
