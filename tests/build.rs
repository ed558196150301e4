//! Builds the stand-in NVML library (`nvml-standin/fake_nvml.c`) into `$OUT_DIR/libnvidia-ml.so.1` and
//! hands its path to the crate as `FAKE_NVML_LIB`, so tests exercise the real NVML code path without a GPU.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = manifest_dir.join("nvml-standin/fake_nvml.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out_dir.join("libnvidia-ml.so.1");

    // cc finds the C compiler for the target (CC, CROSS_COMPILE, ...) but builds only static archives, so
    // the shared object is linked by running that compiler directly.
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args(["-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra", "-o"])
        .arg(&library)
        .arg(&source)
        // dladdr lives in libdl before glibc 2.34 (an empty stub after).
        .arg("-ldl");
    let shown = format!("{} {:?}", command.get_program().to_string_lossy(), command.get_args().collect::<Vec<_>>());
    let status = command.status().unwrap_or_else(|e| panic!("running the C compiler ({shown}): {e}"));
    assert!(status.success(), "building the stand-in NVML library failed: {shown}");
    println!("cargo:rustc-env=FAKE_NVML_LIB={}", library.display());
}
