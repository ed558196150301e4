//! The llmops gRPC API (`llmops.v1`), shared by the daemon and its clients, the default paths both agree on,
//! and how both read the PEM files of its TLS.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("llmops.v1");

    /// Encoded file descriptors, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("llmops_v1_descriptor");
}

pub mod paths;
pub mod pem;
