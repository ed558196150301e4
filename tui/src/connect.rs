//! One authenticated channel to the daemon, and clients made from it.
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use llmops_proto::v1::alert_service_client::AlertServiceClient;
use llmops_proto::v1::budget_service_client::BudgetServiceClient;
use llmops_proto::v1::cache_service_client::CacheServiceClient;
use llmops_proto::v1::eval_service_client::EvalServiceClient;
use llmops_proto::v1::feedback_service_client::FeedbackServiceClient;
use llmops_proto::v1::key_service_client::KeyServiceClient;
use llmops_proto::v1::prompt_service_client::PromptServiceClient;
use llmops_proto::v1::status_service_client::StatusServiceClient;
use llmops_proto::v1::telemetry_service_client::TelemetryServiceClient;
use llmops_proto::v1::trace_service_client::TraceServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::address::Target;
use crate::auth::BearerAuth;
use crate::tls::ClientTls;

/// A dead or absent daemon should fail fast, not hang a script.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pages of traces with bodies can be far larger than tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The daemon did not answer at `target`.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub target: String,
    pub cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot reach llmopsd at {}: {}", self.target, self.cause)
    }
}

impl std::error::Error for Unreachable {}

/// The channel type of every client handed out, with the token interceptor in front.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// One connection to the daemon; clients made from it share the channel and the token.
#[derive(Debug, Clone)]
pub struct Daemon {
    channel: Channel,
    auth: BearerAuth,
}

impl Daemon {
    /// Connects now (not lazily) so a missing daemon is reported before any command runs.
    pub async fn connect(target: &Target, auth: BearerAuth, tls: &ClientTls) -> Result<Self, Unreachable> {
        let channel = match target {
            Target::Unix(path) => connect_unix(path.clone()).await,
            Target::Url(url) => connect_url(url, tls).await,
        };
        let channel = channel.map_err(|cause| Unreachable { target: target.to_string(), cause })?;
        Ok(Self { channel, auth })
    }

    pub fn traces(&self) -> TraceServiceClient<AuthChannel> {
        TraceServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn status(&self) -> StatusServiceClient<AuthChannel> {
        StatusServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn telemetry(&self) -> TelemetryServiceClient<AuthChannel> {
        TelemetryServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn keys(&self) -> KeyServiceClient<AuthChannel> {
        KeyServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn budgets(&self) -> BudgetServiceClient<AuthChannel> {
        BudgetServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn alerts(&self) -> AlertServiceClient<AuthChannel> {
        AlertServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn feedback(&self) -> FeedbackServiceClient<AuthChannel> {
        FeedbackServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn prompts(&self) -> PromptServiceClient<AuthChannel> {
        PromptServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn evals(&self) -> EvalServiceClient<AuthChannel> {
        EvalServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn cache(&self) -> CacheServiceClient<AuthChannel> {
        CacheServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

async fn connect_url(url: &str, tls: &ClientTls) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|err| describe_error(&err))?;
    if url.starts_with("https://") {
        endpoint = endpoint.tls_config(tls.config()).map_err(|err| describe_error(&err))?;
    }
    endpoint.connect_timeout(CONNECT_TIMEOUT).connect().await.map_err(|err| describe_error(&err))
}

#[cfg(unix)]
async fn connect_unix(path: PathBuf) -> Result<Channel, String> {
    // The URL is only a placeholder for the HTTP/2 :authority; the connector ignores it.
    Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|err| describe_error(&err))
}

#[cfg(not(unix))]
async fn connect_unix(_path: PathBuf) -> Result<Channel, String> {
    Err("Unix sockets are not supported on this platform".to_owned())
}

/// The error and its causes as one line, skipping tonic's bare "transport error" and repeated wording.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(error) = current {
        let text = error.to_string();
        let repeats_previous = parts.last().is_some_and(|last| last.contains(&text));
        if text != "transport error" && !text.is_empty() && !repeats_previous {
            parts.push(text);
        }
        current = error.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_unreachable_with_the_os_reason() {
        let target = Target::Unix(PathBuf::from("/nonexistent/llmopsctl-test.sock"));
        let err =
            Daemon::connect(&target, BearerAuth::default(), &ClientTls::default()).await.expect_err("no daemon there");
        assert_eq!(err.target, "unix:/nonexistent/llmopsctl-test.sock");
        assert!(err.cause.contains("No such file or directory"), "{}", err.cause);
        assert!(!err.cause.starts_with("transport error"), "{}", err.cause);
    }
}
