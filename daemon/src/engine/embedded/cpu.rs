//! Which CPU features the embedded engine (llama.cpp) was compiled for, which of them this host has, and which
//! of the host's it leaves unused, for `llmopsd --version`, `GetStatus` and a clear refusal at start instead
//! of a SIGILL on the first request when a binary is copied to an older CPU.
//!
//! llama.cpp's CPU kernels are chosen at compile time (the build is portable, `x86-64-v3` unless
//! `LLMOPS_TARGET_CPU` says otherwise), so "in use" is exactly "built with"; the host list shows what a
//! build for this host (`LLMOPS_TARGET_CPU=native`) would add.
use std::sync::OnceLock;

/// The `-C target-cpu` the binary was built with (see `daemon/build.rs`); "generic" when none was given.
pub const TARGET_CPU: &str = env!("LLMOPS_TARGET_CPU");

/// llama.cpp's names for instruction-set features, with the names Linux gives them in /proc/cpuinfo.
/// Entries llama.cpp reports that are not instruction sets (LLAMAFILE, OPENMP, REPACK) are not here.
const ISA: &[(&str, &str)] = &[
    ("SSE3", "pni"),
    ("SSSE3", "ssse3"),
    ("AVX", "avx"),
    ("AVX_VNNI", "avx_vnni"),
    ("AVX2", "avx2"),
    ("F16C", "f16c"),
    ("FMA", "fma"),
    ("BMI2", "bmi2"),
    ("AVX512", "avx512f"),
    ("AVX512_VBMI", "avx512vbmi"),
    ("AVX512_VNNI", "avx512_vnni"),
    ("AVX512_BF16", "avx512_bf16"),
    ("AMX_INT8", "amx_int8"),
    ("NEON", "asimd"),
    ("ARM_FMA", "asimd"),
    ("FP16_VA", "asimdhp"),
    ("MATMUL_INT8", "i8mm"),
    ("SVE", "sve"),
    ("DOTPROD", "asimddp"),
    ("SME", "sme"),
];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// Everything llama.cpp's CPU backend reports as compiled in, in its words (e.g. "AVX2", "OPENMP").
    pub built_with: Vec<String>,
    /// The instruction sets of [`ISA`] this host has, in llama.cpp's words; empty when the host cannot be read.
    pub host: Vec<String>,
    /// Instruction sets the build needs that this host lacks: the engine would crash on its first request.
    pub missing_on_host: Vec<String>,
    /// Instruction sets this host has that the build does not use.
    pub unused_on_host: Vec<String>,
}

impl CpuFeatures {
    /// This process's build on this host, computed once.
    pub fn current() -> &'static CpuFeatures {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        FEATURES.get_or_init(|| {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            CpuFeatures::from_reports(&llama_system_info(), &cpuinfo)
        })
    }

    /// From llama.cpp's `llama_print_system_info()` text ("CPU : SSE3 = 1 | AVX = 1 | ...") and the host's
    /// /proc/cpuinfo (its first `flags` or `Features` line).
    pub fn from_reports(system_info: &str, cpuinfo: &str) -> CpuFeatures {
        let built_with = built_features(system_info);
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|line| line.starts_with("flags") || line.starts_with("Features"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, flags)| flags.split_whitespace().collect())
            .unwrap_or_default();
        let mut features = CpuFeatures { built_with, ..CpuFeatures::default() };
        if flags.is_empty() {
            // Unknown host (not Linux, or /proc unreadable): claim nothing about it.
            return features;
        }
        for (name, flag) in ISA {
            let on_host = flags.contains(flag);
            let built = features.built_with.iter().any(|b| b == name);
            if on_host {
                features.host.push((*name).to_string());
            }
            match (built, on_host) {
                (true, false) => features.missing_on_host.push((*name).to_string()),
                (false, true) => features.unused_on_host.push((*name).to_string()),
                _ => {}
            }
        }
        features
    }

    /// Instruction sets in use: those built in (all of which the host must have to run at all).
    pub fn in_use(&self) -> Vec<String> {
        self.built_with.iter().filter(|b| ISA.iter().any(|(name, _)| name == b)).cloned().collect()
    }

    /// The lines `llmopsd --version` prints after its own.
    pub fn describe(&self) -> String {
        let list = |names: &[String]| if names.is_empty() { "-".to_string() } else { names.join(" ") };
        let mut text = format!(
            "engine: llama.cpp, CPU backend built for target-cpu {TARGET_CPU}\n  built with: {}\n  in use:     {}\n",
            list(&self.built_with),
            list(&self.in_use()),
        );
        if self.host.is_empty() && self.missing_on_host.is_empty() {
            text.push_str("  this host:  unknown (no /proc/cpuinfo)\n");
            return text;
        }
        text.push_str(&format!("  this host:  {}\n", list(&self.host)));
        if !self.missing_on_host.is_empty() {
            text.push_str(&format!(
                "  MISSING on this host: {} (rebuild with LLMOPS_TARGET_CPU=native scripts/run.sh)\n",
                list(&self.missing_on_host)
            ));
        }
        if !self.unused_on_host.is_empty() {
            text.push_str(&format!(
                "  unused on this host: {} (a build with LLMOPS_TARGET_CPU=native would use them; see the README)\n",
                list(&self.unused_on_host)
            ));
        }
        text
    }
}

