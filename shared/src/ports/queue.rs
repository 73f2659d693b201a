//! The work queue port: where a function puts the parts of a unit too large for one
//! invocation, for itself (or another of its environments) to take up.

use async_trait::async_trait;

use crate::error::{Classify, FailureClass};

/// The queue could not take the parts: always worth another try.
#[derive(Debug, Clone, thiserror::Error)]
#[error("work queue: {0}")]
pub struct QueueError(pub String);

impl Classify for QueueError {
    fn class(&self) -> FailureClass {
        FailureClass::Transient
    }
}

/// One part of a large unit, ready for the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedPart {
    /// The part's event id: `<unit id>/part-<n>`.
    pub id: String,
    /// Its CloudEvents body.
    pub body: String,
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queues every part, or fails (parts already sent are harmless: each is processed
    /// once, by its key).
    async fn send(&self, parts: &[QueuedPart]) -> Result<(), QueueError>;
}
