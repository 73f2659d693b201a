//! The work queue on Amazon SQS.

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::ports::queue::{QueueError, QueuedPart, WorkQueue};

/// SendMessageBatch takes at most ten entries.
const SQS_BATCH: usize = 10;

pub struct SqsWorkQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsWorkQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        SqsWorkQueue { client, url }
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn send(&self, parts: &[QueuedPart]) -> Result<(), QueueError> {
        for batch in parts.chunks(SQS_BATCH) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("e{i}"))
                        .message_body(&p.body)
                        .build()
                        .map_err(|e| QueueError(format!("WORK_QUEUE_URL: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    QueueError(format!(
                        "WORK_QUEUE_URL: cannot queue the parts: {}",
                        DisplayErrorContext(&e)
                    ))
                })?;
            if let Some(failed) = output.failed().first() {
                return Err(QueueError(format!(
                    "WORK_QUEUE_URL: {} of {} parts not queued: {}: {}",
                    output.failed().len(),
                    batch.len(),
                    failed.code(),
                    failed.message().unwrap_or("no message")
                )));
            }
        }
        Ok(())
    }
}
