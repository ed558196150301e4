//! `[export.otlp]`: where traces go as OpenTelemetry spans, in which shape, and how hard the daemon tries.
use super::Profile;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    pub otlp: OtlpConfig,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies, POSTed to `{endpoint}/v1/traces`.
    #[default]
    Http,
    /// OTLP/gRPC (`TraceService/Export`) at `endpoint`.
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL of the receiver (`http://collector:4318`, `http://phoenix:6006`, or for gRPC
    /// `http://collector:4317`); empty: no export.
    pub endpoint: String,
    pub protocol: Protocol,
    pub profile: Profile,
    /// Phoenix project (resource attribute `openinference.project.name`); empty: "default".
    pub project: String,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Export prompts, answers and error texts (`gen_ai.input.messages`, `input.value`...). Off: only
    /// metadata leaves the host.
    pub content: bool,
    /// Characters of content kept per side (input, output); longer is cut and marked.
    pub max_content_chars: usize,
    /// Environment variable holding extra headers, `key=value,key2=value2` (API keys for hosted backends).
    pub headers_env: String,
    /// For `profile = "langfuse"`: environment variables with the project's public and secret keys, sent as
    /// HTTP Basic authentication.
    pub langfuse_public_key_env: String,
    pub langfuse_secret_key_env: String,
    /// Traces waiting in the outbox at most; past it the oldest are dropped and counted.
    pub outbox_capacity: u64,
    /// Traces per export request.
    pub batch_size: usize,
    /// How long a trace may wait for a batch to fill before it is sent.
    pub flush_interval_ms: u64,
    /// One export request's time limit.
    pub timeout_ms: u64,
    /// Retry delays after a failed send: from the first, doubling up to the last.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: Protocol::Http,
            profile: Profile::Genai,
            project: String::new(),
            service_name: "llmopsd".into(),
            content: false,
            max_content_chars: super::DEFAULT_MAX_CONTENT_CHARS,
            headers_env: "LLMOPS_OTLP_HEADERS".into(),
            langfuse_public_key_env: "LANGFUSE_PUBLIC_KEY".into(),
            langfuse_secret_key_env: "LANGFUSE_SECRET_KEY".into(),
            outbox_capacity: 100_000,
            batch_size: 256,
            flush_interval_ms: 1_000,
            timeout_ms: 10_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
        }
    }
}

/// Most headers taken from `headers_env`, and their size.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 8 * 1024;

impl OtlpConfig {
    pub fn enabled(&self) -> bool {
        !self.endpoint.trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        let key = |name: &str| format!("export.otlp.{name}");
        if self.enabled() {
            let endpoint = self.endpoint.trim();
            let uri: axum::http::Uri =
                endpoint.parse().map_err(|e| format!("{} = {endpoint:?} is not a URL ({e})", key("endpoint")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
                return Err(format!("{} = {endpoint:?}: expected http(s)://host[:port][/path]", key("endpoint")));
            }
            if uri.query().is_some() {
                return Err(format!("{} = {endpoint:?} takes no query string", key("endpoint")));
            }
            if self.protocol == Protocol::Grpc && uri.path() != "/" && !uri.path().is_empty() {
                return Err(format!("{} = {endpoint:?}: a gRPC endpoint takes no path", key("endpoint")));
            }
        }
        if self.protocol == Protocol::Grpc && self.profile == Profile::Langfuse {
            return Err(format!("{}: Langfuse receives OTLP over HTTP only: set protocol = \"http\"", key("protocol")));
        }
        let ranges: [(&str, u64, u64, u64); 7] = [
            ("outbox_capacity", self.outbox_capacity, 1, 10_000_000),
            ("batch_size", self.batch_size as u64, 1, 10_000),
            ("flush_interval_ms", self.flush_interval_ms, 10, 3_600_000),
            ("timeout_ms", self.timeout_ms, 100, 600_000),
            ("retry_initial_ms", self.retry_initial_ms, 10, 3_600_000),
            ("retry_max_ms", self.retry_max_ms, 10, 3_600_000),
            ("max_content_chars", self.max_content_chars as u64, 0, 1_048_576),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!("{} = {value} is outside {low}..={high}", key(name)));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(format!("{} is less than retry_initial_ms", key("retry_max_ms")));
        }
        if self.project.chars().count() > 256 || self.service_name.chars().count() > 256 {
            return Err(format!("{} and service_name: at most 256 characters", key("project")));
        }
        Ok(())
    }

