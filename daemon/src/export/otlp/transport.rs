//! Sending one export request over OTLP/HTTP (protobuf) or OTLP/gRPC, and telling what the receiver's answer
//! means for the batch: accepted, worth retrying, or refused for good.
use super::config::{OtlpConfig, Protocol};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use std::time::Duration;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver has it (`rejected_spans` of it refused in a partial success).
    Accepted { rejected_spans: u64 },
    /// Try again later (receiver down, overloaded, timed out, or not accepting our credentials yet).
    Retry { error: String, after: Option<Duration> },
    /// The receiver says this payload will never be accepted (malformed, too large).
    Refused { error: String },
}

/// A receiver's answer body is read up to this much (a partial-success message is small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// A `Retry-After` longer than this is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub enum Transport {
    Http { client: reqwest::Client, url: String, headers: reqwest::header::HeaderMap },
    Grpc { client: TraceServiceClient<tonic::transport::Channel>, headers: Vec<(String, String)>, timeout: Duration },
}

impl Transport {
    /// The URL (HTTP: the endpoint with `/v1/traces` unless it already ends so) or address requests go to.
    pub fn target(config: &OtlpConfig) -> String {
        let endpoint = config.endpoint.trim().trim_end_matches('/');
        match config.protocol {
            Protocol::Http if endpoint.ends_with("/v1/traces") => endpoint.to_string(),
            Protocol::Http => format!("{endpoint}/v1/traces"),
            Protocol::Grpc => endpoint.to_string(),
        }
    }

    pub fn new(config: &OtlpConfig, headers: Vec<(String, String)>) -> Result<Self, String> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let target = Self::target(config);
        match config.protocol {
            Protocol::Http => {
                let mut map = reqwest::header::HeaderMap::new();
                for (name, value) in &headers {
                    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
                    let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
                    map.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(10)))
                    // A receiver that redirects is misconfigured; following it could send traces elsewhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("OTLP HTTP client: {e}"))?;
                Ok(Transport::Http { client, url: target, headers: map })
            }
            Protocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(target.clone())
                    .map_err(|e| format!("export.otlp.endpoint {target:?}: {e}"))?
                    .timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(10)));
                if target.starts_with("https://") {
                    let tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
                    endpoint = endpoint.tls_config(tls).map_err(|e| format!("OTLP gRPC TLS: {e}"))?;
                }
                let client = TraceServiceClient::new(endpoint.connect_lazy());
                Ok(Transport::Grpc { client, headers, timeout })
            }
        }
    }

    pub async fn send(&mut self, request: ExportTraceServiceRequest) -> Outcome {
        match self {
            Transport::Http { client, url, headers } => send_http(client, url, headers, request).await,
            Transport::Grpc { client, headers, timeout } => send_grpc(client, headers, *timeout, request).await,
        }
    }
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    request: ExportTraceServiceRequest,
) -> Outcome {
    let sent = client
        .post(url)
        .headers(headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => return Outcome::Retry { error: crate::engine::error_chain(&error), after: None },
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_RESPONSE_BYTES);
    let code = status.as_u16();
    if status.is_success() {
        // An empty or undecodable body is a plain success (the spec allows receivers to send nothing).
        let rejected_spans = ExportTraceServiceResponse::decode(body.as_slice())
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans.max(0) as u64);
        return Outcome::Accepted { rejected_spans };
    }
    let error = format!("HTTP {code} from {url}: {}", printable(&body));
    match code {
        // The OTLP specification's retryable statuses, plus the ones a fixed configuration or a receiver that
        // comes back cures: waiting loses nothing, dropping would.
        401 | 403 | 404 | 408 | 429 | 500..=599 => Outcome::Retry { error, after: retry_after },
        _ => Outcome::Refused { error },
    }
}

async fn send_grpc(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    headers: &[(String, String)],
    timeout: Duration,
    request: ExportTraceServiceRequest,
) -> Outcome {
    let mut call = tonic::Request::new(request);
    call.set_timeout(timeout);
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes()),
            value.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>(),
        ) else {
            continue;
        };
        call.metadata_mut().insert(name, value);
    }
    match client.export(call).await {
        Ok(response) => Outcome::Accepted {
            rejected_spans: response.into_inner().partial_success.map_or(0, |p| p.rejected_spans.max(0) as u64),
        },
        Err(status) => {
            use tonic::Code;
            let message: String = status.message().chars().take(200).collect();
            let error = format!("gRPC {:?}: {}", status.code(), message.escape_debug());
            match status.code() {
                Code::InvalidArgument | Code::OutOfRange | Code::DataLoss => Outcome::Refused { error },
                _ => Outcome::Retry { error, after: None },
            }
        }
    }
}

/// A receiver's error body, shown escaped and short.
fn printable(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    text.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets_get_the_traces_path_once() {
        let config =
            |endpoint: &str, protocol| OtlpConfig { endpoint: endpoint.into(), protocol, ..OtlpConfig::default() };
        assert_eq!(Transport::target(&config("http://c:4318", Protocol::Http)), "http://c:4318/v1/traces");
        assert_eq!(Transport::target(&config("http://c:4318/", Protocol::Http)), "http://c:4318/v1/traces");
        assert_eq!(
            Transport::target(&config("https://l.example/api/public/otel", Protocol::Http)),
            "https://l.example/api/public/otel/v1/traces"
        );
        assert_eq!(Transport::target(&config("http://c:4318/v1/traces", Protocol::Http)), "http://c:4318/v1/traces");
        assert_eq!(Transport::target(&config("http://c:4317", Protocol::Grpc)), "http://c:4317");
    }

    #[test]
    fn receiver_bodies_are_cut_and_escaped() {
        let shown = printable(&[b"\x1b[2J".as_slice(), &[b'x'; 5000]].concat());
        assert!(!shown.contains('\x1b') && shown.len() < 260, "{shown:.40}");
    }
}
