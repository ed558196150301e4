//! An operator's config file: whatever the text, loading returns a config or an error naming the problem,
//! and a config that loads answers every question the daemon asks of it at start without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use llmopsd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::from_toml(text, Path::new("fuzz.toml")) else { return };
    let _ = config.effective_engines();
    let _ = config.http_listen_addr();
    let _ = config.grpc_listen();
    let _ = config.data_dir();
    // A price file is read from disk; only the built-in table is the parser's business.
    if config.pricing.file.trim().is_empty() {
        let _ = config.prices();
    }
});
