//! Traces: the model of one request, the recorder that queues them off the request path, and the store.
pub mod model;
pub mod recorder;
pub mod store;

pub use model::{Attempt, Trace, TraceStatus};
pub use recorder::{EventKind, Recorder, RecorderSettings, TraceEvent, WriterHandle};
pub use store::{Store, StoreError, TraceQuery};
