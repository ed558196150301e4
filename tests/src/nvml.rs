//! The stand-in NVML library for tests: [`FakeNvml`] is one private copy of the `libnvidia-ml.so.1` that
//! `build.rs` compiles from `nvml-standin/fake_nvml.c` (its header documents the values format), with its
//! values file beside it.
//!
//! Each instance lives in its own directory because the library reads `fake_nvml.txt` next to itself: tests
//! running in parallel threads of one process get separate copies (separate files, so the dynamic loader
//! maps each one anew) and separate values, with nothing process-global such as an environment variable.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The library as built, before copying.
pub const BUILT_LIBRARY: &str = env!("FAKE_NVML_LIB");

/// The name the library reads its values from, in its own directory.
pub const VALUES_FILE: &str = "fake_nvml.txt";

pub struct FakeNvml {
    dir: tempfile::TempDir,
    library: PathBuf,
    writes: AtomicU64,
}

impl FakeNvml {
    /// A fresh copy of the library whose values are `values` (see the format in `fake_nvml.c`).
    pub fn new(values: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("fake-nvml-").tempdir().expect("temporary directory for fake NVML");
        let library = dir.path().join("libnvidia-ml.so.1");
        std::fs::copy(BUILT_LIBRARY, &library)
            .unwrap_or_else(|e| panic!("copying {BUILT_LIBRARY} to {}: {e}", library.display()));
        let nvml = Self { dir, library, writes: AtomicU64::new(0) };
        nvml.set(values);
        nvml
    }

    /// Replaces the values; the next NVML call sees all of the new ones (written aside, then renamed over).
    pub fn set(&self, values: &str) {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        let temporary = self.dir.path().join(format!("{VALUES_FILE}.{n}.tmp"));
        std::fs::write(&temporary, values).unwrap_or_else(|e| panic!("writing {}: {e}", temporary.display()));
        std::fs::rename(&temporary, self.values_path())
            .unwrap_or_else(|e| panic!("renaming {}: {e}", temporary.display()));
    }

    /// The library to hand to NVML's loader (`Nvml::builder().lib_path(..)`, the daemon's `nvml_library`).
    pub fn lib_path(&self) -> &Path {
        &self.library
    }

    /// The values file the library reads.
    pub fn values_path(&self) -> PathBuf {
        self.dir.path().join(VALUES_FILE)
    }
}
