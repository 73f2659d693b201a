//! The work queue port: where a function puts the parts of a unit too large for one
//! invocation, for itself (or another of its environments) to take up.

use async_trait::async_trait;
use std::time::Duration;

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

/// Messages a function received but cannot work on yet (the invitation circuit is open),
/// kept out of sight until they can be: so that waiting does not use up their receives and
/// send them to the dead-letter queue.
#[async_trait]
pub trait Redelivery: Send + Sync {
    /// Hides the messages (by receipt handle) of the queue `queue_arn` for `delay`.
    async fn delay(
        &self,
        queue_arn: &str,
        receipt_handles: &[String],
        delay: Duration,
    ) -> Result<(), QueueError>;
}
