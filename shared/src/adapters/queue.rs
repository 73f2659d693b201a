//! The work queue on Amazon SQS.

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use std::time::Duration;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;

use crate::ports::queue::{QueueError, QueuedPart, Redelivery, WorkQueue};

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

/// Changes the visibility of messages a Lambda function received from its event source.
pub struct SqsRedelivery {
    client: aws_sdk_sqs::Client,
}

impl SqsRedelivery {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsRedelivery { client }
    }
}

#[async_trait]
impl Redelivery for SqsRedelivery {
    async fn delay(
        &self,
        queue_arn: &str,
        receipt_handles: &[String],
        delay: Duration,
    ) -> Result<(), QueueError> {
        // arn:aws:sqs:<region>:<account>:<name>: the URL is asked of SQS, which knows its
        // own endpoint (and the emulator's).
        let mut parts = queue_arn.rsplitn(3, ':');
        let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
            return Err(QueueError(format!("not a queue ARN: {queue_arn}")));
        };
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| QueueError(format!("{queue_arn}: {}", DisplayErrorContext(&e))))?
            .queue_url
            .ok_or_else(|| QueueError(format!("{queue_arn}: GetQueueUrl gave no URL")))?;
        let seconds = i32::try_from(delay.as_secs()).unwrap_or(i32::MAX);
        for batch in receipt_handles.chunks(SQS_BATCH) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .build()
                        .map_err(|e| QueueError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(format!("{queue_arn}: {}", DisplayErrorContext(&e))))?;
            if let Some(failed) = output.failed().first() {
                return Err(QueueError(format!(
                    "{queue_arn}: {} messages kept their visibility: {}: {}",
                    output.failed().len(),
                    failed.code(),
                    failed.message().unwrap_or("no message")
                )));
            }
        }
        Ok(())
    }
}
