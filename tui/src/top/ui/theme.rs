//! The console's look: a small 256-colour palette and the glyphs it draws with. `NO_COLOR` keeps only bold,
//! reversed and struck-through text (so emphasis, selection and a diff's deletions still read); `--ascii` swaps
//! every box, block and arrow for plain ASCII, so the screen works on any terminal and font.
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;

use crate::top::state::Look;

const GREEN: u8 = 71;
const RED: u8 = 196;
const ORANGE: u8 = 208;
const YELLOW: u8 = 214;
const CYAN: u8 = 81;
const BLUE: u8 = 75;
const GREY: u8 = 244;
const SELECTION_BG: u8 = 238;

/// Plain ASCII box: `+`, `-` and `|`.
const ASCII_BORDER: border::Set<'static> = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub no_color: bool,
    pub ascii: bool,
}

impl Theme {
    pub fn new(look: Look) -> Self {
        Self { no_color: look.no_color, ascii: look.ascii }
    }

    fn fg(&self, colour: u8) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(Color::Indexed(colour))
        }
    }

    pub fn plain(&self) -> Style {
        Style::default()
    }

    pub fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    pub fn ok(&self) -> Style {
        self.fg(GREEN)
    }

    pub fn warn(&self) -> Style {
        self.fg(YELLOW)
    }

    /// Errors keep bold without colour so they still stand out.
    pub fn error(&self) -> Style {
        if self.no_color {
            self.bold()
        } else {
            self.fg(RED)
        }
    }

    pub fn dim(&self) -> Style {
        self.fg(GREY)
    }

    pub fn accent(&self) -> Style {
        self.fg(CYAN)
    }

    pub fn title(&self) -> Style {
        self.fg(BLUE).add_modifier(Modifier::BOLD)
    }

    pub fn table_header(&self) -> Style {
        self.dim().add_modifier(Modifier::BOLD)
    }

    pub fn selected(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().bg(Color::Indexed(SELECTION_BG)).add_modifier(Modifier::BOLD)
        }
    }

    pub fn tab_active(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// The unreachable-daemon banner.
    pub fn banner_error(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default().fg(Color::Indexed(231)).bg(Color::Indexed(124)).add_modifier(Modifier::BOLD)
        }
    }

    pub fn banner_info(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Indexed(16)).bg(Color::Indexed(YELLOW))
        }
    }

    pub fn inserted(&self) -> Style {
        self.fg(GREEN).add_modifier(Modifier::BOLD)
    }

    pub fn deleted(&self) -> Style {
        self.fg(RED).add_modifier(Modifier::CROSSED_OUT)
    }

    /// Trace status words (`tail::status_name`) coloured by outcome.
    pub fn status(&self, name: &str) -> Style {
        match name {
            "ok" => self.ok(),
            "error" => self.error(),
            "rejected" => self.fg(ORANGE),
            "running" => self.accent(),
            _ => self.dim(),
        }
    }

    pub fn severity(&self, severity: &str) -> Style {
        match severity {
            "critical" => self.error().add_modifier(Modifier::BOLD),
            "warning" => self.warn(),
            "info" => self.fg(BLUE),
            _ => self.plain(),
        }
    }

    pub fn border_set(&self) -> border::Set<'static> {
        if self.ascii {
            ASCII_BORDER
        } else {
            border::PLAIN
        }
    }

    /// Filled and empty cells of bars and gauges.
    pub fn bar_cells(&self) -> (char, char) {
        if self.ascii {
            ('#', '.')
        } else {
            ('█', '░')
        }
    }

    /// Sparkline levels, lowest first.
    pub fn spark_levels(&self) -> &'static [char] {
        if self.ascii {
            &['_', '.', '-', '=', '+', '*', '#']
        } else {
            &['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']
        }
    }

    pub fn up(&self) -> &'static str {
        if self.ascii {
            "^"
        } else {
            "▲"
        }
    }

    pub fn down(&self) -> &'static str {
        if self.ascii {
            "v"
        } else {
            "▼"
        }
    }

    /// Between fields on one line.
    pub fn sep(&self) -> &'static str {
        if self.ascii {
            " | "
        } else {
            " │ "
        }
    }

    /// Marks the selected row, so selection shows without colour and in plain-text snapshots.
    pub fn pointer(&self) -> &'static str {
        if self.ascii {
            ">"
        } else {
            "▸"
        }
    }

    pub fn arrow(&self) -> &'static str {
        if self.ascii {
            "->"
        } else {
            "→"
        }
    }

    pub fn dash(&self) -> &'static str {
        if self.ascii {
            "-"
        } else {
            "—"
        }
    }

    pub fn ellipsis(&self) -> &'static str {
        if self.ascii {
            "..."
        } else {
            "…"
        }
    }

    pub fn bullet(&self) -> &'static str {
        if self.ascii {
            "*"
        } else {
            "●"
        }
    }

    pub fn play(&self) -> &'static str {
        if self.ascii {
            ">"
        } else {
            "▶"
        }
    }

    pub fn pause(&self) -> &'static str {
        if self.ascii {
            "||"
        } else {
            "⏸"
        }
    }

    pub fn delta(&self) -> &'static str {
        if self.ascii {
            "d"
        } else {
            "Δ"
        }
    }

    pub fn degree(&self) -> &'static str {
        if self.ascii {
            "C"
        } else {
            "°C"
        }
    }

    /// At most `max` characters of `text`, ending in the ellipsis when cut.
    pub fn cut(&self, text: &str, max: usize) -> String {
        if text.chars().count() <= max {
            return text.to_owned();
        }
        let ellipsis = self.ellipsis();
        let keep = max.saturating_sub(ellipsis.chars().count());
        let kept: String = text.chars().take(keep).collect();
        format!("{kept}{ellipsis}")
    }
}
