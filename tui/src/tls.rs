//! TLS for `https://` daemon addresses: the CA that signed the daemon's certificate (the public web roots when
//! none is given) and, for daemons that require one (mTLS), the client's own certificate and key.
use std::fmt;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The TLS flags `llmopsctl` and `llmops-top` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM CA certificate(s) that signed the daemon's certificate, for https:// addresses
    /// [default: the public web PKI roots]
    #[arg(long, global = true, env = "LLMOPS_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate, for a daemon that requires one (server.grpc_tls_client_ca); with --tls-key
    #[arg(long, global = true, env = "LLMOPS_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(long, global = true, env = "LLMOPS_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Loaded once at start, so a missing file is a usage error before any connection is tried.
#[derive(Clone, Default)]
pub struct ClientTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
}

// Hand-written: key material never reaches debug output.
impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientTls {
    pub fn load(args: &TlsArgs) -> Result<Self, String> {
        let ca = args.tls_ca.as_deref().map(|path| read_pem("--tls-ca", path)).transpose()?.map(Certificate::from_pem);
        let identity = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Identity::from_pem(read_pem("--tls-cert", cert)?, read_pem("--tls-key", key)?))
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".to_owned()),
        };
        Ok(Self { ca, identity })
    }

    /// tonic's client TLS settings; the server name checked is the address's host.
    pub fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(ca.clone()),
            None => config.with_webpki_roots(),
        };
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        config
    }
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    llmops_proto::pem::read_pem(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_wrong_and_oversized_files_are_refused_by_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_pem = dir.path().join("x.txt");
        std::fs::write(&not_pem, "hello").expect("write");
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'-'; 2 * 1024 * 1024]).expect("write");
        let load = |ca: &Path| ClientTls::load(&TlsArgs { tls_ca: Some(ca.to_path_buf()), ..TlsArgs::default() });
        assert!(load(&dir.path().join("absent.pem")).expect_err("absent").contains("--tls-ca"));
        assert!(load(&not_pem).expect_err("not pem").contains("not a PEM file"));
        assert!(load(&big).expect_err("big").contains("is not a PEM file"));
        let half = TlsArgs { tls_cert: Some(not_pem), ..TlsArgs::default() };
        assert!(ClientTls::load(&half).expect_err("half").contains("go together"));
    }
}
