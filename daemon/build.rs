//! Records the `-C target-cpu` this build was made with, for `llmopsd --version` and `GetStatus`
//! (the engine's CPU features depend on it: see `.cargo/config.toml`).
fn main() {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let target_cpu = flags
        .split('\x1f')
        .filter_map(|flag| flag.strip_prefix("target-cpu=").or_else(|| flag.strip_prefix("-Ctarget-cpu=")))
        .next_back()
        .unwrap_or("generic");
    println!("cargo:rustc-env=LLMOPS_TARGET_CPU={target_cpu}");
    // New RUSTFLAGS recompile this script too, so it runs again then; nothing else changes its answer.
    println!("cargo:rerun-if-changed=build.rs");
}