    /// The extra headers from the environment (`headers_env`) and, for Langfuse, its Basic authentication.
    pub fn headers(&self) -> Result<Vec<(String, String)>, String> {
        let mut headers = match std::env::var(&self.headers_env) {
            Ok(raw) if !raw.trim().is_empty() => {
                parse_headers(&raw).map_err(|e| format!("${}: {e}", self.headers_env))?
            }
            _ => Vec::new(),
        };
        if self.profile == Profile::Langfuse {
            let public = std::env::var(&self.langfuse_public_key_env).unwrap_or_default();
            let secret = std::env::var(&self.langfuse_secret_key_env).unwrap_or_default();
            match (public.trim(), secret.trim()) {
                ("", "") => {}
                ("", _) | (_, "") => {
                    return Err(format!(
                        "profile langfuse: set both ${} and ${}",
                        self.langfuse_public_key_env, self.langfuse_secret_key_env
                    ))
                }
                (public, secret) => {
                    use base64::Engine;
                    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{public}:{secret}"));
                    headers.push(("authorization".into(), format!("Basic {basic}")));
                }
            }
        }
        Ok(headers)
    }
}

/// `key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS's format; values may be percent-encoded), bounded,
/// with names and values HTTP can carry.
pub fn parse_headers(raw: &str) -> Result<Vec<(String, String)>, String> {
    if raw.len() > MAX_HEADER_BYTES {
        return Err(format!("{} bytes of headers, at most {MAX_HEADER_BYTES}", raw.len()));
    }
    let mut headers = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| "expected key=value pairs separated by commas".to_string())?;
        let (name, value) = (name.trim().to_ascii_lowercase(), percent_decode(value.trim()));
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("header name {name:?} is not a valid HTTP header name"));
        }
        if axum::http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("the value of header {name:?} has characters HTTP headers cannot carry"));
        }
        headers.push((name, value));
    }
    if headers.len() > MAX_HEADERS {
        return Err(format!("{} headers, at most {MAX_HEADERS}", headers.len()));
    }
    Ok(headers)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str) -> OtlpConfig {
        OtlpConfig { endpoint: endpoint.into(), ..OtlpConfig::default() }
    }

    #[test]
    fn endpoints_and_bounds_are_checked() {
        assert!(OtlpConfig::default().validate().is_ok());
        assert!(with("http://127.0.0.1:4318").validate().is_ok());
        assert!(with("https://cloud.langfuse.com/api/public/otel").validate().is_ok());
        for bad in ["collector:4318", "ftp://x", "http://", "http://x/?a=b", "not a url"] {
            assert!(with(bad).validate().is_err(), "{bad}");
        }
        let grpc_path = OtlpConfig { protocol: Protocol::Grpc, ..with("http://x:4317/v1") };
        assert!(grpc_path.validate().is_err());
        let langfuse_grpc = OtlpConfig { protocol: Protocol::Grpc, profile: Profile::Langfuse, ..with("http://x:1") };
        assert!(langfuse_grpc.validate().expect_err("langfuse is http only").contains("HTTP only"));
        let zero = OtlpConfig { batch_size: 0, ..with("http://x:1") };
        assert!(zero.validate().expect_err("zero batch").contains("batch_size"));
        let huge = OtlpConfig { outbox_capacity: u64::MAX, ..with("http://x:1") };
        assert!(huge.validate().is_err());
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert_eq!(
            parse_headers("x-api-key=abc, Authorization=Bearer%20t").expect("valid"),
            vec![("x-api-key".into(), "abc".into()), ("authorization".into(), "Bearer t".into())]
        );
        assert!(parse_headers("x-a=1%0d%0aInjected: yes").is_err(), "CRLF smuggled through percent-encoding");
        assert!(parse_headers("bad name=1").is_err());
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers(&"a=b,".repeat(40)).is_err(), "too many");
        assert!(parse_headers(&format!("a={}", "x".repeat(10_000))).is_err(), "too long");
    }
}