/// The names llama.cpp reports as "= 1" in its CPU section.
fn built_features(system_info: &str) -> Vec<String> {
    let Some(cpu) = system_info.split("CPU :").nth(1) else { return Vec::new() };
    // The section ends where the next backend's "NAME :" begins.
    let cpu = cpu.split(" : ").next().unwrap_or(cpu);
    cpu.split('|')
        .filter_map(|entry| entry.split_once('='))
        .filter(|(_, value)| value.trim() == "1")
        .map(|(name, _)| name.trim().to_string())
        .filter(|name| !name.is_empty() && !name.contains(' '))
        .collect()
}

/// llama.cpp's own account of its compiled-in backends and features.
#[allow(unsafe_code)]
fn llama_system_info() -> String {
    // SAFETY: llama_print_system_info takes no arguments and returns a pointer to a NUL-terminated string held
    // in a function-static std::string, valid until the next call. It is called once per process (through
    // `CpuFeatures::current`'s OnceLock) and copied out at once.
    unsafe {
        let text = llama_cpp_sys_2::llama_print_system_info();
        if text.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTABLE: &str =
        "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ";
    const SAPPHIRE_RAPIDS: &str = "processor\t: 0\nflags\t\t: fpu pni ssse3 fma avx f16c avx2 bmi2 avx512f \
        avx512_vnni avx512_bf16 amx_tile amx_int8 avx_vnni\n";

    #[test]
    fn a_portable_build_on_an_amx_host_uses_avx2_and_names_what_it_leaves_unused() {
        let features = CpuFeatures::from_reports(PORTABLE, SAPPHIRE_RAPIDS);
        assert_eq!(features.in_use(), ["SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2"]);
        assert!(features.built_with.contains(&"OPENMP".to_string()));
        assert!(features.missing_on_host.is_empty());
        assert_eq!(features.unused_on_host, ["AVX_VNNI", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8"]);
        let text = features.describe();
        assert!(text.contains("unused on this host: AVX_VNNI AVX512 AVX512_VNNI AVX512_BF16 AMX_INT8"), "{text}");
        assert!(!text.contains("MISSING"), "{text}");
    }

    #[test]
    fn a_build_the_host_cannot_run_is_named_missing() {
        let old_host = "flags\t: fpu pni ssse3 avx\n";
        let features = CpuFeatures::from_reports(PORTABLE, old_host);
        assert_eq!(features.missing_on_host, ["AVX2", "F16C", "FMA", "BMI2"]);
        assert!(features.describe().contains("MISSING on this host: AVX2 F16C FMA BMI2"));
    }

    #[test]
    fn an_unreadable_host_claims_nothing() {
        let features = CpuFeatures::from_reports(PORTABLE, "");
        assert!(features.host.is_empty() && features.missing_on_host.is_empty());
        assert!(features.describe().contains("this host:  unknown"));
    }

    #[test]
    fn other_backends_after_the_cpu_section_are_not_counted() {
        let info = "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : AVX2 = 1 | FMA = 0 | ";
        assert_eq!(built_features(info), ["AVX2"]);
        let info = "CPU : AVX2 = 1 | OPENMP = 1 | CUDA : USE_GRAPHS = 1 | ";
        assert_eq!(built_features(info), ["AVX2", "OPENMP"]);
        assert!(built_features("garbage").is_empty());
    }

    #[test]
    fn this_build_reports_its_own_features() {
        let features = CpuFeatures::current();
        // Whatever the level, llama.cpp's CPU backend reports at least one feature (OPENMP at the least).
        assert!(!features.built_with.is_empty(), "{features:?}");
        // The test is running, so the host has everything the build needs.
        assert!(features.missing_on_host.is_empty(), "{features:?}");
    }
}
