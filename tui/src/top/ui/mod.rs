//! The canvas: draws the `App` into a frame. Reads state only; never changes it.
//! One file per view; `chrome` draws the header, banner and footer every view shares, `help` the overlay.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::state::{App, View};

mod alerts;
mod budgets;
mod chrome;
mod detail;
mod diff;
mod eval_item;
mod evals;
mod fleet;
mod format;
mod gpus;
mod help;
mod overview;
mod replay;
mod theme;
mod trace_gpu;
mod traces;
mod widgets;

pub use format::Zone;
use theme::Theme;

/// Below this the views cannot lay out their tables; a one-line notice is drawn instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

/// Where the selectable list of the current view landed on screen, so a mouse click can pick a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hitmap {
    pub list: Option<ListHit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListHit {
    /// The rows' area (header excluded).
    pub area: Rect,
    /// The index (in the view's rows) of the row drawn at `area.y`.
    pub first_index: usize,
}

/// What every view draws with.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    app: &'a App,
    theme: Theme,
    zone: Zone,
}

/// Draws the whole screen for the current view, wall times in the local time zone.
pub fn draw(frame: &mut Frame<'_>, app: &App) -> Hitmap {
    draw_in(frame, app, Zone::Local)
}

/// As `draw`, with wall times in `zone` (tests use UTC so snapshots do not depend on the machine).
pub fn draw_in(frame: &mut Frame<'_>, app: &App, zone: Zone) -> Hitmap {
    let ctx = Ctx { app, theme: Theme::new(app.look), zone };
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!("terminal too small ({}x{}), need {MIN_WIDTH}x{MIN_HEIGHT}", area.width, area.height);
        frame.render_widget(Paragraph::new(Line::styled(text, ctx.theme.error())), area);
        return Hitmap::default();
    }
    // The fleet view shows every host's link in its rows; the per-host views get a banner for theirs.
    let banner = if app.view == View::Fleet { 0 } else { chrome::banner_height(app.host(), &ctx.theme, area.width) };
    let [header, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(frame, header, ctx);
    if banner > 0 {
        chrome::banner(frame, banner_area, ctx);
    }
    let list = match app.view {
        View::Fleet => Some(fleet::draw(frame, body, ctx)),
        View::Overview => {
            overview::draw(frame, body, ctx);
            None
        }
        View::Traces => traces::draw(frame, body, ctx),
        View::Detail => {
            detail::draw(frame, body, ctx);
            None
        }
        View::Alerts => alerts::draw(frame, body, ctx),
        View::Budgets => budgets::draw(frame, body, ctx),
        View::Replay => {
            replay::draw(frame, body, ctx);
            None
        }
        View::Evals => evals::draw(frame, body, ctx),
    };
    chrome::footer(frame, footer, ctx);
    if app.help {
        help::draw(frame, area, ctx);
    }
    Hitmap { list }
}
