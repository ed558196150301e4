//! The gRPC API (`llmops.v1`) with server reflection and `grpc.health.v1`. By default on a Unix socket only
//! the daemon's user can open (mode 0600); on TCP only when configured, then with TLS (or an explicit
//! `grpc_insecure`), and every call needs a bearer token whose role allows the method (`access.rs`).
pub mod access;
pub mod alerts;
pub mod budgets;
pub mod cache;
mod convert;
pub mod evals;
mod evals_convert;
pub mod feedback;
pub mod keys;
pub mod prompts;
pub mod replay;
pub mod status;
mod store_query;
pub mod telemetry;
mod tls;
pub mod traces;
pub mod watch;

use crate::config::GrpcListen;
use crate::shutdown::Shutdown;
use llmops_proto::v1 as pb;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC listen address {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("another llmopsd is already listening on {0}")]
    SocketInUse(PathBuf),
    #[error("gRPC listens on TCP {addr}, which requires a bearer token: set the environment variable {env}")]
    MissingToken { addr: String, env: String },
    #[error("the read-only token (${read_env}) is the admin token (${admin_env}): give them different values")]
    SameTokens { admin_env: String, read_env: String },
    #[error("gRPC TLS: {0}")]
    Tls(String),
    #[error("gRPC server: {0}")]
    Serve(String),
}

enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

/// The services, one per API area.
pub struct Apis {
    pub traces: traces::TraceApi,
    pub status: status::StatusApi,
    pub telemetry: telemetry::TelemetryApi,
    pub keys: keys::KeyApi,
    pub budgets: budgets::BudgetApi,
    pub alerts: alerts::AlertApi,
    pub feedback: feedback::FeedbackApi,
    pub prompts: prompts::PromptApi,
    pub evals: evals::EvalApi,
    pub cache: cache::CacheApi,
}

/// A bound gRPC listener, not yet serving.
pub struct BoundGrpc {
    listener: Listener,
    tokens: access::Tokens,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub display_addr: String,
}

impl BoundGrpc {
    pub async fn bind(listen: &GrpcListen, server: &crate::config::ServerConfig) -> Result<Self, GrpcError> {
        match listen {
            GrpcListen::Unix(path) => {
                let listener = bind_unix(path).await?;
                Ok(Self {
                    listener: Listener::Unix(listener, path.clone()),
                    tokens: access::Tokens::open(),
                    tls: None,
                    display_addr: format!("unix:{}", path.display()),
                })
            }
            GrpcListen::Tcp(addr) => {
                let admin = token_from_env(&server.grpc_token_env).ok_or_else(|| GrpcError::MissingToken {
                    addr: addr.to_string(),
                    env: server.grpc_token_env.clone(),
                })?;
                let read_only = token_from_env(&server.grpc_read_token_env);
                if read_only.as_ref() == Some(&admin) {
                    return Err(GrpcError::SameTokens {
                        admin_env: server.grpc_token_env.clone(),
                        read_env: server.grpc_read_token_env.clone(),
                    });
                }
                let tls = tls::server_config(server).map_err(GrpcError::Tls)?;
                if tls.is_none() {
                    tracing::warn!(
                        %addr,
                        "gRPC serves plain TCP (server.grpc_insecure = true): tokens, prompts and answers cross the \
                         network unencrypted; set server.grpc_tls_cert and grpc_tls_key"
                    );
                }
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| GrpcError::Bind { addr: addr.to_string(), source })?;
                let bound = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
                // The address as clients spell it: `https://` tells llmopsctl to speak TLS.
                let display_addr = if tls.is_some() { format!("https://{bound}") } else { bound };
                Ok(Self {
                    listener: Listener::Tcp(listener),
                    tokens: access::Tokens::new(admin, read_only),
                    tls,
                    display_addr,
                })
            }
        }
    }

    /// Serves until `shutdown` fires.
    pub async fn serve(self, apis: Apis, mut shutdown: Shutdown) -> Result<(), GrpcError> {
        let Apis {
            traces: trace_api,
            status: status_api,
            telemetry: telemetry_api,
            keys: key_api,
            budgets,
            alerts,
            prompts,
            feedback: feedback_api,
            evals,
            cache,
        } = apis;
        let (mut health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<pb::trace_service_server::TraceServiceServer<traces::TraceApi>>().await;
        health.set_serving::<pb::status_service_server::StatusServiceServer<status::StatusApi>>().await;
        health.set_serving::<pb::telemetry_service_server::TelemetryServiceServer<telemetry::TelemetryApi>>().await;
        health.set_serving::<pb::key_service_server::KeyServiceServer<keys::KeyApi>>().await;
        health.set_serving::<pb::budget_service_server::BudgetServiceServer<budgets::BudgetApi>>().await;
        health.set_serving::<pb::alert_service_server::AlertServiceServer<alerts::AlertApi>>().await;
        health.set_serving::<pb::prompt_service_server::PromptServiceServer<prompts::PromptApi>>().await;
        health.set_serving::<pb::feedback_service_server::FeedbackServiceServer<feedback::FeedbackApi>>().await;
        health.set_serving::<pb::eval_service_server::EvalServiceServer<evals::EvalApi>>().await;
        health.set_serving::<pb::cache_service_server::CacheServiceServer<cache::CacheApi>>().await;
        let reflection = |builder: tonic_reflection::server::Builder<'static>| {
            builder
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
            .build_v1()
            .map_err(|e| GrpcError::Serve(e.to_string()))?;
        let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
            .build_v1alpha()
            .map_err(|e| GrpcError::Serve(e.to_string()))?;
        let tokens = self.tokens;
        let auth = move |request: tonic::Request<()>| tokens.check(request);
        let layers =
            tower::ServiceBuilder::new().map_request(access::tag_method_path).layer(tonic::service::interceptor(auth));
        let router = Server::builder()
            .layer(layers)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(pb::trace_service_server::TraceServiceServer::new(trace_api))
            .add_service(pb::status_service_server::StatusServiceServer::new(status_api))
            .add_service(pb::telemetry_service_server::TelemetryServiceServer::new(telemetry_api))
            .add_service(pb::key_service_server::KeyServiceServer::new(key_api))
            .add_service(pb::budget_service_server::BudgetServiceServer::new(budgets))
            .add_service(pb::alert_service_server::AlertServiceServer::new(alerts))
            .add_service(pb::prompt_service_server::PromptServiceServer::new(prompts))
            .add_service(pb::feedback_service_server::FeedbackServiceServer::new(feedback_api))
            .add_service(pb::eval_service_server::EvalServiceServer::new(evals))
            .add_service(pb::cache_service_server::CacheServiceServer::new(cache));
        let stop = async move { shutdown.wait().await };
        let result = match self.listener {
            Listener::Unix(listener, path) => {
                let result = router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop).await;
                let _ = std::fs::remove_file(&path);
                result
            }
            Listener::Tcp(listener) => match self.tls {
                Some(config) => router.serve_with_incoming_shutdown(tls::incoming(listener, config), stop).await,
                None => router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop).await,
            },
        };
        result.map_err(|e| GrpcError::Serve(e.to_string()))
    }
}

async fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, GrpcError> {
    let bind_err = |source| GrpcError::Bind { addr: format!("unix:{}", path.display()), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(bind_err)?;
    }
    if path.exists() {
        // A socket file that still answers belongs to a running daemon; one that does not is stale.
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(GrpcError::SocketInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(bind_err)?;
    }
    let (listener, staged) = bind_staged(path).map_err(bind_err)?;
    publish(&staged, path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => GrpcError::SocketInUse(path.to_path_buf()),
        _ => bind_err(source),
    })?;
    Ok(listener)
}

/// A socket bound, and made 0600, inside a fresh 0700 directory beside its final path, so that no one else
/// can connect to it at any moment, whatever the umask and the mode of the socket's directory.
struct Staged {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

fn bind_staged(path: &Path) -> std::io::Result<(tokio::net::UnixListener, Staged)> {
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // A short name: the staged path must fit in a socket address wherever the final one does.
    let dir = tempfile::Builder::new().prefix(".l").rand_bytes(6).tempdir_in(parent)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let socket = dir.path().join("s");
    let listener = tokio::net::UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, Staged { dir, socket }))
}

/// Gives the staged socket its final name: a hard link, which fails if another daemon got there first
/// (rename where the file system refuses links), then drops the staging directory.
fn publish(staged: &Staged, path: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(&staged.socket, path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(error),
        Err(_) => std::fs::rename(&staged.socket, path),
    }?;
    // The listener stays bound: the socket is the inode, now reached by `path`.
    let _ = std::fs::remove_file(&staged.socket);
    let _ = std::fs::remove_dir(staged.dir.path());
    Ok(())
}

/// Trimmed as llmopsctl trims it, so a token read from a file with a newline still matches.
fn token_from_env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_socket_is_private_and_a_second_daemon_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/llmopsd.sock");
        let _listener = bind_unix(&path).await.expect("bind");
        let mode = std::fs::metadata(&path).expect("socket").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind_unix(&path).await, Err(GrpcError::SocketInUse(_))));
    }

    #[tokio::test]
    async fn the_socket_is_bound_where_no_one_else_can_reach_it_then_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory everyone may enter: binding there directly would leave a window before the chmod.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let path = dir.path().join("llmopsd.sock");
        let (_listener, staged) = bind_staged(&path).expect("bind");
        assert!(!path.exists(), "nothing at the final path before it is private");
        let staged_dir = staged.socket.parent().expect("staging directory");
        assert_eq!(std::fs::metadata(staged_dir).expect("dir").permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&staged.socket).expect("socket").permissions().mode() & 0o777, 0o600);
        publish(&staged, &path).expect("publish");
        tokio::net::UnixStream::connect(&path).await.expect("the published socket answers");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read_dir").filter_map(Result::ok).collect();
        assert_eq!(left.len(), 1, "only the socket is left: {left:?}");
        drop(staged);
    }

    #[tokio::test]
    async fn tcp_without_token_is_refused() {
        let listen = GrpcListen::Tcp("127.0.0.1:0".parse().expect("addr"));
        let server = crate::config::ServerConfig {
            grpc_token_env: "LLMOPS_TEST_TOKEN_THAT_IS_NOT_SET".into(),
            grpc_insecure: true,
            ..Default::default()
        };
        let result = BoundGrpc::bind(&listen, &server).await;
        assert!(matches!(result, Err(GrpcError::MissingToken { .. })));
    }
}
