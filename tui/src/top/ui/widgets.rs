//! Small building blocks the views share: titled boxes, centred popups, word wrapping, a windowed table whose
//! rows are built only for the lines on screen, and "nothing here" messages.
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::theme::Theme;
use super::ListHit;

/// A bordered box with a title in the theme's border set.
pub fn panel<'a>(theme: &Theme, title: impl Into<Line<'a>>) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_set(theme.border_set())
        .border_style(theme.dim())
        .title(title.into().style(theme.title()))
}

/// A `width` x `height` rectangle centred in `area` (clamped to it).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(area.x + (area.width - width) / 2, area.y + (area.height - height) / 2, width, height)
}

/// Clears `area` and draws `block` there, returning the inside (for popups over other content).
pub fn popup(frame: &mut Frame<'_>, area: Rect, block: Block<'_>) -> Rect {
    frame.render_widget(Clear, area);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// A dim one-line message (empty states, "waiting for data…").
pub fn message(frame: &mut Frame<'_>, area: Rect, theme: &Theme, text: impl Into<String>) {
    let paragraph = Paragraph::new(Line::from(Span::styled(text.into(), theme.dim()))).wrap(Wrap { trim: true });
    frame.render_widget(paragraph, area);
}

/// Splits `text` into lines of at most `width` characters, breaking at spaces where it can; keeps the text's
/// own line breaks. Counted in characters: the texts shown are model output, mostly narrow characters.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for source in text.split('\n') {
        let mut line = String::new();
        let mut line_chars = 0;
        for word in source.split_inclusive(' ') {
            let mut word_chars = word.chars().count();
            if line_chars + word_chars > width && line_chars > 0 {
                lines.push(std::mem::take(&mut line));
                line_chars = 0;
            }
            let mut rest = word;
            // A word longer than a line is cut across lines.
            while word_chars > width {
                let cut = rest.char_indices().nth(width).map_or(rest.len(), |(i, _)| i);
                lines.push(rest[..cut].to_owned());
                rest = &rest[cut..];
                word_chars -= width;
            }
            line.push_str(rest);
            line_chars += word_chars;
        }
        lines.push(line);
    }
    lines
}

/// The first row to draw so that `selected` is on screen in a window of `height` rows.
pub fn first_visible(selected: usize, height: usize) -> usize {
    if height == 0 {
        return selected;
    }
    selected.saturating_sub(height - 1)
}

/// A table whose rows come from `cells(index)` for the visible window only, with `selected` highlighted and
/// kept on screen. Returns where the rows landed, for mouse clicks.
pub struct Windowed<'a> {
    pub header: Vec<Cell<'a>>,
    pub widths: Vec<Constraint>,
    pub total: usize,
    pub selected: Option<usize>,
}

impl<'a> Windowed<'a> {
    pub fn render(
        self,
        frame: &mut Frame<'_>,
        area: Rect,
        block: Block<'a>,
        theme: &Theme,
        mut cells: impl FnMut(usize) -> Vec<Cell<'a>>,
    ) -> ListHit {
        let inner = block.inner(area);
        let rows_area = Rect { y: inner.y.saturating_add(1), height: inner.height.saturating_sub(1), ..inner };
        let height = usize::from(rows_area.height);
        let first = first_visible(self.selected.unwrap_or(0).min(self.total.saturating_sub(1)), height);
        let end = (first + height).min(self.total);
        let rows: Vec<Row<'a>> = (first..end).map(|index| Row::new(cells(index))).collect();
        let table = Table::new(rows, self.widths)
            .header(Row::new(self.header).style(theme.table_header()))
            .column_spacing(1)
            .row_highlight_style(theme.selected())
            .highlight_symbol(theme.pointer())
            .highlight_spacing(HighlightSpacing::Always)
            .block(block);
        // Only the window's rows were built, so the selection is relative to `first`.
        let mut state = TableState::default().with_selected(self.selected.map(|s| s.saturating_sub(first)));
        frame.render_stateful_widget(table, area, &mut state);
        ListHit { area: rows_area, first_index: first }
    }
}

/// A header cell, with the sort arrow when it is the sorted column.
pub fn header_cell(title: &str, sorted: Option<&str>) -> Cell<'static> {
    match sorted {
        Some(arrow) => Cell::from(format!("{title}{arrow}")),
        None => Cell::from(title.to_owned()),
    }
}

/// Right-aligned cell text (numbers line up on their units).
pub fn right(text: String, style: Style) -> Cell<'static> {
    Cell::from(Line::from(Span::styled(text, style)).right_aligned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_long_words() {
        assert_eq!(wrap("hello world again", 11), ["hello ", "world again"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(wrap("a\nb", 5), ["a", "b"]);
    }

    #[test]
    fn selection_stays_in_the_window() {
        assert_eq!(first_visible(0, 10), 0);
        assert_eq!(first_visible(9, 10), 0);
        assert_eq!(first_visible(10, 10), 1);
    }
}
