//! The daemon's gRPC address: parsed from `--connect`, or the socket a daemon started without flags uses.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use llmops_proto::paths::{default_data_dir, default_socket_path, SOCKET_NAME};
use tonic::transport::Uri;

/// The daemon's gRPC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `http://host:port` or `https://host:port` (TLS), stored normalised without a trailing slash.
    Url(String),
}

/// Why a `--connect` value is not an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAddress {
    pub address: String,
    pub reason: &'static str,
}

impl fmt::Display for BadAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad address {:?}: {} (expected unix:/path.sock, /path.sock, https://host:port (TLS), http://host:port or host:port)",
            self.address, self.reason
        )
    }
}

impl std::error::Error for BadAddress {}

impl FromStr for Target {
    type Err = BadAddress;

    fn from_str(address: &str) -> Result<Self, Self::Err> {
        let bad = |reason| BadAddress { address: address.to_owned(), reason };
        let trimmed = address.trim();
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(path) = trimmed.strip_prefix("unix:") {
            // `unix:///abs` is the gRPC URI spelling of `unix:/abs`.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("no socket path after unix:"));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        if trimmed.starts_with('/') || trimmed.starts_with("./") || trimmed.starts_with("../") {
            return Ok(Target::Unix(PathBuf::from(trimmed)));
        }
        if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            return parse_url(trimmed).map(Target::Url).map_err(bad);
        }
        if trimmed.contains("://") {
            return Err(bad("unsupported scheme"));
        }
        parse_host_port(trimmed).map(Target::Url).map_err(bad)
    }
}

fn parse_url(url: &str) -> Result<String, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "not a valid URL")?;
    let authority = uri.authority().ok_or("no host")?;
    if authority.host().is_empty() {
        return Err("no host");
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err("gRPC addresses take no path or query");
    }
    let scheme = uri.scheme_str().ok_or("no scheme")?;
    Ok(format!("{scheme}://{authority}"))
}

fn parse_host_port(address: &str) -> Result<String, &'static str> {
    let (host, port) = address.rsplit_once(':').ok_or("no port (use host:port)")?;
    if host.is_empty() {
        return Err("no host");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("IPv6 hosts go in brackets, like [::1]:50051");
    }
    port.parse::<u16>().map_err(|_| "the port must be a number from 0 to 65535")?;
    parse_url(&format!("http://{host}:{port}"))
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Url(url) => f.write_str(url),
        }
    }
}

impl Target {
    /// The socket a daemon started without flags listens on (see `llmops_proto::paths`).
    pub fn default_socket() -> Self {
        let data_dir = default_data_dir();
        Target::Unix(pick_socket(&default_socket_path(&data_dir), &data_dir.join(SOCKET_NAME)))
    }
}

/// The preferred socket, unless only the fallback exists: a daemon started without `XDG_RUNTIME_DIR`
/// puts its socket in the data dir, and a client run from another session may see a runtime dir.
pub fn pick_socket(preferred: &Path, fallback: &Path) -> PathBuf {
    if !preferred.exists() && fallback.exists() {
        fallback.to_path_buf()
    } else {
        preferred.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(address: &str) -> Result<Target, &'static str> {
        address.parse::<Target>().map_err(|err| err.reason)
    }

    #[test]
    fn unix_addresses() {
        let sock = Target::Unix(PathBuf::from("/run/llmops/llmopsd.sock"));
        assert_eq!(parse("unix:/run/llmops/llmopsd.sock"), Ok(sock.clone()));
        assert_eq!(parse("unix:///run/llmops/llmopsd.sock"), Ok(sock.clone()));
        assert_eq!(parse("/run/llmops/llmopsd.sock"), Ok(sock.clone()));
        assert_eq!(parse("./d.sock"), Ok(Target::Unix(PathBuf::from("./d.sock"))));
        assert_eq!(sock.to_string(), "unix:/run/llmops/llmopsd.sock");
    }

    #[test]
    fn url_addresses_are_normalised() {
        assert_eq!(parse("http://127.0.0.1:50051"), Ok(Target::Url("http://127.0.0.1:50051".into())));
        assert_eq!(parse("http://localhost:50051/"), Ok(Target::Url("http://localhost:50051".into())));
        assert_eq!(parse("localhost:50051"), Ok(Target::Url("http://localhost:50051".into())));
        assert_eq!(parse("[::1]:50051"), Ok(Target::Url("http://[::1]:50051".into())));
        assert_eq!(parse("localhost:50051").map(|t| t.to_string()), Ok("http://localhost:50051".to_owned()));
    }

    #[test]
    fn bad_addresses_say_why() {
        assert_eq!(parse(""), Err("empty"));
        assert_eq!(parse("unix:"), Err("no socket path after unix:"));
        assert_eq!(parse("localhost"), Err("no port (use host:port)"));
        assert_eq!(parse(":50051"), Err("no host"));
        assert_eq!(parse("localhost:http"), Err("the port must be a number from 0 to 65535"));
        assert_eq!(parse("localhost:70000"), Err("the port must be a number from 0 to 65535"));
        assert_eq!(parse("::1:50051"), Err("IPv6 hosts go in brackets, like [::1]:50051"));
        assert_eq!(parse("ftp://host:21"), Err("unsupported scheme"));
        assert_eq!(parse("https://llmops.example:443"), Ok(Target::Url("https://llmops.example:443".into())));
        assert_eq!(parse("http://host:1/api"), Err("gRPC addresses take no path or query"));
        assert_eq!(parse("http://"), Err("not a valid URL"));
        let message = "nope".parse::<Target>().expect_err("no port").to_string();
        assert!(message.starts_with("bad address \"nope\": no port"), "{message}");
    }

    #[test]
    fn fallback_socket_is_used_only_when_the_preferred_one_is_missing() {
        let dir = std::env::temp_dir().join(format!("llmopsctl-pick-socket-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let preferred = dir.join("runtime.sock");
        let fallback = dir.join("data.sock");
        assert_eq!(pick_socket(&preferred, &fallback), preferred, "neither exists");
        std::fs::write(&fallback, b"").expect("create fallback");
        assert_eq!(pick_socket(&preferred, &fallback), fallback, "only the fallback exists");
        std::fs::write(&preferred, b"").expect("create preferred");
        assert_eq!(pick_socket(&preferred, &fallback), preferred, "both exist");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
