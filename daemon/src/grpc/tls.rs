//! TLS for the TCP gRPC listener, done here rather than by tonic so that (1) a bad certificate, key or CA stops
//! the daemon before it says it is listening, and (2) handshakes are bounded: a client that connects and never
//! finishes its handshake is cut off after `HANDSHAKE_TIMEOUT`, and at most `MAX_HANDSHAKES` run at once (past
//! that, new connections are closed at once), so a slow or hostile peer cannot pile up sockets and tasks.
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 128;

/// The TLS settings from `[server] grpc_tls_cert`, `grpc_tls_key` and (mTLS) `grpc_tls_client_ca`.
pub fn server_config(server: &crate::config::ServerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    if server.grpc_tls_cert.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_pem = read_pem("grpc_tls_cert", &server.grpc_tls_cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.grpc_tls_cert = {:?}: {e}", server.grpc_tls_cert))?;
    if certs.is_empty() {
        return Err(format!("server.grpc_tls_cert = {:?} holds no certificate", server.grpc_tls_cert));
    }
    let key_pem = read_pem("grpc_tls_key", &server.grpc_tls_key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("server.grpc_tls_key = {:?}: no private key ({e})", server.grpc_tls_key))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if server.grpc_tls_client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let ca_pem = read_pem("grpc_tls_client_ca", &server.grpc_tls_client_ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert = cert.map_err(|e| format!("server.grpc_tls_client_ca = {:?}: {e}", server.grpc_tls_client_ca))?;
            roots.add(cert).map_err(|e| format!("server.grpc_tls_client_ca = {:?}: {e}", server.grpc_tls_client_ca))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("server.grpc_tls_client_ca = {:?}: {e}", server.grpc_tls_client_ca))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.grpc_tls_cert and grpc_tls_key do not make a TLS identity: {e}"))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn read_pem(key: &str, path: &str) -> Result<Vec<u8>, String> {
    llmops_proto::pem::read_pem(std::path::Path::new(path)).map_err(|e| format!("server.{key} = {path:?}: {e}"))
}

/// Accepted connections whose TLS handshake completed, in the order they completed.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (ready, stream) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // tonic dropped the stream: the server has stopped.
                _ = ready.closed() => return,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::debug!(%error, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "gRPC: too many TLS handshakes in progress; connection closed");
                continue;
            };
            let (acceptor, ready) = (acceptor.clone(), ready.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "gRPC TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
