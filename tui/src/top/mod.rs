//! `llmops-top`: the terminal console. Collection (`feed`) talks to daemons and sends updates; the app state
//! (`state`, `host`, `tail`, `playback`) changes only in the main loop (`run`); input (`input`) turns keys into
//! intents (`:` lines via `command`) that `app` performs, returning effects the feed carries out; the canvas
//! (`ui`) only reads the state.
pub mod app;
pub mod cli;
pub mod command;
pub mod feed;
pub mod host;
pub mod input;
pub mod playback;
pub mod run;
pub mod state;
pub mod tail;
pub mod terminal;
pub mod ui;
