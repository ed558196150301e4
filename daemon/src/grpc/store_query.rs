//! Trace-store reads for the gRPC services: on the blocking pool, with store errors as gRPC statuses.
use crate::trace::{Store, StoreError};
use std::sync::{Arc, Mutex};
use tonic::Status;

/// Runs a query on the read connection off the async threads, with store errors as gRPC statuses.
pub async fn with_store<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let guard = store.lock().map_err(|_| Status::internal("trace store lock poisoned"))?;
        work(&guard).map_err(|e| match e {
            StoreError::BadPageToken(_) => Status::invalid_argument(e.to_string()),
            other => Status::internal(other.to_string()),
        })
    })
    .await
    .map_err(|e| Status::internal(format!("query task failed: {e}")))?
}
