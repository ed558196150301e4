//! Traces: the model of one request, the recorder that queues them (and feedback scores) off the request
//! path, and the store.
pub mod model;
pub mod recorder;
pub mod score;
pub mod store;

pub use model::{Attempt, Trace, TraceStatus};
pub use recorder::{EventKind, Located, QueueFull, Recorder, RecorderSettings, TraceEvent, WriterHandle};
pub use score::{Score, ScoreRefused, ScoreSource, ScoreValue, TraceLabels, MAX_SCORES_PER_TRACE};
pub use store::{Store, StoreError, TraceQuery};
