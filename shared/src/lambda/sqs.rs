//! SQS batches with partial batch responses (SPEC section 5): a message that failed for a
//! transient reason is reported in `batchItemFailures` and redelivered by SQS; everything
//! else is acknowledged.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use crate::app::Abort;
use crate::app::runtime::Runtime;
use crate::error::{Classify, FailureClass};

/// A message is not started with less time than this left: it would only be cut off.
const MIN_TIME_PER_MESSAGE: Duration = Duration::from_secs(2);

/// However many messages share the time, each may take at least this long (within the
/// invocation's deadline): most events need a few seconds of Graph calls.
const MIN_SHARE: Duration = Duration::from_secs(10);

/// One queue message, as the handler sees it.
pub struct QueueMessage {
    pub message_id: String,
    pub body: String,
    /// The queue's ARN: with the message id, the ledger key of a body too broken to name
    /// its own event.
    pub queue_arn: String,
    /// How often SQS has delivered it (1 on the first delivery).
    pub receive_count: u32,
    /// When this message's work must end: its fair share of the time left, so one message
    /// whose calls keep failing cannot keep the messages after it from being tried.
    pub deadline: Instant,
}

/// Runs `handle` over the batch in order. Once the tenant is blocked, or time runs short,
/// the remaining messages fail without being touched.
pub async fn process_batch<F, Fut>(
    event: &SqsEvent,
    deadline: Instant,
    mut handle: F,
) -> SqsBatchResponse
where
    F: FnMut(QueueMessage) -> Fut,
    Fut: Future<Output = Result<(), Abort>>,
{
    let mut failures = Vec::new();
    let mut stop: Option<String> = None;
    let total = event.records.len();
    for (index, record) in event.records.iter().enumerate() {
        let Some(message_id) = record.message_id.as_deref() else {
            // Without an id SQS cannot be told about it; acknowledging is all that can be done.
            tracing::error!("SQS record without a messageId acknowledged unprocessed");
            continue;
        };
        if stop.is_none()
            && deadline.saturating_duration_since(Instant::now()) < MIN_TIME_PER_MESSAGE
        {
            stop = Some("the invocation is about to time out".into());
        }
        if let Some(reason) = &stop {
            tracing::warn!(
                message_id,
                reason = reason.as_str(),
                "message left for redelivery"
            );
            failures.push(failure(message_id));
            continue;
        }
        let left = u32::try_from(total - index).unwrap_or(u32::MAX);
        let share = deadline.saturating_duration_since(Instant::now()) / left;
        let message = QueueMessage {
            deadline: deadline.min(Instant::now() + share.max(MIN_SHARE)),
            message_id: message_id.to_string(),
            body: record.body.clone().unwrap_or_default(),
            queue_arn: record
                .event_source_arn
                .clone()
                .unwrap_or_else(|| "sqs".into()),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        };
        if let Err(abort) = handle(message).await {
            tracing::warn!(message_id, class = ?abort.class(), error = %abort, "message failed; SQS will redeliver it");
            failures.push(failure(message_id));
            // The same block, or the same refused credential, would stop every message after.
            if abort.class() == FailureClass::Blocked || abort.access_denied {
                stop = Some(abort.message.clone());
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// Holds back the messages of the batch that failed while the invitation circuit is open, until
/// its next probe: redelivered after the usual visibility timeout they would use up their
/// receives and land in the dead-letter queue long before the block is lifted.
pub async fn hold_while_circuit_open(
    event: &SqsEvent,
    response: &SqsBatchResponse,
    runtime: &Runtime,
) {
    let Some(redelivery) = &runtime.redelivery else {
        return;
    };
    let circuit = match runtime.ledger.circuit().await {
        Ok(c) if c.open => c,
        _ => return,
    };
    let now = runtime.settings.clock.now();
    let delay =
        crate::app::circuit::until_probe(&circuit, now, runtime.settings.circuit_probe_after);
    let mut by_queue: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for record in &event.records {
        let failed = response
            .batch_item_failures
            .iter()
            .any(|f| Some(f.item_identifier.as_str()) == record.message_id.as_deref());
        if let (true, Some(arn), Some(handle)) = (
            failed,
            record.event_source_arn.as_deref(),
            record.receipt_handle.as_ref(),
        ) {
            by_queue.entry(arn).or_default().push(handle.clone());
        }
    }
    for (arn, handles) in by_queue {
        match redelivery.delay(arn, &handles, delay).await {
            Ok(()) => tracing::warn!(
                queue = arn,
                held = handles.len(),
                seconds = delay.as_secs(),
                "invitation circuit open: messages held back until its next probe"
            ),
            // They come back after the usual visibility timeout instead.
            Err(e) => tracing::warn!(queue = arn, error = %e, "could not hold messages back"),
        }
    }
}

fn failure(message_id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id.to_string();
    f
}
