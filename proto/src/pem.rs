//! PEM files for the gRPC API's TLS (the daemon's certificate, key and client CA; a client's CA and identity),
//! read with a size bound and a format check, so a wrong path is named plainly instead of by a TLS library's
//! parse error.
use std::fmt;
use std::path::Path;

/// PEM files are small; anything far larger is the wrong file.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

#[derive(Debug)]
pub enum PemError {
    Io(std::io::Error),
    TooLarge(u64),
    NotPem,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::Io(error) => write!(f, "{error}"),
            PemError::TooLarge(size) => write!(f, "{size} bytes is not a PEM file (at most {MAX_PEM_BYTES})"),
            PemError::NotPem => f.write_str("not a PEM file (no -----BEGIN line)"),
        }
    }
}

impl std::error::Error for PemError {}

pub fn read_pem(path: &Path) -> Result<Vec<u8>, PemError> {
    let size = std::fs::metadata(path).map_err(PemError::Io)?.len();
    if size > MAX_PEM_BYTES {
        return Err(PemError::TooLarge(size));
    }
    let bytes = std::fs::read(path).map_err(PemError::Io)?;
    if !bytes.windows(10).any(|window| window == b"-----BEGIN") {
        return Err(PemError::NotPem);
    }
    Ok(bytes)
}
