//! Taking over the terminal (raw mode, alternate screen, mouse, hidden cursor) and giving it back on every
//! way out: normal return, error return (the guard's `Drop`) and panic (a hook that restores first, so the
//! panic message lands on a usable screen).
use std::fmt;
use std::io::{self, IsTerminal, Stdout};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

/// Why the console could not start.
#[derive(Debug)]
pub enum SetupError {
    /// stdin or stdout is not a terminal (piped, redirected, no tty).
    NotATerminal {
        stream: &'static str,
    },
    Io(io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NotATerminal { stream } => {
                write!(f, "{stream} is not a terminal: llmops-top is interactive (use llmopsctl for scripts and pipes)")
            }
            SetupError::Io(err) => write!(f, "cannot set up the terminal: {err}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// The terminal in console mode; dropping it restores the terminal.
pub struct Console {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Console {
    pub fn enter() -> Result<Self, SetupError> {
        require_terminal(io::stdin().is_terminal(), io::stdout().is_terminal())?;
        install_panic_hook();
        // From here on any failure restores whatever was already switched on.
        let setup = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode()?;
            // Cleared directly: ratatui's `clear` first asks the terminal where the cursor is, which some
            // terminals (and multiplexers under load) never answer.
            execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture, Hide, Clear(ClearType::All))?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        };
        match setup() {
            Ok(terminal) => Ok(Self { terminal }),
            Err(err) => {
                restore();
                Err(SetupError::Io(err))
            }
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        restore();
    }
}

fn require_terminal(stdin_is_tty: bool, stdout_is_tty: bool) -> Result<(), SetupError> {
    match (stdin_is_tty, stdout_is_tty) {
        (_, false) => Err(SetupError::NotATerminal { stream: "stdout" }),
        (false, true) => Err(SetupError::NotATerminal { stream: "stdin" }),
        (true, true) => Ok(()),
    }
}

/// Best effort and idempotent: each step is tried even if an earlier one fails.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen, Show);
}

/// Chained before the previous hook, once per process.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_start_without_a_terminal() {
        assert!(require_terminal(true, true).is_ok());
        let message = require_terminal(true, false).expect_err("stdout piped").to_string();
        assert!(message.starts_with("stdout is not a terminal"), "{message}");
        let message = require_terminal(false, true).expect_err("stdin redirected").to_string();
        assert!(message.starts_with("stdin is not a terminal"), "{message}");
    }
}
