//! Generates the tonic/prost code with a vendored `protoc`, so no system protobuf compiler is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/llmops/v1/traces.proto",
        "proto/llmops/v1/status.proto",
        "proto/llmops/v1/telemetry.proto",
        "proto/llmops/v1/admin.proto",
        "proto/llmops/v1/alerts.proto",
        "proto/llmops/v1/feedback.proto",
        "proto/llmops/v1/prompts.proto",
        "proto/llmops/v1/evals.proto",
        "proto/llmops/v1/cache.proto",
    ];
    tonic_build::configure()
        .file_descriptor_set_path(out_dir.join("llmops_v1_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
