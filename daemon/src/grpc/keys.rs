//! `llmops.v1.KeyService`: make, list and revoke API keys.
use crate::auth::{Authenticator, KeyError, KeyRecord};
use llmops_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct KeyApi {
    pub auth: Arc<Authenticator>,
}

fn key_to_proto(record: KeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: record.id,
        tenant: record.tenant,
        name: record.name,
        created_unix_ms: record.created_unix_ms,
        revoked: record.revoked,
        source: record.source.into(),
    }
}

fn status(error: KeyError) -> Status {
    match error {
        KeyError::NoSuchKey(_) => Status::not_found(error.to_string()),
        KeyError::Invalid(_) | KeyError::BadHash { .. } | KeyError::EmptyTenant { .. } => {
            Status::invalid_argument(error.to_string())
        }
        KeyError::Store { .. } => Status::internal(error.to_string()),
    }
}

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeyApi {
    async fn create_key(&self, request: Request<pb::CreateKeyRequest>) -> Result<Response<pb::CreatedKey>, Status> {
        let request = request.into_inner();
        let auth = self.auth.clone();
        let (record, secret) = tokio::task::spawn_blocking(move || auth.create(&request.tenant, &request.name))
            .await
            .map_err(|e| Status::internal(format!("key task failed: {e}")))?
            .map_err(status)?;
        tracing::info!(id = %record.id, tenant = %record.tenant, "API key created");
        Ok(Response::new(pb::CreatedKey { key: Some(key_to_proto(record)), secret }))
    }

    async fn list_keys(&self, _: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        let keys = self.auth.list().into_iter().map(key_to_proto).collect();
        Ok(Response::new(pb::ListKeysResponse { keys, key_required: self.auth.key_required() }))
    }

    async fn revoke_key(&self, request: Request<pb::RevokeKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let id = request.into_inner().id;
        let auth = self.auth.clone();
        let record = tokio::task::spawn_blocking(move || auth.revoke(&id))
            .await
            .map_err(|e| Status::internal(format!("key task failed: {e}")))?
            .map_err(status)?;
        tracing::info!(id = %record.id, tenant = %record.tenant, "API key revoked");
        Ok(Response::new(key_to_proto(record)))
    }
}
